// `flux2ts generate` on the tiny fixture repos (32×32, 2 steps): the library (generate/generation.ts over
// generate/run_search.ts) in-process with the models loaded once — every search, the log's contract (evals = budget,
// bestScore = the best candidate's score, nfe), events, every verifier, and replays bit-identical to the original
// images — then the CLI as a child process: one-line errors for user mistakes, and the end-to-end run (model ids
// through a loopback ModelScope server into a cold cache, with --save-all and the JSON log), repeated --offline
// with the server gone and replayed with --replay, both byte-identical.
import { describe, expect, test } from "bun:test";
import { type Device, fileUrlToPath, joinPath, readText, runtime, type Tensor } from "../../core/index.ts";
import { readPng } from "../../core/png.ts";
import { PickScore } from "../../models/clip/pickscore.ts";
import { Flux2Pipeline } from "../../models/flux2/pipeline.ts";
import { type GenerationEvent, type GenerationModels, type GenerationSettings, generateWithSearch, imageRgb8, replayGeneration } from "../../generate/generation.ts";
import { startHubServer } from "../hub/server.ts";
import { FIXTURES, testDevice } from "../util.ts";

const REPOS = joinPath(FIXTURES, "repos");
const MODEL = joinPath(REPOS, "black-forest-labs/FLUX.2-klein-tiny");
const REWARD = joinPath(REPOS, "AI-ModelScope/PickScore-tiny");
const PROCESSOR = joinPath(REPOS, "laion/CLIP-ViT-H-14-tiny-processor");
const PROMPT = "a cat";
// One step keeps the noise searches cheap; paths and the self-supervised verifier need two.
const BASE: Omit<GenerationSettings, "search" | "budget"> = { prompt: PROMPT, width: 32, height: 32, steps: 1, seed: 5, verifier: "pickscore", batch: 2 };
const TWO_STEPS = { ...BASE, steps: 2 };

type Proc = { process?: { execPath: string; env: Record<string, string | undefined> } };
const proc = (globalThis as Proc).process!;

let shared: Promise<{ dev: Device; m: GenerationModels }> | undefined;
function models() {
  shared ??= (async () => {
    const dev = await testDevice();
    const pipe = await Flux2Pipeline.load(dev, { dir: MODEL, prompts: [PROMPT] });
    const scorer = await PickScore.load(dev, { model: REWARD, processor: PROCESSOR });
    return { dev, m: { pipe, scorer } };
  })();
  return shared;
}

const bytesOf = async (t: Tensor) => (await imageRgb8(t)).data;
const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((v, i) => v === b[i]);

/** Scores of the runs so far by search (the verifier test reuses the random search's). */
const scoresBy = new Map<string, number[]>();

describe("generation library", () => {
  const cases: [GenerationSettings["search"], number][] = [["none", 1], ["random", 3], ["ses", 3], ["zero-order", 3], ["paths", 4]];
  for (const [search, budget] of cases) {
    test(`${search}: log contract, events, and a replay equal to the original image`, async () => {
      const { m } = await models();
      const events: GenerationEvent[] = [];
      const seen: Uint8Array[] = [];
      const { image, log } = await generateWithSearch(m, { ...(search === "paths" ? TWO_STEPS : BASE), search, budget }, {
        onEvent: async (e) => {
          events.push(e);
          if (e.kind === "candidate") seen[e.index] = await bytesOf(e.image);
        },
      });
      const best = await bytesOf(image);
      image.dispose();
      scoresBy.set(search, log.candidates.map((c) => c.score));
      const cands = events.filter((e) => e.kind === "candidate");
      expect(log.evals).toBe(budget);
      expect(log.candidates.length).toBe(budget);
      expect(cands.map((e) => e.index)).toEqual(log.candidates.map((c) => c.index));
      expect(events.some((e) => e.kind === "progress")).toBe(true);
      expect(log.bestScore).toBe(log.candidates[log.bestIndex].score);
      expect(same(best, seen[log.bestIndex])).toBe(true);
      if (search === "paths") {
        // budget 4 = 1 round × 1 path × 4 branches: the path denoised 0 → 1, then 4 states × 2 steps.
        expect(log.nfe).toBe(1 * 1 + 4 * 2);
        expect(log.bestScore).toBe(Math.max(...log.candidates.map((c) => c.score)));
      } else {
        expect(log.nfe).toBe(budget * 1);
        expect(log.bestScore).toBe(Math.max(...log.candidates.map((c) => c.score)));
      }
      // The last candidate, re-rendered from the log alone, byte for byte.
      const r = await replayGeneration(m, log, budget - 1);
      expect(same(await bytesOf(r), seen[budget - 1])).toBe(true);
      r.dispose();
    }, 60_000);
  }

  test("verifiers: self is a cosine, ensemble a mean rank; paths limits", async () => {
    const { m } = await models();
    const run = async (verifier: GenerationSettings["verifier"]) => {
      const r = await generateWithSearch(m, { ...TWO_STEPS, search: "random", budget: 2, verifier });
      r.image.dispose();
      return r.log.candidates.map((c) => c.score);
    };
    for (const s of await run("self")) expect(Math.abs(s)).toBeLessThanOrEqual(1);
    const ens = await run("ensemble"); // mean ranks of 2 candidates under pickscore, clipscore and self
    expect(ens[0] + ens[1]).toBe(3);
    for (const v of ens) expect(v >= 1 && v <= 2).toBe(true);
    await expect(generateWithSearch(m, { ...BASE, search: "random", budget: 2, verifier: "self" })).rejects.toThrow(/at least 2 steps/);
    await expect(generateWithSearch(m, { ...TWO_STEPS, search: "paths", budget: 4, verifier: "self" })).rejects.toThrow(/paths/);
    await expect(generateWithSearch(m, { ...TWO_STEPS, search: "paths", budget: 3 })).rejects.toThrow(/budget must be ≥ 4/);
  }, 60_000);

  test("clipscore = 2.5·max(pickscore, 0) on the same noises (random runs are prefixes of longer ones)", async () => {
    const { m } = await models();
    let pick = scoresBy.get("random");
    if (!pick) {
      const p = await generateWithSearch(m, { ...BASE, search: "random", budget: 2 });
      p.image.dispose();
      pick = p.log.candidates.map((c) => c.score);
    }
    const r = await generateWithSearch(m, { ...BASE, search: "random", budget: 2, verifier: "clipscore" });
    r.image.dispose();
    r.log.candidates.forEach((c, i) => expect(Math.abs(c.score - 2.5 * Math.max(pick![i], 0))).toBeLessThan(1e-9));
  }, 60_000);
});

// ---- the CLI as a child process ------------------------------------------------------------------------------

const CLI = fileUrlToPath(new URL("../../cli/flux2ts.ts", import.meta.url));
const SMALL = ["--width", "32", "--height", "32", "--steps", "1"];

async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const { spawn } = await import("node:child_process");
  const argv = runtime === "deno" ? ["run", "-A", "--unstable-webgpu", CLI, ...args] : [CLI, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(proc.execPath, argv, { env: { ...proc.env, ...env } });
    let stdout = "", stderr = "";
    child.stdout.on("data", (d: Uint8Array) => (stdout += new TextDecoder().decode(d)));
    child.stderr.on("data", (d: Uint8Array) => (stderr += new TextDecoder().decode(d)));
    child.on("error", reject);
    child.on("close", (code: number) => {
      if (code !== 0 && code !== 2) console.log(`flux2ts ${args.join(" ")}\n${stderr}`); // a crash: show why
      resolve({ code, stdout, stderr });
    });
  });
}

async function tempDir(): Promise<string> {
  const { mkdtemp } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  return mkdtemp(joinPath(tmpdir(), "flux2ts-gen-"));
}

const fileBytes = async (p: string) => {
  const { readFile } = await import("node:fs/promises");
  return new Uint8Array(await readFile(p));
};

describe("generate CLI", () => {
  test("user mistakes: one line and a hint, exit 2, no stack trace", async () => {
    const cases: [string[], RegExp][] = [
      [["--prompt", "x", "--width", "100"], /--width must be a multiple of 16/],
      [["--prompt", "x", "--search", "beam"], /unknown --search "beam"/],
      [["--prompt-file", "/nonexistent/prompt.txt"], /cannot read --prompt-file/],
      [["--width", "64"], /needs --prompt/],
      [["--prompt", "x", "--batch", "0"], /--batch must be an integer/],
      [["--candidate", "1"], /--candidate needs --replay/],
    ];
    for (const [args, re] of cases) {
      const r = await cli(["generate", ...args]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(re);
      expect(r.stderr).toMatch(/hint: |^flux2ts: /);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    const dir = await tempDir();
    const r = await cli(["generate", "--prompt", "x", ...SMALL, "--model", "no-such-model-alias", "--offline", "--out", joinPath(dir, "x.png")], { MODELSCOPE_CACHE: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--model no-such-model-alias/);
    expect(r.stderr).toMatch(/hint: give a local folder, an alias/);
  }, 60_000);

  test("end to end: ids through a ModelScope server into a cold cache (--save-all, JSON log); --offline and --replay give the same bytes", async () => {
    const dir = await tempDir();
    const server = await startHubServer({ root: REPOS });
    const args = (out: string) => [
      "generate", "--prompt", PROMPT, ...SMALL, "--model", "black-forest-labs/FLUX.2-klein-tiny", "--reward-model", "AI-ModelScope/PickScore-tiny",
      "--reward-processor", "laion/CLIP-ViT-H-14-tiny-processor", "--search", "ses", "--budget", "6", "--batch", "6", "--out", out,
    ];
    const env = { MODELSCOPE_CACHE: joinPath(dir, "cache") };
    const out = joinPath(dir, "a.png");
    let online;
    try {
      online = await cli([...args(out), "--endpoint", server.url, "--save-all"], env);
    } finally {
      await server.close();
    }
    expect(online.stderr).not.toMatch(/\n\s+at /);
    expect(online.code).toBe(0);
    expect(online.stderr.match(/candidate +\d\/6/g)?.length).toBe(6); // not a TTY: one line per candidate
    const log = JSON.parse(await readText(joinPath(dir, "a.json")));
    expect(log.evals).toBe(6);
    expect(log.nfe).toBe(6);
    expect(log.bestScore).toBe(Math.max(...log.candidates.map((c: { score: number }) => c.score)));
    const { search, budget, seed, batch, steps } = log.settings;
    expect({ search, budget, seed, batch, steps }).toEqual({ search: "ses", budget: 6, seed: 0, batch: 6, steps: 1 });
    expect(log.models.model).toBe("black-forest-labs/FLUX.2-klein-tiny");
    expect(log.candidates[log.bestIndex].replay).toContain(`--candidate ${log.bestIndex}`);
    const sheet = await readPng(joinPath(dir, "a-all.png"));
    expect(sheet.width).toBeGreaterThan(2 * 32);
    const original = await fileBytes(out);
    const offline = await cli([...args(joinPath(dir, "b.png")), "--offline"], env);
    expect(offline.code).toBe(0);
    expect(same(await fileBytes(joinPath(dir, "b.png")), original)).toBe(true);
    const again = joinPath(dir, "again.png");
    const replay = await cli(["generate", "--replay", joinPath(dir, "a.json"), "--candidate", String(log.bestIndex), "--offline", "--out", again], env);
    expect(replay.code).toBe(0);
    expect(same(await fileBytes(again), original)).toBe(true);
  }, 120_000);
});
