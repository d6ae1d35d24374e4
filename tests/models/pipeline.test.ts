// Flux2Pipeline: the fixture cases (tiny_pipeline, tiny_pipeline_cfg, the end-to-end repos/expected/<n> run from
// the prompt text) pass, and the properties search relies on: a batch equals its rows run alone (with and without
// guidance), split schedules equal a full run, noise batches are splits of one stream, the two-call guidance path
// (text lengths differ) predicts what separate transformer calls do, prompt caching, and size errors.
import { describe, expect, test } from "bun:test";
import { chmod, cp, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { type Device, joinPath, readText, Tensor } from "../../core/index.ts";
import type { VerifyResult } from "../../core/verify.ts";
import { concat, slice } from "../../kernels/layout.ts";
import { disposeConditioning, Flux2Pipeline, latentIds } from "../../models/flux2/pipeline.ts";
import "../../models/flux2/verify.ts";
import { Flux2Transformer } from "../../models/flux2/transformer.ts";
import { Flux2Vae } from "../../models/flux2/vae.ts";
import { textIds } from "../../models/qwen3/prompt.ts";
import { Weights } from "../../models/weights.ts";
import { expectCasePasses, FIXTURES, maxAbsErr, rand, relErr, testDevice } from "../util.ts";

const CFG_CASE = joinPath(FIXTURES, "tiny_pipeline_cfg");
const REPO = joinPath(FIXTURES, "repos/black-forest-labs/FLUX.2-klein-tiny");
/** Outputs of the end-to-end cases that a later stage (PickScore) produces. */
const LATER_STAGE = /^(clip_|image_embeds|text_embeds|pickscore)/;

async function expectPass(dir: string, allowMissing?: RegExp): Promise<VerifyResult> {
  const r = await expectCasePasses(dir, allowMissing);
  expect(r.rows.filter((row) => row.status === "PASS").length).toBeGreaterThanOrEqual(9);
  return r;
}

/** Bytes the device still holds once its pool's free buffers are gone. */
function held(dev: Device): number {
  dev.trimPool();
  return dev.allocatedBytes;
}

/** A pipeline over the tiny fixture transformer + VAE (not distilled: guidance on when asked). */
async function tinyPipeline(dev: Device): Promise<Flux2Pipeline> {
  const config = async (name: string) => JSON.parse(await readText(joinPath(FIXTURES, name, "case.json"))).config;
  const w = await Weights.open(dev, joinPath(CFG_CASE, "weights.safetensors"));
  const transformer = await Flux2Transformer.load(dev, w.sub("transformer."), await config("flux2_transformer"));
  const vae = await Flux2Vae.load(dev, w.sub("vae."), await config("flux2_vae"), { encoder: false });
  return Flux2Pipeline.create(dev, { transformer, vae, isDistilled: false });
}

describe("flux2 pipeline fixtures", () => {
  test("tiny_pipeline: every tensor passes", () => expectPass(joinPath(FIXTURES, "tiny_pipeline")), 120_000);
  test("tiny_pipeline_cfg: every tensor passes", () => expectPass(CFG_CASE), 120_000);
  for (const n of ["0", "1"]) {
    test(`repos/expected/${n}: prompt text → image passes (PickScore outputs come later)`, async () => {
      const r = await expectPass(joinPath(FIXTURES, "repos/expected", n), LATER_STAGE);
      // The tokens, recomputed from the prompt text, are compared rows (a mismatch fails above).
      // (The CLIP runner, when registered in this process, compares its ids too.)
      const inputs = r.rows.filter((row) => row.section === "inputs").map((row) => row.name);
      for (const name of ["qwen_input_ids", "qwen_attention_mask"]) expect(inputs).toContain(name);
    }, 120_000);
  }
});

/** The shared state of the property tests: a pipeline and two random text conditionings (freed by the last test). */
interface Bench {
  dev: Device;
  pipe: Flux2Pipeline;
  cond: Tensor;
  uncond: Tensor;
}
let bench: Promise<Bench> | undefined;
function getBench(): Promise<Bench> {
  bench ??= (async () => {
    const dev = await testDevice();
    const pipe = await tinyPipeline(dev);
    const S = 16, J = pipe.transformer.jointDim;
    const cond = Tensor.fromArray(dev, rand(S * J, 1, -2, 2), [1, S, J]).keep();
    const uncond = Tensor.fromArray(dev, rand(S * J, 2, -2, 2), [1, S, J]).keep();
    return { dev, pipe, cond, uncond };
  })();
  return bench;
}

describe("flux2 pipeline properties", () => {
  const W = 64, H = 80;

  const images = async (r: { image: Tensor; decoded: Tensor; latents: Tensor }) => {
    const a = await r.image.toArray();
    for (const t of [r.image, r.decoded, r.latents]) t.dispose();
    return a;
  };

  test("noise batches are consecutive samples of one stream", async () => {
    const { pipe } = await getBench();
    const both = pipe.generateNoise({ width: W, height: H, seed: 7, batch: 2 });
    const second = pipe.generateNoise({ width: W, height: H, seed: 7, first: 1 });
    expect(both.shape).toEqual([2, pipe.latentChannels, H / 16, W / 16]);
    const a = await both.toArray();
    expect(Array.from(a.subarray(a.length / 2))).toEqual(Array.from(await second.toArray()));
    both.dispose();
    second.dispose();
    expect(() => pipe.generateNoise({ width: 100, height: 64, seed: 1 })).toThrow(/width 100 and height 64 must be positive multiples of 16/);
  });

  for (const guidance of [false, true]) {
    test(`B=2 generate equals two B=1 runs (${guidance ? "classifier-free guidance" : "no guidance"})`, async () => {
      const { pipe, cond, uncond } = await getBench();
      const noise = pipe.generateNoise({ width: W, height: H, seed: 3, batch: 2 });
      const rows = [slice(noise, 0, 0, 1), slice(noise, 0, 1, 2)];
      const prompts = concat([cond, uncond], 0);
      const extra = guidance ? { guidanceScale: 4, negativePromptEmbeds: uncond } : { guidanceScale: 1 };
      const both = await images(pipe.generate({ promptEmbeds: prompts, initialNoise: noise, steps: 3, ...extra }));
      const single = [
        await images(pipe.generate({ promptEmbeds: cond, initialNoise: rows[0], steps: 3, ...extra })),
        await images(pipe.generate({ promptEmbeds: uncond, initialNoise: rows[1], steps: 3, ...extra })),
      ];
      const n = single[0].length;
      expect(maxAbsErr(single[0], single[1])).toBeGreaterThan(0.05);
      for (const r of [0, 1]) {
        const e = relErr(both.subarray(r * n, (r + 1) * n), single[r]);
        console.log(`guidance ${guidance}: B=2 row ${r} vs B=1 rel err ${e.toExponential(2)}`);
        expect(e).toBe(0); // kernels choose their variant per batch item, so batching changes no bit
      }
      for (const t of [noise, ...rows, prompts]) t.dispose();
    }, 60_000);
  }

  test("denoise [0, 2) then [2, 4) equals the full schedule; an empty range returns the input", async () => {
    const { pipe, cond } = await getBench();
    const noise = pipe.generateNoise({ width: W, height: H, seed: 5 });
    const c = pipe.condition({ promptEmbeds: cond, guidanceScale: 1 });
    const schedule = pipe.schedule(4, (H / 16) * (W / 16));
    const full = pipe.denoise(noise, c, { schedule });
    const half = pipe.denoise(noise, c, { schedule, to: 2 });
    const rest = pipe.denoise(half, c, { schedule, from: 2 });
    expect(maxAbsErr(await rest.toArray(), await full.toArray())).toBe(0);
    const same = pipe.denoise(noise, c, { schedule, from: 4 });
    expect(maxAbsErr(await same.toArray(), await noise.toArray())).toBe(0);
    expect(() => pipe.denoise(noise, c, { schedule, from: 3, to: 5 })).toThrow(/steps \[3, 5\) outside the 4-step schedule/);
    for (const t of [noise, full, half, rest, same]) t.dispose();
    disposeConditioning(c);
  }, 60_000);

  test("guidance with different text lengths: two calls, rows as separate transformer passes", async () => {
    const { dev, pipe, cond, uncond } = await getBench();
    const noise = pipe.generateNoise({ width: W, height: H, seed: 9 });
    const short = slice(uncond, 1, 0, 9);
    const c = pipe.condition({ promptEmbeds: cond, negativePromptEmbeds: short, guidanceScale: 3 });
    expect(c.calls.length).toBe(2);
    expect(c.cfgScale).toBe(3);
    const schedule = pipe.schedule(2, (H / 16) * (W / 16));
    let pred: Promise<Float32Array> | undefined;
    const out = pipe.denoise(noise, c, {
      schedule,
      to: 1,
      onStep: (_i, _x, info) => {
        pred = info.prediction.toArray();
      },
    });
    const [, C, h, w] = noise.shape;
    const packed = Tensor.fromArray(dev, transposeToTokens(await noise.toArray(), C, h * w), [1, h * w, C]);
    const run = (context: Tensor) =>
      pipe.transformer.forward({ x: packed, context, timestep: [schedule.modelTimestep(0)], imgIds: latentIds(h, w), txtIds: textIds(1, context.shape[1]) });
    const yc = run(cond), yu = run(short);
    const both = await pred!;
    const n = both.length / 2;
    expect(maxAbsErr(both.subarray(0, n), await yc.toArray())).toBeLessThanOrEqual(1e-6);
    expect(maxAbsErr(both.subarray(n), await yu.toArray())).toBeLessThanOrEqual(1e-6);
    for (const t of [noise, short, out, packed, yc, yu]) t.dispose();
    disposeConditioning(c);
  }, 60_000);

  test("generate that throws midway (an onStep callback at step 2, with guidance) leaves nothing allocated", async () => {
    const { dev, pipe, cond, uncond } = await getBench();
    const opts = { promptEmbeds: cond, negativePromptEmbeds: uncond, guidanceScale: 3, seed: 5, width: W, height: H, steps: 4, batch: 2 };
    // A run to completion first: the transformer's RoPE tables for this geometry are then cached, not new.
    for (const t of Object.values(pipe.generate({ ...opts, steps: 1 }))) t.dispose();
    const before = held(dev);
    let steps = 0;
    const onStep = (i: number) => {
      steps++;
      if (i === 1) throw new Error("stop at step 2");
    };
    expect(() => pipe.generate({ ...opts, onStep })).toThrow(/stop at step 2/);
    expect(steps).toBe(2);
    expect(held(dev)).toBe(before);
  }, 60_000);

  test("argument errors are clear (then the shared pipeline is freed)", async () => {
    const { pipe, cond, uncond } = await getBench();
    try {
      expect(() => pipe.generate({ promptEmbeds: cond, width: 64, height: 72, seed: 1 })).toThrow(/multiples of 16/);
      expect(() => pipe.generate({ promptEmbeds: cond, width: 64, height: 64 })).toThrow(/initialNoise, or seed/);
      expect(() => pipe.condition({ guidanceScale: 1 })).toThrow(/exactly one of prompt text or prompt embeddings/);
      expect(() => pipe.encodePrompt("a cat")).toThrow(/no text encoder/);
    } finally {
      pipe.dispose();
      cond.dispose();
      uncond.dispose();
    }
  });
});

/** [C, L] channel-major values → [L, C] tokens. */
function transposeToTokens(a: Float32Array, C: number, L: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let c = 0; c < C; c++) for (let l = 0; l < L; l++) out[l * C + c] = a[c * L + l];
  return out;
}

describe("flux2 pipeline from a repo folder", () => {
  test("load, prompt cache, seed → image and bytes, freeing the text encoder", async () => {
    const dev = await testDevice();
    const pipe = await Flux2Pipeline.load(dev, { dir: REPO });
    try {
      expect(pipe.isDistilled).toBe(true);
      const a = pipe.encodePrompt("sketch, a cat");
      expect(pipe.encodePrompt("sketch, a cat")).toBe(a);
      expect(a.embeds.shape).toEqual([1, 512, pipe.transformer.jointDim]);
      const r = pipe.generate({ prompt: "sketch, a cat", seed: 1, width: 48, height: 32 });
      expect(r.image.shape).toEqual([1, 3, 32, 48]);
      expect(r.latents.shape).toEqual([1, pipe.latentChannels, 2, 3]);
      const bytes = await pipe.imageBytes(r, "trunc");
      expect(bytes.length).toBe(32 * 48 * 3);
      const img = await r.image.toArray();
      expect(Math.min(...img)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...img)).toBeLessThanOrEqual(1);
      for (const t of [r.image, r.decoded, r.latents]) t.dispose();
      pipe.freeTextEncoder();
      expect(pipe.encodePrompt("sketch, a cat")).toBe(a);
      expect(() => pipe.encodePrompt("a dog")).toThrow(/no text encoder/);
    } finally {
      pipe.dispose();
    }
  }, 120_000);
});

describe("flux2 pipeline load failures free what they uploaded", () => {
  async function writable(path: string): Promise<void> {
    await chmod(path, 0o755);
    for (const e of await readdir(path, { withFileTypes: true })) {
      if (e.isDirectory()) await writable(`${path}/${e.name}`);
      else await chmod(`${path}/${e.name}`, 0o644);
    }
  }

  /** The tiny repo copied to a temp folder, `edit` applied, `fn` run on it; the copy is removed after. */
  async function withRepoCopy(edit: (dir: string) => Promise<void>, fn: (dir: string) => Promise<void>): Promise<void> {
    const dir = await mkdtemp(`${tmpdir()}/flux2ts-repo-`);
    try {
      await cp(REPO, dir, { recursive: true });
      await writable(dir); // the fixtures are read-only, and so is the copy
      await edit(dir);
      await fn(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** Config edits that make a load fail after some of a model's weights were uploaded, and the error each gives. */
  const HALFWAY: { part: string; edit(cfg: Record<string, number>): void; error: RegExp }[] = [
    // The text encoder's embeddings and first attention are uploaded before its MLP's shape disagrees.
    { part: "text_encoder", edit: (c) => void (c.intermediate_size += 8), error: /"model\.layers\.0\.mlp\.gate_proj\.weight" is \[\d+,\d+\], config wants/ },
    // The text encoder, the prompt and the transformer's blocks are uploaded before a missing block shows.
    { part: "transformer", edit: (c) => void (c.num_single_layers += 1), error: /checkpoint has no "single_transformer_blocks\.2\./ },
  ];
  for (const { part, edit, error } of HALFWAY) {
    test(`a ${part} config the checkpoint does not match: the load fails halfway and frees everything it uploaded`, async () => {
      const dev = await testDevice();
      await withRepoCopy(
        async (dir) => {
          const path = `${dir}/${part}/config.json`;
          const cfg = JSON.parse(await readFile(path, "utf8"));
          edit(cfg);
          await writeFile(path, JSON.stringify(cfg));
        },
        async (dir) => {
          const before = held(dev);
          dev.resetPeak();
          await expect(Flux2Pipeline.load(dev, { dir, prompts: ["a cat"] })).rejects.toThrow(error);
          expect(dev.peakBytes - before).toBeGreaterThan(2 ** 20); // it did upload: the failure came halfway
          expect(held(dev)).toBe(before);
        },
      );
    }, 120_000);
  }

  test("a truncated shard: refused with the file named before any weight is uploaded, nothing held", async () => {
    const dev = await testDevice();
    for (const shard of ["vae/diffusion_pytorch_model.safetensors", "text_encoder/model-00002-of-00002.safetensors"]) {
      await withRepoCopy(
        async (dir) => {
          await truncate(`${dir}/${shard}`, (await stat(`${dir}/${shard}`)).size - 1000);
        },
        async (dir) => {
          const before = held(dev);
          dev.resetPeak();
          await expect(Flux2Pipeline.load(dev, { dir, prompts: ["a cat"] })).rejects.toThrow(new RegExp(`${shard}: .*truncated`));
          expect(dev.peakBytes).toBe(before);
          expect(held(dev)).toBe(before);
        },
      );
    }
  }, 120_000);
});
