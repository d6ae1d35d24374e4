// Synthetic noise-search problems that behave like the real objective (PickScore of a 4-step render): smooth,
// sensitive mostly to the noise's low frequencies (the "spectral bias" SES builds on), plus a noisy variant, and a
// denoiser for pathSearch. tests/search checks the algorithms on them and bench/search.ts measures them, so the
// tests check what the bench measures; no model is needed.
// - Objective: f(z) = cos(L(z), T_L) + 0.1·cos(D1(z), T_D), L = the level-4 Haar approximation band, D1 = the level-1
//   diagonal band, T fixed random targets; computed on the CPU in f64 from the read-back noise (one readback per
//   objective call), so it is a function of each noise alone. Scale-invariant, so clean latents of the Gaussian
//   flow below score like their noises. The noisy variant adds 0.05·h(z), h a N(0, 1) value hashed from z's bits:
//   verifier noise that is still a deterministic function of the noise (re-scoring the best noise agrees).
// - Denoiser for pathSearch: Euler on the exact flow of Gaussian data with an image-like spectrum (independent Haar
//   coefficients, std falling with frequency); counts its NFE (steps × states). Its final sample is the noise
//   scaled per band, so the (per-band scale-invariant) objective scores clean latents like their noises.
import { numel, randnRef, type Shape, type Tensor } from "../core/index.ts";
import { scale } from "../kernels/elementwise.ts";
import { haarDwt2d, type HaarCoeffs, haarIdwt2d } from "../kernels/haar.ts";
import { haarDwt2dRef } from "../kernels/haar.ref.ts";
import { concat } from "../kernels/layout.ts";
import { type Objective, withNfe } from "./objective.ts";
import type { DenoiseResult, Denoiser } from "./paths.ts";
import { rowCosines } from "./verifiers.ts";

/** A N(0, 1) value from the bits of z (FNV-1a, then Box-Muller on two derived uniforms). */
function hashNormal(z: Float32Array): number {
  const bits = new Uint32Array(z.buffer, z.byteOffset, z.length);
  let h1 = 0x811c9dc5, h2 = 0x01000193;
  for (const w of bits) {
    h1 = Math.imul(h1 ^ w, 0x01000193) >>> 0;
    h2 = Math.imul(h2 ^ w ^ (h1 >>> 7), 0x85ebca6b) >>> 0;
  }
  const u1 = (h1 + 1) / 2 ** 32, u2 = h2 / 2 ** 32;
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

export interface SyntheticObjectiveOptions {
  /** Noise shape [1, C, H, W]. */
  shape: Shape;
  /** Seed of the fixed targets (default 2^40 + 7, far from the small seeds searches use: sharing a stream with a
   *  search would hand it the target as a draw). */
  targetSeed?: number;
  /** Weight of the hashed noise term (default 0: smooth). */
  noise?: number;
  /** Haar level of the low band (default 4). */
  level?: number;
}

/** The smooth low-frequency objective (noise > 0: its noisy variant), NFE 4 per evaluation. */
export function lowFrequencyObjective(opts: SyntheticObjectiveOptions): Objective {
  const [B, C, H, W] = opts.shape;
  if (opts.shape.length !== 4 || B !== 1) throw new Error(`lowFrequencyObjective: shape must be [1, C, H, W], got [${opts.shape}]`);
  const level = opts.level ?? 4, eta = opts.noise ?? 0, seed = opts.targetSeed ?? 2 ** 40 + 7;
  const probe = haarDwt2dRef(new Float32Array(numel(opts.shape)), [1, C, H, W], level);
  const tLow = randnRef(probe.low.data.length, seed);
  const tHigh = randnRef(probe.details[0].d.data.length, seed, 1 << 20);
  const f = (z: Float32Array) => {
    const c = haarDwt2dRef(z, [1, C, H, W], level);
    return rowCosines(c.low.data, tLow, 1)[0] + 0.1 * rowCosines(c.details[0].d.data, tHigh, 1)[0] + (eta ? eta * hashNormal(z) : 0);
  };
  const n = numel(opts.shape);
  return withNfe(async (noises: Tensor[]) => {
    for (const z of noises) if (z.shape.join() !== opts.shape.join()) throw new Error(`lowFrequencyObjective: noise [${z.shape}], want [${opts.shape}]`);
    const all = noises.length === 1 ? noises[0] : concat(noises, 0);
    const data = await all.toArray();
    if (all !== noises[0]) all.dispose();
    return noises.map((_, i) => f(data.subarray(i * n, (i + 1) * n)));
  }, 4);
}

const mapCoeffs = (c: HaarCoeffs, f: (t: Tensor, std: number) => Tensor, stds: { low: number; detail: number[] }): HaarCoeffs => ({
  low: f(c.low, stds.low),
  details: c.details.map((d, l) => ({ h: f(d.h, stds.detail[l]), v: f(d.v, stds.detail[l]), d: f(d.d, stds.detail[l]) })),
});

const disposeCoeffs = (c: HaarCoeffs) => {
  c.low.dispose();
  for (const d of c.details) for (const t of [d.h, d.v, d.d]) t.dispose();
};

/**
 * Euler on the exact velocity of Gaussian data whose spectrum falls with frequency like images: independent Haar
 * coefficients with std `lowStd` in the level-L approximation band and 2^(l−3) in the level-l details. Per band,
 * x̂0 = k·x with k = (1−σ)s²/((1−σ)²s² + σ²) (the posterior mean) and v = (x − x̂0)/σ, so at a moderate σ the low
 * frequencies of x̂0 are already settled, as with a real model. A cheap, deterministic stand-in for the pipeline.
 */
export class SpectralFlowDenoiser implements Denoiser {
  readonly nfePerStep = 1;
  /** Steps × states integrated so far. */
  nfe = 0;
  private stds: { low: number; detail: number[] };
  constructor(readonly sigmas: readonly number[], readonly level = 4, lowStd = 4) {
    this.stds = { low: lowStd, detail: Array.from({ length: level }, (_, l) => 2 ** (l - 2)) };
  }

  denoise(xs: Tensor[], from: number, to: number): DenoiseResult {
    const x: Tensor[] = [], x0: Tensor[] = [];
    for (const input of xs) {
      const [, , H, W] = input.shape;
      let cur = haarDwt2d(input, this.level);
      let pred: HaarCoeffs | null = null;
      for (let i = from; i < to; i++) {
        const sig = this.sigmas[i], next = this.sigmas[i + 1];
        const k = (s: number) => ((1 - sig) * s * s) / ((1 - sig) ** 2 * s * s + sig * sig);
        if (i === to - 1) pred = mapCoeffs(cur, (t, s) => scale(t, k(s)), this.stds);
        const stepped = mapCoeffs(cur, (t, s) => scale(t, 1 + ((next - sig) * (1 - k(s))) / sig), this.stds);
        disposeCoeffs(cur);
        cur = stepped;
      }
      x.push(haarIdwt2d(cur.low, cur.details, H, W));
      x0.push(haarIdwt2d(pred!.low, pred!.details, H, W));
      disposeCoeffs(cur);
      disposeCoeffs(pred!);
    }
    this.nfe += (to - from) * xs.length;
    return { x, x0 };
  }
}

/** A 4-step schedule like FLUX.2-klein's. */
export const SYNTHETIC_SIGMAS = [1, 0.75, 0.5, 0.25, 0];
