// The README's claim that Deno's `generate` writes the same bytes as Bun's: `flux2ts generate` on the tiny fixture
// repos (32×32, one step, SES with budget 4) as a child process of each runtime, and the PNGs and the candidates'
// scores compared exactly. Both children run whatever the host runtime is, so the test runs once, under Deno
// (deno task test lists this file); under Bun it is a skip that says so.
import { expect, test } from "bun:test";
import { joinPath, readText, runtime } from "../../core/index.ts";
import { FIXTURES } from "../util.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const REPOS = joinPath(FIXTURES, "repos");
type Proc = { process: { execPath: string; env: Record<string, string | undefined> } };
const proc = (globalThis as unknown as Proc).process;

/** Runs `flux2ts generate` under `which` with the output at `out`; resolves with the exit code and stderr. */
async function generate(which: "bun" | "deno", out: string): Promise<{ code: number; stderr: string }> {
  const { spawn } = await import("node:child_process");
  const exe = which === "deno" ? proc.execPath : joinPath(ROOT, "node_modules/.bin/bun");
  const pre = which === "deno" ? ["run", "-A", "--unstable-webgpu"] : [];
  const args = [
    ...pre, joinPath(ROOT, "cli/flux2ts.ts"), "generate", "--prompt", "a cat", "--width", "32", "--height", "32", "--steps", "1",
    "--model", joinPath(REPOS, "black-forest-labs/FLUX.2-klein-tiny"), "--reward-model", joinPath(REPOS, "AI-ModelScope/PickScore-tiny"),
    "--reward-processor", joinPath(REPOS, "laion/CLIP-ViT-H-14-tiny-processor"), "--search", "ses", "--budget", "4", "--batch", "2",
    "--offline", "--out", out,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(exe, args, { cwd: ROOT, env: { ...proc.env, NO_COLOR: "1" } });
    let stderr = "";
    child.stderr.on("data", (d: Uint8Array) => (stderr += new TextDecoder().decode(d)));
    child.on("error", reject);
    child.on("close", (code: number) => resolve({ code, stderr }));
  });
}

test.skipIf(runtime !== "deno")("generate under Deno writes the same PNG bytes and scores as under Bun (runs under Deno only)", async () => {
  const { mkdtemp, readFile } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const dir = await mkdtemp(joinPath(tmpdir(), "flux2ts-runtimes-"));
  const runs = [];
  for (const which of ["bun", "deno"] as const) {
    const out = joinPath(dir, `${which}.png`);
    const r = await generate(which, out);
    if (r.code !== 0) throw new Error(`generate under ${which} exited ${r.code}:\n${r.stderr}`);
    const log = JSON.parse(await readText(joinPath(dir, `${which}.json`)));
    runs.push({ png: new Uint8Array(await readFile(out)), scores: log.candidates.map((c: { score: number }) => c.score), best: log.bestIndex });
  }
  const [bun, deno] = runs;
  expect(bun.scores.length).toBe(4);
  expect(deno.scores).toEqual(bun.scores);
  expect(deno.best).toBe(bun.best);
  expect(deno.png.length).toBe(bun.png.length);
  expect(deno.png.every((v, i) => v === bun.png[i])).toBe(true);
}, 600_000);
