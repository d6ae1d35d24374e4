// 2-D multilevel Haar wavelet transform with PyWavelets semantics: `wavedec2(x, 'db1', mode='symmetric', level)`
// and `waverec2` over the last two axes of [B, C, H, W], every (b, c) plane independently.
// - One launch per level and direction; each invocation owns one 2×2 block, so a level is a single pass (the
//   separable row/column steps are fused). Two pipelines in all, sizes come in as uniforms.
// - Orthonormal Haar per axis: a = (x0 + x1)/√2, d = (x0 − x1)/√2. 'symmetric' on an odd length mirrors the last
//   sample, so the last pair is (x[n−1], x[n−1]) and a side n gives ceil(n/2) coefficients (a clamped index).
// - Band names follow pywt: cH = highpass along height (rows) and lowpass along width, cV = lowpass along height
//   and highpass along width, cD = highpass along both (checked against the ses_dwt fixture).
// - Order: `details[0]` is level 1, the finest (the fixture's `high_level1_*`); pywt's list is coarsest first.
// - Inverse: each level reconstructs 2h × 2w and crops to the next finer band's size (as waverec2 does when an
//   odd side made the approximation one larger), the last level crops to (outH, outW).
// Arithmetic mirrors pywt's order (axis −2 first forward, axis −1 first inverse) in f32.
import { flatIndex, grid1d, Tensor, uniforms } from "../core/index.ts";
import { expectDType, expectRank, expectSameDevice, expectShape } from "./check.ts";

const WG = 256;

export interface HaarDetail {
  /** Horizontal detail (pywt cH): highpass along H, lowpass along W. */
  h: Tensor;
  /** Vertical detail (pywt cV): lowpass along H, highpass along W. */
  v: Tensor;
  /** Diagonal detail (pywt cD): highpass along both. */
  d: Tensor;
}

export interface HaarCoeffs {
  /** Approximation band at the coarsest level, [B, C, hL, wL]. */
  low: Tensor;
  /** Detail bands, `details[l - 1]` = level l (level 1 = finest), each [B, C, h_l, w_l]. */
  details: HaarDetail[];
}

/** Size of one side after `levels` Haar steps in 'symmetric' mode. */
export function haarSize(n: number, levels: number): number {
  for (let l = 0; l < levels; l++) n = Math.ceil(n / 2);
  return n;
}

const FORWARD = uniforms("haar forward", { n: "u32", h: "u32", w: "u32", H: "u32", W: "u32" });
const FORWARD_WGSL = `
${FORWARD.wgsl}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> lo: array<f32>;
@group(0) @binding(3) var<storage, read_write> ch: array<f32>;
@group(0) @binding(4) var<storage, read_write> cv: array<f32>;
@group(0) @binding(5) var<storage, read_write> cd: array<f32>;
const S: f32 = 0.70710678118654752;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${flatIndex(WG)};
  if (i >= u.n) { return; }
  let j = i % u.w;
  let k = (i / u.w) % u.h;
  let plane = i / (u.w * u.h);
  // Mirror the last row/column when the side is odd.
  let r0 = 2u * k;
  let r1 = min(r0 + 1u, u.H - 1u);
  let c0 = 2u * j;
  let c1 = min(c0 + 1u, u.W - 1u);
  let base = plane * u.H * u.W;
  let x00 = x[base + r0 * u.W + c0];
  let x01 = x[base + r0 * u.W + c1];
  let x10 = x[base + r1 * u.W + c0];
  let x11 = x[base + r1 * u.W + c1];
  // Along H first (pywt dwtn's axis order), then along W.
  let a0 = x00 * S + x10 * S;
  let a1 = x01 * S + x11 * S;
  let d0 = x00 * S - x10 * S;
  let d1 = x01 * S - x11 * S;
  lo[i] = a0 * S + a1 * S;
  cv[i] = a0 * S - a1 * S;
  ch[i] = d0 * S + d1 * S;
  cd[i] = d0 * S - d1 * S;
}`;

const INVERSE = uniforms("haar inverse", { n: "u32", oh: "u32", ow: "u32", h: "u32", w: "u32" });
const INVERSE_WGSL = `
${INVERSE.wgsl}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> lo: array<f32>;
@group(0) @binding(3) var<storage, read> ch: array<f32>;
@group(0) @binding(4) var<storage, read> cv: array<f32>;
@group(0) @binding(5) var<storage, read> cd: array<f32>;
const S: f32 = 0.70710678118654752;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${flatIndex(WG)};
  if (i >= u.n) { return; }
  let x = i % u.ow;
  let y = (i / u.ow) % u.oh;
  let plane = i / (u.ow * u.oh);
  let c = plane * u.h * u.w + (y >> 1u) * u.w + (x >> 1u);
  let sx = select(1.0, -1.0, (x & 1u) == 1u);
  let sy = select(1.0, -1.0, (y & 1u) == 1u);
  // Along W first (pywt idwtn inverts the last axis first), then along H.
  let a = lo[c] * S + sx * cv[c] * S;
  let d = ch[c] * S + sx * cd[c] * S;
  out[i] = a * S + sy * d * S;
}`;

/** One analysis level: x [B, C, H, W] → four bands [B, C, ceil(H/2), ceil(W/2)]. */
function forwardLevel(x: Tensor): { low: Tensor } & HaarDetail {
  const [B, C, H, W] = x.shape;
  const shape = [B, C, Math.ceil(H / 2), Math.ceil(W / 2)];
  const dev = x.dev;
  const low = Tensor.empty(dev, shape), h = Tensor.empty(dev, shape), v = Tensor.empty(dev, shape), d = Tensor.empty(dev, shape);
  const n = low.size;
  const uni = FORWARD.pack({ n, h: shape[2], w: shape[3], H, W });
  dev.run(dev.pipeline(FORWARD_WGSL), [x.binding(), low.binding(), h.binding(), v.binding(), d.binding()], grid1d(n, WG), uni);
  return { low, h, v, d };
}

/** One synthesis level: bands [B, C, h, w] → [B, C, oh, ow] with oh ≤ 2h, ow ≤ 2w (cropped). */
function inverseLevel(low: Tensor, det: HaarDetail, oh: number, ow: number): Tensor {
  const [B, C, h, w] = low.shape;
  const out = Tensor.empty(low.dev, [B, C, oh, ow]);
  const n = out.size;
  const uni = INVERSE.pack({ n, oh, ow, h, w });
  low.dev.run(low.dev.pipeline(INVERSE_WGSL), [out.binding(), low.binding(), det.h.binding(), det.v.binding(), det.d.binding()], grid1d(n, WG), uni);
  return out;
}

/**
 * Multilevel 2-D Haar analysis of x [B, C, H, W] (f32), as pywt `wavedec2(x, 'db1', 'symmetric', levels)`.
 * Returns the coarsest approximation and the detail bands with `details[0]` = level 1 (finest).
 */
export function haarDwt2d(x: Tensor, levels: number): HaarCoeffs {
  expectRank(x, "haarDwt2d x", 4);
  expectDType(x, "haarDwt2d x", "f32");
  if (!Number.isInteger(levels) || levels < 1) throw new Error(`haarDwt2d: levels must be an integer >= 1, got ${levels}`);
  if (x.shape[2] < 1 || x.shape[3] < 1) throw new Error(`haarDwt2d x: spatial dims must be >= 1, got shape [${x.shape}]`);
  const details: HaarDetail[] = [];
  let cur = x;
  for (let l = 0; l < levels; l++) {
    const { low, h, v, d } = forwardLevel(cur);
    if (cur !== x) cur.dispose(); // the pending dispatch still reads it; later writers are ordered after it
    details.push({ h, v, d });
    cur = low;
  }
  return { low: cur, details };
}

/**
 * Multilevel 2-D Haar synthesis (pywt `waverec2(..., 'db1', 'symmetric')`) cropped to [B, C, outH, outW]: the
 * inverse of `haarDwt2d` when outH, outW are the original sizes. `details[0]` = level 1 (finest).
 */
export function haarIdwt2d(low: Tensor, details: readonly HaarDetail[], outH: number, outW: number): Tensor {
  expectRank(low, "haarIdwt2d low", 4);
  expectDType(low, "haarIdwt2d low", "f32");
  if (!details.length) throw new Error("haarIdwt2d: need at least one level of detail bands");
  const [B, C] = low.shape;
  // Target size of each level's synthesis: the next finer band, or (outH, outW) after level 1.
  const target = (l: number) => (l === 0 ? [outH, outW] : details[l - 1].h.shape.slice(2));
  for (let l = details.length - 1; l >= 0; l--) {
    const band = l === details.length - 1 ? low.shape : details[l].h.shape;
    for (const k of ["h", "v", "d"] as const) {
      const t = details[l][k];
      expectDType(t, `haarIdwt2d level ${l + 1} ${k}`, "f32");
      expectShape(t, `haarIdwt2d level ${l + 1} ${k}`, [B, C, band[2], band[3]]);
      expectSameDevice("haarIdwt2d", low, t);
    }
    const [oh, ow] = target(l);
    if (!(oh >= 1 && oh <= 2 * band[2] && ow >= 1 && ow <= 2 * band[3])) {
      throw new Error(`haarIdwt2d: level ${l + 1} bands ${band[2]}×${band[3]} cannot reconstruct ${oh}×${ow}`);
    }
  }
  let cur = low;
  for (let l = details.length - 1; l >= 0; l--) {
    const [oh, ow] = target(l);
    const next = inverseLevel(cur, details[l], oh, ow);
    if (cur !== low) cur.dispose();
    cur = next;
  }
  return cur;
}
