// Editing with reference images through the generation library and `flux2ts generate --ref` on the tiny fixture
// repos (reference PNGs made by Pillow: data/make_references.py): references are encoded once per run (VAE encoder
// calls counted over a search of budget 4) and logged (file, bytes, size, SHA-256); an SES run with 2 references
// completes, its log's best score equals a re-score of the written PNG, the output takes the first reference's
// cropped size, and --replay gives the same bytes and refuses a reference whose hash differs; bad references each
// get one line and exit 2 with nothing written.
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { joinPath, readText, runtime } from "../../core/index.ts";
import { readPng, toRgb } from "../../core/png.ts";
import { PickScore } from "../../models/clip/pickscore.ts";
import { Flux2Pipeline } from "../../models/flux2/pipeline.ts";
import { generateWithSearch, type GenerationSettings, imageRgb8, loadReferences, replayGeneration } from "../../generate/generation.ts";
import { FIXTURES, testDevice } from "../util.ts";

const REPOS = joinPath(FIXTURES, "repos");
const MODEL = joinPath(REPOS, "black-forest-labs/FLUX.2-klein-tiny");
const REWARD = joinPath(REPOS, "AI-ModelScope/PickScore-tiny");
const PROCESSOR = joinPath(REPOS, "laion/CLIP-ViT-H-14-tiny-processor");
const DATA = new URL("data/", import.meta.url).pathname;
const [REF_A, REF_B] = [joinPath(DATA, "ref_a.png"), joinPath(DATA, "ref_b.png")];
const PROMPT = "a cat";

type Proc = { process?: { execPath: string; env: Record<string, string | undefined> } };
const proc = (globalThis as Proc).process!;
const CLI = new URL("../../cli/flux2ts.ts", import.meta.url).pathname;

async function fileBytes(p: string): Promise<Uint8Array> {
  const { readFile } = await import("node:fs/promises");
  return new Uint8Array(await readFile(p));
}

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { spawn } = await import("node:child_process");
  const argv = runtime === "deno" ? ["run", "-A", "--unstable-webgpu", CLI, ...args] : [CLI, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(proc.execPath, argv, { env: proc.env });
    let stdout = "", stderr = "";
    child.stdout.on("data", (d: Uint8Array) => (stdout += new TextDecoder().decode(d)));
    child.stderr.on("data", (d: Uint8Array) => (stderr += new TextDecoder().decode(d)));
    child.on("error", reject);
    child.on("close", (code: number) => resolve({ code, stdout, stderr }));
  });
}

async function tempDir(): Promise<string> {
  const { mkdtemp } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  return mkdtemp(joinPath(tmpdir(), "flux2ts-edit-"));
}

const MODEL_FLAGS = ["--model", MODEL, "--reward-model", REWARD, "--reward-processor", PROCESSOR, "--offline"];

describe("generation library with references", () => {
  test("a search of budget 4 encodes each reference once; the log records them; a replay is bit-identical and checks hashes", async () => {
    const dev = await testDevice();
    const pipe = await Flux2Pipeline.load(dev, { dir: MODEL, prompts: [PROMPT], vaeEncoder: true });
    const scorer = await PickScore.load(dev, { model: REWARD, processor: PROCESSOR });
    const m = { pipe, scorer };
    try {
      const files = await Promise.all([REF_A, REF_B].map(async (name) => ({ name, bytes: await fileBytes(name) })));
      const references = await loadReferences(files);
      let encodes = 0;
      const encode = pipe.vae.encode.bind(pipe.vae);
      pipe.vae.encode = (img, debug) => (encodes++, encode(img, debug));
      const settings: GenerationSettings = { prompt: PROMPT, width: 48, height: 32, steps: 1, seed: 2, search: "zero-order", budget: 4, verifier: "pickscore", batch: 2, references };
      const seen: Uint8Array[] = [];
      const { image, log } = await generateWithSearch(m, settings, {
        onEvent: async (e) => {
          if (e.kind === "candidate") seen[e.index] = (await imageRgb8(e.image)).data;
        },
      });
      image.dispose();
      expect(log.evals).toBe(4);
      expect(encodes).toBe(2);
      const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
      expect(log.settings.references).toEqual([
        { file: REF_A, bytes: files[0].bytes.length, width: 89, height: 72, sha256: sha(files[0].bytes) },
        { file: REF_B, bytes: files[1].bytes.length, width: 70, height: 101, sha256: sha(files[1].bytes) },
      ]);
      // Without references the same noises give other images.
      const plain = await generateWithSearch(m, { ...settings, references: undefined, search: "none", budget: 1 });
      const plainBytes = (await imageRgb8(plain.image)).data;
      plain.image.dispose();
      expect(plainBytes.every((v, i) => v === seen[0][i])).toBe(false);

      const r = await replayGeneration(m, log, 3, { references });
      expect((await imageRgb8(r)).data).toEqual(seen[3]);
      r.dispose();
      await expect(replayGeneration(m, log, 3, { references: [references[1], references[0]] })).rejects.toThrow(/replay: reference 1 .*ref_b\.png has SHA-256/);
      await expect(replayGeneration(m, log, 3)).rejects.toThrow(/had 2 reference image\(s\), 0 given/);
    } finally {
      scorer.dispose();
      pipe.dispose();
    }
  }, 300_000);
});

describe("generate --ref", () => {
  test("SES with 2 references: completes at the first reference's size, best score = re-score of the PNG, --replay same bytes and refuses a changed file", async () => {
    const dir = await tempDir();
    const out = joinPath(dir, "edit.png");
    const r = await cli(["generate", "--prompt", PROMPT, "--ref", REF_A, "--ref", REF_B, "--steps", "1", "--search", "ses", "--budget", "4", "--batch", "2", ...MODEL_FLAGS, "--out", out]);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.code).toBe(0);
    const png = await readPng(out);
    expect([png.width, png.height]).toEqual([80, 64]); // 89×72 cropped to multiples of 16
    const log = JSON.parse(await readText(joinPath(dir, "edit.json")));
    expect(log.evals).toBe(4);
    expect(log.settings.references.map((x: { file: string }) => x.file)).toEqual([REF_A, REF_B]);
    const dev = await testDevice();
    const scorer = await PickScore.load(dev, { model: REWARD, processor: PROCESSOR });
    const [rescore] = await scorer.score([toRgb(png)], PROMPT);
    scorer.dispose();
    expect(Math.abs(rescore - log.bestScore)).toBeLessThanOrEqual(1e-6);

    const again = joinPath(dir, "again.png");
    const replay = await cli(["generate", "--replay", joinPath(dir, "edit.json"), "--candidate", String(log.bestIndex), ...MODEL_FLAGS, "--out", again]);
    expect(replay.code).toBe(0);
    expect(await fileBytes(again)).toEqual(await fileBytes(out));
    const wrong = await cli(["generate", "--replay", joinPath(dir, "edit.json"), "--candidate", "0", "--ref", REF_B, "--ref", REF_A, ...MODEL_FLAGS, "--out", joinPath(dir, "wrong.png")]);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/reference .*ref_b\.png has SHA-256 [0-9a-f]{64}, but the run used .*ref_a\.png/);
    const { readdir } = await import("node:fs/promises");
    expect((await readdir(dir)).sort()).toEqual(["again.png", "edit.json", "edit.png"]);
  }, 300_000);

  test("bad references: one line each, exit 2, nothing written", async () => {
    const dir = await tempDir();
    const text = joinPath(dir, "notes.png");
    const { writeFile, readdir } = await import("node:fs/promises");
    await writeFile(text, "not an image\n");
    const cases: [string, RegExp][] = [
      [text, /--ref .*notes\.png: not a PNG or JPEG file/],
      [joinPath(DATA, "small_40x40.png"), /small_40x40\.png: Image too small: 40×40\. Both dimensions must be at least 64px/],
      [joinPath(DATA, "wide_1000x100.png"), /wide_1000x100\.png: Aspect ratio too extreme: 1000×100 \(ratio: 10\.0:1\)\. Maximum allowed ratio is 8:1/],
      [joinPath(dir, "missing.png"), /cannot read --ref .*missing\.png/],
    ];
    for (const [file, re] of cases) {
      const r = await cli(["generate", "--prompt", PROMPT, "--ref", REF_A, "--ref", file, ...MODEL_FLAGS, "--out", joinPath(dir, "x.png")]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(re);
      expect(r.stderr.split("\n").filter((l) => l && !/^hint: |^Warning: /.test(l)).length).toBe(1);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect(await readdir(dir)).toEqual(["notes.png"]);
  }, 120_000);
});
