// Type checks CI runs: `tsc --noEmit -p .` over the whole tree (the tests run TypeScript unchecked), `deno check`
// of every public entry point (package.json's exports, which pack/build.ts derives with deno.json's from its one
// list) and the CLI, and `deno publish --dry-run` (JSR's own checks: explicit types on the public API, the files it
// would upload). Tests do not import pack/ (tests/layers.test.ts); they run it.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BUN = (globalThis as { Bun?: unknown }).Bun ? process.execPath : join(ROOT, "node_modules/.bin/bun");
const DENO = join(ROOT, "node_modules/.bin/deno");
const PKG = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string; exports: Record<string, unknown> };
/** The public entry points, as the package exports them ("./core" → "core"). */
const ENTRIES = Object.keys(PKG.exports).map((k) => k.slice(2));

function run(cmd: string, args: string[]): { code: number | null; out: string } {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: "utf8", env: { ...process.env, NO_COLOR: "1" }, timeout: 600_000 });
  return { code: r.status, out: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}

describe("type checks", () => {
  test("tsc --noEmit -p .", () => {
    const r = run("node", [join(ROOT, "node_modules/typescript/bin/tsc"), "--noEmit", "-p", "."]);
    expect(r.out).toBe("");
    expect(r.code).toBe(0);
  }, 600_000);

  test("deno check of every entry point and the CLI", () => {
    const r = run(DENO, ["check", ...ENTRIES.map((e) => `${e}/index.ts`), "cli/flux2ts.ts"]);
    if (r.code !== 0) console.log(r.out);
    expect(r.code).toBe(0);
  }, 600_000);

  test("deno.json is JSR-ready: name, version, and exports and publish as pack/build.ts derives them; deno publish --dry-run passes", () => {
    const deno = JSON.parse(readFileSync(join(ROOT, "deno.json"), "utf8"));
    expect([deno.name, deno.version]).toEqual(["@flux2ts/flux2ts", PKG.version]);
    expect(Object.keys(deno.exports)).toEqual(Object.keys(PKG.exports));
    const check = run(BUN, ["pack/build.ts", "--check"]);
    expect(check.out).toBe("");
    expect(check.code).toBe(0);
    // Type checking is the test above; this is JSR's slow-types check and file list (tests are not uploaded).
    const r = run(DENO, ["publish", "--dry-run", "--allow-dirty", "--no-check"]);
    if (r.code !== 0) console.log(r.out);
    expect(r.code).toBe(0);
    const uploaded = [...r.out.matchAll(/file:\/\/\S+/g)].map((m) => m[0].slice(`file://${ROOT}`.length));
    expect(uploaded).toContain("core/index.ts");
    expect(uploaded.filter((f) => !ENTRIES.includes(f.split("/")[0]) && !/^(README\.md|LICENSE|deno\.json)$/.test(f))).toEqual([]);
  }, 600_000);
});
