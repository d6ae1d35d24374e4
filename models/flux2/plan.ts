// Memory plan: the GPU memory of text-to-image with FLUX.2-klein-4B, phase by phase, measured by the device's own
// pool. By default the device runs in dry-run mode (buffers really allocated through the pool, nothing compiled,
// dispatched or uploaded), so the real 4B configuration at 1024² is planned in seconds anywhere; `execute` runs the
// same phases for real (GPU machines) and times them.
// Design:
// - The phases are the low-memory order of Flux2Pipeline.load with a memoryBudget: text encoder (only the layers
//   below the deepest hidden state the pipeline reads) → encode one prompt of max_sequence_length tokens → free the
//   encoder and trim the pool → transformer + VAE decoder → `steps` denoising steps → VAE decode → PNG bytes. They
//   call the model classes directly because a plan needs no tokenizer: token ids are synthetic (a short prompt,
//   then padding), which changes no allocation.
// - Editing (`refs` > 0): the VAE encoder is loaded too, `refs` references of the output size are encoded before
//   denoising, and every step runs the transformer over the target and reference tokens together.
// - Weights: random bf16 tensors with the real names and shapes (models/flux2/klein4b.ts), or a repo folder's
//   configs and checkpoints (`repo`; the test compares dry run and execution on the tiny fixture repo).
// - Per phase: weights resident (exact-size buffers), the peak above them (activations plus pooled free buffers),
//   the total peak, and what stays allocated. Allocations larger than this adapter's maxStorageBufferBindingSize are
//   recorded with the model function that made them: weights are split into row chunks, activations are not.
import { Device, joinPath, readText } from "../../core/index.ts";
import { encodePng } from "../../core/png.ts";
import { KLEIN_4B, type KleinConfigs, randomWeights } from "./klein4b.ts";
import { disposeConditioning, Flux2Pipeline, type ReferenceTokens } from "./pipeline.ts";
import { Flux2Transformer } from "./transformer.ts";
import { Flux2Vae, imageBytes } from "./vae.ts";
import { Qwen3Encoder } from "../qwen3/encoder.ts";
import { DEFAULT_MAX_SEQUENCE_LENGTH, DEFAULT_TEXT_LAYERS } from "../qwen3/prompt.ts";
import { Weights } from "../weights.ts";

export const GOAL_BYTES = 12e9;

export interface PlanOptions {
  width: number;
  height: number;
  steps: number;
  batch: number;
  /** Reference images of width × height (editing mode); default 0. */
  refs?: number;
  execute: boolean;
  /** A repo folder; default: KLEIN_4B with random weights. */
  repo?: string;
}

export interface PhaseReport {
  phase: string;
  /** Model weights on the GPU during the phase. */
  weights: number;
  /** Peak above the weights (activations and pooled free buffers). */
  activations: number;
  /** Peak of everything the device had allocated. */
  peak: number;
  /** Allocated when the phase ended. */
  after: number;
  /** Seconds (--execute only). */
  seconds?: number;
}

export interface LargeAllocation {
  phase: string;
  bytes: number;
  /** The model function that asked for it. */
  site: string;
  count: number;
}

export interface PlanReport {
  model: string;
  adapter: string;
  mode: "dry run" | "executed";
  width: number;
  height: number;
  steps: number;
  batch: number;
  refs: number;
  /** Tokens per transformer row: target image, reference images, text. */
  tokens: { target: number; reference: number; text: number };
  maxStorageBufferBindingSize: number;
  phases: PhaseReport[];
  peak: number;
  goal: number;
  /** Activations bigger than one storage binding of this adapter. */
  large: LargeAllocation[];
  /** The largest single allocation (what maxStorageBufferBindingSize must reach for nothing to be split). */
  largest: number;
  pngBytes: number;
}

/** "name (file:line)" of the first models/ frame of the current stack outside this file. */
function modelSite(): string {
  const lines = (new Error().stack ?? "").split("\n");
  for (const l of lines) {
    if (l.includes("flux2/plan.ts")) continue;
    const m = /at (?:.*?\.)?([\w$]+) \(.*?models\/(.+?):(\d+):\d+\)/.exec(l) ?? /at .*?models\/(.+?):(\d+):\d+/.exec(l);
    if (m) return m.length === 4 ? `${m[1]} (${m[2]}:${m[3]})` : `${m[1]}:${m[2]}`;
  }
  return "?";
}

async function repoConfigs(dir: string): Promise<KleinConfigs> {
  const json = async (...p: string[]) => JSON.parse(await readText(joinPath(dir, ...p)));
  const index = await json("model_index.json");
  return {
    transformer: await json("transformer", "config.json"),
    vae: await json("vae", "config.json"),
    textEncoder: await json("text_encoder", "config.json"),
    scheduler: await json("scheduler", "scheduler_config.json"),
    isDistilled: index.is_distilled ?? false,
  };
}

/** Runs the phases on `dev` (dry run unless opts.execute) and reports the memory of each. */
export async function runPlan(dev: Device, opts: PlanOptions): Promise<PlanReport> {
  const cfg = opts.repo ? await repoConfigs(opts.repo) : KLEIN_4B;
  const rnd = opts.repo ? null : randomWeights(dev, cfg);
  const open = async (part: "text_encoder" | "transformer" | "vae") =>
    rnd ? rnd[part === "text_encoder" ? "textEncoder" : part] : Weights.open(dev, joinPath(opts.repo!, part));
  const maxBind = dev.limits.maxStorageBufferBindingSize;
  const phases: PhaseReport[] = [];
  const large = new Map<string, LargeAllocation>();
  let largest = 0;
  let phase = "";
  const live = new Set<Weights>();
  const alloc = dev.alloc.bind(dev);
  dev.alloc = (bytes: number, exact?: boolean) => {
    largest = Math.max(largest, bytes);
    if (bytes > maxBind) {
      const site = modelSite();
      const key = `${phase}|${bytes}|${site}`;
      const e = large.get(key) ?? { phase, bytes, site, count: 0 };
      e.count++;
      large.set(key, e);
    }
    return alloc(bytes, exact);
  };
  const wasDry = dev.dryRun;
  dev.dryRun = !opts.execute;
  // Figures are relative to what was allocated before, with the pool emptied: a plan starts from a bare device.
  dev.trimPool();
  const base = dev.allocatedBytes;
  const measure = async <T>(name: string, fn: () => Promise<T> | T): Promise<T> => {
    phase = name;
    dev.resetPeak();
    const t0 = performance.now();
    const resident = () => [...live].reduce((n, w) => n + w.gpuBytes, 0);
    const before = resident();
    const r = await fn();
    if (opts.execute) await dev.sync();
    const weights = Math.max(before, resident());
    const peak = dev.peakBytes - base;
    phases.push({
      phase: name,
      weights,
      activations: Math.max(0, peak - weights),
      peak,
      after: dev.allocatedBytes - base,
      seconds: opts.execute ? (performance.now() - t0) / 1000 : undefined,
    });
    return r;
  };
  try {
    const { width, height, steps, batch: B } = opts;
    const layers = DEFAULT_TEXT_LAYERS;
    const S = DEFAULT_MAX_SEQUENCE_LENGTH;
    const tw = await open("text_encoder");
    live.add(tw);
    const encoder = await measure(`load text encoder (${Math.max(...layers)}/${cfg.textEncoder.num_hidden_layers} layers)`, () =>
      Qwen3Encoder.load(dev, tw, cfg.textEncoder, { maxHiddenState: Math.max(...layers) }));
    const embeds = await measure(`encode ${B}×${S} tokens`, () => {
      // A short prompt, then padding: what the tokenizer produces (the values change no allocation).
      const vocab = cfg.textEncoder.vocab_size ?? 151936;
      const ids = new Int32Array(B * S).fill(Math.min(151643, vocab - 1));
      const mask = new Int32Array(B * S);
      for (let b = 0; b < B; b++) for (let i = 0; i < 24; i++) [ids[b * S + i], mask[b * S + i]] = [(i * 7919 + 13) % vocab, 1];
      return encoder.encode(ids, mask, B, layers).stacked.keep();
    });
    await measure("free text encoder, trim pool", () => {
      encoder.dispose();
      live.delete(tw);
      dev.trimPool();
    });
    const [trw, vw] = [await open("transformer"), await open("vae")];
    live.add(trw).add(vw);
    const R = opts.refs ?? 0;
    const pipe = await measure(`load transformer + VAE ${R ? "encoder and decoder" : "decoder"}`, async () =>
      Flux2Pipeline.create(dev, {
        transformer: await Flux2Transformer.load(dev, trw, cfg.transformer),
        vae: await Flux2Vae.load(dev, vw, cfg.vae, { encoder: R > 0 }),
        scheduler: cfg.scheduler,
        isDistilled: cfg.isDistilled,
      }));
    let refs: ReferenceTokens | undefined;
    try {
      if (R) {
        const image = { width, height, channels: 3 as const, data: new Uint8Array(width * height * 3) };
        refs = await measure(`encode ${R} reference${R > 1 ? "s" : ""} of ${width}×${height}`, () => pipe.encodeReferences(Array<typeof image>(R).fill(image)));
      }
      const latents = await measure(`denoise: ${steps} steps at ${width}×${height}`, () => {
        const noise = pipe.generateNoise({ width, height, seed: 1, batch: B });
        const cond = pipe.condition({ promptEmbeds: embeds, batch: B, guidanceScale: 1, references: refs });
        const out = pipe.denoise(noise, cond, { steps });
        disposeConditioning(cond);
        noise.dispose();
        embeds.dispose();
        refs?.tokens.dispose();
        return out;
      });
      const decoded = await measure("VAE decode", () => {
        const { decoded, image } = pipe.decode(latents);
        latents.dispose();
        image.dispose();
        return decoded;
      });
      const png = await measure("PNG bytes", async () => {
        const bytes = await imageBytes(decoded, "round");
        decoded.dispose();
        return encodePng({ width, height, channels: 3, data: bytes.subarray(0, width * height * 3) }, { level: 1 });
      });
      const peak = Math.max(...phases.map((p) => p.peak));
      return {
        model: opts.repo ?? "FLUX.2-klein-4B (random bf16 weights)",
        adapter: dev.describe(),
        mode: opts.execute ? "executed" : "dry run",
        width,
        height,
        steps,
        batch: B,
        refs: R,
        tokens: { target: (width * height) / pipe.pixelsPerToken ** 2, reference: refs ? refs.ids.length / 4 : 0, text: S },
        maxStorageBufferBindingSize: maxBind,
        phases,
        peak,
        goal: GOAL_BYTES,
        large: [...large.values()].sort((a, b) => b.bytes - a.bytes || a.site.localeCompare(b.site)),
        largest,
        pngBytes: png.length,
      };
    } finally {
      refs?.tokens.dispose();
      pipe.dispose();
    }
  } finally {
    delete (dev as { alloc?: unknown }).alloc;
    dev.dryRun = wasDry;
  }
}
