// Memory plan and random weights: the GPU fill equals its CPU twin (across row chunks); the shapes derived from the
// real klein-4B configs are everything the loaders ask for and add up to the published parameter counts; on the
// tiny repo they reproduce its checkpoint files exactly; a dry-run plan measures the same allocations as executing
// it; and Flux2Pipeline.load with a memoryBudget frees the text encoder after encoding.
import { describe, expect, test } from "bun:test";
import { joinPath, numel, readText } from "../../core/index.ts";
import { runPlan } from "../../models/flux2/plan.ts";
import { KLEIN_4B, qwen3Specs, randomWeights, transformerSpecs, vaeSpecs } from "../../models/flux2/klein4b.ts";
import { Flux2Pipeline } from "../../models/flux2/pipeline.ts";
import { Flux2Transformer } from "../../models/flux2/transformer.ts";
import { Flux2Vae } from "../../models/flux2/vae.ts";
import { Qwen3Encoder } from "../../models/qwen3/encoder.ts";
import type { RandomSpec } from "../../models/random_weights.ts";
import { Weights } from "../../models/weights.ts";
import { FIXTURES, maxAbsErr, testDevice } from "../util.ts";

const REPO = joinPath(FIXTURES, "repos/black-forest-labs/FLUX.2-klein-tiny");
const params = (specs: Map<string, RandomSpec>) => [...specs.values()].reduce((n, s) => n + numel(s.shape), 0);

describe("random weights", () => {
  test("GPU fill = CPU twin, across row chunks; std and constants as specified", async () => {
    const dev = await testDevice();
    const maxBind = dev.limits.maxStorageBufferBindingSize;
    // Just over one binding (two chunks) where that is cheap (lavapipe: 128 MiB); one chunk elsewhere.
    const cols = 1000;
    const rows = maxBind <= 2 ** 28 ? Math.floor(maxBind / (2 * cols)) + 3 : 1001;
    const specs = new Map<string, RandomSpec>([
      ["w", { shape: [rows, cols], std: 0.05 }],
      ["ones", { shape: [7], std: 0, mean: 1 }],
    ]);
    const w = Weights.random(dev, specs, { seed: 5 });
    const t = await w.get("w");
    const chunks = t.rowChunks();
    if (maxBind <= 2 ** 28) expect(chunks.length).toBe(2);
    const last = chunks[chunks.length - 1];
    const gpu = await last.tensor.toArray();
    const cpu = new Float32Array(gpu.length);
    await w.ckpt.stream("w", last.row * cols * 2, gpu.length * 2, (_, data) => {
      const bits = new Uint16Array(data.buffer, data.byteOffset, data.byteLength / 2);
      bits.forEach((b, i) => (cpu[i] = new Float32Array(new Uint32Array([b << 16]).buffer)[0]));
    });
    expect(maxAbsErr(gpu, cpu)).toBe(0);
    const first = await chunks[0].tensor.toArray();
    const head = first.subarray(0, 200_000);
    const mean = head.reduce((a, b) => a + b, 0) / head.length;
    const std = Math.sqrt(head.reduce((a, b) => a + b * b, 0) / head.length);
    expect(Math.abs(mean)).toBeLessThan(1e-3);
    expect(Math.abs(std / 0.05 - 1)).toBeLessThan(0.01);
    expect(Math.max(...head.map(Math.abs))).toBeLessThanOrEqual(0.05 * Math.sqrt(3) * 2 * 1.004);
    expect([...(await (await w.get("ones")).toArray())]).toEqual(Array(7).fill(1));
    expect([...(await w.cpu("ones"))]).toEqual(Array(7).fill(1));
    w.dispose();
  }, 60_000);

  test("klein-4B: the derived shapes are what the loaders ask for, and add up to the published counts (dry run)", async () => {
    const dev = await testDevice();
    expect(params(transformerSpecs(KLEIN_4B.transformer))).toBe(3_875_544_576);
    expect(params(vaeSpecs(KLEIN_4B.vae))).toBe(84_046_115 + 256);
    expect(params(qwen3Specs(KLEIN_4B.textEncoder))).toBe(4_022_468_096);
    const before = dev.allocatedBytes;
    dev.dryRun = true;
    try {
      const w = randomWeights(dev);
      const enc = await Qwen3Encoder.load(dev, w.textEncoder, KLEIN_4B.textEncoder, { maxHiddenState: 27 });
      const tr = await Flux2Transformer.load(dev, w.transformer, KLEIN_4B.transformer);
      const vae = await Flux2Vae.load(dev, w.vae, KLEIN_4B.vae);
      // Everything the transformer and the VAE have was uploaded (BN statistics are read on the CPU); the text
      // encoder stops at layer 27.
      expect(w.transformer.gpuBytes).toBe(2 * 3_875_544_576);
      expect(w.vae.gpuBytes).toBe(w.vae.storedBytes((n) => !n.startsWith("bn.")));
      expect(w.textEncoder.gpuBytes).toBe(w.textEncoder.storedBytes((n) => !/^model\.(norm|layers\.(2[7-9]|3\d))\./.test(n)));
      for (const m of [enc, tr, vae]) m.dispose();
    } finally {
      dev.dryRun = false;
    }
    expect(dev.allocatedBytes).toBeLessThanOrEqual(before + 2 ** 20);
  }, 60_000);

  test("tiny repo: shapes derived from its configs are exactly its checkpoints' tensors", async () => {
    const dev = await testDevice();
    const cfg = async (part: string) => JSON.parse(await readText(joinPath(REPO, part, "config.json")));
    for (const [part, specs] of [
      ["transformer", transformerSpecs(await cfg("transformer"))],
      ["vae", vaeSpecs(await cfg("vae"))],
      ["text_encoder", qwen3Specs(await cfg("text_encoder"))],
    ] as const) {
      const w = await Weights.open(dev, joinPath(REPO, part));
      const file = new Map(w.ckpt.names().filter((n) => w.ckpt.get(n).dtype !== "I64").map((n) => [n, w.shape(n).join()]));
      const derived = new Map([...specs].map(([n, s]) => [n, s.shape.join()]));
      expect([...derived].sort()).toEqual([...file].sort());
    }
  }, 30_000);
});

describe("memory plan", () => {
  test("tiny repo: the dry-run plan allocates exactly what execution does", async () => {
    const dev = await testDevice();
    const opts = { repo: REPO, width: 96, height: 64, steps: 2, batch: 2 };
    const dry = await runPlan(dev, { ...opts, execute: false });
    const real = await runPlan(dev, { ...opts, execute: true });
    const figures = (r: typeof dry) => r.phases.map((p) => [p.phase, p.weights, p.peak, p.after]);
    expect(figures(dry)).toEqual(figures(real));
    expect(dry.peak).toBe(real.peak);
    expect(dry.peak).toBeGreaterThan(0);
    expect(real.pngBytes).toBeGreaterThan(0);
    expect(real.phases.every((p) => p.seconds! >= 0)).toBe(true);
  }, 120_000);

  test("tiny repo, editing with 2 references: dry run = execution, reference tokens counted", async () => {
    const dev = await testDevice();
    const opts = { repo: REPO, width: 96, height: 64, steps: 1, batch: 1, refs: 2 };
    const dry = await runPlan(dev, { ...opts, execute: false });
    const real = await runPlan(dev, { ...opts, execute: true });
    const figures = (r: typeof dry) => r.phases.map((p) => [p.phase, p.weights, p.peak, p.after]);
    expect(figures(dry)).toEqual(figures(real));
    expect(dry.phases.map((p) => p.phase)).toContain("encode 2 references of 96×64");
    expect(dry.tokens).toEqual({ target: 24, reference: 48, text: dry.tokens.text });
    const plain = await runPlan(dev, { ...opts, refs: 0, execute: false });
    // On the tiny repo the text encoder's phase may set the overall peak; the references' cost shows in denoising.
    const denoise = (r: typeof dry) => r.phases.find((p) => p.phase.startsWith("denoise"))!;
    expect(denoise(dry).weights + denoise(dry).peak).toBeGreaterThan(denoise(plain).weights + denoise(plain).peak);
  }, 120_000);

  test("Flux2Pipeline.load with a memory budget encodes its prompts, then frees the text encoder", async () => {
    const dev = await testDevice();
    const full = await Flux2Pipeline.load(dev, { dir: REPO });
    const ref = await full.encodePrompt("sketch, a cat").embeds.toArray();
    full.dispose();
    const lean = await Flux2Pipeline.load(dev, { dir: REPO, prompts: ["sketch, a cat"], memoryBudget: 0 });
    try {
      const enc = lean.encodePrompt("sketch, a cat");
      expect(maxAbsErr(await enc.embeds.toArray(), ref)).toBe(0);
      expect(() => lean.encodePrompt("a dog")).toThrow(/freed to save memory/);
      const r = lean.generate({ prompt: "sketch, a cat", seed: 1, width: 32, height: 32 });
      expect(r.image.shape).toEqual([1, 3, 32, 32]);
      for (const t of [r.image, r.decoded, r.latents]) t.dispose();
    } finally {
      lean.dispose();
    }
    // A budget the weights fit in keeps the text encoder.
    const roomy = await Flux2Pipeline.load(dev, { dir: REPO, prompts: ["sketch, a cat"], memoryBudget: 2 ** 40 });
    try {
      expect(roomy.encodePrompt("a dog").embeds.shape).toEqual([1, 512, roomy.transformer.jointDim]);
    } finally {
      roomy.dispose();
    }
  }, 120_000);
});
