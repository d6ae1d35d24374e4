// Rotary position embeddings. Tables are computed on the CPU once per sequence layout (they are small: [L, R/2])
// and uploaded; the kernel rotates q or k [B, L, H, D] in one pass, one invocation per rotation pair.
// Tables hold one angle per pair (half width); both conventions read the same table:
//   "interleaved" (FLUX): pair j is (x[2j], x[2j+1]);
//   "halves" (Qwen3, rotate_half): pair j is (x[j], x[j + R/2]).
// The tables may cover only the first R ≤ D dims of the head; the rest pass through unchanged.
// Multi-axis tables concatenate per-axis frequency blocks in axis order, as diffusers' Flux2PosEmbed does.
import { flatIndex, grid1d, Tensor, type Device, uniforms } from "../core/index.ts";
import { expectDType, expectRank, expectSameDevice, expectShape } from "./check.ts";

export type RopeLayout = "interleaved" | "halves";

/**
 * "f64": angles and cos/sin in float64 rounded to f32 (diffusers' FLUX.2 RoPE).
 * "f32": every step rounded to f32 as transformers' Qwen3 rotary embedding computes it (inv_freq, pos·inv_freq, cos).
 */
export type RopePrecision = "f64" | "f32";

/**
 * cos/sin tables [L, sum(axesDims)/2] for positions [L, nAxes] (row-major, nAxes = axesDims.length):
 * axis a with dim d owns d/2 columns, ω_j = theta^(-2j/d), angle = pos·ω_j.
 */
export function ropeTableData(
  positions: Int32Array,
  axesDims: readonly number[],
  theta: number,
  precision: RopePrecision = "f64",
): { cos: Float32Array; sin: Float32Array; rows: number; half: number } {
  const nAxes = axesDims.length;
  if (!nAxes || axesDims.some((d) => !Number.isInteger(d) || d <= 0 || d % 2)) {
    throw new Error(`ropeTables: axesDims [${axesDims}] must be positive even integers`);
  }
  if (positions.length % nAxes) {
    throw new Error(`ropeTables: ${positions.length} position values are not rows of ${nAxes} axes`);
  }
  const rows = positions.length / nAxes;
  const half = axesDims.reduce((a, b) => a + b, 0) / 2;
  const freqs: number[] = [];
  const axisOf: number[] = [];
  const f = precision === "f32" ? Math.fround : (v: number) => v;
  axesDims.forEach((d, a) => {
    for (let j = 0; j < d / 2; j++) {
      freqs.push(f(1 / f(Math.pow(f(theta), f((2 * j) / d)))));
      axisOf.push(a);
    }
  });
  const cos = new Float32Array(rows * half);
  const sin = new Float32Array(rows * half);
  for (let l = 0; l < rows; l++) {
    for (let j = 0; j < half; j++) {
      const angle = f(positions[l * nAxes + axisOf[j]] * freqs[j]);
      cos[l * half + j] = Math.cos(angle);
      sin[l * half + j] = Math.sin(angle);
    }
  }
  return { cos, sin, rows, half };
}

/** Uploads `ropeTableData` as f32 tensors [L, D/2]. */
export function ropeTables(
  dev: Device,
  positions: Int32Array,
  axesDims: readonly number[],
  theta: number,
  opts: { precision?: RopePrecision } = {},
): { cos: Tensor; sin: Tensor } {
  const t = ropeTableData(positions, axesDims, theta, opts.precision);
  return {
    cos: Tensor.fromArray(dev, t.cos, [t.rows, t.half]),
    sin: Tensor.fromArray(dev, t.sin, [t.rows, t.half]),
  };
}

const WG = 256;

const P = uniforms("rope", { n: "u32", half: "u32", rh: "u32", H: "u32", L: "u32" });

function ropeWgsl(layout: RopeLayout): string {
  // Element indices of pair p inside a row starting at `base`.
  const second = layout === "interleaved" ? "a + 1u" : "base + p + u.rh";
  const first = layout === "interleaved" ? "base + 2u * p" : "base + p";
  return `
${P.wgsl}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> cosT: array<f32>;
@group(0) @binding(4) var<storage, read> sinT: array<f32>;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${flatIndex(WG)};
  if (i >= u.n) { return; }
  let p = i % u.half;
  let row = i / u.half;
  let base = row * 2u * u.half;
  if (p >= u.rh) {
    // Beyond the rotated dims: pass through (pairs past R are plain element pairs in both layouts).
    out[base + 2u * p] = x[base + 2u * p];
    out[base + 2u * p + 1u] = x[base + 2u * p + 1u];
    return;
  }
  let t = ((row / u.H) % u.L) * u.rh + p;
  let c = cosT[t];
  let s = sinT[t];
  let a = ${first};
  let b = ${second};
  let xa = x[a];
  let xb = x[b];
  out[a] = xa * c - xb * s;
  out[b] = xb * c + xa * s;
}`;
}

/**
 * Rotates x [B, L, H, D] f32 by tables cos/sin [L, R/2] (R ≤ D, both even); dims ≥ R pass through.
 * Returns a new tensor of x's shape.
 */
export function rope(x: Tensor, cos: Tensor, sin: Tensor, opts: { layout: RopeLayout }): Tensor {
  const what = `rope(${opts.layout})`;
  expectSameDevice(what, x, cos, sin);
  expectRank(x, `${what} x`, 4);
  for (const [t, n] of [[x, "x"], [cos, "cos"], [sin, "sin"]] as const) expectDType(t, `${what} ${n}`, "f32");
  expectRank(cos, `${what} cos`, 2);
  expectShape(sin, `${what} sin`, cos.shape);
  if (opts.layout !== "interleaved" && opts.layout !== "halves") throw new Error(`rope: unknown layout "${opts.layout}"`);
  const [, L, H, D] = x.shape;
  const [tl, rh] = cos.shape;
  if (D % 2) throw new Error(`${what}: head dim ${D} of x [${x.shape}] must be even`);
  if (tl !== L || 2 * rh > D || rh === 0) {
    throw new Error(`${what}: tables [${cos.shape}] must be [L=${L}, R/2] with 0 < R ≤ D=${D} for x [${x.shape}]`);
  }
  const out = Tensor.empty(x.dev, x.shape);
  const n = x.size / 2;
  if (n === 0) return out;
  const dev = x.dev;
  dev.run(
    dev.pipeline(ropeWgsl(opts.layout)),
    [out.binding(), x.binding(), cos.binding(), sin.binding()],
    grid1d(n, WG),
    P.pack({ n, half: D / 2, rh, H, L }),
  );
  return out;
}
