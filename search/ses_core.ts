// The cross-entropy method of DiffSynth-Studio's SES (`ses_search`, shared/fixtures/ses_dwt/ALGORITHM.md steps
// 3-8) on the flattened wavelet low band, pure CPU and free of RNG and reward: draws and scores come in from
// outside, so a recorded run can be replayed exactly and a live search can drive the same state.
// Values are float32 where torch keeps float32 tensors (mean, variance, std, candidates); the per-coordinate
// elite mean and variance are summed in f64 and rounded once, within an ulp of torch's float32 reductions.
const f32 = Math.fround;

export interface SesCandidate {
  /** Evaluation index (0-based, in evaluation order). */
  index: number;
  score: number;
  /** The low band, D values. */
  low: Float32Array;
}

export interface SesGeneration {
  /** sqrt(max(variance, 1e-9)) used to sample this generation. */
  std: Float32Array;
  /** The candidates evaluated in this generation (fewer than popsize when the budget ran out). */
  evaluated: SesCandidate[];
  /** Elite mean and unbiased elite variance (before the +1e-7) after this generation; null with < 2 elites. */
  mean: Float32Array;
  variance: Float32Array | null;
}

export interface SesSettings {
  popsize: number;
  kElites: number;
  budget: number;
}

/** generations = budget // popsize + 5, cut short when the budget is spent. */
export const sesMaxGenerations = (s: SesSettings) => Math.floor(s.budget / s.popsize) + 5;

/** CEM state: diagonal Gaussian N(mean, variance) over D coordinates, an elite pool and the best so far. */
export class SesCem {
  mean: Float32Array;
  variance: Float32Array;
  elites: SesCandidate[] = [];
  best: SesCandidate;
  evaluations = 0;

  /** The search starts at N(0, 1), not at the base low band; the base is only the best placeholder (score −∞). */
  constructor(readonly dim: number, readonly settings: SesSettings, baseLow: Float32Array) {
    if (baseLow.length !== dim) throw new Error(`SesCem: base low band has ${baseLow.length} values, want ${dim}`);
    this.mean = new Float32Array(dim);
    this.variance = new Float32Array(dim).fill(1);
    this.best = { index: -1, score: -Infinity, low: baseLow };
  }

  get done(): boolean {
    return this.evaluations >= this.settings.budget;
  }

  /** How many candidates the next generation evaluates. */
  get nextCount(): number {
    return Math.min(this.settings.popsize, this.settings.budget - this.evaluations);
  }

  std(): Float32Array {
    return this.variance.map((v) => f32(Math.sqrt(Math.max(v, f32(1e-9)))));
  }

  /** Candidates mean + z·std for standard-normal draws z [popsize, D] (row-major); only `nextCount` rows. */
  sample(std: Float32Array, z: ArrayLike<number>): Float32Array[] {
    const D = this.dim;
    if (z.length < this.settings.popsize * D) throw new Error(`SesCem.sample: ${z.length} draws, want ${this.settings.popsize}×${D}`);
    return Array.from({ length: this.nextCount }, (_, r) => {
      const c = new Float32Array(D);
      for (let i = 0; i < D; i++) c[i] = f32(this.mean[i] + f32(z[r * D + i] * std[i]));
      return c;
    });
  }

  /** Records the scores of a generation's candidates (in evaluation order) and updates the distribution. */
  update(candidates: Float32Array[], scores: ArrayLike<number>): { evaluated: SesCandidate[]; mean: Float32Array; variance: Float32Array | null } {
    const evaluated = candidates.map((low, r) => ({ index: this.evaluations + r, score: scores[r], low }));
    for (const c of evaluated) if (c.score > this.best.score) this.best = c; // strictly greater replaces
    this.evaluations += evaluated.length;
    // Elitist pool across generations; the sort is stable, so older entries win ties like Python's sorted().
    this.elites = [...this.elites, ...evaluated].sort((a, b) => b.score - a.score).slice(0, this.settings.kElites);
    const n = this.elites.length, D = this.dim;
    const mean = new Float32Array(D);
    const variance = n >= 2 ? new Float32Array(D) : null;
    for (let i = 0; i < D; i++) {
      let s = 0;
      for (const e of this.elites) s += e.low[i];
      const m = s / n;
      mean[i] = f32(m);
      if (variance) {
        let q = 0;
        for (const e of this.elites) q += (e.low[i] - m) ** 2;
        variance[i] = f32(q / (n - 1));
      }
    }
    this.mean = mean;
    if (variance) this.variance = variance.map((v) => f32(v + f32(1e-7)));
    return { evaluated, mean, variance };
  }
}

/**
 * Replays a recorded SES run: `draws` [generations, popsize, D] (each generation's torch.randn) and `scores`
 * [evaluations] (rewards in evaluation order). Returns every generation's statistics and the chosen best.
 */
export function sesReplay(
  settings: SesSettings,
  baseLow: Float32Array,
  draws: Float32Array,
  scores: ArrayLike<number>,
): { generations: SesGeneration[]; best: SesCandidate } {
  const D = baseLow.length, P = settings.popsize;
  const cem = new SesCem(D, settings, baseLow);
  const generations: SesGeneration[] = [];
  for (let g = 0; g < sesMaxGenerations(settings) && !cem.done; g++) {
    if ((g + 1) * P * D > draws.length) throw new Error(`sesReplay: draws cover ${draws.length / (P * D)} generations, generation ${g + 1} needs more`);
    if (cem.evaluations + cem.nextCount > scores.length) throw new Error(`sesReplay: ${scores.length} scores, evaluation ${cem.evaluations + cem.nextCount} needs more`);
    const std = cem.std();
    const candidates = cem.sample(std, draws.subarray(g * P * D, (g + 1) * P * D));
    const { evaluated, mean, variance } = cem.update(candidates, candidates.map((_, r) => scores[cem.evaluations + r]));
    generations.push({ std, evaluated, mean, variance });
  }
  return { generations, best: cem.best };
}
