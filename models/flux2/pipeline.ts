// FLUX.2 text-to-image (diffusers Flux2KleinPipeline semantics): prompt → Qwen3 embeddings → noise → Euler steps
// of the flow-matching schedule with the DiT → BN de-normalisation, unpatchify → VAE decode → image.
// Design:
// - Loaded from a repo folder (or URL prefix) in the diffusers/ModelScope layout: model_index.json, scheduler/,
//   text_encoder/, tokenizer/, transformer/, vae/; every model is built from its own config.json. Pieces can also
//   be put together from models already loaded (`Flux2Pipeline.create`), which is how fixtures without a repo run.
// - Public latents use the noise layout [B, 4·latent_channels, H/16, W/16]; inside the loop they are packed tokens
//   [B, h·w, C] (token r·w + c), as the transformer takes them.
// - Prompt embeddings are cached per prompt text ([1, S, J], kept until `clearPrompts`/`dispose`); the text encoder
//   can be freed once the prompts a search needs are encoded. `load` encodes the prompts it is given before the
//   transformer is uploaded, and when the three models' weights exceed `memoryBudget` it frees the text encoder
//   (and the pool's buffers sized for it) before uploading the transformer: FLUX.2-klein-4B's text encoder (6.2 GB
//   for 27 layers) and transformer (7.75 GB) never share the GPU then.
// - Guidance: classifier-free guidance runs when guidanceScale > 1 and either the model is not distilled
//   (model_index.json is_distilled false, no guidance embedding; the negative prompt defaults to "") or a negative
//   prompt is given explicitly. Conditional and unconditional rows go through ONE transformer call of batch 2B when
//   their text lengths agree (else two calls), then v = v_u + s·(v_c − v_u). A transformer with guidance_embeds
//   gets guidanceScale as its embedded guidance instead.
// - Steps: step i calls the transformer at t_i/1000 and moves the latents by (σ_{i+1} − σ_i)·v; `denoise` runs any
//   sub-range [from, to) of a schedule, so callers can stop at an intermediate sigma and resume.
// - Editing (reference images): `encodeReferences` prepares each reference (reference.ts), encodes it on its own
//   (VAE posterior mean, patchify, BN-normalise, pack) and gives its tokens ids with T = 10 + 10·i, once per run.
//   Each step the transformer sees [target tokens, reference tokens] (each call's rows repeated per batch row) and
//   only the target rows go to the Euler step; the schedule's mu counts the target tokens only.
// - Everything stays on the GPU; nothing is read back unless a caller asks (onStep hands out live tensors).
// - `generate`, `denoise` and `decode` leak nothing when they throw (a kernel error, an onStep callback that
//   throws): they run under `Device.guard`, which frees every tensor made meanwhile, an onStep callback's too.
import { type Device, joinPath, readText, Tensor } from "../../core/index.ts";
import type { Image8 } from "../../core/png.ts";
import { concat, packLatents, slice, unpackLatents } from "../../kernels/layout.ts";
import { lerpHalves } from "../../kernels/elementwise.ts";
import { Qwen3PromptEncoder, textIds } from "../qwen3/prompt.ts";
import { Weights } from "../weights.ts";
import { prepareReference, referenceIds } from "./reference.ts";
import { FLUX2_SCHEDULER, type FlowMatchConfig, type FlowMatchSchedule, flowMatchSigmas } from "./scheduler.ts";
import { type Flux2TransformerConfig, Flux2Transformer } from "./transformer.ts";
import { type Flux2VaeConfig, Flux2Vae, imageBytes, type PixelRounding, toImageFloat, type VaeDebug } from "./vae.ts";

/** A prompt's text-encoder output: embeddings [1, S, J] and the token ids and mask [S] they came from. */
export interface PromptEncoding {
  embeds: Tensor;
  ids: Int32Array;
  mask: Int32Array;
}

/** Encoded reference images (editing mode), shared by every step, batch row and candidate of a run. */
export interface ReferenceTokens {
  /** [1, Σ tokens, C]: each reference's normalised packed latents, in order. */
  tokens: Tensor;
  /** RoPE ids [Σ tokens, 4]: (10 + 10·i, r, c, 0) for reference i. */
  ids: Int32Array;
  /** Each reference's size after cropping (what the encoder saw). */
  sizes: { width: number; height: number }[];
}

/** What the denoising loop conditions on, prepared once per generation (see `condition`). */
export interface Conditioning {
  batch: number;
  /** Transformer calls per step: one (cond rows, then uncond rows when guiding) or cond and uncond separately. */
  calls: { context: Tensor; txtIds: Int32Array }[];
  /** Classifier-free guidance scale, or null for a single conditional prediction. */
  cfgScale: number | null;
  /** Embedded guidance value (transformers with guidance_embeds). */
  guidance?: number;
  /** Reference tokens appended to the latents at every step (not owned). */
  references?: ReferenceTokens;
  /** Tensors this conditioning allocated (freed by `disposeConditioning`; cached prompt embeddings are not). */
  owned: Tensor[];
}

export interface ConditionOptions {
  /** One prompt for every batch item, or one per item. */
  prompt?: string | readonly string[];
  /** [1 or B, S, J] instead of `prompt`. */
  promptEmbeds?: Tensor;
  negativePrompt?: string | readonly string[];
  negativePromptEmbeds?: Tensor;
  /** CFG scale (non-distilled models or with a negative prompt) or embedded guidance; default 4. */
  guidanceScale?: number;
  batch?: number;
  /** Editing mode: references from `encodeReferences` (the caller keeps ownership). */
  references?: ReferenceTokens;
}

/** Tensors handed to `onStep`; valid only during the call (start a read there, or copy). */
export interface StepInfo {
  /** Packed latents [B, L, C] the transformer saw. */
  input: Tensor;
  /** Raw transformer output: [B, L, C], or [2B, L, C] (cond rows, then uncond rows) with guidance. */
  prediction: Tensor;
  /** The velocity the Euler step used (= prediction without guidance). */
  velocity: Tensor;
  /** Timestep value passed to the transformer (t/1000). */
  timestep: number;
  /** With references: the first transformer call's whole input [n, L + Lref, C] and output (reference rows too). */
  joint?: { input: Tensor; output: Tensor };
}

/** Packed latents [B, h·w, C] after step i. */
export type StepCallback = (i: number, latents: Tensor, info: StepInfo) => void;

export interface DenoiseOptions {
  /** The schedule: default flowMatchSigmas(steps, h·w, scheduler config); diffsynthFlux2Sigmas gives DiffSynth's. */
  schedule?: FlowMatchSchedule;
  steps?: number;
  /** First step index to run (default 0) and the index to stop before (default schedule.steps). */
  from?: number;
  to?: number;
  onStep?: StepCallback;
  onProgress?: (done: number, total: number) => void;
}

export interface GenerateOptions extends ConditionOptions, Omit<DenoiseOptions, "from" | "to"> {
  /** [B, C, H/16, W/16] starting noise; else drawn from `seed` (batch items are consecutive samples). */
  initialNoise?: Tensor;
  seed?: number;
  width?: number;
  height?: number;
  /** Receives the VAE decoder's intermediates (post_quant_conv, ...). */
  vaeDebug?: VaeDebug;
}

export interface GenerateResult {
  /** [B, 3, H, W] in [0, 1] (diffusers output_type "pt"). */
  image: Tensor;
  /** [B, 3, H, W] raw decoder output (about [-1, 1]); `imageBytes` converts it. */
  decoded: Tensor;
  /** Final latents [B, C, H/16, W/16]. */
  latents: Tensor;
}

export interface Flux2PipelineParts {
  transformer: Flux2Transformer;
  vae: Flux2Vae;
  text?: Qwen3PromptEncoder | null;
  scheduler?: FlowMatchConfig;
  /** model_index.json is_distilled (default false, as diffusers' Flux2KleinPipeline). */
  isDistilled?: boolean;
}

interface ModelIndex {
  _class_name?: string;
  is_distilled?: boolean;
  text_encoder?: [string, string] | null;
}

const readJson = async <T>(path: string): Promise<T> => {
  try {
    return JSON.parse(await readText(path)) as T;
  } catch (e) {
    throw new Error(`Flux2Pipeline: cannot read ${path}: ${(e as Error).message}`);
  }
};

const asList = (p: string | readonly string[]) => (typeof p === "string" ? [p] : [...p]);

/** Image RoPE coordinates [h·w, 4] = (0, r, c, 0) for token r·w + c (diffusers _prepare_latent_ids). */
export function latentIds(h: number, w: number): Int32Array {
  const ids = new Int32Array(h * w * 4);
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      ids[(r * w + c) * 4 + 1] = r;
      ids[(r * w + c) * 4 + 2] = c;
    }
  }
  return ids;
}

export class Flux2Pipeline {
  readonly isDistilled: boolean;
  readonly scheduler: FlowMatchConfig;
  /** Channels of the noise / packed latents (4 × VAE latent channels). */
  readonly latentChannels: number;
  /** Pixels per latent token along each axis (VAE downsampling × 2×2 patch). */
  readonly pixelsPerToken: number;
  readonly transformer: Flux2Transformer;
  readonly vae: Flux2Vae;
  private text: Qwen3PromptEncoder | null;
  private prompts = new Map<string, PromptEncoding>();

  private constructor(readonly dev: Device, parts: Flux2PipelineParts) {
    this.transformer = parts.transformer;
    this.vae = parts.vae;
    this.text = parts.text ?? null;
    this.scheduler = parts.scheduler ?? FLUX2_SCHEDULER;
    this.isDistilled = parts.isDistilled ?? false;
    this.latentChannels = 4 * this.vae.latentChannels;
    this.pixelsPerToken = 2 * this.vae.scaleFactor;
    if (this.transformer.inChannels !== this.latentChannels || this.transformer.outChannels !== this.latentChannels) {
      throw new Error(
        `Flux2Pipeline: transformer in/out channels ${this.transformer.inChannels}/${this.transformer.outChannels} ≠ 4 × VAE latent channels ${this.latentChannels}`,
      );
    }
    if (this.text) {
      const width = this.text.layers.length * this.text.encoder.hidden;
      if (width !== this.transformer.jointDim) {
        throw new Error(`Flux2Pipeline: text embeddings are ${this.text.layers.length}×${this.text.encoder.hidden} = ${width} wide, transformer joint_attention_dim is ${this.transformer.jointDim}`);
      }
    }
  }

  /** A pipeline over models already loaded (it takes ownership: `dispose` frees them). */
  static create(dev: Device, parts: Flux2PipelineParts): Flux2Pipeline {
    return new Flux2Pipeline(dev, parts);
  }

  /**
   * Loads a repo folder or URL prefix in the diffusers layout. `textEncoder: false` skips the Qwen3 weights (then
   * generation needs promptEmbeds); maxSequenceLength (512) and textLayers (hidden states 9, 18, 27) are the
   * pipeline's max_sequence_length and text_encoder_out_layers.
   */
  static async load(
    dev: Device,
    opts: {
      dir: string;
      textEncoder?: boolean;
      maxSequenceLength?: number;
      textLayers?: readonly number[];
      /** Encoded (and cached) before the transformer is uploaded. */
      prompts?: readonly string[];
      /** Also load the VAE encoder, which `encodeReferences` needs (editing mode). */
      vaeEncoder?: boolean;
      /**
       * Bytes of GPU memory the pipeline may use: when the text encoder's, transformer's and VAE decoder's weights
       * together exceed it, the text encoder is freed once `prompts` are encoded (later prompts need promptEmbeds).
       */
      memoryBudget?: number;
    },
  ): Promise<Flux2Pipeline> {
    const { dir } = opts;
    const index = await readJson<ModelIndex>(joinPath(dir, "model_index.json"));
    const scheduler = await readJson<FlowMatchConfig>(joinPath(dir, "scheduler", "scheduler_config.json"));
    const tCfg = await readJson<Flux2TransformerConfig>(joinPath(dir, "transformer", "config.json"));
    const vCfg = await readJson<Flux2VaeConfig>(joinPath(dir, "vae", "config.json"));
    const encoderClass = index.text_encoder?.[1];
    if ((opts.textEncoder ?? true) && encoderClass && encoderClass !== "Qwen3ForCausalLM") {
      throw new Error(`Flux2Pipeline: text encoder ${encoderClass} is not supported (Qwen3ForCausalLM only)`);
    }
    // On failure everything uploaded so far goes: the models made, and the weights a model load that failed midway
    // had uploaded (a model owns its Weights only once its load returns).
    const loaded: { dispose(): void }[] = [];
    const prompts = new Map<string, PromptEncoding>();
    try {
      const tWeights = await Weights.open(dev, joinPath(dir, "transformer"));
      loaded.push(tWeights);
      const vWeights = await Weights.open(dev, joinPath(dir, "vae"));
      loaded.push(vWeights);
      let text = (opts.textEncoder ?? true) ? await Qwen3PromptEncoder.load(dev, dir, { maxLength: opts.maxSequenceLength, layers: opts.textLayers }) : null;
      if (text) {
        loaded.push(text);
        for (const p of opts.prompts ?? []) if (!prompts.has(p)) prompts.set(p, encodeWith(text, p));
        const decoderOnly = (n: string) => !n.startsWith("encoder.") && !n.startsWith("quant_conv.");
        const need = text.encoder.weights.gpuBytes + tWeights.storedBytes() + vWeights.storedBytes(decoderOnly);
        if (need > (opts.memoryBudget ?? Infinity)) {
          text.dispose();
          loaded.splice(loaded.indexOf(text), 1);
          text = null;
          dev.trimPool(); // the encoder's activation sizes are of no use to the transformer
        }
      }
      const transformer = await Flux2Transformer.load(dev, tWeights, tCfg);
      loaded.push(transformer);
      const vae = await Flux2Vae.load(dev, vWeights, vCfg, { encoder: opts.vaeEncoder ?? false });
      loaded.push(vae);
      for (const [p, enc] of prompts) {
        if (enc.embeds.shape[2] !== transformer.jointDim) {
          throw new Error(`Flux2Pipeline: the embeddings of "${p}" are ${enc.embeds.shape[2]} wide, transformer joint_attention_dim is ${transformer.jointDim}`);
        }
      }
      const pipe = new Flux2Pipeline(dev, { transformer, vae, text, scheduler, isDistilled: index.is_distilled ?? false });
      for (const [p, enc] of prompts) pipe.prompts.set(p, enc);
      return pipe;
    } catch (e) {
      for (const m of loaded) m.dispose();
      for (const p of prompts.values()) p.embeds.dispose();
      throw e;
    }
  }

  /** Frees every model and cached prompt. */
  dispose(): void {
    this.clearPrompts();
    this.freeTextEncoder();
    this.transformer.dispose();
    this.vae.dispose();
  }

  /** Frees the text encoder (cached prompts stay usable; new prompts then fail). */
  freeTextEncoder(): void {
    this.text?.dispose();
    this.text = null;
  }

  clearPrompts(): void {
    for (const p of this.prompts.values()) p.embeds.dispose();
    this.prompts.clear();
  }

  // ---- pieces ---------------------------------------------------------------------------------------------

  /** The text conditioning of one prompt (chat template, Qwen3 hidden states 9/18/27), computed once per text. */
  encodePrompt(prompt: string): PromptEncoding {
    const hit = this.prompts.get(prompt);
    if (hit) return hit;
    if (!this.text) throw new Error("Flux2Pipeline.encodePrompt: no text encoder (loaded without it, or freed to save memory); pass promptEmbeds");
    const enc = encodeWith(this.text, prompt);
    this.prompts.set(prompt, enc);
    return enc;
  }

  /** Token grid of an image size, checking it is a positive multiple of pixelsPerToken. */
  latentSize(width: number, height: number): { h: number; w: number } {
    const p = this.pixelsPerToken;
    const ok = (n: number) => Number.isInteger(n) && n > 0 && n % p === 0;
    if (!ok(width) || !ok(height)) throw new Error(`Flux2Pipeline: width ${width} and height ${height} must be positive multiples of ${p}`);
    return { h: height / p, w: width / p };
  }

  /**
   * N(0, 1) noise [B, C, H/16, W/16] from the framework's counter-based generator: item b is sample `first + b` of
   * the seed's stream, so any batch split of the same samples gives the same noise.
   */
  generateNoise(opts: { width: number; height: number; seed: number; batch?: number; first?: number }): Tensor {
    const { h, w } = this.latentSize(opts.width, opts.height);
    const B = opts.batch ?? 1;
    const first = opts.first ?? 0;
    if (!Number.isInteger(B) || B < 1 || !Number.isInteger(first) || first < 0) {
      throw new Error(`Flux2Pipeline.generateNoise: batch ${B} and first ${first} must be integers ≥ 1 and ≥ 0`);
    }
    const perItem = this.latentChannels * h * w; // a multiple of 4: one Philox counter per 4 values
    return Tensor.randn(this.dev, [B, this.latentChannels, h, w], { seed: opts.seed, offset: (first * perItem) / 4 });
  }

  /** The pipeline's schedule for `steps` steps at a token count. */
  schedule(steps: number, imageSeqLen: number): FlowMatchSchedule {
    return flowMatchSigmas(steps, imageSeqLen, this.scheduler);
  }

  get defaultSteps(): number {
    return this.isDistilled ? 4 : 50;
  }

  /**
   * Editing mode: each reference checked, resized over 1024² px, center-cropped to multiples of pixelsPerToken and
   * scaled to [-1, 1] (reference.ts), then encoded on its own: VAE posterior mean, 2×2 patchify, BN-normalise, pack.
   * The tokens are concatenated in order; reference i's ids are (10 + 10·i, r, c, 0). Compute this once per run and
   * pass it as `references` to every generation; the caller disposes `tokens`. `names` label errors (file names);
   * `debug` sees ref_{i}_preprocessed, ref_{i}_vae_mean, ref_{i}_latent_normalized ([1, C, h, w]).
   */
  async encodeReferences(
    images: readonly Image8[],
    opts: { names?: readonly string[]; debug?: VaeDebug } = {},
  ): Promise<ReferenceTokens> {
    if (!images.length) throw new Error("Flux2Pipeline.encodeReferences: no reference images");
    const parts: Tensor[] = [];
    const grids: { h: number; w: number }[] = [];
    const sizes: { width: number; height: number }[] = [];
    try {
      for (const [i, image] of images.entries()) {
        const ref = await prepareReference(this.dev, image, this.pixelsPerToken, opts.names?.[i] ?? `reference ${i}`);
        opts.debug?.(`ref_${i}_preprocessed`, ref.pixels);
        const mean = this.vae.encode(ref.pixels);
        ref.pixels.dispose();
        opts.debug?.(`ref_${i}_vae_mean`, mean);
        const tokens = this.vae.normalizeToPacked(mean);
        mean.dispose();
        const grid = { h: ref.height / this.pixelsPerToken, w: ref.width / this.pixelsPerToken };
        if (opts.debug) {
          const latent = unpackLatents(tokens, grid.h, grid.w);
          opts.debug(`ref_${i}_latent_normalized`, latent);
          latent.dispose();
        }
        parts.push(tokens);
        grids.push(grid);
        sizes.push({ width: ref.width, height: ref.height });
      }
      const tokens = parts.length === 1 ? parts.pop()! : concat(parts, 1);
      this.dev.trimPool(); // the encoder's activation sizes are of no use to the transformer
      return { tokens, ids: referenceIds(grids), sizes };
    } finally {
      for (const t of parts) t.dispose();
    }
  }

  /** Prepares the transformer's text input for a batch (see Conditioning). */
  condition(opts: ConditionOptions): Conditioning {
    const scale = opts.guidanceScale ?? 4.0;
    const embedded = this.transformer.guidanceEmbeds;
    const negativeGiven = opts.negativePrompt !== undefined || opts.negativePromptEmbeds !== undefined;
    const cfg = scale > 1 && (negativeGiven || (!this.isDistilled && !embedded));
    const owned: Tensor[] = [];
    const cond = this.batchEmbeds(opts.prompt, opts.promptEmbeds, opts.batch, owned, "prompt");
    const B = cond.context.shape[0];
    const refs = opts.references;
    if (refs && (refs.tokens.shape.length !== 3 || refs.tokens.shape[0] !== 1 || refs.tokens.shape[2] !== this.latentChannels || refs.ids.length !== refs.tokens.shape[1] * 4)) {
      throw new Error(`Flux2Pipeline: reference tokens [${refs.tokens.shape}] with ${refs.ids.length / 4} ids must be [1, L, ${this.latentChannels}] with L ids`);
    }
    const result: Conditioning = { batch: B, calls: [cond], cfgScale: null, guidance: embedded ? scale : undefined, references: refs, owned };
    if (!cfg) return result;
    const uncond = this.batchEmbeds(opts.negativePrompt ?? (opts.negativePromptEmbeds ? undefined : ""), opts.negativePromptEmbeds, B, owned, "negative prompt");
    result.cfgScale = scale;
    if (uncond.context.shape[1] !== cond.context.shape[1]) {
      result.calls = [cond, uncond];
    } else {
      const both = concat([cond.context, uncond.context], 0);
      owned.push(both);
      result.calls = [{ context: both, txtIds: cond.txtIds }];
    }
    return result;
  }

  /** [B, S, J] context for prompts or given embeddings, repeating a single row to the batch size. */
  private batchEmbeds(
    prompt: string | readonly string[] | undefined,
    embeds: Tensor | undefined,
    batch: number | undefined,
    owned: Tensor[],
    what: string,
  ): { context: Tensor; txtIds: Int32Array } {
    if ((prompt === undefined) === (embeds === undefined)) throw new Error(`Flux2Pipeline: give exactly one of ${what} text or ${what} embeddings`);
    let rows: Tensor[];
    if (embeds) {
      if (embeds.shape.length !== 3 || embeds.shape[2] !== this.transformer.jointDim || embeds.dtype !== "f32") {
        throw new Error(`Flux2Pipeline: ${what} embeddings ${embeds.dtype} [${embeds.shape}] must be f32 [B, S, ${this.transformer.jointDim}]`);
      }
      rows = [embeds];
    } else {
      const list = asList(prompt!);
      if (!list.length) throw new Error(`Flux2Pipeline: empty ${what} list`);
      rows = list.map((p) => this.encodePrompt(p).embeds);
      if (rows.some((r) => r.shape[1] !== rows[0].shape[1])) throw new Error(`Flux2Pipeline: ${what}s encode to different lengths`);
    }
    const have = rows.reduce((n, r) => n + r.shape[0], 0);
    const B = batch ?? have;
    if (have !== B && have !== 1) throw new Error(`Flux2Pipeline: ${have} ${what} rows for batch ${B}`);
    const parts = have === B ? rows : Array<Tensor>(B).fill(rows[0]);
    let context = parts[0];
    if (parts.length > 1) {
      context = concat(parts, 0);
      owned.push(context);
    }
    return { context, txtIds: textIds(1, context.shape[1]) };
  }

  /**
   * Runs steps [from, to) of the schedule on latents [B, C, h, w] → new latents [B, C, h, w] (the input is not
   * consumed).
   */
  denoise(latents: Tensor, cond: Conditioning, opts: DenoiseOptions = {}): Tensor {
    if (latents.shape.length !== 4 || latents.shape[1] !== this.latentChannels || latents.dtype !== "f32") {
      throw new Error(`Flux2Pipeline.denoise: latents ${latents.dtype} [${latents.shape}] must be f32 [B, ${this.latentChannels}, h, w]`);
    }
    const [, , h, w] = latents.shape;
    return this.dev.guard(() => {
      const tokens = packLatents(latents);
      const out = this.denoiseTokens(tokens, h, w, cond, opts);
      tokens.dispose();
      const grid = unpackLatents(out, h, w);
      out.dispose();
      return grid;
    });
  }

  private denoiseTokens(x0: Tensor, h: number, w: number, cond: Conditioning, opts: DenoiseOptions): Tensor {
    const B = x0.shape[0];
    if (B !== cond.batch) throw new Error(`Flux2Pipeline: latents batch ${B} ≠ conditioning batch ${cond.batch}`);
    const schedule = opts.schedule ?? this.schedule(opts.steps ?? this.defaultSteps, h * w);
    const from = opts.from ?? 0;
    const to = opts.to ?? schedule.steps;
    if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > schedule.steps || from > to) {
      throw new Error(`Flux2Pipeline.denoise: steps [${from}, ${to}) outside the ${schedule.steps}-step schedule`);
    }
    const refs = cond.references;
    const targetIds = latentIds(h, w);
    let imgIds = targetIds;
    // The reference rows of each call, repeated to its row count once per loop.
    const refRows = new Map<number, Tensor>();
    if (refs) {
      imgIds = new Int32Array(targetIds.length + refs.ids.length);
      imgIds.set(targetIds);
      imgIds.set(refs.ids, targetIds.length);
      for (const { context } of cond.calls) {
        const n = context.shape[0];
        if (!refRows.has(n)) refRows.set(n, n === 1 ? refs.tokens : concat(Array<Tensor>(n).fill(refs.tokens), 0));
      }
    }
    let x = x0;
    try {
      for (let i = from; i < to; i++) {
        const t = schedule.modelTimestep(i);
        let joint: StepInfo["joint"];
        const preds = cond.calls.map(({ context, txtIds }) => {
          const n = context.shape[0];
          const rows = n === B ? x : concat(Array<Tensor>(n / B).fill(x), 0);
          const input = refs ? concat([rows, refRows.get(n)!], 1) : rows;
          if (input !== rows && rows !== x) rows.dispose();
          const y = this.transformer.forward({
            x: input,
            context,
            timestep: Array<number>(n).fill(t),
            guidance: cond.guidance === undefined ? undefined : Array<number>(n).fill(cond.guidance),
            imgIds,
            txtIds,
          });
          if (!refs) {
            if (input !== x) input.dispose();
            return y;
          }
          // Only the target rows go on; the first call's whole input and output are shown to onStep.
          const target = slice(y, 1, 0, h * w);
          if (!joint && opts.onStep) joint = { input, output: y };
          else {
            input.dispose();
            y.dispose();
          }
          return target;
        });
        const prediction = preds.length === 1 ? preds[0] : concat(preds, 0);
        if (preds.length > 1) preds.forEach((p) => p.dispose());
        const velocity = cond.cfgScale === null ? prediction : lerpHalves(prediction, cond.cfgScale);
        const next = schedule.step(x, velocity, i);
        opts.onStep?.(i, next, { input: x, prediction, velocity, timestep: t, joint });
        if (joint) {
          joint.input.dispose();
          joint.output.dispose();
        }
        if (velocity !== prediction) velocity.dispose();
        prediction.dispose();
        if (x !== x0) x.dispose();
        x = next;
        opts.onProgress?.(i - from + 1, to - from);
      }
    } finally {
      for (const r of refRows.values()) if (r !== refs?.tokens) r.dispose();
    }
    // The caller owns the result: return a fresh view when no step ran.
    return x === x0 ? x0.reshape(x0.shape) : x;
  }

  /** Latents [B, C, h, w] → { decoded [B, 3, H, W] raw, image [B, 3, H, W] in [0, 1] }. */
  decode(latents: Tensor, debug?: VaeDebug): { decoded: Tensor; image: Tensor } {
    const [, , h, w] = latents.shape;
    return this.dev.guard(() => {
      const tokens = packLatents(latents);
      const r = this.decodeTokens(tokens, h, w, debug);
      tokens.dispose();
      return r;
    });
  }

  private decodeTokens(tokens: Tensor, h: number, w: number, debug?: VaeDebug): { decoded: Tensor; image: Tensor } {
    const z = this.vae.denormalizePacked(tokens, h, w, debug);
    debug?.("dec_unpatchified", z);
    const decoded = this.vae.decode(z, debug);
    z.dispose();
    return { decoded, image: toImageFloat(decoded) };
  }

  /**
   * Text (and references) → image: noise (given or from seed), the denoising loop, VAE decode. Without a size or
   * noise, the output takes the first reference's cropped size (as upstream).
   */
  generate(opts: GenerateOptions): GenerateResult {
    return this.dev.guard(() => this.generateGuarded(opts));
  }

  private generateGuarded(opts: GenerateOptions): GenerateResult {
    let noise = opts.initialNoise;
    let width = opts.width, height = opts.height;
    if (!noise && opts.references && width === undefined && height === undefined) ({ width, height } = opts.references.sizes[0]);
    if (noise) {
      if (noise.shape.length !== 4) throw new Error(`Flux2Pipeline.generate: initialNoise [${noise.shape}] must be [B, C, h, w]`);
      const [, , h, w] = noise.shape;
      width ??= w * this.pixelsPerToken;
      height ??= h * this.pixelsPerToken;
      const size = this.latentSize(width, height);
      if (size.h !== h || size.w !== w) throw new Error(`Flux2Pipeline.generate: initialNoise [${noise.shape}] does not fit ${width}×${height}`);
    } else {
      if (opts.seed === undefined || width === undefined || height === undefined) {
        throw new Error("Flux2Pipeline.generate: give initialNoise, or seed with width and height");
      }
      noise = this.generateNoise({ width, height, seed: opts.seed, batch: opts.batch ?? 1 });
    }
    const { h, w } = this.latentSize(width, height);
    const cond = this.condition({ ...opts, batch: noise.shape[0] });
    try {
      const tokens = packLatents(noise);
      if (noise !== opts.initialNoise) noise.dispose();
      const out = this.denoiseTokens(tokens, h, w, cond, opts);
      tokens.dispose();
      const { decoded, image } = this.decodeTokens(out, h, w, opts.vaeDebug);
      const latents = unpackLatents(out, h, w);
      out.dispose();
      return { image, decoded, latents };
    } finally {
      disposeConditioning(cond);
    }
  }

  /** A generation's pixels as uint8 [B, H, W, 3]: rounded like diffusers or truncated like DiffSynth. */
  imageBytes(result: { decoded: Tensor }, rounding: PixelRounding = "round"): Promise<Uint8Array> {
    return imageBytes(result.decoded, rounding);
  }
}

/** One prompt through the text encoder (the embeddings outlive any open scope: the prompt cache owns them). */
function encodeWith(text: Qwen3PromptEncoder, prompt: string): PromptEncoding {
  const r = text.encode([prompt]);
  return { embeds: r.promptEmbeds.keep(), ids: r.tokens.ids, mask: r.tokens.mask };
}

/** Frees the tensors a Conditioning allocated (cached prompt embeddings stay). */
export function disposeConditioning(c: Conditioning): void {
  for (const t of c.owned) t.dispose();
  c.owned.length = 0;
}
