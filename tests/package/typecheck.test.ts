// Type checks CI runs: `tsc --noEmit -p .` over the whole tree (the tests run TypeScript unchecked), and
// `deno check` of every public entry point (pack/build.ts ENTRIES, as deno.json exports them for JSR) and the CLI.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { denoExports, ENTRIES, npmExports } from "../../pack/build.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

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

  test("deno check of every entry point and the CLI; deno.json is JSR-ready", () => {
    const deno = JSON.parse(readFileSync(join(ROOT, "deno.json"), "utf8"));
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
    expect([deno.name, deno.version]).toEqual(["@flux2ts/flux2ts", pkg.version]);
    expect(deno.exports).toEqual(denoExports());
    expect(pkg.exports).toEqual(npmExports());
    const r = run(join(ROOT, "node_modules/.bin/deno"), ["check", ...ENTRIES.map((e) => `${e}/index.ts`), "cli/flux2ts.ts"]);
    if (r.code !== 0) console.log(r.out);
    expect(r.code).toBe(0);
  }, 600_000);
});
