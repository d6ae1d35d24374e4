// Runs a noise search by name over rendered candidates and records what the CLI and the browser gallery show: every
// candidate's score, its image (handed to a callback while it is alive), the best image, and a log that can replay
// any candidate. The algorithms live in search/ and see only objective(noises) → scores; this file is where
// candidates become images.
// Design:
// - The caller supplies a `CandidateRenderer`: render(xs) turns candidates (noises; clean latents for "paths") into
//   images [n, 3, H, W], score(rendering) scores them. This file turns it into the searches' Objective; the rendering
//   of the last objective call is kept until the search's history entries for its rows have been reported (the
//   Evaluation reports them right after the call returns), so each "candidate" event carries its own image row.
// - Callbacks may return a promise (e.g. a readback of the image); the image stays valid until it settles.
// - Best image: the first strict maximum of all scores (paths: of its last round, whose samples are final; earlier
//   rounds score x̂0 predictions), kept as a row of its own; it is what earned the search's bestScore.
// - Replay: every search is a pure function of (seed, the scores it was fed, the batch size): `replayCandidate`
//   feeds the recorded scores back instead of rendering and scoring, and renders only the objective call that
//   holds the wanted candidate (the same batch of candidates, so the same bytes), then stops. No transformer calls
//   for noise searches; "paths" still runs its denoiser (its candidates are states, not noises).
// Browser-safe: no runtime APIs; knows no model (generation.ts wires the models in).
import type { Tensor } from "../core/index.ts";
import { slice } from "../kernels/layout.ts";
import { searchByName, type SearchName } from "../search/by_name.ts";
import { type HistoryEntry, retain, type SearchResult, withNfe } from "../search/objective.ts";
import type { Denoiser } from "../search/paths.ts";

/** Images of rendered candidates plus whatever else their scorer needs (disposed together). */
export interface Rendering {
  /** [n, 3, H, W] in [0, 1], row i = candidate i of the call. */
  images: Tensor;
  /** Further tensors the scorer reads (e.g. images decoded from an early x̂0); disposed with the rendering. */
  extra?: Tensor[];
}

export interface CandidateRenderer {
  /** Candidates (each [1, C, h, w]) → images; the inputs stay the caller's. */
  render(xs: Tensor[]): Rendering | Promise<Rendering>;
  /** One score per rendered image, higher is better. */
  score(r: Rendering): Promise<number[]>;
  /** Transformer evaluations one rendered candidate costs (noise searches; "paths" counts its denoiser). */
  readonly nfePerEval: number;
}

export interface CandidateEvent {
  kind: "candidate";
  /** Evaluation index, 0-based. */
  index: number;
  score: number;
  /** Best score so far (paths: in this round). */
  best: number;
  /** Generation (SES), round (zero-order, paths); 0 for random and none. */
  generation: number;
  /** The candidate's image [1, 3, H, W] in [0, 1]; valid during the callback (and its promise). */
  image: Tensor;
  /** Noises scored so far (this one included) and the most that will be (paths may score fewer). */
  evals: number;
  budget: number;
  /** Transformer evaluations so far. */
  nfe: number;
  /** Estimated seconds left: mean time per evaluation so far × evaluations left. */
  etaSeconds: number;
}

/** Seconds (e.g. a CandidateEvent's etaSeconds) as "1h02m", "3m05s" or "12s", as the CLI and the page show them. */
export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const t = Math.max(0, Math.round(s));
  if (t >= 3600) return `${Math.floor(t / 3600)}h${String(Math.floor((t % 3600) / 60)).padStart(2, "0")}m`;
  if (t >= 60) return `${Math.floor(t / 60)}m${String(t % 60).padStart(2, "0")}s`;
  return `${t}s`;
}

/** One scored candidate of the log. */
export interface CandidateRecord {
  index: number;
  score: number;
  generation: number;
  /** Best score so far (paths: in this round). */
  best: number;
}

export interface RunSearchOptions {
  search: SearchName;
  /** [1, C, h, w] f32; stays the caller's. */
  baseNoise: Tensor;
  renderer: CandidateRenderer;
  /** Required by "paths". */
  denoiser?: Denoiser;
  /** Noises to score (none: ignored, 1). */
  budget: number;
  /** Seed of the search's own RNG stream. */
  seed: number;
  /** Candidates per render call (default 1); the choice of candidates does not depend on it. */
  batch?: number;
  onCandidate?: (e: CandidateEvent) => void | Promise<void>;
  /** Monotonic clock in seconds (ETA); default performance.now. */
  clock?: () => number;
}

export interface RunSearchResult {
  search: SearchResult;
  /** The best candidate's image [1, 3, H, W] (the caller disposes it). */
  image: Tensor;
  /** Index of the candidate that is the result. */
  bestIndex: number;
  candidates: CandidateRecord[];
  /** Transformer evaluations spent (the search's count). */
  nfe: number;
}

/** Row r of [n, ...] as [1, ...]: a view when n = 1, else a copy. */
const row = (t: Tensor, r: number): Tensor => (t.shape[0] === 1 ? retain(t) : slice(t, 0, r, r + 1));

const disposeRendering = (r: Rendering) => {
  r.images.dispose();
  for (const t of r.extra ?? []) t.dispose();
};

/** Runs the search with the objective `fn`, counting denoiser NFE for "paths". */
function launch(o: RunSearchOptions, fn: (xs: Tensor[]) => Promise<number[]>, onEval: (h: HistoryEntry) => void, countNfe: (n: number) => void): Promise<SearchResult> {
  const d = o.denoiser;
  const counted: Denoiser | undefined = d && {
    sigmas: d.sigmas,
    nfePerStep: d.nfePerStep,
    denoise(xs, from, to) {
      countNfe((to - from) * xs.length * (d.nfePerStep ?? 1));
      return d.denoise(xs, from, to);
    },
  };
  return searchByName(o.search, {
    baseNoise: o.baseNoise,
    objective: withNfe(fn, o.renderer.nfePerEval),
    budget: o.budget,
    seed: o.seed,
    batch: o.batch ?? 1,
    onEval,
    denoiser: counted,
  });
}

/** Runs `search`, reporting every candidate with its image; returns the result, the best image and the log. */
export async function runSearch(o: RunSearchOptions): Promise<RunSearchResult> {
  const clock = o.clock ?? (() => performance.now() / 1000);
  const t0 = clock();
  const budget = o.search === "none" ? 1 : o.budget;
  const candidates: CandidateRecord[] = [];
  const pending: Promise<void>[] = [];
  let last: { r: Rendering; next: number } | null = null;
  let best: { index: number; score: number; generation: number; image: Tensor } | null = null;
  let denoiserNfe = 0;
  const nfeSoFar = () => (o.search === "paths" ? denoiserNfe : candidates.length * o.renderer.nfePerEval);
  const settle = async () => {
    await Promise.all(pending.splice(0));
    if (last) disposeRendering(last.r);
    last = null;
  };

  const objective = async (xs: Tensor[]) => {
    await settle();
    const r = await o.renderer.render(xs);
    try {
      const scores = await o.renderer.score(r);
      last = { r, next: 0 };
      return scores;
    } catch (e) {
      disposeRendering(r);
      throw e;
    }
  };
  const onEval = (h: HistoryEntry) => {
    if (!last) throw new Error("runSearch: a score arrived without its rendering (internal error)");
    const image = row(last.r.images, last.next++);
    candidates.push({ index: h.eval, score: h.score, generation: h.generation, best: h.best });
    // Paths: only the last round's samples are final, so a new round starts the comparison afresh.
    const fresh = o.search === "paths" && best !== null && h.generation !== best.generation;
    if (best === null || fresh || h.score > best.score) {
      best?.image.dispose();
      best = { index: h.eval, score: h.score, generation: h.generation, image: retain(image) };
    }
    const evals = candidates.length;
    let done: void | Promise<void>;
    try {
      done = o.onCandidate?.({
        kind: "candidate",
        index: h.eval,
        score: h.score,
        best: h.best,
        generation: h.generation,
        image,
        evals,
        budget,
        nfe: nfeSoFar(),
        etaSeconds: ((clock() - t0) / evals) * (budget - evals),
      });
    } catch (e) {
      image.dispose();
      throw e;
    }
    const settled = Promise.resolve(done).finally(() => image.dispose());
    settled.catch(() => {}); // surfaced by the next settle(); not an unhandled rejection meanwhile
    pending.push(settled);
  };

  let search: SearchResult;
  try {
    search = await launch(o, objective, onEval, (n) => (denoiserNfe += n));
    await settle();
  } catch (e) {
    await settle().catch(() => {});
    (best as { image: Tensor } | null)?.image.dispose();
    throw e;
  }
  const b = best as { index: number; score: number; image: Tensor } | null;
  if (!b || b.score !== search.bestScore) {
    b?.image.dispose();
    search.bestNoise.dispose();
    throw new Error(`runSearch: tracked best ${b?.score} differs from the search's ${search.bestScore} (internal error)`);
  }
  return { search, image: b.image, bestIndex: b.index, candidates, nfe: search.nfe };
}

/** Signals the end of a replay from inside the objective. */
class ReplayDone {
  constructor(readonly image: Tensor) {}
}

/**
 * Re-runs a recorded search with its recorded `scores` in place of rendering and scoring, and returns the image
 * [1, 3, H, W] of candidate `target` (rendered in the same batch of candidates as originally).
 */
export async function replayCandidate(o: Omit<RunSearchOptions, "onCandidate" | "clock"> & { scores: readonly number[]; target: number }): Promise<Tensor> {
  const budget = o.search === "none" ? 1 : o.budget;
  if (!Number.isInteger(o.target) || o.target < 0 || o.target >= Math.min(budget, o.scores.length)) {
    throw new Error(`replayCandidate: candidate ${o.target} is not in the log (0..${Math.min(budget, o.scores.length) - 1})`);
  }
  let next = 0;
  const objective = async (xs: Tensor[]) => {
    const first = next;
    next += xs.length;
    if (o.target < next) {
      const r = await o.renderer.render(xs);
      const image = row(r.images, o.target - first);
      disposeRendering(r);
      throw new ReplayDone(image);
    }
    return o.scores.slice(first, next);
  };
  try {
    const r = await launch(o, objective, () => {}, () => {});
    r.bestNoise.dispose();
  } catch (e) {
    if (e instanceof ReplayDone) return e.image;
    throw e;
  }
  throw new Error(`replayCandidate: the search ended before candidate ${o.target} (the log does not match this search)`);
}
