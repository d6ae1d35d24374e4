// Zero-order search (ZO-n, arXiv 2501.09732) with the neighbour construction of sayakpaul/tt-scale-flux
// (`generate_neighbors`, credited to the paper's first author): each neighbour of pivot p lies on the sphere of
// p's norm at cosine similarity t to p,
//   y = ‖p‖·(t·u + √(1−t²)·ŵ),  u = p/‖p‖,  ŵ = unit(ε − (ε·u)·u),  ε ~ N(0, I) fresh,
// which is y = α·p + β·ε with β = √(1−t²)·‖p‖/‖w‖ and α = t − β·(p·ε)/‖p‖²: three dot products per neighbour,
// reduced on the GPU in f32 and combined in f64 (the only readback besides the scores: 1 + 2K numbers a round).
// Rounds: the pivot starts as the base noise. A round scores the pivot if it is fresh, then K neighbours (default
// 4, t = 0.95, i.e. radius arccos t ≈ 0.318 rad); the best neighbour becomes the pivot if it beats the pivot
// strictly, otherwise the round is rejected and the next one starts from a fresh N(0, I) pivot (as tt-scale-flux).
// Cost = K per round + 1 per fresh pivot, cut off at the budget; the best noise is the best of everything scored.
// Draws (fresh pivots, ε) come from the seed's stream in round order, so a run is a prefix of any longer run.
import type { Tensor } from "../core/index.ts";
import { mul } from "../kernels/elementwise.ts";
import { concat } from "../kernels/layout.ts";
import { sumAll } from "../kernels/reduce.ts";
import { axpby } from "../kernels/elementwise.ts";
import { checkInt, checkSearchOptions, Evaluation, NoiseStream, retain, type SearchOptions, type SearchResult } from "./objective.ts";

export interface ZeroOrderOptions extends SearchOptions {
  /** Neighbours per round (default 4). */
  neighbors?: number;
  /** Cosine similarity of every neighbour to its pivot, 0 ≤ t < 1 (default 0.95). */
  threshold?: number;
}

/** Σ a·b on the GPU → [1]. */
function dot(a: Tensor, b: Tensor): Tensor {
  const p = mul(a, b);
  const s = sumAll(p);
  p.dispose();
  return s;
}

/** `count` neighbours of `pivot` at cosine similarity t, from fresh draws of `stream`. */
export async function sphereNeighbors(pivot: Tensor, count: number, t: number, stream: NoiseStream): Promise<Tensor[]> {
  const eps = Array.from({ length: count }, () => stream.randn(pivot.shape));
  const parts = [dot(pivot, pivot), ...eps.flatMap((e) => [dot(pivot, e), dot(e, e)])];
  const all = concat(parts, 0);
  for (const p of parts) p.dispose();
  const sums = await all.toArray();
  all.dispose();
  const pp = sums[0];
  const s = Math.sqrt(1 - t * t);
  const coefs = eps.map((_, k) => {
    const pe = sums[1 + 2 * k], ee = sums[2 + 2 * k];
    const ww = ee - (pe * pe) / pp; // ‖ε − (ε·u)u‖²
    const beta = (s * Math.sqrt(pp)) / Math.sqrt(ww);
    return { alpha: t - (beta * pe) / pp, beta, ok: pp > 0 && ww > 0 };
  });
  if (coefs.some((c) => !c.ok)) {
    for (const e of eps) e.dispose();
    throw new Error(`zeroOrderSearch: degenerate pivot or draw (‖p‖² = ${pp})`);
  }
  return eps.map((e, k) => {
    const y = axpby(coefs[k].alpha, pivot, coefs[k].beta, e);
    e.dispose();
    return y;
  });
}

export async function zeroOrderSearch(opts: ZeroOrderOptions): Promise<SearchResult> {
  const batch = checkSearchOptions("zeroOrderSearch", opts);
  const K = opts.neighbors ?? 4;
  const t = opts.threshold ?? 0.95;
  checkInt("zeroOrderSearch: neighbors", K, 1);
  if (!(t >= 0 && t < 1)) throw new Error(`zeroOrderSearch: threshold must be in [0, 1), got ${t}`);
  const { baseNoise } = opts;
  const ev = new Evaluation("zeroOrderSearch", opts.objective, opts.budget, batch, opts.onEval);
  const stream = new NoiseStream(baseNoise.dev, opts.seed);
  let pivot: Tensor | null = retain(baseNoise);
  let pivotScore: number | null = null; // null: fresh, not scored yet
  try {
    return await ev.run(async () => {
      for (let round = 0; pivot && ev.remaining > 0; round++) {
        const fresh = pivotScore === null ? 1 : 0;
        const count = Math.min(K, ev.remaining - fresh);
        const neighbors = count > 0 ? await sphereNeighbors(pivot, count, t, stream) : [];
        try {
          const scores = await ev.score(fresh ? [pivot, ...neighbors] : neighbors, round);
          if (fresh) pivotScore = scores[0];
          let best = -1;
          for (let k = 0; k < neighbors.length; k++) if (best < 0 || scores[fresh + k] > scores[fresh + best]) best = k;
          pivot.dispose();
          pivot = null;
          if (best >= 0 && scores[fresh + best] > pivotScore!) {
            pivot = retain(neighbors[best]);
            pivotScore = scores[fresh + best];
          } else if (ev.remaining > 0) {
            pivot = stream.randn(baseNoise.shape); // rejected round: restart from a fresh noise
            pivotScore = null;
          }
        } finally {
          for (const n of neighbors) n.dispose();
        }
      }
    });
  } finally {
    pivot?.dispose();
  }
}
