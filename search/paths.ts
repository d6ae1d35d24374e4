// Search over paths (arXiv 2501.09732 §3.2) for a flow-matching sampler on a fixed schedule σ_0 = 1 > … > σ_S = 0:
//   1. N initial noises (the base noise, then N − 1 fresh ones) are denoised from index 0 to `start`;
//   2. a round at index i re-noises every state M times back to index i − backtrack (fresh ε each), denoises the
//      N·M states to min(i − backtrack + advance, S), scores them and keeps the top N (stable: earlier wins ties);
//   3. rounds repeat until σ = 0; the last round scores the final samples, and the best of them is the result.
// What is scored: the denoiser's clean prediction x̂0 from its last step (a free by-product of the Euler step,
// x̂0 = x − σ·v) in intermediate rounds, the final state itself in the last round, so `bestNoise` — here the best
// final sample, the latents at σ = 0, not an initial noise: re-noising makes a path depend on many draws — is
// exactly what earned `bestScore`. The objective therefore scores clean latents (e.g. VAE decode + PickScore).
// Re-noising from σ up to σ' (index i − backtrack), `renoise`:
//   "x0" (default): x_σ' = (1 − σ')·x̂0 + σ'·ε, the flow-matching forward process from the clean prediction;
//   "forward": x_σ' = ((1−σ')/(1−σ))·x_σ + √(σ'² − σ²(1−σ')²/(1−σ)²)·ε, the exact forward kernel from x_σ.
// Budget: evals = rounds·N·M; N defaults to ⌊budget/(rounds·M)⌋. NFE is counted from the denoiser calls:
// (to − from) × states × nfePerStep (1 per step and state; 2 under CFG). Defaults suit a 4-step schedule:
// start = ⌈S/2⌉, backtrack 1, advance 2, M = 4 (two rounds: 2 → 1 → 3, 3 → 2 → 4; M = 4 beat M = 2 on the
// synthetic benchmark, the paper leaves its values open).
// Everything is generated, denoised and scored in candidate order, `batch` states per call, so results do not
// depend on the batch size as long as the denoiser and objective treat states independently.
import type { Tensor } from "../core/index.ts";
import { axpby } from "../kernels/elementwise.ts";
import { checkInt, checkSearchOptions, Evaluation, NoiseStream, retain, type SearchOptions, type SearchResult } from "./objective.ts";

export interface DenoiseResult {
  /** States at sigmas[to], one per input. */
  x: Tensor[];
  /** Clean predictions x − σ·v of each state's last step. */
  x0: Tensor[];
}

/** A sampler that can stop and resume anywhere on its schedule. */
export interface Denoiser {
  /** σ_0 … σ_S: strictly decreasing, σ_0 ≤ 1, σ_S = 0. */
  readonly sigmas: ArrayLike<number>;
  /** Transformer evaluations per state per step (default 1; 2 under CFG). */
  readonly nfePerStep?: number;
  /** Integrates states from sigmas[from] to sigmas[to] (from < to); the inputs stay the caller's. */
  denoise(xs: Tensor[], from: number, to: number): DenoiseResult | Promise<DenoiseResult>;
}

export interface PathSearchOptions extends SearchOptions {
  denoiser: Denoiser;
  /** N, paths kept per round (default ⌊budget / (rounds · branches)⌋). */
  paths?: number;
  /** M, re-noisings per path and round (default 4). */
  branches?: number;
  /** Schedule index the initial noises are denoised to (default ⌈S/2⌉). */
  start?: number;
  /** Δf in schedule indices: how far a round re-noises (default 1). */
  backtrack?: number;
  /** Δb in schedule indices: how far a round denoises from there, > backtrack (default 2). */
  advance?: number;
  renoise?: "x0" | "forward";
}

interface State {
  x: Tensor;
  x0: Tensor;
}

const disposeState = (s: State) => {
  s.x.dispose();
  s.x0.dispose();
};

/** (from, to) schedule indices of every round. */
export function pathRounds(S: number, start: number, backtrack: number, advance: number): [number, number][] {
  const rounds: [number, number][] = [];
  for (let i = start; i < S; ) {
    const from = i - backtrack, to = Math.min(from + advance, S);
    rounds.push([from, to]);
    i = to;
  }
  return rounds;
}

function checkSigmas(s: ArrayLike<number>): void {
  const ok = s.length >= 2 && s[0] <= 1 && s[s.length - 1] === 0 && Array.from(s).every((v, i) => i === 0 || v < s[i - 1]);
  if (!ok) throw new Error(`pathSearch: denoiser.sigmas must decrease strictly from ≤ 1 to 0, got [${Array.from(s)}]`);
}

export async function pathSearch(opts: PathSearchOptions): Promise<SearchResult> {
  const batch = checkSearchOptions("pathSearch", opts);
  const { baseNoise, budget, denoiser } = opts;
  if (!denoiser || typeof denoiser.denoise !== "function") throw new Error("pathSearch: needs a denoiser { sigmas, denoise(xs, from, to) }");
  const sig = denoiser.sigmas;
  checkSigmas(sig);
  const S = sig.length - 1;
  const M = opts.branches ?? 4, back = opts.backtrack ?? 1, adv = opts.advance ?? 2, start = opts.start ?? Math.ceil(S / 2);
  const mode = opts.renoise ?? "x0";
  const nfePerStep = denoiser.nfePerStep ?? 1;
  checkInt("pathSearch: branches", M, 1);
  checkInt("pathSearch: backtrack", back, 1);
  checkInt("pathSearch: advance", adv, back + 1);
  checkInt("pathSearch: denoiser.nfePerStep", nfePerStep, 0);
  if (!Number.isInteger(start) || start < back || start >= S) throw new Error(`pathSearch: start must be an integer in [backtrack, S) = [${back}, ${S}), got ${start}`);
  if (mode !== "x0" && mode !== "forward") throw new Error(`pathSearch: renoise must be "x0" or "forward", got ${mode}`);
  const rounds = pathRounds(S, start, back, adv);
  const N = opts.paths ?? Math.floor(budget / (rounds.length * M));
  checkInt("pathSearch: paths", N, 1);
  if (rounds.length * N * M > budget) {
    throw new Error(`pathSearch: ${rounds.length} rounds × ${N} paths × ${M} branches = ${rounds.length * N * M} evaluations exceed the budget ${budget}`);
  }

  const ev = new Evaluation("pathSearch", opts.objective, budget, batch, opts.onEval);
  const stream = new NoiseStream(baseNoise.dev, opts.seed);
  let nfe = 0;
  /** Denoises `count` states built by make(i), `batch` at a time; the built inputs are disposed. */
  const denoiseEach = async (count: number, from: number, to: number, make: (i: number) => Tensor): Promise<State[]> => {
    const out: State[] = [];
    try {
      for (let i = 0; i < count; i += batch) {
        const xs: Tensor[] = [];
        try {
          for (let j = i; j < Math.min(count, i + batch); j++) xs.push(make(j));
          const r = await denoiser.denoise(xs, from, to);
          if (r?.x?.length !== xs.length || r.x0?.length !== xs.length) {
            for (const t of [...(r?.x ?? []), ...(r?.x0 ?? [])]) t.dispose();
            throw new Error(`pathSearch: denoiser returned ${r?.x?.length} states and ${r?.x0?.length} predictions for ${xs.length} inputs`);
          }
          nfe += (to - from) * xs.length * nfePerStep;
          out.push(...r.x.map((x, k) => ({ x, x0: r.x0[k] })));
        } finally {
          for (const x of xs) x.dispose();
        }
      }
    } catch (e) {
      for (const s of out) disposeState(s);
      throw e;
    }
    return out;
  };
  /** x_σ' from a state at sigmas[i] and fresh noise, σ' = sigmas[j] ≥ sigmas[i]. */
  const renoise = (s: State, i: number, j: number): Tensor => {
    const eps = stream.randn(baseNoise.shape);
    const sp = sig[j], si = sig[i];
    const [src, a] = mode === "x0" ? [s.x0, 1 - sp] : [s.x, (1 - sp) / (1 - si)];
    const b = mode === "x0" ? sp : Math.sqrt(Math.max(0, sp * sp - a * a * si * si));
    const y = axpby(a, src, b, eps);
    eps.dispose();
    return y;
  };

  let states: State[] = [];
  try {
    return await ev.run(async () => {
      states = await denoiseEach(N, 0, start, (i) => (i === 0 ? retain(baseNoise) : stream.randn(baseNoise.shape)));
      let at = start;
      for (const [r, [from, to]] of rounds.entries()) {
        ev.resetBest();
        const last = to === S;
        const cands = await denoiseEach(N * M, from, to, (k) => renoise(states[Math.floor(k / M)], at, from));
        let scores: number[];
        try {
          scores = await ev.score(cands.map((c) => (last ? c.x : c.x0)), r);
        } catch (e) {
          for (const c of cands) disposeState(c);
          throw e;
        }
        const scored = cands.map((s, k) => ({ s, score: scores[k], k }));
        scored.sort((a, b) => b.score - a.score || a.k - b.k);
        for (const c of scored.slice(N)) disposeState(c.s);
        for (const s of states) disposeState(s);
        states = scored.slice(0, N).map((c) => c.s);
        at = to;
      }
      return nfe;
    });
  } finally {
    for (const s of states) disposeState(s);
  }
}
