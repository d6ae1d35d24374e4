// Normalisations: RMSNorm and LayerNorm over the last dim, GroupNorm over (C/groups)·H·W of NCHW tensors.
// - One row kernel template (reduce.ts layout: a workgroup per long row, several short rows per workgroup)
//   serves all three: rmsNorm is the uncentred case, layerNorm the centred one, and a GroupNorm group is a
//   contiguous row of NCHW whose affine parameters are indexed by channel (`i / HW`).
// - Centring is the corrected two-pass scheme (Chan, Golub & LeVeque): pass 1 gives mean' = Σx/n, pass 2 sums
//   d = x − mean' and d² (d is exact when x is near the mean), so mean = mean' + Σd/n and M2 = Σd² − (Σd)²/n.
//   The output uses (x − mean') − Σd/n, never a rounded f32 mean, so data like 1000 + N(0,1) keeps ~1e-7 error.
// - Big GroupNorm groups (more than GN_CHUNK elements, up to millions in the VAE) run in three dispatches: the same
//   template in statistics mode writes (mean, M2) per chunk over many workgroups, a row kernel combines each
//   group's chunks with Chan's pairwise formula, and an elementwise pass normalises (affine, optional SiLU).
//   The first two are also exported as groupNormStats, so a consumer can normalise while loading (conv2d).
// - rmsNorm and layerNorm rows of a multiple of 4 columns, and big GroupNorm groups whose planes (H·W) are, load
//   and store vec4f (a quarter of the loads and bounds checks, vec4 partial sums), laid out by vec4RowLayout;
//   other rows and small GroupNorm groups take the scalar variant.
// - Weights/biases may be f32, bf16 or f16 (decoded by wgslLoad); each presence/dtype is a pipeline variant,
//   the fused SiLU is a uniform flag.
import { type DType, grid1d, Tensor, uniforms, wgslArrayType, wgslLoad } from "../core/index.ts";
import { expectDType, expectSameDevice, expectShape, rowsCols } from "./check.ts";
import { activationWgsl } from "./elementwise.ts";
import { ROW_FIELDS, rowGrid, rowLayout, type RowLayout, rowValues, vec4RowLayout, wgslRowMain, wgslSegReduce } from "./reduce.ts";

/** GroupNorm groups longer than this are reduced by several workgroups (32 elements per thread each). */
const GN_CHUNK = 256 * 32;
/** Elements (vec4s when the planes allow) per workgroup of the GroupNorm apply pass (4 per thread). */
const GN_BLOCK = 1024;

type OptTensor = Tensor | null | undefined;

interface Affine {
  w?: DType;
  b?: DType;
  /** Adds the uniform-controlled SiLU after the affine step. */
  silu?: boolean;
}

/** WGSL `load4_<name>(i)`: elements i … i+3 (i a multiple of 4) of a parameter as a vec4f, from whole words. */
function wgslLoad4(name: string, buf: string, dt: DType): string {
  const body =
    dt === "f32" ? `vec4f(${buf}[i], ${buf}[i + 1u], ${buf}[i + 2u], ${buf}[i + 3u])`
    : dt === "f16" ? `vec4f(unpack2x16float(${buf}[i >> 1u]), unpack2x16float(${buf}[(i >> 1u) + 1u]))`
    : `vec4f(bitcast<vec2f>(bf2_${name}(${buf}[i >> 1u])), bitcast<vec2f>(bf2_${name}(${buf}[(i >> 1u) + 1u])))`;
  const bf2 = dt === "bf16" ? `fn bf2_${name}(w: u32) -> vec2u { return vec2u(w << 16u, w & 0xffff0000u); }\n` : "";
  return `${wgslLoad(name, buf, dt)}\n${bf2}fn load4_${name}(i: u32) -> vec4f { return ${body}; }`;
}

/**
 * Bindings (from `first`) and loaders of the optional weight and bias, and the WGSL lines applying them to `y`.
 * Width 4: y is a vec4f, the parameters those of the elements from IDX on, or one value for all four when
 * `apply` is told `broadcast` (a GroupNorm channel).
 */
function affineWgsl(first: number, a: Affine, width: 1 | 4 = 1): { decls: string; apply: (idx: string, broadcast?: boolean) => string } {
  const decls: string[] = [];
  const lines: string[] = [];
  let k = first;
  const load = width === 4 ? "load4" : "load";
  for (const [name, dt, op] of [["w", a.w, "*"], ["b", a.b, "+"]] as const) {
    if (!dt) continue;
    decls.push(`@group(0) @binding(${k++}) var<storage, read> ${name}buf: array<${wgslArrayType(dt)}>;`);
    decls.push(width === 4 ? wgslLoad4(name, `${name}buf`, dt) : wgslLoad(name, `${name}buf`, dt));
    lines.push(`y = y ${op} LOAD_${name}(IDX);`);
  }
  if (a.silu) {
    decls.push(activationWgsl("silu", "silu"));
    lines.push(`if (u.silu != 0u) { y = ${width === 4 ? "vec4f(silu(y.x), silu(y.y), silu(y.z), silu(y.w))" : "silu(y)"}; }`);
  }
  return {
    decls: decls.join("\n"),
    apply: (idx, broadcast = false) => lines.join(" ").replaceAll("IDX", idx).replaceAll("LOAD_", broadcast ? "load_" : `${load}_`),
  };
}

const ROW_NORM = uniforms("rowNorm", { ...ROW_FIELDS, eps: "f32", G: "u32", Cg: "u32", HW: "u32", silu: "u32" });
const GN_COMBINE = uniforms("groupNorm combine", { ...ROW_FIELDS, groupLen: "u32", groupChunk: "u32", eps: "f32" });
const GN_APPLY = uniforms("groupNorm apply", { planes: "u32", HW: "u32", C: "u32", Cg: "u32", blocks: "u32", silu: "u32" });

const SUM2 = wgslSegReduce("sum2", "vec2f", "return a + b;");

interface RowNorm {
  center: boolean;
  /** "stats": write (mean, M2) per logical row instead of normalising. */
  mode: "y" | "stats";
  /** Affine parameter index: the column, or the NCHW channel of a GroupNorm row. */
  index: "col" | "channel";
  affine: Affine;
  /** Elements per load and store: 4 (vec4f, the layout then counts vec4s) needs rows of a multiple of 4 columns. */
  width: 1 | 4;
}

function rowNormWgsl(o: RowNorm): string {
  const v4 = o.width === 4;
  const T = v4 ? "vec4f" : "f32";
  const hsum = (e: string) => (v4 ? `dot(${e}, vec4f(1.0))` : e);
  const aff = affineWgsl(3, o.affine, o.width);
  const stats = o.mode === "stats";
  const idx = o.index === "col" ? (v4 ? "4u * i" : "i") : "(r % u.G) * u.Cg + i / u.HW";
  const xc = o.center ? "(x[base + i] - hi - lo)" : "x[base + i]";
  return `
${ROW_NORM.wgsl}
@group(0) @binding(1) var<storage, read_write> out: array<${stats ? "vec2f" : T}>;
@group(0) @binding(2) var<storage, read> x: array<${T}>;
${aff.decls}
${SUM2}
${wgslRowMain(`
  let nf = f32(n * ${o.width}u);
  ${o.center ? `
  var s = ${T}(0.0);
  for (var i = lane; i < n; i += seg) { s += x[base + i]; }
  let hi = reduce_sum2(tid, seg, vec2f(${hsum("s")}, 0.0)).x / nf;` : "let hi = 0.0;"}
  var acc = vec2f(0.0);
  for (var i = lane; i < n; i += seg) { let d = x[base + i] - hi; acc += vec2f(${hsum("d")}, ${v4 ? "dot(d, d)" : "d * d"}); }
  acc = reduce_sum2(tid, seg, acc);
  ${o.center ? "let lo = acc.x / nf; let m2 = max(acc.y - acc.x * lo, 0.0);" : "let m2 = acc.y;"}
  ${stats ? "if (live && lane == 0u) { out[row] = vec2f(hi + lo, m2); }" : `
  let rstd = inverseSqrt(m2 / nf + u.eps);
  for (var i = lane; i < n; i += seg) {
    var y = ${xc} * rstd;
    ${aff.apply(idx)}
    out[base + i] = y;
  }`}`)}`;
}

interface GroupShape {
  G: number;
  Cg: number;
  HW: number;
}

function runRowNorm(x: Tensor, out: Tensor, l: RowLayout, o: RowNorm, eps: number, g: GroupShape, silu: boolean, w: OptTensor, b: OptTensor): void {
  const bufs = [out.binding(), x.binding(), ...[w, b].filter((t): t is Tensor => !!t).map((t) => t.binding())];
  const uni = ROW_NORM.pack({ ...rowValues(l), eps, G: g.G, Cg: g.Cg, HW: g.HW, silu: silu ? 1 : 0 });
  x.dev.run(x.dev.pipeline(rowNormWgsl(o)), bufs, rowGrid(l), uni);
}

function checkParam(t: OptTensor, x: Tensor, what: string, len: number): DType | undefined {
  if (!t) return undefined;
  expectSameDevice(what, x, t);
  expectDType(t, what, "f32", "bf16", "f16");
  expectShape(t, what, [len]);
  return t.dtype;
}

function lastDimNorm(what: string, center: boolean, x: Tensor, w: OptTensor, b: OptTensor, eps: number): Tensor {
  expectDType(x, `${what} x`, "f32");
  const [rows, len] = rowsCols(x);
  const affine = { w: checkParam(w, x, `${what} weight`, len), b: checkParam(b, x, `${what} bias`, len) };
  const out = Tensor.empty(x.dev, x.shape);
  if (out.size) {
    const width = len % 4 ? 1 : 4;
    const o: RowNorm = { center, mode: "y", index: "col", affine, width };
    const l = width === 4 ? vec4RowLayout(x.dev, rows, len) : rowLayout(rows, len);
    runRowNorm(x, out, l, o, eps, { G: 1, Cg: 1, HW: 1 }, false, w, b);
  }
  return out;
}

/** RMSNorm over the last dim: x · rsqrt(mean(x²) + eps) · weight (weight [D], f32/bf16/f16, optional). */
export function rmsNorm(x: Tensor, weight: OptTensor, opts: { eps: number }): Tensor {
  return lastDimNorm("rmsNorm", false, x, weight, null, opts.eps);
}

/** LayerNorm over the last dim with biased variance (as PyTorch); weight and bias [D] optional. */
export function layerNorm(x: Tensor, weight: OptTensor, bias: OptTensor, opts: { eps: number }): Tensor {
  return lastDimNorm("layerNorm", true, x, weight, bias, opts.eps);
}

const CHAN = `
  let n = a.x + b.x;
  if (n == 0.0) { return a; }
  let d = b.y - a.y;
  let f = b.x / n;
  return vec3f(n, a.y + d * f, a.z + b.z + d * d * a.x * f);`;

// One logical row per group over its chunk partials (mean, M2); chunk counts follow from the chunk index.
const GN_COMBINE_WGSL = `
${GN_COMBINE.wgsl}
@group(0) @binding(1) var<storage, read_write> stats: array<vec2f>;
@group(0) @binding(2) var<storage, read> parts: array<vec2f>;
${wgslSegReduce("chan", "vec3f", CHAN)}
${wgslRowMain(`
  var acc = vec3f(0.0);
  for (var i = lane; i < n; i += seg) {
    acc = combine_chan(acc, vec3f(f32(min(u.groupChunk, u.groupLen - i * u.groupChunk)), parts[base + i]));
  }
  acc = reduce_chan(tid, seg, acc);
  if (live && lane == 0u) { stats[row] = vec2f(acc.y, inverseSqrt(acc.z / acc.x + u.eps)); }`)}`;

/** The apply pass; width 4 reads planes of a multiple of 4 as vec4f (u.HW then counts vec4s). */
function gnApplyWgsl(a: Affine, width: 1 | 4): string {
  const aff = affineWgsl(4, a, width);
  const T = width === 4 ? "vec4f" : "f32";
  return `
${GN_APPLY.wgsl}
@group(0) @binding(1) var<storage, read_write> out: array<${T}>;
@group(0) @binding(2) var<storage, read> x: array<${T}>;
@group(0) @binding(3) var<storage, read> stats: array<vec2f>;
${aff.decls}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let wg = wid.x + wid.y * nwg.x;
  let plane = wg / u.blocks;
  if (plane >= u.planes) { return; }
  let c = plane % u.C;
  let st = stats[plane / u.Cg];
  let base = plane * u.HW;
  let first = (wg % u.blocks) * ${GN_BLOCK}u + tid;
  for (var k = 0u; k < ${GN_BLOCK / 256}u; k++) {
    let i = first + k * 256u;
    if (i < u.HW) {
      var y = (x[base + i] - st.x) * st.y;
      ${aff.apply("c", true)}
      out[base + i] = y;
    }
  }
}`;
}

/** The validated geometry of GroupNorm over x [B, C, ...spatial]. */
function groupShape(x: Tensor, groups: number, what: string): GroupShape & { B: number; C: number } {
  expectDType(x, `${what} x`, "f32");
  if (x.shape.length < 2) throw new Error(`${what} x: expected [B, C, ...spatial], got shape [${x.shape}]`);
  const [B, C] = x.shape;
  if (!Number.isInteger(groups) || groups < 1 || C % groups) {
    throw new Error(`${what}: ${groups} groups do not divide the ${C} channels of x [${x.shape}]`);
  }
  return { B, C, G: groups, Cg: C / groups, HW: x.size / Math.max(1, B * C) };
}

/** (mean, rstd) per (batch, group) → [B, G, 2]: chunk partials over many workgroups, then Chan's combine. */
function groupStats(x: Tensor, g: GroupShape & { B: number }, eps: number): Tensor {
  const dev = x.dev;
  const rows = g.B * g.G, len = g.Cg * g.HW;
  const width = g.HW % 4 ? 1 : 4; // then every chunk (GN_CHUNK) and group is whole vec4s too
  const l = width === 4 ? vec4RowLayout(dev, rows, len, GN_CHUNK) : rowLayout(rows, len, GN_CHUNK);
  const parts = Tensor.empty(dev, [rows, l.nChunks, 2]);
  runRowNorm(x, parts, l, { center: true, mode: "stats", index: "channel", affine: {}, width }, 0, g, false, null, null);
  const stats = Tensor.empty(dev, [g.B, g.G, 2]);
  const lc = rowLayout(rows, l.nChunks);
  const uni = GN_COMBINE.pack({ ...rowValues(lc), groupLen: len, groupChunk: GN_CHUNK, eps });
  dev.run(dev.pipeline(GN_COMBINE_WGSL), [stats.binding(), parts.binding()], rowGrid(lc), uni);
  parts.dispose();
  return stats;
}

/**
 * GroupNorm statistics of x [B, C, ...spatial] (NCHW) → [B, groups, 2] f32: the mean and 1/sqrt(var + eps)
 * (biased variance, as groupNorm) of each (batch, group), for kernels that normalise while loading x
 * (conv2d's `inputNorm`). The mean is one f32, as in groupNorm's big-group path: x − mean loses about
 * ulp(mean)/std relative accuracy when a group's mean is far from zero compared with its spread.
 */
export function groupNormStats(x: Tensor, groups: number, opts: { eps: number }): Tensor {
  const g = groupShape(x, groups, "groupNormStats");
  if (g.B * g.C && !g.HW) throw new Error(`groupNormStats: x [${x.shape}] has empty groups`);
  if (!x.size) return Tensor.empty(x.dev, [g.B, groups, 2]);
  return groupStats(x, g, opts.eps);
}

/**
 * GroupNorm of x [B, C, ...spatial] (NCHW): statistics per (batch, group) over C/groups channels × spatial,
 * affine per channel (weight, bias [C], optional), then SiLU when `silu` is set.
 */
export function groupNorm(x: Tensor, groups: number, weight: OptTensor, bias: OptTensor, opts: { eps: number; silu?: boolean }): Tensor {
  const g = groupShape(x, groups, "groupNorm");
  const { B, C, HW } = g;
  const len = g.Cg * HW;
  const silu = !!opts.silu;
  const affine = { w: checkParam(weight, x, "groupNorm weight", C), b: checkParam(bias, x, "groupNorm bias", C), silu: true };
  const dev = x.dev;
  const out = Tensor.empty(dev, x.shape);
  if (!out.size) return out;
  if (len <= GN_CHUNK) {
    runRowNorm(x, out, rowLayout(B * groups, len), { center: true, mode: "y", index: "channel", affine, width: 1 }, opts.eps, g, silu, weight, bias);
    return out;
  }
  const stats = groupStats(x, g, opts.eps);
  const width = HW % 4 ? 1 : 4;
  const blocks = Math.ceil(HW / width / GN_BLOCK);
  const uni = GN_APPLY.pack({ planes: B * C, HW: HW / width, C, Cg: g.Cg, blocks, silu: silu ? 1 : 0 });
  const bufs = [out.binding(), x.binding(), stats.binding(), ...[weight, bias].filter((t): t is Tensor => !!t).map((t) => t.binding())];
  dev.run(dev.pipeline(gnApplyWgsl(affine, width)), bufs, grid1d(B * C * blocks, 1), uni);
  stats.dispose();
  return out;
}
