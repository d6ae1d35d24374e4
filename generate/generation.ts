// Text to image with noise search: a loaded Flux2Pipeline (models/flux2), a PickScore model (models/clip) and a
// verifier (search/verifiers.ts) wired to run_search.ts. The generate/ layer sits above models/ and search/ so that
// neither knows the other; shared by `flux2ts generate` and the browser app, so it touches no runtime API and no
// files.
// Design:
// - Seeds: the base noise is sample 0 of stream `seed` (what `generate --seed s --search none` renders); the
//   search draws from stream seed + 2^32 (a different Philox key), so a search never re-draws the base noise.
// - Noise searches render a candidate with the full sampler (steps × 2 under CFG transformer evaluations) and
//   VAE decode; "paths" gets a Denoiser over the same schedule and renders clean latents with the VAE only.
// - Verifiers (arXiv 2501.09732): "pickscore" (the tutorial's cosine), "clipscore" (2.5·max(cos, 0)), "self"
//   (cosine of CLIP image features of the image decoded from x̂0 at the step whose σ is nearest 0.4, never the
//   last one, and of the final image), "ensemble" (mean rank under the three among the candidates of one render
//   call: use --batch ≥ the population). "self" and "ensemble" need the sampler's trajectory, so not "paths".
// - Images are scored as TRUNC_UINT8 quantises them (DiffSynth's uint8 conversion); `imageRgb8` gives exactly
//   those pixels, so a written PNG scores what the log says.
// - The log is plain JSON: settings, bestScore/bestIndex, evals, nfe and one record per candidate; replaying a
//   candidate needs only the log and the same models (`replayGeneration`).
// - Editing: reference files (name + bytes) are decoded, checked with upstream's rules and hashed (SHA-256 of the
//   file) by `loadReferences`; a run encodes them once and every candidate's every step sees them. The log keeps
//   each one's file name, byte count, pixel size and hash; a replay refuses files whose hash differs.
import type { Tensor } from "../core/index.ts";
import { decodeImage } from "../core/image.ts";
import { type Image8, toRgb } from "../core/png.ts";
import { concat, slice, unpackLatents } from "../kernels/layout.ts";
import { averageRanks, clipScoreVerifier, pickScoreVerifier, selfSupervisedScores } from "../search/verifiers.ts";
import type { PickScore } from "../models/clip/pickscore.ts";
import { TRUNC_UINT8 } from "../models/clip/preprocess.ts";
import { disposeConditioning, type Flux2Pipeline, type ReferenceTokens } from "../models/flux2/pipeline.ts";
import { checkReference, referenceSize } from "../models/flux2/reference.ts";
import type { FlowMatchSchedule } from "../models/flux2/scheduler.ts";
import { SEARCH_NAMES, type SearchName } from "../search/by_name.ts";
import { pathRounds, type Denoiser } from "../search/paths.ts";
import { type CandidateEvent, type CandidateRecord, type CandidateRenderer, replayCandidate, type Rendering, runSearch } from "./run_search.ts";

export const VERIFIER_NAMES = ["pickscore", "clipscore", "self", "ensemble"] as const;
export type VerifierName = (typeof VERIFIER_NAMES)[number];

/** The seed offset of the search's RNG stream (a different Philox key from the base noise's). */
export const SEARCH_SEED_OFFSET = 2 ** 32;

export interface GenerationSettings {
  prompt: string;
  /** Turns classifier-free guidance on (distilled models); non-distilled models default to "". */
  negativePrompt?: string;
  /** CFG scale or embedded guidance (default 4, as the pipeline). */
  guidance?: number;
  width: number;
  height: number;
  /** Default: the pipeline's (4 distilled, 50 otherwise). */
  steps?: number;
  /** 0 ≤ seed < 2^32. */
  seed: number;
  search: SearchName;
  /** Noises to score (paths: at most; none: 1). */
  budget: number;
  verifier: VerifierName;
  /** Candidates per transformer call. */
  batch: number;
  /** Editing mode: reference images, from `loadReferences`. */
  references?: readonly LoadedReference[];
}

/** What a log records of a reference image: file name, file bytes, pixel size, SHA-256 of the file (hex). */
export interface ReferenceRecord {
  file: string;
  bytes: number;
  width: number;
  height: number;
  sha256: string;
}

/** A reference file decoded and hashed. */
export interface LoadedReference extends ReferenceRecord {
  image: Image8;
}

export interface ProgressEvent {
  kind: "progress";
  /** "render": sampling candidates (noise searches); "denoise": part of a "paths" schedule. */
  stage: "render" | "denoise";
  /** Sampler steps done / to do in this call, and the candidates it handles. */
  step: number;
  steps: number;
  candidates: number;
  /** Noises scored so far. */
  evals: number;
}

export type GenerationEvent = CandidateEvent | ProgressEvent;

export interface GenerationLog {
  settings: Required<Omit<GenerationSettings, "negativePrompt" | "references">> & {
    negativePrompt: string | null;
    searchSeed: number;
    nfePerEval: number;
    /** Absent in logs of text-to-image runs. */
    references?: ReferenceRecord[];
  };
  bestScore: number;
  bestIndex: number;
  evals: number;
  nfe: number;
  seconds: number;
  candidates: CandidateRecord[];
}

export interface GenerationResult {
  /** The best candidate's image [1, 3, H, W] in [0, 1] (the caller disposes it). */
  image: Tensor;
  log: GenerationLog;
}

export interface GenerationModels {
  pipe: Flux2Pipeline;
  scorer: PickScore;
}

type Emit = (e: GenerationEvent) => void | Promise<void>;

const isInt = (v: unknown, min: number, max = Number.MAX_SAFE_INTEGER) => Number.isInteger(v) && (v as number) >= min && (v as number) <= max;

/**
 * Decodes reference files (PNG or JPEG, as RGB), checks each with upstream's rules (sides ≥ 64 px, aspect ≤ 8)
 * and hashes it (SHA-256 of the file). Throws one line naming the file for anything wrong.
 */
export async function loadReferences(files: readonly { name: string; bytes: Uint8Array }[]): Promise<LoadedReference[]> {
  const out: LoadedReference[] = [];
  for (const { name, bytes } of files) {
    const image = toRgb(decodeImage(bytes, name));
    checkReference(image.width, image.height, name);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
    const sha256 = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    out.push({ file: name, bytes: bytes.length, width: image.width, height: image.height, sha256, image });
  }
  return out;
}

/** The output size upstream takes without one: the first reference's size after its resize and crop. */
export function referenceOutputSize(pipe: Flux2Pipeline, first: ReferenceRecord): { width: number; height: number } {
  return referenceSize(first.width, first.height, pipe.pixelsPerToken, first.file);
}

/** Settings with the pipeline's defaults filled in; throws an Error naming the first bad setting. */
export function resolveSettings(pipe: Flux2Pipeline, s: GenerationSettings): GenerationLog["settings"] {
  const steps = s.steps ?? pipe.defaultSteps;
  const p = pipe.pixelsPerToken;
  const bad = (msg: string): never => {
    throw new Error(msg);
  };
  if (typeof s.prompt !== "string" || !s.prompt.trim()) bad("the prompt is empty");
  if (!isInt(s.width, p) || !isInt(s.height, p) || s.width % p || s.height % p) bad(`width and height must be positive multiples of ${p}, got ${s.width}×${s.height}`);
  if (!isInt(steps, 1, 1000)) bad(`steps must be an integer in [1, 1000], got ${steps}`);
  if (!isInt(s.seed, 0, SEARCH_SEED_OFFSET - 1)) bad(`seed must be an integer in [0, 2^32), got ${s.seed}`);
  if (!SEARCH_NAMES.includes(s.search)) bad(`unknown search "${s.search}" (${SEARCH_NAMES.join(", ")})`);
  if (!VERIFIER_NAMES.includes(s.verifier)) bad(`unknown verifier "${s.verifier}" (${VERIFIER_NAMES.join(", ")})`);
  if (!isInt(s.budget, 1, 1e6)) bad(`budget must be an integer ≥ 1, got ${s.budget}`);
  if (!isInt(s.batch, 1, 1024)) bad(`batch must be an integer in [1, 1024], got ${s.batch}`);
  const guidance = s.guidance ?? 4;
  if (!(Number.isFinite(guidance) && guidance >= 0)) bad(`guidance must be a number ≥ 0, got ${s.guidance}`);
  if ((s.verifier === "self" || s.verifier === "ensemble") && s.search === "paths") {
    bad(`the ${s.verifier} verifier needs each candidate's sampling trajectory; "paths" scores intermediate states (use pickscore or clipscore)`);
  }
  if ((s.verifier === "self" || s.verifier === "ensemble") && steps < 2) bad(`the ${s.verifier} verifier needs at least 2 steps`);
  if (s.search === "paths") {
    if (steps < 2) bad("paths search needs at least 2 steps");
    const rounds = pathRounds(steps, Math.ceil(steps / 2), 1, 2).length;
    if (s.budget < rounds * 4) bad(`paths search at ${steps} steps runs ${rounds} round(s) of 4 branches per path: budget must be ≥ ${rounds * 4}`);
  }
  const cond = pipe.condition({ prompt: s.prompt, negativePrompt: s.negativePrompt, guidanceScale: guidance, batch: 1 });
  const nfePerEval = steps * (cond.cfgScale === null ? 1 : 2);
  disposeConditioning(cond);
  return {
    prompt: s.prompt,
    negativePrompt: s.negativePrompt ?? null,
    guidance,
    width: s.width,
    height: s.height,
    steps,
    seed: s.seed,
    search: s.search,
    budget: s.search === "none" ? 1 : s.budget,
    verifier: s.verifier,
    batch: s.batch,
    searchSeed: s.seed + SEARCH_SEED_OFFSET,
    nfePerEval,
    ...(s.references?.length ? { references: s.references.map(({ file, bytes, width, height, sha256 }) => ({ file, bytes, width, height, sha256 })) } : {}),
  };
}

/** Index of the step whose x̂0 the self-supervised verifier compares with the final image. */
export function selfVerifierStep(schedule: FlowMatchSchedule): number {
  let best = 0;
  for (let i = 1; i < schedule.steps - 1; i++) if (Math.abs(schedule.sigmas[i] - 0.4) < Math.abs(schedule.sigmas[best] - 0.4)) best = i;
  return best;
}

/** The renderer, and for "paths" the denoiser, of a generation. */
function wire(
  m: GenerationModels,
  s: GenerationLog["settings"],
  references: ReferenceTokens | undefined,
  emit: Emit,
  evals: () => number,
): { renderer: CandidateRenderer; denoiser?: Denoiser } {
  const { pipe, scorer } = m;
  const { h, w } = pipe.latentSize(s.width, s.height);
  const schedule = pipe.schedule(s.steps, h * w);
  const progress = (stage: ProgressEvent["stage"], n: number) => (step: number, steps: number) => {
    void emit({ kind: "progress", stage, step, steps, candidates: n, evals: evals() });
  };
  /** Steps [from, to) on the joined candidates → latents, and the x̂0 grid predicted at step `at` (if in range). */
  const sample = (xs: Tensor[], from: number, to: number, at: number): { latents: Tensor; x0: Tensor | null } => {
    const x = xs.length === 1 ? xs[0].reshape(xs[0].shape) : concat(xs, 0);
    const cond = pipe.condition({ prompt: s.prompt, negativePrompt: s.negativePrompt ?? undefined, guidanceScale: s.guidance, batch: xs.length, references });
    let packed: Tensor | undefined;
    try {
      const latents = pipe.denoise(x, cond, {
        schedule,
        from,
        to,
        onStep: (i, _latents, info) => {
          if (i === at) packed = schedule.predictX0(info.input, info.velocity, i);
        },
        onProgress: progress(s.search === "paths" ? "denoise" : "render", xs.length),
      });
      return { latents, x0: packed ? unpackLatents(packed, h, w) : null };
    } finally {
      packed?.dispose();
      x.dispose();
      disposeConditioning(cond);
    }
  };
  /** Latents [n, C, h, w] → images [n, 3, H, W] in [0, 1]; the latents are consumed. */
  const decode = (latents: Tensor): Tensor => {
    const { decoded, image } = pipe.decode(latents);
    decoded.dispose();
    latents.dispose();
    return image;
  };
  const pick = pickScoreVerifier(scorer), clip = clipScoreVerifier(scorer);
  const features = (images: Tensor) => scorer.imageFeatures(images);
  const score = async (r: Rendering): Promise<number[]> => {
    switch (s.verifier) {
      case "pickscore":
        return pick.score(r.images, s.prompt);
      case "clipscore":
        return clip.score(r.images, s.prompt);
      case "self":
        return selfSupervisedScores(features, r.extra![0], r.images);
      case "ensemble": {
        // PickScore and CLIPScore are two readings of one cosine: run the CLIP towers once.
        const cos = await scorer.score(r.images, s.prompt);
        const once = { score: () => Promise.resolve(cos) };
        const [p, c] = [pickScoreVerifier(once), clipScoreVerifier(once)];
        return averageRanks([await p.score(r.images, s.prompt), await c.score(r.images, s.prompt), await selfSupervisedScores(features, r.extra![0], r.images)]);
      }
    }
  };

  if (s.search === "paths") {
    const rows = (t: Tensor, n: number) => (n === 1 ? [t] : Array.from({ length: n }, (_, i) => slice(t, 0, i, i + 1)));
    const denoiser: Denoiser = {
      sigmas: schedule.sigmas,
      nfePerStep: s.nfePerEval / s.steps,
      denoise(xs, from, to) {
        const { latents, x0 } = sample(xs, from, to, to - 1);
        const result = { x: rows(latents, xs.length), x0: rows(x0!, xs.length) };
        if (xs.length > 1) for (const t of [latents, x0!]) t.dispose();
        return result;
      },
    };
    const render = (xs: Tensor[]): Rendering => ({ images: decode(xs.length === 1 ? xs[0].reshape(xs[0].shape) : concat(xs, 0)) });
    return { renderer: { nfePerEval: 0, render, score }, denoiser };
  }

  const early = s.verifier === "self" || s.verifier === "ensemble" ? selfVerifierStep(schedule) : -1;
  const render = (xs: Tensor[]): Rendering => {
    const { latents, x0 } = sample(xs, 0, s.steps, early);
    const images = decode(latents);
    return x0 ? { images, extra: [decode(x0)] } : { images };
  };
  return { renderer: { nfePerEval: s.nfePerEval, render, score } };
}

/**
 * Runs the search `settings` describe and returns the best image and the log. Events: one "candidate" per scored
 * noise (its image valid during the callback and its promise), "progress" per sampler step.
 */
export async function generateWithSearch(m: GenerationModels, settings: GenerationSettings, opts: { onEvent?: Emit; clock?: () => number } = {}): Promise<GenerationResult> {
  const clock = opts.clock ?? (() => performance.now() / 1000);
  const t0 = clock();
  const s = resolveSettings(m.pipe, settings);
  const emit: Emit = opts.onEvent ?? (() => {});
  let evals = 0;
  const references = await encodeReferences(m.pipe, settings.references);
  const { renderer, denoiser } = wire(m, s, references, emit, () => evals);
  const baseNoise = m.pipe.generateNoise({ width: s.width, height: s.height, seed: s.seed });
  try {
    const r = await runSearch({
      search: s.search,
      baseNoise,
      renderer,
      denoiser,
      budget: s.budget,
      seed: s.searchSeed,
      batch: s.batch,
      clock,
      onCandidate: (e) => {
        evals = e.evals;
        return emit(e);
      },
    });
    r.search.bestNoise.dispose();
    const log: GenerationLog = {
      settings: s,
      bestScore: r.search.bestScore,
      bestIndex: r.bestIndex,
      evals: r.search.evals,
      nfe: r.nfe,
      seconds: clock() - t0,
      candidates: r.candidates,
    };
    return { image: r.image, log };
  } finally {
    baseNoise.dispose();
    references?.tokens.dispose();
  }
}

/** The references' tokens for a run (encoded once), or undefined without references. */
function encodeReferences(pipe: Flux2Pipeline, refs: readonly LoadedReference[] | undefined): Promise<ReferenceTokens | undefined> {
  if (!refs?.length) return Promise.resolve(undefined);
  return pipe.encodeReferences(refs.map((r) => r.image), { names: refs.map((r) => r.file) });
}

/**
 * Re-renders candidate `index` of a logged run (same models, and the same reference files when it had any: each
 * one's SHA-256 must equal the log's): the image [1, 3, H, W] it was scored on.
 */
export async function replayGeneration(
  m: GenerationModels,
  log: GenerationLog,
  index: number,
  opts: { onEvent?: Emit; references?: readonly LoadedReference[] } = {},
): Promise<Tensor> {
  const given = log.settings;
  const logged = given.references ?? [];
  const refs = opts.references ?? [];
  if (refs.length !== logged.length) throw new Error(`replay: the log's run had ${logged.length} reference image(s), ${refs.length} given`);
  for (const [i, r] of refs.entries()) {
    if (r.sha256 !== logged[i].sha256) {
      throw new Error(`replay: reference ${i + 1} ${r.file} has SHA-256 ${r.sha256}, the log's ${logged[i].file} had ${logged[i].sha256}`);
    }
  }
  const s = resolveSettings(m.pipe, { ...given, negativePrompt: given.negativePrompt ?? undefined, references: refs });
  for (const k of ["searchSeed", "nfePerEval"] as const) {
    if (given[k] !== s[k]) throw new Error(`replay: the log's ${k} ${given[k]} differs from this build's ${s[k]} (log from another version or model?)`);
  }
  const scores = [...log.candidates].sort((a, b) => a.index - b.index).map((c) => c.score);
  const references = await encodeReferences(m.pipe, refs);
  const { renderer, denoiser } = wire(m, s, references, opts.onEvent ?? (() => {}), () => 0);
  const baseNoise = m.pipe.generateNoise({ width: s.width, height: s.height, seed: s.seed });
  try {
    return await replayCandidate({ search: s.search, baseNoise, renderer, denoiser, budget: s.budget, seed: s.searchSeed, batch: s.batch, scores, target: index });
  } finally {
    baseNoise.dispose();
    references?.tokens.dispose();
  }
}

/** The pixels a [1, 3, H, W] image in [0, 1] is scored on (TRUNC_UINT8), as interleaved RGB. */
export async function imageRgb8(image: Tensor): Promise<Image8> {
  if (image.shape.length !== 4 || image.shape[0] !== 1 || image.shape[1] !== 3) throw new Error(`imageRgb8: want [1, 3, H, W], got [${image.shape}]`);
  const [, , H, W] = image.shape;
  const v = await image.toArray();
  const { offset, scale } = TRUNC_UINT8;
  const data = new Uint8Array(H * W * 3);
  for (let c = 0; c < 3; c++) {
    for (let p = 0; p < H * W; p++) {
      const q = Math.fround(Math.fround(v[c * H * W + p] + offset) * scale);
      data[p * 3 + c] = Math.trunc(Math.min(255, Math.max(0, q)));
    }
  }
  return { width: W, height: H, channels: 3, data };
}
