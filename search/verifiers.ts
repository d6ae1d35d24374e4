// Verifiers (arXiv 2501.09732's second design axis): what scores a generated image. search/ never imports models/,
// so models enter through small interfaces:
// - `ImageTextScorer`: what a CLIP-family model (models/clip, PickScore) provides: per image, the cosine similarity
//   of its normalised image embedding and the prompt's text embedding.
// - `Verifier`: scores a batch of GPU images [B, 3, H, W] for a prompt, one number per image, higher is better.
//   `pickScoreVerifier` = the DiffSynth tutorial's PickScore (the bare cosine; `logitScale` 100 gives the model
//   card's scale), `clipScoreVerifier` = CLIPScore of Hessel et al. 2021, w·max(cos, 0) with w = 2.5.
// - `ensembleVerifier`: the paper's verifier ensemble: rank the candidates under each verifier and average the
//   ranks (raw scores of different verifiers are not comparable). Ranks are relative to the candidates of ONE call,
//   so a search using it must hand a whole population to each call (batch ≥ population) or rank a fixed final set.
// - `selfSupervisedScores`: the paper's self-supervised verifier: cosine similarity, in an image-feature space
//   (CLIP image features), between the image decoded from the x̂0 prediction at an early low-noise step and the
//   final image; the features come from an `imageFeatures(images) → [B, D]` function.
// - `imageObjective`: render noises to images, score them with a verifier: the noise searches' objective.
import type { Tensor } from "../core/index.ts";
import { DEFAULT_NFE_PER_EVAL, type Objective, withNfe } from "./objective.ts";

/** Cosine similarity of normalised image and text embeddings, one per image of [B, 3, H, W]. */
export interface ImageTextScorer {
  score(images: Tensor, prompt: string): Promise<number[]>;
}

export interface Verifier {
  readonly name: string;
  /** One score per image of [B, 3, H, W]; higher is better. The images stay the caller's. */
  score(images: Tensor, prompt: string): Promise<number[]>;
}

/** Image features [B, 3, H, W] → [B, D] (a new tensor the caller disposes). */
export type ImageFeatures = (images: Tensor) => Tensor | Promise<Tensor>;

async function checked(name: string, images: Tensor, scores: Promise<number[]>): Promise<number[]> {
  const s = await scores;
  const B = images.shape[0];
  if (!Array.isArray(s) || s.length !== B) throw new Error(`${name}: scorer returned ${Array.isArray(s) ? s.length : typeof s} scores for ${B} images`);
  return s;
}

/** PickScore: the scorer's cosine × logitScale (default 1, as the DiffSynth tutorial; the model card uses 100). */
export function pickScoreVerifier(scorer: ImageTextScorer, opts: { logitScale?: number } = {}): Verifier {
  const k = opts.logitScale ?? 1;
  return {
    name: "pickscore",
    score: async (images, prompt) => (await checked("pickscore", images, scorer.score(images, prompt))).map((c) => k * c),
  };
}

/** CLIPScore (Hessel et al. 2021): w·max(cos, 0), w = 2.5 by default. */
export function clipScoreVerifier(scorer: ImageTextScorer, opts: { weight?: number } = {}): Verifier {
  const w = opts.weight ?? 2.5;
  return {
    name: "clipscore",
    score: async (images, prompt) => (await checked("clipscore", images, scorer.score(images, prompt))).map((c) => w * Math.max(c, 0)),
  };
}

/**
 * Ranks of `scores` in ascending order, 1 = lowest … n = highest; tied scores share the mean of their ranks.
 */
export function ranks(scores: readonly number[]): number[] {
  const order = scores.map((_, i) => i).sort((a, b) => (scores[a] < scores[b] ? -1 : scores[a] > scores[b] ? 1 : a - b));
  const out = new Array<number>(scores.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && scores[order[j + 1]] === scores[order[i]]) j++;
    for (let k = i; k <= j; k++) out[order[k]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return out;
}

/** The ensemble score of n candidates from per-verifier score lists: the mean rank (higher is better). */
export function averageRanks(perVerifier: readonly (readonly number[])[]): number[] {
  if (!perVerifier.length) throw new Error("averageRanks: no verifiers");
  const n = perVerifier[0].length;
  if (perVerifier.some((s) => s.length !== n)) throw new Error(`averageRanks: score lists of different lengths [${perVerifier.map((s) => s.length)}]`);
  if (perVerifier.some((s) => s.some(Number.isNaN))) throw new Error("averageRanks: NaN score");
  const rs = perVerifier.map(ranks);
  return Array.from({ length: n }, (_, i) => rs.reduce((a, r) => a + r[i], 0) / rs.length);
}

/** The verifier ensemble: average rank under each verifier, among the images of one call. */
export function ensembleVerifier(verifiers: readonly Verifier[]): Verifier {
  if (!verifiers.length) throw new Error("ensembleVerifier: no verifiers");
  const name = `ensemble(${verifiers.map((v) => v.name).join(",")})`;
  return {
    name,
    async score(images, prompt) {
      const all: number[][] = [];
      for (const v of verifiers) all.push(await checked(name, images, v.score(images, prompt)));
      return averageRanks(all);
    },
  };
}

/** Cosine similarity of each row pair of two [B, D] feature arrays, in f64 (0 for a zero row). */
export function rowCosines(a: ArrayLike<number>, b: ArrayLike<number>, B: number): number[] {
  const D = a.length / B;
  return Array.from({ length: B }, (_, r) => {
    let ab = 0, aa = 0, bb = 0;
    for (let i = r * D; i < (r + 1) * D; i++) {
      ab += a[i] * b[i];
      aa += a[i] * a[i];
      bb += b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
  });
}

/**
 * Self-supervised verifier: per candidate, the cosine similarity of imageFeatures(early) and imageFeatures(final),
 * where `early` are the images decoded from the x̂0 prediction at an early low-noise step and `final` the final
 * images, both [B, 3, H, W].
 */
export async function selfSupervisedScores(imageFeatures: ImageFeatures, early: Tensor, final: Tensor): Promise<number[]> {
  if (early.shape.join() !== final.shape.join()) throw new Error(`selfSupervisedScores: early [${early.shape}] and final [${final.shape}] images differ in shape`);
  const B = early.shape[0];
  const fe = await imageFeatures(early);
  const ff = await imageFeatures(final);
  try {
    if (fe.shape[0] !== B || fe.shape.join() !== ff.shape.join()) throw new Error(`selfSupervisedScores: features [${fe.shape}] and [${ff.shape}] for ${B} images`);
    return rowCosines(await fe.toArray(), await ff.toArray(), B);
  } finally {
    fe.dispose();
    ff.dispose();
  }
}

/**
 * The noise searches' objective: `render` turns noises into images [B, 3, H, W] (a tensor the objective then
 * disposes), `verifier` scores them. nfePerEval: the render's transformer evaluations per noise.
 */
export function imageObjective(
  render: (noises: Tensor[]) => Tensor | Promise<Tensor>,
  verifier: Verifier,
  prompt: string,
  nfePerEval = DEFAULT_NFE_PER_EVAL,
): Objective {
  return withNfe(async (noises) => {
    const images = await render(noises);
    try {
      return await verifier.score(images, prompt);
    } finally {
      images.dispose();
    }
  }, nfePerEval);
}
