// PickScore (and any CLIP reward) as the DiffSynth tutorial computes it: the cosine similarity of the L2-normalised
// projected text and image embeddings, no logit scale; `clipScore` is the logit-scaled variant (exp(logit_scale)
// × cosine, PickScore's model card and CLIPModel's logits_per_text).
// Design:
// - Loaded from the model repo (config.json + model.safetensors, AI-ModelScope/PickScore_v1 layout) and the
//   processor repo (preprocessor_config.json + tokenizer files, laion/CLIP-ViT-H-14-laion2B-s32B-b79K layout).
// - The prompt's normalised text embedding is computed once per prompt and kept on the CPU; images run through
//   the GPU preprocessing and the vision tower in batches of at most `maxBatch`; only the [B, projection_dim]
//   embeddings are read back and the cosines taken in f64.
// - Image inputs: RGB uint8 images (PNG files), or a GPU tensor [B, 3, H, W] quantised to uint8 first (default
//   TRUNC_UINT8 for a [0, 1] image: the tutorial's truncating uint8 conversion).
import { type Device, Tensor } from "../../core/index.ts";
import { slice } from "../../kernels/layout.ts";
import { ClipModel } from "./model.ts";
import { ClipPreprocessor, loadImageConfig, type Quantize, type ResizeBackend, type RgbImage, TRUNC_UINT8 } from "./preprocess.ts";
import { ClipTokenizer } from "./tokenizer.ts";

/** Rows of [B, D] divided by their L2 norms (f64 sums, stored as f32 as torch stores them). */
export function normalizeRows(x: Float32Array, D: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / D; r++) {
    const row = x.subarray(r * D, (r + 1) * D);
    const norm = Math.sqrt(row.reduce((s, v) => s + v * v, 0));
    for (let d = 0; d < D; d++) out[r * D + d] = row[d] / norm;
  }
  return out;
}

/** Dot products of one normalised vector with each row of normalised [B, D]. */
export function cosines(text: Float32Array, images: Float32Array): number[] {
  const D = text.length;
  return Array.from({ length: images.length / D }, (_, b) => {
    let s = 0;
    for (let d = 0; d < D; d++) s += text[d] * images[b * D + d];
    return s;
  });
}

export interface PickScoreOptions {
  /** Folder (or URL prefix) with config.json and model.safetensors. */
  model: string;
  /** Folder with preprocessor_config.json and the tokenizer files. */
  processor: string;
  /** Image resize backend, default "torchvision" (transformers 5's default processor). */
  backend?: ResizeBackend;
  /** Most images per vision-tower call (default 8). */
  maxBatch?: number;
}

export type ScoreImages = Tensor | readonly RgbImage[];

export class PickScore {
  private texts = new Map<string, Float32Array>();

  private constructor(
    readonly model: ClipModel,
    readonly tokenizer: ClipTokenizer,
    readonly preprocessor: ClipPreprocessor,
    readonly maxBatch: number,
  ) {}

  static async load(dev: Device, opts: PickScoreOptions): Promise<PickScore> {
    const maxBatch = opts.maxBatch ?? 8;
    if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new Error(`PickScore: maxBatch ${maxBatch} must be a positive integer`);
    const tokenizer = await ClipTokenizer.load(opts.processor);
    const pre = new ClipPreprocessor(dev, await loadImageConfig(opts.processor), opts.backend);
    const model = await ClipModel.fromFolder(dev, opts.model);
    const { doCenterCrop, cropHeight, cropWidth } = pre.cfg;
    if (doCenterCrop && (cropHeight !== model.imageSize || cropWidth !== model.imageSize)) {
      model.dispose();
      throw new Error(`PickScore: the processor crops to ${cropHeight}×${cropWidth} but the vision tower takes ${model.imageSize}×${model.imageSize}`);
    }
    return new PickScore(model, tokenizer, pre, maxBatch);
  }

  /** The prompt's L2-normalised text embedding [projection_dim] (cached per prompt). */
  async textEmbedding(prompt: string): Promise<Float32Array> {
    let t = this.texts.get(prompt);
    if (!t) {
      const ids = Int32Array.from(this.tokenizer.encode(prompt));
      const e = this.model.textEmbeds(ids, new Int32Array(ids.length).fill(1), 1);
      t = normalizeRows(await e.toArray().finally(() => e.dispose()), this.model.projectionDim);
      this.texts.set(prompt, t);
    }
    return t;
  }

  /** pixel_values [B, 3, S, S] of the images. */
  pixels(images: ScoreImages, quantize: Quantize = TRUNC_UINT8): Tensor {
    return images instanceof Tensor ? this.preprocessor.fromTensor(images, quantize) : this.preprocessor.fromImages(images);
  }

  /** L2-normalised image embeddings [B, projection_dim] (row-major), in batches of at most maxBatch. */
  async imageEmbeddings(images: ScoreImages, opts: { quantize?: Quantize } = {}): Promise<Float32Array> {
    const B = images instanceof Tensor ? images.shape[0] : images.length;
    const P = this.model.projectionDim;
    const out = new Float32Array(B * P);
    const reads: Promise<void>[] = [];
    for (let b = 0; b < B; b += this.maxBatch) {
      const e = Math.min(B, b + this.maxBatch);
      const part = images instanceof Tensor ? (B <= this.maxBatch ? images : slice(images, 0, b, e)) : images.slice(b, e);
      const px = this.pixels(part, opts.quantize);
      if (part !== images && part instanceof Tensor) part.dispose();
      const emb = this.model.imageEmbeds(px);
      px.dispose();
      reads.push(emb.toArray().then((a) => out.set(normalizeRows(a, P), b * P)).finally(() => emb.dispose()));
    }
    await Promise.all(reads);
    return out;
  }

  /** PickScore per image: cosine(text, image), the DiffSynth tutorial's number (typically 0.2–0.25). */
  async score(images: ScoreImages, prompt: string, opts: { quantize?: Quantize } = {}): Promise<number[]> {
    const text = await this.textEmbedding(prompt);
    return cosines(text, await this.imageEmbeddings(images, opts));
  }

  /** exp(logit_scale) × cosine: the model card's PickScore (≈100× the tutorial's) and CLIPModel's logits. */
  async clipScore(images: ScoreImages, prompt: string, opts: { quantize?: Quantize } = {}): Promise<number[]> {
    return (await this.score(images, prompt, opts)).map((s) => this.model.logitScale * s);
  }

  /** Projected (unnormalised) image features [B, projection_dim] of a [B, 3, H, W] tensor, left on the GPU. */
  imageFeatures(images: Tensor, quantize: Quantize = TRUNC_UINT8): Tensor {
    const px = this.pixels(images, quantize);
    try {
      return this.model.imageEmbeds(px);
    } finally {
      px.dispose();
    }
  }

  clearPrompts(): void {
    this.texts.clear();
  }

  dispose(): void {
    this.texts.clear();
    this.model.dispose();
  }
}
