// Noise search on the synthetic problems of search/synthetic.ts (what bench/search.ts measures): contracts (evals,
// NFE, history, bestScore), determinism and batch independence, prefix runs, GPU memory, the algorithms'
// constructions, and the verifier helpers.
import { describe, expect, test } from "bun:test";
import { type Device, randnRef, Tensor } from "../../core/index.ts";
import { scale } from "../../kernels/elementwise.ts";
import { haarDwt2d, haarIdwt2d } from "../../kernels/haar.ts";
import { haarDwt2dRef } from "../../kernels/haar.ref.ts";
import {
  averageRanks,
  clipScoreVerifier,
  type Denoiser,
  ensembleVerifier,
  NoiseStream,
  type Objective,
  pathRounds,
  pathSearch,
  pickScoreVerifier,
  randomSearch,
  ranks,
  type SearchOptions,
  type SearchResult,
  selfSupervisedScores,
  sesSearch,
  sphereNeighbors,
  type Verifier,
  withNfe,
  zeroOrderSearch,
} from "../../search/index.ts";
import { lowFrequencyObjective, SpectralFlowDenoiser, SYNTHETIC_SIGMAS } from "../../search/synthetic.ts";
import { maxAbsErr, testDevice } from "../util.ts";

const SHAPE = [1, 16, 32, 32];
const N = 16 * 32 * 32;
const smooth = lowFrequencyObjective({ shape: SHAPE });
const noisy = lowFrequencyObjective({ shape: SHAPE, noise: 0.05 });

type Algo = (o: SearchOptions) => Promise<SearchResult>;
const pathAlgo: Algo = (o) => pathSearch({ ...o, denoiser: new SpectralFlowDenoiser(SYNTHETIC_SIGMAS) });
const ALGOS: [string, Algo][] = [
  ["random", randomSearch],
  ["ses", sesSearch],
  ["zeroOrder", zeroOrderSearch],
  ["paths", pathAlgo],
];

/** Wraps an objective to record every call's size and every scored noise's values. */
function recording(inner: Objective): Objective & { sizes: number[]; seen: Float32Array[] } {
  const sizes: number[] = [], seen: Float32Array[] = [];
  const fn = async (noises: Tensor[]) => {
    sizes.push(noises.length);
    for (const z of noises) seen.push(await z.toArray());
    return inner(noises);
  };
  return Object.assign(withNfe(fn, inner.nfePerEval ?? 4), { sizes, seen });
}

const base = (dev: Device, seed = 1000) => Tensor.randn(dev, SHAPE, { seed });

/** The result's contract: evals, history, bestScore = objective(bestNoise). */
async function checkResult(r: SearchResult, objective: Objective, budget: number, label: string): Promise<void> {
  expect(r.evals).toBeLessThanOrEqual(budget);
  expect(r.history.length).toBe(r.evals);
  r.history.forEach((h, i) => expect(h.eval).toBe(i));
  for (let i = 1; i < r.history.length; i++) expect(r.history[i].generation).toBeGreaterThanOrEqual(r.history[i - 1].generation);
  expect(r.history[r.history.length - 1].best).toBe(r.bestScore);
  const [again] = await objective([r.bestNoise]);
  if (again !== r.bestScore) throw new Error(`${label}: objective(bestNoise) = ${again}, bestScore = ${r.bestScore}`);
}

/** history.best is the running maximum of the scores (one population for the noise-level searches). */
function checkRunningBest(r: SearchResult): void {
  let best = -Infinity;
  for (const h of r.history) {
    best = Math.max(best, h.score);
    expect(h.best).toBe(best);
  }
}

describe("search", () => {
  test("Haar round trip of a search noise, and SES candidates keep the base's detail bands", async () => {
    const dev = await testDevice();
    const z = base(dev);
    const c = haarDwt2d(z, 4);
    const back = haarIdwt2d(c.low, c.details, 32, 32);
    const zData = await z.toArray();
    const err = maxAbsErr(await back.toArray(), zData);
    expect(err).toBeLessThanOrEqual(2e-6);
    const ref = haarDwt2dRef(zData, SHAPE, 4);
    const obj = recording(smooth);
    const r = await sesSearch({ baseNoise: z, objective: obj, budget: 12, seed: 3, batch: 5 });
    expect(obj.sizes).toEqual([5, 5, 2]);
    let detailErr = 0, lowDiff = 0;
    for (const seen of obj.seen) {
      const cand = haarDwt2dRef(seen, SHAPE, 4);
      for (let l = 0; l < 4; l++) for (const b of ["h", "v", "d"] as const) detailErr = Math.max(detailErr, maxAbsErr(cand.details[l][b].data, ref.details[l][b].data));
      lowDiff = Math.max(lowDiff, maxAbsErr(cand.low.data, ref.low.data));
    }
    console.log(`haar round trip max err ${err.toExponential(2)}; SES candidates: detail bands within ${detailErr.toExponential(2)} of the base's`);
    expect(detailErr).toBeLessThanOrEqual(1e-5);
    expect(lowDiff).toBeGreaterThan(0.5); // the low band is what moves
    for (const t of [z, back, c.low, ...c.details.flatMap((d) => [d.h, d.v, d.d]), r.bestNoise]) t.dispose();
  }, 60_000);

  test("every algorithm: exact evals and NFE, consistent history, bestScore = objective(bestNoise)", async () => {
    const dev = await testDevice();
    const z = base(dev);
    for (const [name, algo] of ALGOS) {
      for (const budget of [1, 17, 40]) {
        if (name === "paths" && budget < 8) {
          await expect(algo({ baseNoise: z, objective: smooth, budget, seed: 1 })).rejects.toThrow(/budget|paths/);
          continue;
        }
        const obj = recording(withNfe(noisy, 6));
        const r = await algo({ baseNoise: z, objective: obj, budget, seed: 1, batch: 3 });
        const label = `${name} budget ${budget}`;
        await checkResult(r, noisy, budget, label);
        expect(obj.sizes.reduce((a, b) => a + b, 0)).toBe(r.evals);
        for (const s of obj.sizes) expect(s).toBeLessThanOrEqual(3);
        if (name === "paths") {
          // 2 rounds × N paths × 4 branches, N = ⌊budget / 8⌋; NFE: N·2 initial steps + 2 rounds × 4N states × 2 steps.
          const n = Math.floor(budget / 8);
          expect(r.evals).toBe(8 * n);
          expect(r.nfe).toBe(2 * n + 16 * n);
          expect([...new Set(r.history.map((h) => h.generation))]).toEqual([0, 1]);
        } else {
          expect(r.evals).toBe(budget); // noise-level searches spend the whole budget
          expect(r.nfe).toBe(6 * budget);
          checkRunningBest(r);
        }
        if (name === "random") {
          expect(maxAbsErr(obj.seen[0], await z.toArray())).toBe(0); // the base noise comes first
          r.history.forEach((h) => expect(h.generation).toBe(0));
        }
        if (name === "ses") {
          expect(r.history.map((h) => h.generation)).toEqual(Array.from({ length: budget }, (_, i) => Math.floor(i / 10)));
        }
        r.bestNoise.dispose();
      }
    }
    const r = await randomSearch({ baseNoise: z, objective: async (ns) => ns.map(() => 0), budget: 3, seed: 0 });
    expect(r.nfe).toBe(12); // default: 4 NFE per evaluation
    r.bestNoise.dispose();
    z.dispose();
  }, 90_000);

  test("same seed → same result, independent of the batch size; a run is a prefix of a longer run", async () => {
    const dev = await testDevice();
    const z = base(dev, 1001);
    for (const [name, algo] of ALGOS) {
      const a = await algo({ baseNoise: z, objective: noisy, budget: 23, seed: 5, batch: 1 });
      const b = await algo({ baseNoise: z, objective: noisy, budget: 23, seed: 5, batch: 6 });
      const c = await algo({ baseNoise: z, objective: noisy, budget: 23, seed: 6, batch: 6 });
      expect(b.history).toEqual(a.history);
      expect(b.nfe).toBe(a.nfe);
      expect(maxAbsErr(await b.bestNoise.toArray(), await a.bestNoise.toArray())).toBe(0);
      expect(c.history.map((h) => h.score)).not.toEqual(a.history.map((h) => h.score));
      if (name !== "paths") {
        const long = await algo({ baseNoise: z, objective: noisy, budget: 40, seed: 5, batch: 4 });
        expect(long.history.slice(0, 23)).toEqual(a.history);
        long.bestNoise.dispose();
      }
      for (const r of [a, b, c]) r.bestNoise.dispose();
    }
    z.dispose();
  }, 90_000);

  test("SES and zero-order beat random search at equal budget on the low-frequency objective", async () => {
    const dev = await testDevice();
    const seeds = 6, budget = 200;
    const mean: Record<string, number> = { random: 0, ses: 0, zeroOrder: 0 };
    for (let s = 0; s < seeds; s++) {
      const z = base(dev, 2000 + s);
      for (const [name, algo] of ALGOS.slice(0, 3)) {
        const r = await algo({ baseNoise: z, objective: smooth, budget, seed: s, batch: 10 });
        mean[name] += r.bestScore / seeds;
        r.bestNoise.dispose();
      }
      z.dispose();
    }
    console.log(`mean best score over ${seeds} seeds at budget ${budget}: ${Object.entries(mean).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(", ")}`);
    expect(mean.ses).toBeGreaterThan(mean.random + 0.1);
    expect(mean.zeroOrder).toBeGreaterThan(mean.random + 0.04);
  }, 90_000);

  test("zero-order neighbours lie on the pivot's sphere at cosine t; rejected rounds restart from fresh noise", async () => {
    const dev = await testDevice();
    const z = base(dev);
    const p = await z.toArray();
    const ys = await sphereNeighbors(z, 3, 0.9, new NoiseStream(dev, 4));
    const norm = (v: Float32Array) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));
    let worst = 0;
    for (const y of ys) {
      const yd = await y.toArray();
      const cos = yd.reduce((a, x, i) => a + x * p[i], 0) / (norm(yd) * norm(p));
      worst = Math.max(worst, Math.abs(cos - 0.9), Math.abs(norm(yd) / norm(p) - 1));
      y.dispose();
    }
    console.log(`sphere neighbours: |cos − t|, |‖y‖/‖p‖ − 1| ≤ ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(1e-5);
    // Only the base noise scores 1: every round is rejected, so every round after the first scores a fresh pivot.
    const isBase = async (ns: Tensor[]) => Promise.all(ns.map(async (n) => (maxAbsErr(await n.toArray(), p) === 0 ? 1 : 0)));
    const r = await zeroOrderSearch({ baseNoise: z, objective: isBase, budget: 12, seed: 2, batch: 4 });
    expect(r.history.map((h) => h.generation)).toEqual([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2]);
    expect(r.bestScore).toBe(1);
    expect(maxAbsErr(await r.bestNoise.toArray(), p)).toBe(0);
    // Always improving: the pivot is scored once, then 4 neighbours per round.
    let calls = 0;
    const improving = async (ns: Tensor[]) => ns.map(() => calls++);
    const r2 = await zeroOrderSearch({ baseNoise: z, objective: improving, budget: 13, seed: 2 });
    expect(r2.history.map((h) => h.generation)).toEqual([0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
    for (const t of [z, r.bestNoise, r2.bestNoise]) t.dispose();
  }, 60_000);

  test("pathSearch: rounds, re-noising formula, NFE of the denoiser, final samples", async () => {
    const dev = await testDevice();
    expect(pathRounds(4, 2, 1, 2)).toEqual([[1, 3], [2, 4]]);
    expect(pathRounds(10, 3, 2, 3)).toEqual([[1, 4], [2, 5], [3, 6], [4, 7], [5, 8], [6, 9], [7, 10]]);
    const z = base(dev);
    const zData = await z.toArray();
    const sig = [1, 0.8, 0.6, 0.3, 0];
    for (const mode of ["x0", "forward"] as const) {
      // Denoiser: x passes through, x̂0 = x/2; records every call and its inputs.
      const calls: { from: number; to: number; inputs: Float32Array[] }[] = [];
      const denoiser: Denoiser = {
        sigmas: sig,
        nfePerStep: 2,
        async denoise(xs, from, to) {
          calls.push({ from, to, inputs: await Promise.all(xs.map((x) => x.toArray())) });
          return { x: xs.map((x) => scale(x, 1)), x0: xs.map((x) => scale(x, 0.5)) };
        },
      };
      const paths = 2, M = 3, seed = 9;
      const r = await pathSearch({ baseNoise: z, objective: smooth, budget: 13, seed, denoiser, paths, branches: M, batch: 4, renoise: mode });
      await checkResult(r, smooth, 13, `paths ${mode}`);
      expect(r.evals).toBe(12);
      expect(calls.map((c) => [c.from, c.to, c.inputs.length])).toEqual([[0, 2, 2], [1, 3, 4], [1, 3, 2], [2, 4, 4], [2, 4, 2]]);
      expect(r.nfe).toBe(2 * (2 * 2 + 6 * 2 + 6 * 2));
      // Round 1 re-noises the initial states (x = noise, x̂0 = noise/2, at σ = 0.6) back to σ' = 0.8 with draws that
      // follow the N − 1 fresh initial noises in the seed's stream.
      const initial = [zData, randnRef(N, seed, 0)];
      const inputs = [...calls[1].inputs, ...calls[2].inputs];
      let err = 0;
      for (let k = 0; k < paths * M; k++) {
        const eps = randnRef(N, seed, ((paths - 1 + k) * N) / 4);
        const x = initial[Math.floor(k / M)];
        const a = mode === "x0" ? 0.2 * 0.5 : 0.2 / 0.4, b = mode === "x0" ? 0.8 : Math.sqrt(0.64 - a * a * 0.36);
        err = Math.max(err, maxAbsErr(inputs[k], Float32Array.from(x, (v, i) => a * v + b * eps[i])));
      }
      expect(err).toBeLessThan(1e-5);
      r.bestNoise.dispose();
    }
    // With the spectral flow the final samples are scored and the denoiser's own NFE count matches.
    const flow = new SpectralFlowDenoiser(SYNTHETIC_SIGMAS);
    const r = await pathSearch({ baseNoise: z, objective: smooth, budget: 40, seed: 3, denoiser: flow, batch: 7 });
    await checkResult(r, smooth, 40, "paths spectral");
    expect(r.nfe).toBe(flow.nfe);
    expect(r.history.filter((h) => h.generation === 1).every((h) => h.best <= r.bestScore)).toBe(true);
    await expect(pathSearch({ baseNoise: z, objective: smooth, budget: 10, seed: 3, denoiser: flow, paths: 2 })).rejects.toThrow(/exceed the budget 10/);
    r.bestNoise.dispose();
    z.dispose();
  }, 60_000);

  test("no GPU memory is left behind: a second identical run allocates nothing new", async () => {
    const dev = await testDevice();
    const z = base(dev);
    for (const [name, algo] of ALGOS) {
      const run = async () => (await algo({ baseNoise: z, objective: smooth, budget: 24, seed: 1, batch: 5 })).bestNoise.dispose();
      await run();
      await dev.sync();
      const before = dev.allocatedBytes;
      await run();
      await run();
      await dev.sync();
      if (dev.allocatedBytes !== before) throw new Error(`${name}: ${dev.allocatedBytes - before} bytes more after repeated runs`);
    }
    z.dispose();
  }, 60_000);

  test("argument and objective checks", async () => {
    const dev = await testDevice();
    const z = base(dev);
    await expect(randomSearch({ baseNoise: z, objective: smooth, budget: 0, seed: 0 })).rejects.toThrow(/budget must be an integer >= 1/);
    await expect(sesSearch({ baseNoise: z, objective: smooth, budget: 5, seed: -1 })).rejects.toThrow(/seed/);
    await expect(zeroOrderSearch({ baseNoise: z, objective: smooth, budget: 5, seed: 0, threshold: 1 })).rejects.toThrow(/threshold/);
    await expect(randomSearch({ baseNoise: z, objective: smooth, budget: 5, seed: 0, batch: 0 })).rejects.toThrow(/batch/);
    await expect(randomSearch({ baseNoise: z, objective: async () => [1], budget: 3, seed: 0, batch: 2 })).rejects.toThrow(/returned 1 scores for 2 noises/);
    await expect(zeroOrderSearch({ baseNoise: z, objective: async (ns) => ns.map(() => NaN), budget: 3, seed: 0 })).rejects.toThrow(/NaN/);
    const flat = Tensor.randn(dev, [2, 16, 32, 32], { seed: 1 });
    await expect(sesSearch({ baseNoise: flat, objective: smooth, budget: 5, seed: 0 })).rejects.toThrow(/\[1, C, H, W\]/);
    await expect(pathSearch({ baseNoise: z, objective: smooth, budget: 50, seed: 0, denoiser: { sigmas: [1, 0.5, 0.6, 0], denoise: () => ({ x: [], x0: [] }) } })).rejects.toThrow(/sigmas/);
    flat.dispose();
    z.dispose();
  }, 30_000);

  test("verifiers: ranks with ties, the rank ensemble, PickScore/CLIPScore wrappers, the self-supervised score", async () => {
    const dev = await testDevice();
    expect(ranks([0.3, 0.1, 0.3, 0.9])).toEqual([2.5, 1, 2.5, 4]);
    expect(ranks([-Infinity, Infinity, 0])).toEqual([1, 3, 2]);
    // Raw scales differ by 1000×; the ensemble only sees ranks: candidate 2 is first under A and second under B.
    expect(averageRanks([[0.2, 0.25, 0.3], [900, 100, 500]])).toEqual([2, 1.5, 2.5]);
    expect(() => averageRanks([[1, 2], [1]])).toThrow(/different lengths/);
    const images = Tensor.randn(dev, [3, 3, 8, 8], { seed: 2 });
    const fixed = (scores: number[]) => ({ score: async () => scores });
    const a: Verifier = pickScoreVerifier(fixed([0.2, 0.25, 0.3]));
    const b: Verifier = clipScoreVerifier(fixed([0.36, -0.1, 0.2]));
    expect(await b.score(images, "p")).toEqual([2.5 * 0.36, 0, 2.5 * 0.2]);
    expect(await pickScoreVerifier(fixed([0.25, 0.5, 0]), { logitScale: 100 }).score(images, "p")).toEqual([25, 50, 0]);
    const ens = ensembleVerifier([a, b]);
    expect(ens.name).toBe("ensemble(pickscore,clipscore)");
    expect(await ens.score(images, "p")).toEqual([2, 1.5, 2.5]);
    await expect(pickScoreVerifier(fixed([1, 2])).score(images, "p")).rejects.toThrow(/2 scores for 3 images/);
    // Features = the flattened image: identical images score 1, negated −1, and the rest in between.
    const features = (x: Tensor) => {
      const c = scale(x, 1);
      const f = c.reshape([x.shape[0], -1]);
      c.dispose();
      return f;
    };
    const neg = scale(images, -1);
    expect((await selfSupervisedScores(features, images, images)).map((v) => Math.round(v * 1e6) / 1e6)).toEqual([1, 1, 1]);
    expect((await selfSupervisedScores(features, images, neg)).map((v) => Math.round(v * 1e6) / 1e6)).toEqual([-1, -1, -1]);
    const other = Tensor.randn(dev, [3, 3, 8, 8], { seed: 3 });
    for (const s of await selfSupervisedScores(features, images, other)) expect(Math.abs(s)).toBeLessThan(0.5);
    for (const t of [images, neg, other]) t.dispose();
  }, 30_000);
});
