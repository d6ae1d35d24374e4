// Type checks CI runs: `tsc --noEmit -p .` over the whole tree (the tests run TypeScript unchecked), `deno check`
// of every public entry point (pack/build.ts ENTRIES, as deno.json exports them for JSR) and the CLI, and
// `deno publish --dry-run` (JSR's own checks: explicit types on the public API, the files it would upload).
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { denoExports, denoPublish, ENTRIES, npmExports } from "../../pack/build.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DENO = join(ROOT, "node_modules/.bin/deno");

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

  test("deno.json is JSR-ready: name, version, exports and publish derived from ENTRIES; deno publish --dry-run passes", () => {
    const deno = JSON.parse(readFileSync(join(ROOT, "deno.json"), "utf8"));
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
    expect([deno.name, deno.version]).toEqual(["@flux2ts/flux2ts", pkg.version]);
    expect(deno.exports).toEqual(denoExports());
    expect(deno.publish).toEqual(denoPublish());
    expect(pkg.exports).toEqual(npmExports());
    // Type checking is the test above; this is JSR's slow-types check and file list (tests are not uploaded).
    const r = run(DENO, ["publish", "--dry-run", "--allow-dirty", "--no-check"]);
    if (r.code !== 0) console.log(r.out);
    expect(r.code).toBe(0);
    const uploaded = [...r.out.matchAll(/file:\/\/\S+/g)].map((m) => m[0].slice(`file://${ROOT}`.length));
    expect(uploaded).toContain("core/index.ts");
    expect(uploaded.filter((f) => !ENTRIES.includes(f.split("/")[0]) && !/^(README\.md|LICENSE|deno\.json)$/.test(f))).toEqual([]);
  }, 600_000);
});
