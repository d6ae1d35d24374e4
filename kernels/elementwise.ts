// Elementwise kernels: one WGSL template, specialised per expression. Unary ops map x -> f(x); binary ops take
// a second operand that is either the same shape or broadcast over leading dims (its size divides the first's:
// a bias [D] over [N, D], a per-batch vector [B, 1, D] over [B, L, D]). Row-broadcast ops (modulate, gated
// residual) take per-batch vectors [B, D] for activations [B, L, D], as the transformer's AdaLN needs.
// Each op declares its own uniform block (n first, then only what its expression reads).
import { flatIndex, grid1d, Tensor, type UniformFields, uniforms, type Uniforms, type UniformValues } from "../core/index.ts";
import { expectDType, expectSameDevice } from "./check.ts";

const WG = 256;

export const UNARY = {
  silu: "x / (1.0 + exp(-x))",
  gelu: "0.5 * x * (1.0 + erf_(x * 0.7071067811865476))",
  geluTanh: "0.5 * x * (1.0 + tanh_(0.7978845608028654 * (x + 0.044715 * x * x * x)))",
  quickGelu: "x / (1.0 + exp(-1.702 * x))",
  neg: "-x",
  exp: "exp(x)",
} as const;
export type UnaryOp = keyof typeof UNARY;

// erf accurate to f32 rounding (the common 1.5e-7 polynomial fits are too coarse next to torch's exact GELU):
// Maclaurin series below 2, erfc continued fraction above.
const MATH = `
fn tanh_(x: f32) -> f32 { let e = exp(-2.0 * abs(x)); return sign(x) * (1.0 - e) / (1.0 + e); }
fn erf_(x: f32) -> f32 {
  let a = abs(x);
  if (a < 2.0) {
    // Maclaurin series in x^2, 24 terms: exact to f32 rounding for |x| < 2.
    let x2 = a * a;
    var term = a;
    var sum = a;
    for (var n = 1; n < 24; n++) {
      term = term * -x2 / f32(n);
      sum = sum + term / f32(2 * n + 1);
    }
    return sign(x) * min(1.0, sum * 1.1283791670955126);
  }
  // erfc continued fraction (Lentz), converges fast for |x| >= 2.
  var f = a; var c = a; var d = 0.0;
  for (var k = 1; k < 40; k++) {
    let ak = f32(k) * 0.5;
    d = a + ak * d; d = 1.0 / d;
    c = a + ak / c;
    f = f * c * d;
  }
  return sign(x) * (1.0 - exp(-a * a) / (f * 1.7724538509055159));
}`;

type Block = Uniforms<{ n: "u32" } & UniformFields>;
const block = <const F extends UniformFields>(kernel: string, fields: F) => uniforms(kernel, { n: "u32", ...fields });
const UNARY_P = block("unary", {});
const SCALE_P = block("scale", { alpha: "f32", beta: "f32" });
const CLAMP_P = block("scale", { alpha: "f32", beta: "f32", lo: "f32", hi: "f32" });
const AXPBY_P = block("axpby", { alpha: "f32", beta: "f32" });
const LERP_P = block("lerpHalves", { half: "u32", s: "f32" });
const ADD_P = block("add", { m: "u32" });
const MUL_P = block("mul", { m: "u32" });
const MODULATE_P = block("modulate", { D: "u32", L: "u32" });
const GATED_P = block("gatedResidual", { D: "u32", L: "u32" });
const SWIGLU_P = block("swiglu", { F: "u32", start: "u32", W: "u32" });

// Memoised per block: launches are frequent and tiny, so rebuilding (and re-hashing) the text per call costs
// measurable µs.
const wgslCache = new Map<Block, Map<string, string>>();
function elementwiseWgsl(P: Block, nInputs: number, expr: string, fns: string): string {
  const key = `${nInputs}|${expr}|${fns}`;
  let texts = wgslCache.get(P);
  if (!texts) wgslCache.set(P, (texts = new Map()));
  let text = texts.get(key);
  if (!text) texts.set(key, (text = buildElementwiseWgsl(P, nInputs, expr, fns)));
  return text;
}

function buildElementwiseWgsl(P: Block, nInputs: number, expr: string, fns: string): string {
  const inputs = Array.from({ length: nInputs }, (_, i) => `@group(0) @binding(${i + 2}) var<storage, read> in${i}: array<f32>;`);
  return `
${P.wgsl}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${inputs.join("\n")}
${fns}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${flatIndex(WG)};
  if (i >= u.n) { return; }
  out[i] = ${expr};
}`;
}

/** out[i] = expr for every i of a new tensor of `shape`; `values` fill P's fields after n. */
function pointwise<F extends { n: "u32" } & UniformFields>(
  P: Uniforms<F>, expr: string, inputs: Tensor[], shape: readonly number[], values: Omit<UniformValues<F>, "n">, fns = "",
): Tensor {
  const dev = inputs[0].dev;
  const out = Tensor.empty(dev, shape);
  const pipeline = dev.pipeline(elementwiseWgsl(P as unknown as Block, inputs.length, expr, fns));
  const uni = P.pack({ ...values, n: out.size } as UniformValues<F>);
  dev.run(pipeline, [out.binding(), ...inputs.map((t) => t.binding())], grid1d(out.size, WG), uni);
  return out;
}

function checkF32(what: string, ...ts: Tensor[]): void {
  expectSameDevice(what, ...ts);
  ts.forEach((t, i) => expectDType(t, `${what} operand ${i}`, "f32"));
}

/** WGSL source of `fn <name>(x: f32) -> f32` computing the op (with the erf/tanh helpers it needs). */
export function activationWgsl(op: UnaryOp, name = "f"): string {
  return `${op.startsWith("gelu") ? MATH : ""}\nfn ${name}(x: f32) -> f32 { return ${UNARY[op]}; }`;
}

export function unary(x: Tensor, op: UnaryOp): Tensor {
  checkF32(op, x);
  return pointwise(UNARY_P, "f(in0[i])", [x], x.shape, {}, activationWgsl(op));
}

export const silu = (x: Tensor): Tensor => unary(x, "silu");
export const gelu = (x: Tensor): Tensor => unary(x, "gelu");
export const geluTanh = (x: Tensor): Tensor => unary(x, "geluTanh");
export const quickGelu = (x: Tensor): Tensor => unary(x, "quickGelu");

/** alpha·x + beta, optionally clamped to [lo, hi]. */
export function scale(x: Tensor, alpha: number, beta = 0, clampTo?: readonly [lo: number, hi: number]): Tensor {
  checkF32("scale", x);
  if (!clampTo) return pointwise(SCALE_P, "u.alpha * in0[i] + u.beta", [x], x.shape, { alpha, beta });
  const [lo, hi] = clampTo;
  return pointwise(CLAMP_P, "clamp(u.alpha * in0[i] + u.beta, u.lo, u.hi)", [x], x.shape, { alpha, beta, lo, hi });
}

/** a·x + b·y for x, y of one size, in one pass. */
export function axpby(a: number, x: Tensor, b: number, y: Tensor): Tensor {
  checkF32("axpby", x, y);
  if (x.size !== y.size) throw new Error(`axpby: y [${y.shape}] must match x [${x.shape}]`);
  return pointwise(AXPBY_P, "u.alpha * in0[i] + u.beta * in1[i]", [x, y], x.shape, { alpha: a, beta: b });
}

/**
 * Interpolation between the two halves of the leading dim: x [2B, ...] holds rows a (0..B−1) then b (B..2B−1);
 * returns b + s·(a − b) → [B, ...] (classifier-free guidance's order of operations).
 */
export function lerpHalves(x: Tensor, s: number): Tensor {
  checkF32("lerpHalves", x);
  const B2 = x.shape[0];
  if (!x.shape.length || B2 % 2) throw new Error(`lerpHalves: leading dim of [${x.shape}] must be even`);
  const half = x.size / 2;
  return pointwise(LERP_P, "in0[i + u.half] + u.s * (in0[i] - in0[i + u.half])", [x], [B2 / 2, ...x.shape.slice(1)], { half, s });
}

function broadcastLen(a: Tensor, b: Tensor, what: string): number {
  const trailing = b.shape.slice(b.shape.findIndex((d) => d !== 1));
  const aTail = a.shape.slice(a.shape.length - trailing.length);
  const ok = b.size > 0 && a.size % b.size === 0 && (b.size === a.size || trailing.every((d, i) => d === aTail[i]));
  if (!ok) throw new Error(`${what}: cannot broadcast [${b.shape}] over [${a.shape}]`);
  return b.size;
}

/** a + b (b same shape or broadcast over leading dims). */
export function add(a: Tensor, b: Tensor): Tensor {
  checkF32("add", a, b);
  const m = broadcastLen(a, b, "add");
  return pointwise(ADD_P, "in0[i] + in1[i % u.m]", [a, b], a.shape, { m });
}

/** a · b (b same shape or broadcast over leading dims). */
export function mul(a: Tensor, b: Tensor): Tensor {
  checkF32("mul", a, b);
  const m = broadcastLen(a, b, "mul");
  return pointwise(MUL_P, "in0[i] * in1[i % u.m]", [a, b], a.shape, { m });
}

/** Per-batch vector index for x [B, L, D] and a vector [B, D]: element i → b·D + d. */
const batchVec = "(i / (u.L * u.D)) * u.D + i % u.D";

function batchRows(x: Tensor, v: Tensor, what: string): { B: number; L: number; D: number } {
  const D = x.shape[x.shape.length - 1];
  const B = x.shape.length >= 3 ? x.shape[0] : 1;
  const L = x.size / (B * D);
  if (v.size !== B * D) throw new Error(`${what}: vector [${v.shape}] must hold ${B}×${D} values for x [${x.shape}]`);
  return { B, L, D };
}

/** AdaLN modulation x·(1 + scale) + shift, with scale/shift [B, D] per batch for x [B, L, D]. */
export function modulate(x: Tensor, scale: Tensor, shift: Tensor): Tensor {
  checkF32("modulate", x, scale, shift);
  const { L, D } = batchRows(x, scale, "modulate scale");
  batchRows(x, shift, "modulate shift");
  return pointwise(MODULATE_P, `in0[i] * (1.0 + in1[${batchVec}]) + in2[${batchVec}]`, [x, scale, shift], x.shape, { D, L });
}

/** Gated residual x + gate·y with gate [B, D] per batch for x, y [B, L, D]. */
export function gatedResidual(x: Tensor, gate: Tensor, y: Tensor): Tensor {
  checkF32("gatedResidual", x, gate, y);
  if (y.size !== x.size) throw new Error(`gatedResidual: y [${y.shape}] must match x [${x.shape}]`);
  const { L, D } = batchRows(x, gate, "gatedResidual gate");
  return pointwise(GATED_P, `in0[i] + in1[${batchVec}] * in2[i]`, [x, gate, y], x.shape, { D, L });
}

/**
 * SwiGLU on columns [from, W) of x [..., W] split in halves: silu(first) · second → [..., F]. `from` reads the MLP
 * part of a fused projection in place (no sliced copy of it).
 */
export function swiglu(x: Tensor, from = 0): Tensor {
  checkF32("swiglu", x);
  const W = x.shape[x.shape.length - 1];
  if (!Number.isInteger(from) || from < 0 || (W - from) % 2 || W <= from) throw new Error(`swiglu: columns [${from}, ${W}) of [${x.shape}] must be a positive even count`);
  const F = (W - from) / 2;
  const a = "in0[(i / u.F) * u.W + u.start + i % u.F]";
  const b = "in0[(i / u.F) * u.W + u.start + u.F + i % u.F]";
  return pointwise(SWIGLU_P, `${a} / (1.0 + exp(-${a})) * ${b}`, [x], [...x.shape.slice(0, -1), F], { F, start: from, W });
}
