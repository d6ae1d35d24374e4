// What every noise search shares: the objective contract, the options and result types, and `Evaluation`, which
// owns budget accounting, batching, history and the best candidate so the algorithms only decide what to score.
// - An objective scores a list of noises (GPU tensors it must not dispose) and returns one number per noise,
//   higher is better. It must be a function of each noise alone, so results cannot depend on `batch`: the search
//   hands it at most `batch` noises per call, always in candidate order.
// - NFE: a pipeline objective states its cost per scored noise as the `nfePerEval` property (steps × 2 under
//   CFG); without one the spec's 4-step FLUX.2-klein pipeline at cfg 1 is assumed (4). Noise-level searches
//   report nfe = evals × nfePerEval; pathSearch counts its denoiser calls instead.
// - Tensors: `retain` takes a second handle on a tensor's storage (a same-shape view; storage is refcounted),
//   so the best noise stays alive after its candidate list is disposed and the caller always owns `bestNoise`
//   as a handle of its own, even when it is the base noise.
// - Randomness: `NoiseStream` hands out consecutive ranges of one counter-based RNG stream (seed, offset), GPU or
//   CPU twin, so a search is a pure function of its seed and the order of its draws.
import { type Device, numel, randnRef, type Shape, Tensor } from "../core/index.ts";

/** Scores noises; higher is better. May carry its cost in transformer evaluations per noise. */
export interface Objective {
  (noises: Tensor[]): Promise<number[]>;
  /** Transformer evaluations (NFE) one scored noise costs: steps, × 2 under CFG. Default 4. */
  nfePerEval?: number;
}

export const DEFAULT_NFE_PER_EVAL = 4;

/** An objective with its NFE per evaluation attached. */
export function withNfe(fn: (noises: Tensor[]) => Promise<number[]>, nfePerEval: number): Objective {
  checkInt("withNfe: nfePerEval", nfePerEval, 0);
  return Object.assign((noises: Tensor[]) => fn(noises), { nfePerEval });
}

export interface SearchOptions {
  /** The starting noise [1, C, H, W] (f32). Never disposed by the search. */
  baseNoise: Tensor;
  objective: Objective;
  /** Most noises the objective scores in all (≥ 1). */
  budget: number;
  /** Seed of the search's RNG stream (an integer 0 ≤ seed < 2^53). */
  seed: number;
  /** Most noises per objective call (default 1); the result does not depend on it. */
  batch?: number;
  /** Called after every scored noise, in order. */
  onEval?: (entry: HistoryEntry) => void;
}

export interface HistoryEntry {
  /** 0-based index of this evaluation (history[i].eval === i). */
  eval: number;
  score: number;
  /** Best score so far (pathSearch: so far in this round, whose candidates share one noise level). */
  best: number;
  /** Generation / round the evaluation belongs to (0-based). */
  generation: number;
}

export interface SearchResult {
  /** The best candidate, a tensor the caller owns (dispose it). pathSearch: the best final sample at σ = 0. */
  bestNoise: Tensor;
  /** The objective's value at bestNoise. */
  bestScore: number;
  history: HistoryEntry[];
  /** Noises the objective scored (≤ budget). */
  evals: number;
  /** Transformer evaluations × batch rows spent. */
  nfe: number;
}

/** A second handle on t's storage: disposing either leaves the other valid. */
export const retain = (t: Tensor): Tensor => t.reshape(t.shape);

export function checkInt(what: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new Error(`${what} must be an integer >= ${min}, got ${v}`);
}

/** Checks the options every search shares; returns the batch size. */
export function checkSearchOptions(name: string, o: SearchOptions): number {
  if (!(o.baseNoise instanceof Tensor) || o.baseNoise.disposed) throw new Error(`${name}: baseNoise must be a live Tensor`);
  if (o.baseNoise.dtype !== "f32") throw new Error(`${name}: baseNoise must be f32, got ${o.baseNoise.dtype}`);
  if (typeof o.objective !== "function") throw new Error(`${name}: objective must be a function (noises) => Promise<number[]>`);
  checkInt(`${name}: budget`, o.budget, 1);
  if (!Number.isSafeInteger(o.seed) || o.seed < 0) throw new Error(`${name}: seed must be an integer 0 ≤ seed < 2^53, got ${o.seed}`);
  const batch = o.batch ?? 1;
  checkInt(`${name}: batch`, batch, 1);
  const nfe = o.objective.nfePerEval ?? DEFAULT_NFE_PER_EVAL;
  checkInt(`${name}: objective.nfePerEval`, nfe, 0);
  return batch;
}

/** Consecutive draws of the counter-based normal stream `seed`: each draw starts where the previous ended. */
export class NoiseStream {
  /** Next Philox counter (4 normals per counter). */
  private offset = 0;
  constructor(readonly dev: Device, readonly seed: number) {}

  /** N(0, 1) noise on the GPU. */
  randn(shape: Shape): Tensor {
    const t = Tensor.randn(this.dev, shape, { seed: this.seed, offset: this.offset });
    this.offset += Math.ceil(numel(shape) / 4);
    return t;
  }

  /** n N(0, 1) values on the CPU (the GPU generator's bit-exact twin). */
  randnCpu(n: number): Float32Array {
    const z = randnRef(n, this.seed, this.offset);
    this.offset += Math.ceil(n / 4);
    return z;
  }
}

/**
 * Budget, batching, history and the best candidate of one search. `score` evaluates candidates in order, at
 * most `batch` per objective call, and keeps a handle on the best one (the first of equal maxima).
 */
export class Evaluation {
  readonly history: HistoryEntry[] = [];
  private bestTensor: Tensor | null = null;
  private bestScore = -Infinity;

  constructor(
    readonly name: string,
    readonly objective: Objective,
    readonly budget: number,
    readonly batch: number,
    private readonly onEval?: (entry: HistoryEntry) => void,
  ) {}

  get evals(): number {
    return this.history.length;
  }

  get remaining(): number {
    return this.budget - this.evals;
  }

  /** Scores `noises` (in order) as part of `generation`; the caller keeps ownership of the tensors. */
  async score(noises: readonly Tensor[], generation: number): Promise<number[]> {
    if (noises.length > this.remaining) {
      throw new Error(`${this.name}: ${noises.length} candidates exceed the remaining budget ${this.remaining} (internal error)`);
    }
    const out: number[] = [];
    for (let i = 0; i < noises.length; i += this.batch) {
      const chunk = noises.slice(i, i + this.batch);
      const scores = await this.objective(chunk);
      if (!Array.isArray(scores) || scores.length !== chunk.length) {
        throw new Error(`${this.name}: objective returned ${Array.isArray(scores) ? scores.length : typeof scores} scores for ${chunk.length} noises`);
      }
      for (const [j, s] of scores.entries()) {
        if (typeof s !== "number" || Number.isNaN(s)) throw new Error(`${this.name}: objective returned ${s} for evaluation ${this.evals}`);
        if (this.bestTensor === null || s > this.bestScore) {
          this.bestTensor?.dispose();
          this.bestTensor = retain(chunk[j]);
          this.bestScore = s;
        }
        const entry = { eval: this.evals, score: s, best: this.bestScore, generation };
        this.history.push(entry);
        this.onEval?.(entry);
        out.push(s);
      }
    }
    return out;
  }

  /**
   * Scores `count` candidates that `make(i)` builds on demand, at most `batch` alive at a time, and disposes each
   * chunk after scoring it.
   */
  async scoreEach(count: number, generation: number, make: (i: number) => Tensor): Promise<number[]> {
    const scores: number[] = [];
    for (let i = 0; i < count; i += this.batch) {
      const chunk: Tensor[] = [];
      try {
        for (let j = i; j < Math.min(count, i + this.batch); j++) chunk.push(make(j));
        scores.push(...(await this.score(chunk, generation)));
      } finally {
        for (const t of chunk) t.dispose();
      }
    }
    return scores;
  }

  /** Forgets the best so far (pathSearch: a new round's candidates are not comparable with the last round's). */
  resetBest(): void {
    this.bestTensor?.dispose();
    this.bestTensor = null;
    this.bestScore = -Infinity;
  }

  /**
   * Runs a search body and returns the result, handing the best tensor over to the caller. The body may return
   * its NFE; by default nfe = evals × the objective's nfePerEval. On failure the best handle is released.
   */
  async run(body: () => Promise<number | void>): Promise<SearchResult> {
    let nfe: number | void;
    try {
      nfe = await body();
    } catch (e) {
      this.resetBest();
      throw e;
    }
    if (!this.bestTensor) throw new Error(`${this.name}: nothing was evaluated`);
    const bestNoise = this.bestTensor;
    this.bestTensor = null;
    return {
      bestNoise,
      bestScore: this.bestScore,
      history: this.history,
      evals: this.evals,
      nfe: nfe ?? this.evals * (this.objective.nfePerEval ?? DEFAULT_NFE_PER_EVAL),
    };
  }
}
