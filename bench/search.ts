// Noise-search benchmark on synthetic problems that behave like the real objective (PickScore of a 4-step render):
// smooth, sensitive mostly to the noise's low frequencies (the "spectral bias" SES builds on), plus a noisy variant.
// `bun run bench:search [--seeds N] [--out dir]` runs every algorithm over many seeds and budgets, prints mean ± std
// of the best score per budget, and writes search.json and search.svg (score vs budget per algorithm, ±1 std bars)
// into bench/ (or the folder).
// - Objective: f(z) = cos(L(z), T_L) + 0.1·cos(D1(z), T_D), L = the level-4 Haar approximation band, D1 = the level-1
//   diagonal band, T fixed random targets; computed on the CPU in f64 from the read-back noise (one readback per
//   objective call), so it is a function of each noise alone. Scale-invariant, so clean latents of the Gaussian
//   flow below score like their noises. The noisy variant adds 0.05·h(z), h a N(0, 1) value hashed from z's bits:
//   verifier noise that is still a deterministic function of the noise (re-scoring the best noise agrees).
// - Denoiser for pathSearch: Euler on the exact flow of Gaussian data with an image-like spectrum (independent Haar
//   coefficients, std falling with frequency); counts its NFE (steps × states). Its final sample is the noise
//   scaled per band, so the (per-band scale-invariant) objective scores clean latents like their noises.
// - Budgets: random, SES and zero-order runs are prefixes of longer runs (same draws in the same order, tested in
//   tests/search), so one run at the largest budget gives the budget-b result as history[b − 1].best; pathSearch
//   sizes its population from the budget and runs once per budget.
// The tests import the objective and the denoiser from here, so they check what the bench measures.
import { Device, numel, randnRef, type Shape, Tensor } from "../core/index.ts";
import { scale } from "../kernels/elementwise.ts";
import { haarDwt2d, type HaarCoeffs, haarIdwt2d } from "../kernels/haar.ts";
import { haarDwt2dRef } from "../kernels/haar.ref.ts";
import { concat } from "../kernels/layout.ts";
import { type DenoiseResult, type Denoiser, type Objective, pathSearch, randomSearch, type SearchResult, sesSearch, withNfe, zeroOrderSearch } from "../search/index.ts";

function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
}

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
    return cosine(c.low.data, tLow) + 0.1 * cosine(c.details[0].d.data, tHigh) + (eta ? eta * hashNormal(z) : 0);
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
export const BENCH_SIGMAS = [1, 0.75, 0.5, 0.25, 0];

type Algo = "random" | "ses" | "zeroOrder" | "paths";
const ALGOS: Algo[] = ["random", "ses", "zeroOrder", "paths"];
const COLORS: Record<Algo, string> = { random: "#888888", ses: "#d62728", zeroOrder: "#1f77b4", paths: "#2ca02c" };

interface Cell {
  mean: number;
  std: number;
  nfe: number;
  scores: number[];
}

const meanStd = (xs: number[]) => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  const v = xs.length > 1 ? xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1) : 0;
  return { mean: m, std: Math.sqrt(v) };
};

async function benchObjective(dev: Device, shape: Shape, noise: number, budgets: number[], seeds: number): Promise<Record<Algo, Record<number, Cell>>> {
  const objective = lowFrequencyObjective({ shape, noise });
  const maxB = Math.max(...budgets);
  const raw: Record<Algo, Record<number, { scores: number[]; nfe: number }>> = { random: {}, ses: {}, zeroOrder: {}, paths: {} };
  for (const a of ALGOS) for (const b of budgets) raw[a][b] = { scores: [], nfe: 0 };
  for (let s = 0; s < seeds; s++) {
    const baseNoise = Tensor.randn(dev, shape, { seed: 1000 + s });
    const common = { baseNoise, objective, seed: s, batch: 10 };
    const prefixRuns: [Algo, SearchResult][] = [
      ["random", await randomSearch({ ...common, budget: maxB })],
      ["ses", await sesSearch({ ...common, budget: maxB })],
      ["zeroOrder", await zeroOrderSearch({ ...common, budget: maxB })],
    ];
    for (const [a, r] of prefixRuns) {
      for (const b of budgets) {
        raw[a][b].scores.push(r.history[b - 1].best);
        raw[a][b].nfe = b * (objective.nfePerEval ?? 4);
      }
      r.bestNoise.dispose();
    }
    for (const b of budgets) {
      const denoiser = new SpectralFlowDenoiser(BENCH_SIGMAS);
      const r = await pathSearch({ ...common, budget: b, denoiser });
      raw.paths[b].scores.push(r.bestScore);
      raw.paths[b].nfe = r.nfe;
      r.bestNoise.dispose();
    }
    baseNoise.dispose();
  }
  const out = {} as Record<Algo, Record<number, Cell>>;
  for (const a of ALGOS) {
    out[a] = {};
    for (const b of budgets) out[a][b] = { ...meanStd(raw[a][b].scores), nfe: raw[a][b].nfe, scores: raw[a][b].scores };
  }
  return out;
}

function table(title: string, res: Record<Algo, Record<number, Cell>>, budgets: number[]): string {
  const head = ["budget", ...ALGOS.map((a) => a.padStart(17))].join(" ");
  const rows = budgets.map((b) => [String(b).padStart(6), ...ALGOS.map((a) => `${res[a][b].mean.toFixed(3)} ± ${res[a][b].std.toFixed(3)}`.padStart(17))].join(" "));
  const nfe = ["   nfe", ...ALGOS.map((a) => budgets.map((b) => res[a][b].nfe).join("/").padStart(17))].join(" ");
  return [`${title}: best score, mean ± std over seeds`, head, ...rows, nfe].join("\n");
}

/** A hand-written SVG: one panel per objective, score vs budget (log x) per algorithm with ±1 std bars. */
function svg(panels: { title: string; res: Record<Algo, Record<number, Cell>> }[], budgets: number[], seeds: number): string {
  const PW = 420, PH = 300, M = { l: 55, r: 15, t: 30, b: 45 };
  const W = panels.length * PW, H = PH + 40;
  const lo = Math.log(budgets[0]), hi = Math.log(budgets[budgets.length - 1]);
  const parts: string[] = [];
  for (const [p, { title, res }] of panels.entries()) {
    const vals = ALGOS.flatMap((a) => budgets.flatMap((b) => [res[a][b].mean - res[a][b].std, res[a][b].mean + res[a][b].std]));
    const span = Math.max(...vals) - Math.min(...vals);
    const step = [0.02, 0.05, 0.1, 0.2, 0.5, 1].find((s) => span / s <= 8) ?? 1;
    const ymin = Math.floor(Math.min(...vals) / step) * step, ymax = Math.ceil(Math.max(...vals) / step) * step;
    const x0 = p * PW + M.l, x1 = (p + 1) * PW - M.r, y0 = PH - M.b, y1 = M.t;
    const X = (b: number) => x0 + 12 + ((Math.log(b) - lo) / (hi - lo || 1)) * (x1 - x0 - 24);
    const Y = (v: number) => y0 - ((v - ymin) / (ymax - ymin || 1)) * (y0 - y1);
    parts.push(`<text x="${(x0 + x1) / 2}" y="18" text-anchor="middle" font-size="14">${title}</text>`);
    parts.push(`<rect x="${x0}" y="${y1}" width="${x1 - x0}" height="${y0 - y1}" fill="none" stroke="#000"/>`);
    for (const b of budgets) {
      parts.push(`<line x1="${X(b)}" y1="${y0}" x2="${X(b)}" y2="${y0 + 4}" stroke="#000"/>`);
      parts.push(`<text x="${X(b)}" y="${y0 + 17}" text-anchor="middle" font-size="11">${b}</text>`);
    }
    for (let k = 0; k <= Math.round((ymax - ymin) / step); k++) {
      const v = ymin + k * step;
      parts.push(`<line x1="${x0 - 4}" y1="${Y(v)}" x2="${x1}" y2="${Y(v)}" stroke="#ddd"/>`);
      parts.push(`<text x="${x0 - 7}" y="${Y(v) + 4}" text-anchor="end" font-size="11">${v.toFixed(2)}</text>`);
    }
    parts.push(`<text x="${(x0 + x1) / 2}" y="${y0 + 35}" text-anchor="middle" font-size="12">budget (objective evaluations, log scale)</text>`);
    parts.push(`<text x="${x0 - 42}" y="${(y0 + y1) / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 ${x0 - 42} ${(y0 + y1) / 2})">best score</text>`);
    for (const [i, a] of ALGOS.entries()) {
      const dx = (i - 1.5) * 3; // spread the error bars apart
      const pts = budgets.map((b) => `${(X(b) + dx).toFixed(1)},${Y(res[a][b].mean).toFixed(1)}`).join(" ");
      parts.push(`<polyline points="${pts}" fill="none" stroke="${COLORS[a]}" stroke-width="2"/>`);
      for (const b of budgets) {
        const c = res[a][b], x = X(b) + dx;
        parts.push(`<line x1="${x.toFixed(1)}" y1="${Y(c.mean - c.std).toFixed(1)}" x2="${x.toFixed(1)}" y2="${Y(c.mean + c.std).toFixed(1)}" stroke="${COLORS[a]}"/>`);
        parts.push(`<circle cx="${x.toFixed(1)}" cy="${Y(c.mean).toFixed(1)}" r="2.5" fill="${COLORS[a]}"/>`);
      }
    }
  }
  for (const [i, a] of ALGOS.entries()) {
    const x = 20 + i * 140;
    parts.push(`<line x1="${x}" y1="${H - 12}" x2="${x + 20}" y2="${H - 12}" stroke="${COLORS[a]}" stroke-width="2"/>`);
    parts.push(`<text x="${x + 25}" y="${H - 8}" font-size="12">${a}</text>`);
  }
  parts.push(`<text x="${W - 10}" y="${H - 8}" text-anchor="end" font-size="11" fill="#555">mean over ${seeds} seeds, bars ±1 std</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="#fff"/>\n${parts.join("\n")}\n</svg>\n`;
}

if (import.meta.main) {
  const argv = (globalThis as { process?: { argv: string[] } }).process?.argv ?? [];
  const arg = (name: string, def: number) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? Number(argv[i + 1]) : def;
  };
  const seeds = arg("seeds", 12);
  const shape = [1, 16, 32, 32];
  const budgets = [10, 20, 50, 100, 200];
  const dev = await Device.open();
  const t0 = performance.now();
  console.log(`search bench on ${dev.describe()}: noise [${shape}], ${seeds} seeds, budgets ${budgets.join(", ")}`);
  const panels: { title: string; noise: number; res: Record<Algo, Record<number, Cell>> }[] = [];
  for (const [title, noise] of [["smooth low-frequency objective", 0], ["noisy variant (+0.05·N(0,1))", 0.05]] as const) {
    const res = await benchObjective(dev, shape, noise, budgets, seeds);
    panels.push({ title, noise, res });
    console.log(`\n${table(title, res, budgets)}`);
  }
  const seconds = (performance.now() - t0) / 1000;
  console.log(`\n${seconds.toFixed(1)} s`);
  const { writeFileSync } = await import("node:fs");
  const dir = argv.includes("--out") ? `${argv[argv.indexOf("--out") + 1]}/` : new URL(".", import.meta.url).pathname;
  writeFileSync(`${dir}search.json`, JSON.stringify({ device: dev.describe(), shape, seeds, budgets, seconds, sigmas: BENCH_SIGMAS, panels }, null, 1));
  writeFileSync(`${dir}search.svg`, svg(panels, budgets, seeds));
  console.log(`wrote ${dir}search.json and ${dir}search.svg`);
  dev.destroy();
}
