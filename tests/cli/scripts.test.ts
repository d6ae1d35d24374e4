// Every script of package.json and every task of deno.json works from a clean checkout, through the same front door a
// user takes (`npm run`, `deno task`): CI (.ci/run) runs `typecheck` and `test`, which runs `test:bun` and
// `test:deno` (= `deno task test`); the package test runs `prepack` (= `build`); this file runs the rest with small
// settings, writing into a temp folder. A new
// script or task that neither covers fails the first test. `demo` is `bench --quick` through the CLI, so it runs
// with --help here (the bench body runs under `bench`); `bench:models` times real klein-4B blocks (~40 s on an idle
// 2-core lavapipe VM).
import { describe, expect, test } from "bun:test";
import { joinPath, readText } from "../../core/index.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
type Proc = { process: { env: Record<string, string | undefined> } };
const env = (globalThis as unknown as Proc).process.env;

/** The scripts and tasks CI itself runs, and what in CI runs each. */
const RUN_BY_CI: Record<string, RegExp> = {
  "npm:typecheck": /^npm run typecheck /m,
  "npm:test": /^npm test /m,
};
/** Scripts `npm test` runs, and tasks `npm run test:deno` runs. */
const RUN_BY_TEST = { "npm:test:bun": "npm run test:bun", "npm:test:deno": "npm run test:deno", "deno:test": "deno task test" };
/** Scripts tests/package/package.test.ts runs: `npm pack` runs `prepack`, and `build` is the same command. */
const RUN_BY_PACKAGE_TEST = ["npm:prepack", "npm:build"];

async function run(cmd: string[], timeoutMs = 600_000): Promise<{ code: number | null; out: string }> {
  const { spawn } = await import("node:child_process");
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0], cmd.slice(1), { cwd: ROOT, env: { ...env, NO_COLOR: "1" }, timeout: timeoutMs });
    let out = "";
    const take = (d: Uint8Array) => (out += new TextDecoder().decode(d));
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    child.on("error", reject);
    child.on("close", (code: number | null) => resolve({ code, out }));
  });
}

let dir: Promise<string> | undefined;
const tempDir = () =>
  (dir ??= (async () => {
    const { mkdtemp } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    return mkdtemp(joinPath(tmpdir(), "flux2ts-scripts-"));
  })());

/** Each script or task run here: the command line and what its output must show. */
const SMOKE: Record<string, (d: string) => [string[], RegExp]> = {
  "npm:bench": (d) => [["npm", "run", "bench", "--", "--quick", "--out", joinPath(d, "results.json")], /matmul f32 .*% of fma_peak[\s\S]*wrote /],
  "npm:demo": () => [["npm", "run", "demo", "--", "--help"], /flux2ts bench \[--quick\]/],
  "npm:bench:search": (d) => [["npm", "run", "bench:search", "--", "--seeds", "1", "--out", d], /wrote .*search\.json and .*search\.svg/],
  "npm:bench:models": (d) => [["npm", "run", "bench:models", "--", "--out", joinPath(d, "models.json")], /single-stream block/],
  "npm:bench:batch": (d) => [["npm", "run", "bench:batch", "--", "--quick", "--out", joinPath(d, "batch.json")], /2 worker\(s\): 4 jobs, .* jobs\/min[\s\S]*wrote /],
  "deno:cli": () => [[joinPath(ROOT, "node_modules/.bin/deno"), "task", "cli", "info"], /adapter/i],
};

describe("package.json scripts and deno.json tasks", () => {
  test("each is run by CI or by this file", async () => {
    const scripts = Object.keys(JSON.parse(await readText(joinPath(ROOT, "package.json"))).scripts).map((s) => `npm:${s}`);
    const tasks = Object.keys(JSON.parse(await readText(joinPath(ROOT, "deno.json"))).tasks).map((t) => `deno:${t}`);
    const ci = await readText(joinPath(ROOT, ".ci/run"));
    const pkg = JSON.parse(await readText(joinPath(ROOT, "package.json"))).scripts;
    for (const [name, re] of Object.entries(RUN_BY_CI)) expect(`${name}: ${re.test(ci)}`).toBe(`${name}: true`);
    // Both halves run even when the first fails (so CI's counts cover both); the exit status is the worse one.
    expect(pkg.test).toBe(`${RUN_BY_TEST["npm:test:bun"]}; bun_status=$?; ${RUN_BY_TEST["npm:test:deno"]} && exit $bun_status`);
    expect(pkg["test:deno"]).toBe(RUN_BY_TEST["deno:test"]);
    expect(pkg.build).toBe(pkg.prepack);
    const covered = new Set([...Object.keys(RUN_BY_CI), ...Object.keys(RUN_BY_TEST), ...RUN_BY_PACKAGE_TEST, ...Object.keys(SMOKE)]);
    expect([...scripts, ...tasks].filter((n) => !covered.has(n))).toEqual([]);
    expect([...covered].filter((n) => ![...scripts, ...tasks].includes(n))).toEqual([]);
  });

  for (const [name, smoke] of Object.entries(SMOKE)) {
    test(`${name} runs from a clean checkout`, async () => {
      const [cmd, expected] = smoke(await tempDir());
      const r = await run(cmd);
      if (r.code !== 0 || !expected.test(r.out)) throw new Error(`${cmd.join(" ")}: exit ${r.code}\n${r.out.slice(-3000)}`);
    }, 600_000);
  }
});
