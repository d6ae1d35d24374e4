// Runner of the `ses_dwt` reference case (shared/fixtures/ses_dwt): DiffSynth-Studio's split_dwt/reconstruct_dwt
// and a recorded ses_search run. Every size comes from the case itself: the DWT groups are the inputs named
// `dwt_<tag>_input`, their levels the highest `dwt_<tag>_high_level<l>_*` output, the search settings the
// case.json `search` block, and the search's base latents the DWT input of the search's shape.
// - DWT: Haar split of batch item 0 on the GPU, every band, the identity reconstruction and the reconstruction
//   with the replacement low band `dwt_<tag>_new_c_low`.
// - Search: torch's RNG cannot be reproduced, so the CEM replays the recorded draws (debug search_z_noise) and
//   rewards (search_scores), as the case's notes prescribe; the final latents are our GPU reconstruction of the
//   chosen low band. search_scores is then checked independently: each candidate is reconstructed on the GPU and
//   scored with the deterministic reward that case.json's `search.reward` states.
import { concatArrays, type Device, Tensor } from "../core/index.ts";
import { CaseError, type LoadedCase, registerCase } from "../core/verify.ts";
import { haarDwt2d, type HaarCoeffs, haarIdwt2d } from "../kernels/haar.ts";
import { sesReplay } from "./ses_core.ts";

interface SearchBlock {
  shape: number[];
  best_eval_index?: number;
  total_eval_budget: number;
  popsize: number;
  k_elites: number;
  dwt_level: number;
  reward?: string;
}

interface Split {
  coeffs: HaarCoeffs;
  C: number;
  H: number;
  W: number;
}

/** split_dwt: the Haar decomposition of batch item 0 of an input [B, C, H, W]. */
async function split(c: LoadedCase, dev: Device, name: string, levels: number): Promise<Split> {
  const shape = c.shape(name);
  if (shape.length !== 4) throw new CaseError(`${c.dir}: "${name}" must be [B, C, H, W], got [${shape}]`);
  const [, C, H, W] = shape;
  const x = (await c.tensor(name)).subarray(0, C * H * W);
  return { coeffs: haarDwt2d(Tensor.fromArray(dev, x, [1, C, H, W]), levels), C, H, W };
}

/** A band of `like`'s shape from a case tensor of the same size. */
async function lowBand(c: LoadedCase, dev: Device, name: string, like: Tensor): Promise<Tensor> {
  const data = await c.tensor(name);
  if (data.length !== like.size) throw new CaseError(`${c.dir}: "${name}" has ${data.length} values, the low band [${like.shape}] ${like.size}`);
  return Tensor.fromArray(dev, data, like.shape);
}

const expectedNames = (c: LoadedCase) => [...Object.keys(c.json.outputs), ...Object.keys(c.json.debug ?? {})];

async function dwtOutputs(c: LoadedCase, dev: Device, tag: string, out: Map<string, Float32Array>): Promise<void> {
  const p = `dwt_${tag}_`;
  const levels = Math.max(0, ...expectedNames(c).map((n) => {
    const m = n.match(/^dwt_(.+)_high_level(\d+)_[HVD]$/);
    return m && m[1] === tag ? Number(m[2]) : 0;
  }));
  if (!levels) throw new CaseError(`${c.dir}: no ${p}high_level<l>_{H,V,D} outputs to tell the number of levels`);
  const { coeffs, H, W } = await split(c, dev, `${p}input`, levels);
  out.set(`${p}c_low`, await coeffs.low.toArray());
  for (const [l, det] of coeffs.details.entries()) {
    for (const [band, t] of [["H", det.h], ["V", det.v], ["D", det.d]] as const) out.set(`${p}high_level${l + 1}_${band}`, await t.toArray());
  }
  out.set(`${p}reconstruct_identity`, await haarIdwt2d(coeffs.low, coeffs.details, H, W).toArray());
  if (c.has(`${p}new_c_low`)) {
    const low = await lowBand(c, dev, `${p}new_c_low`, coeffs.low);
    out.set(`${p}reconstruct_new_low`, await haarIdwt2d(low, coeffs.details, H, W).toArray());
  }
}

/**
 * The reward `mean(z[0] * P)` with P[c,h,w] = sin(linear form in c, h, w) evaluated in f64 and cast to f32, parsed
 * from its description; null when the description has another form.
 */
export function parseReward(desc: string, C: number, H: number, W: number): ((z: Float32Array) => number) | null {
  const m = desc.match(/^mean\(z\[0\] \* P\) with P\[c,\s*h,\s*w\] = sin\(([^)]*)\) computed in float64 then cast to float32/);
  if (!m) return null;
  const terms = [...m[1].matchAll(/([+-]?)\s*(\d+(?:\.\d*)?(?:e[+-]?\d+)?)\s*\*?\s*([chw])/g)];
  if (!terms.length || terms.map((t) => t[0]).join("").replace(/\s/g, "") !== m[1].replace(/\s/g, "")) return null;
  const P = new Float32Array(C * H * W);
  for (let ch = 0; ch < C; ch++)
    for (let h = 0; h < H; h++)
      for (let w = 0; w < W; w++) {
        let arg = 0; // left to right, as the expression is written
        for (const [, sign, coef, v] of terms) arg += (sign === "-" ? -1 : 1) * Number(coef) * (v === "c" ? ch : v === "h" ? h : w);
        P[(ch * H + h) * W + w] = Math.sin(arg);
      }
  return (z) => {
    let s = 0;
    for (let i = 0; i < P.length; i++) s += Math.fround(z[i] * P[i]);
    return s / P.length;
  };
}

async function searchOutputs(c: LoadedCase, dev: Device, out: Map<string, Float32Array>): Promise<void> {
  const s = c.json.search as SearchBlock | undefined;
  if (!s || !Array.isArray(s.shape) || [s.total_eval_budget, s.popsize, s.k_elites, s.dwt_level].some((v) => !Number.isInteger(v) || v < 1)) {
    throw new CaseError(`${c.dir}: case.json "search" needs a shape and integer total_eval_budget, popsize, k_elites, dwt_level >= 1`);
  }
  const base = Object.keys(c.json.inputs).find((n) => /^dwt_.+_input$/.test(n) && c.shape(n).join() === s.shape.join());
  if (!base) throw new CaseError(`${c.dir}: no dwt_<tag>_input of the search shape [${s.shape}] to serve as base latents`);
  const { coeffs, C, H, W } = await split(c, dev, base, s.dwt_level);
  const D = coeffs.low.size;
  const zShape = c.shape("search_z_noise");
  if (zShape.length !== 3 || zShape[1] !== s.popsize || zShape[2] !== D) {
    throw new CaseError(`${c.dir}: search_z_noise [${zShape}] does not match popsize ${s.popsize} and D ${D}`);
  }
  const { generations, best } = sesReplay(
    { popsize: s.popsize, kElites: s.k_elites, budget: s.total_eval_budget },
    await coeffs.low.toArray(),
    await c.tensor("search_z_noise"),
    await c.tensor("search_scores"),
  );
  const recordedBest = s.best_eval_index;
  c.notes.push(
    `search: ${generations.length} generations replayed from the recorded draws and rewards; best = evaluation ${best.index}` +
      (recordedBest !== undefined && recordedBest !== best.index ? ` (case.json says ${recordedBest})` : ""),
  );
  const reconstruct = (low: Float32Array) => haarIdwt2d(Tensor.fromArray(dev, low, coeffs.low.shape), coeffs.details, H, W);
  out.set("search_final_latents", await reconstruct(best.low).toArray());
  out.set("search_std", concatArrays(generations.map((g) => g.std)));
  out.set("search_mu_new", concatArrays(generations.map((g) => g.mean)));
  const vars = generations.map((g) => g.variance);
  if (vars.every((v) => v)) out.set("search_var_new", concatArrays(vars as Float32Array[]));

  const reward = s.reward ? parseReward(s.reward, C, H, W) : null;
  if (!reward) {
    c.notes.push(`search_scores not recomputed: unrecognised reward "${s.reward ?? ""}"`);
    return;
  }
  const scores: number[] = [];
  for (const g of generations) {
    for (const cand of g.evaluated) {
      const z = reconstruct(cand.low);
      scores.push(reward(await z.toArray()));
      z.dispose();
    }
  }
  out.set("search_scores", Float32Array.from(scores));
}

registerCase("ses_dwt", (c, dev) =>
  dev.scope(async () => {
    const out = new Map<string, Float32Array>();
    const names = expectedNames(c);
    for (const input of Object.keys(c.json.inputs)) {
      const tag = input.match(/^dwt_(.+)_input$/)?.[1];
      if (tag && names.some((n) => n.startsWith(`dwt_${tag}_`) && c.wants(n))) await dwtOutputs(c, dev, tag, out);
    }
    if (names.some((n) => n.startsWith("search_") && c.wants(n))) await searchOutputs(c, dev, out);
    return out;
  }),
  { notProduced: { search_z_noise: "the recorded draws are an input of the replay, not recomputed" } },
);
