// 2-D convolution (NCHW activations, PyTorch [Cout, Cin, kh, kw] weights) as an implicit GEMM:
// M = B·Ho·Wo output pixels, N = Cout, K = Cin·kh·kw. A workgroup computes a BM×BN output tile, stepping through K
// in BK slices: the im2col slice of A (gathered straight from the input, zero in the padding) and the weight slice
// of B are staged in workgroup memory as vec4 columns, each thread accumulates a TM×TN register block (vec4s of
// 4 pixels, one per channel), and the next slice is fetched into registers while the current one is consumed.
// The epilogue adds the bias and an optional residual (the VAE ResNet shortcut) and writes NCHW.
// Input prologue (the VAE's GroupNorm+SiLU → conv and nearest ×2 → conv, without materialising either): with
// `inputNorm` every loaded element becomes silu?((x − mean)·rstd·w[c] + b[c]) from a per-(batch, channel) table
// (mean, rstd·w, b) built by a tiny kernel from groupNormStats, so weight dtypes add no conv variant; with
// `upsample2x` the conv sees the 2H×2W image and reads pixel (y>>u, x>>u) of x, u a uniform shift of 0 or 1.
// Padding stays zero (applied after both, as in the unfused graph). Only the norm is a pipeline boolean (it binds
// the table); the shift and SiLU are uniforms, so the plain and upsampling convolutions share one pipeline.
// Sizes, kernel shape, stride and padding are uniforms, so one pipeline serves every convolution with the same
// tile shape and dtypes (lavapipe spends seconds compiling each). One tile shape, 128×128 with 8×8 per thread, also
// for Cout ≤ 4 (the VAE's conv_out): a 256×4 tile saved that layer's padded FMAs (~1% of a 1024² decode), but
// SwiftShader's compiler (Chromium without a GPU) crashed the GPU process on it, so the variant went.
import { type DType, flatIndex, grid1d, Tensor, uniforms, wgslArrayType, wgslLoad } from "../core/index.ts";
import { expectDType, expectRank, expectSameDevice, expectShape } from "./check.ts";
import { activationWgsl } from "./elementwise.ts";

/** Workgroup WGM×WGN threads, TM×TN outputs each (both multiples of 4), K slice BK. */
interface TileShape {
  wgm: number;
  wgn: number;
  tm: number;
  tn: number;
  bk: number;
}

const TILE: TileShape = { wgm: 16, wgn: 16, tm: 8, tn: 8, bk: 16 };

export type Padding = number | readonly [top: number, bottom: number, left: number, right: number];

export interface Conv2dOptions {
  /** One stride for both axes, or [sy, sx]. */
  stride?: number | readonly [number, number];
  /** Zero padding: one number for all sides, or [top, bottom, left, right]. */
  padding?: Padding;
  /** Added to the output (same shape), after the bias. */
  residual?: Tensor;
  /** GroupNorm (+ SiLU) of x applied while loading it: stats from groupNormStats(x, groups), weight/bias [Cin]. */
  inputNorm?: InputNorm;
  /** Convolve the nearest-neighbour ×2 upsampling of x (after inputNorm) instead of x. */
  upsample2x?: boolean;
}

export interface InputNorm {
  /** [B, groups, 2]: (mean, rstd) per batch item and group, from groupNormStats. */
  stats: Tensor;
  groups: number;
  weight?: Tensor | null;
  bias?: Tensor | null;
  silu?: boolean;
}

/** The output size along one axis. */
export const convOutSize = (n: number, k: number, stride: number, padLo: number, padHi: number): number =>
  Math.floor((n + padLo + padHi - k) / stride) + 1;

const CONV = uniforms("conv2d", {
  M: "u32", N: "u32", K: "u32", kTiles: "u32",
  H: "u32", W: "u32", HW: "u32", CinHW: "u32",
  Wo: "u32", HoWo: "u32", sy: "u32", sx: "u32",
  padT: "i32", padL: "i32", KW: "u32", KHW: "u32",
  tilesN: "u32", tiles: "u32", Wx: "u32", Cin: "u32", up: "u32", silu: "u32",
});

function conv2dWgsl(t: TileShape, wDtype: DType, bDtype: DType | null, residual: boolean, norm: boolean): string {
  const threads = t.wgm * t.wgn;
  const BM = t.wgm * t.tm, BN = t.wgn * t.tn, BK = t.bk;
  const QM = BM / 4, QN = BN / 4; // vec4 columns per K row of the A and B tiles
  const aPasses = (QM * BK) / threads; // A items: one pixel quad at one k
  const aRows = threads / QM;
  const bItems = BN * (BK / 4); // B items: one channel at four consecutive k
  const bPasses = Math.ceil(bItems / threads);
  const mq = t.tm / 4, nq = t.tn / 4;
  const bindings = [`@group(0) @binding(3) var<storage, read> wbuf: array<${wgslArrayType(wDtype)}>;`];
  const bind = (name: string, type: string) => `@group(0) @binding(${bindings.length + 3}) var<storage, read> ${name}: array<${type}>;`;
  if (bDtype) bindings.push(bind("bbuf", wgslArrayType(bDtype)));
  if (residual) bindings.push(bind("res", "f32"));
  if (norm) bindings.push(bind("tab", "vec4f"));

  // Everything that indexes the per-thread arrays is unrolled here, so every index is a constant and the arrays
  // live in registers on any compiler.
  const r = (n: number) => Array.from({ length: n }, (_, i) => i);
  const each = (n: number, f: (i: number) => string, indent: string) => r(n).map((i) => indent + f(i)).join("\n");
  const guard = bPasses * threads > bItems ? `if (i < ${bItems}u) ` : "";
  const bLoop = (f: (p: number) => string) => each(bPasses, (p) => `{ let i = t + ${p * threads}u; ${guard}{ ${f(p)} } }`, "      ");
  const acc = (q: number, j: number) => `acc[${q * t.tn + j}]`;
  return `
${CONV.wgsl}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
${bindings.join("\n")}
${wgslLoad("w", "wbuf", wDtype)}
${bDtype ? wgslLoad("b", "bbuf", bDtype) : ""}
${norm ? activationWgsl("silu", "silu") : ""}

var<workgroup> As: array<vec4f, ${QM * BK}>;
var<workgroup> Bs: array<vec4f, ${QN * BK}>;

// Input pixel (iy, ix) of the (upsampled) image of plane xb, normalised with table entry tc, zero outside the
// image (the padding) and for dead rows. Loads are unconditional (from element 0 when out of range) so the code
// stays branch-free.
fn ldx(ok: bool, iy: i32, ix: i32, xb: u32, tc: u32) -> f32 {
  let inside = ok && u32(iy) < u.H && u32(ix) < u.W;
  var v = x[select(0u, xb + (u32(iy) >> u.up) * u.Wx + (u32(ix) >> u.up), inside)];${norm ? `
  let t = tab[select(0u, tc, inside)];
  v = (v - t.x) * t.y + t.z;
  if (u.silu != 0u) { v = silu(v); }` : ""}
  return select(0.0, v, inside);
}

fn ldw(n: u32, k: u32) -> f32 {
  let inside = n < u.N && k < u.K;
  return select(0.0, load_w(select(0u, n * u.K + k, inside)), inside);
}

// Output channel n of pixels m..m+3 (+ bias, + residual), skipping those past M or N.
fn put4(m: u32, n: u32, v: vec4f) {
  if (n >= u.N) { return; }
  let bias = ${bDtype ? "load_b(n)" : "0.0"};
  for (var c = 0u; c < 4u; c++) {
    let mc = m + c;
    if (mc < u.M) {
      let i = ((mc / u.HoWo) * u.N + n) * u.HoWo + mc % u.HoWo;
      out[i] = v[c] + bias${residual ? " + res[i]" : ""};
    }
  }
}

@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) t: u32) {
  let tile = wid.x + wid.y * nwg.x;
  if (tile >= u.tiles) { return; }
  // Consecutive workgroups share a pixel tile (and its input reads in cache) across channel tiles.
  let mt = (tile / u.tilesN) * ${BM}u;
  let nt = (tile % u.tilesN) * ${BN}u;
  // Thread (tx, ty) owns pixel quads tx + q·${t.wgm} and channel quads ty + s·${t.wgn} of the tile.
  let tx = t % ${t.wgm}u;
  let ty = t / ${t.wgm}u;

  // The A loader's pixel quad is fixed for the whole K loop: decode its four pixels once.
  let aq = t % ${QM}u;
  let ak = t / ${QM}u;
  let m = vec4u(mt + aq * 4u) + vec4u(0u, 1u, 2u, 3u);
  let ok = m < vec4u(u.M);
  let p = m % vec4u(u.HoWo);
  let bi = m / vec4u(u.HoWo);
  let xb = bi * u.CinHW;
  let tb = bi * u.Cin;
  let iy = vec4i((p / vec4u(u.Wo)) * u.sy) - u.padT;
  let ix = vec4i((p % vec4u(u.Wo)) * u.sx) - u.padL;

  var ra: array<vec4f, ${aPasses}>;
  var rb: array<vec4f, ${bPasses}>;
  var acc: array<vec4f, ${mq * t.tn}>; // [q·${t.tn} + j]: 4 pixels × channel j
  for (var kt = 0u; kt <= u.kTiles; kt++) {
    if (kt > 0u) {
      workgroupBarrier();
${each(aPasses, (p) => `As[(ak + ${p * aRows}u) * ${QM}u + aq] = ra[${p}];`, "      ")}
${bLoop((p) => `let n = i % ${BN}u; let k = (i / ${BN}u) * 4u; let col = k * ${QN}u + n / 4u;
        ${r(4).map((c) => `Bs[col + ${c * QN}u][n % 4u] = rb[${p}][${c}];`).join(" ")}`)}
      workgroupBarrier();
    }
    // Fetch slice kt into registers (slice kTiles does not exist: the last pass only computes).
    if (kt < u.kTiles) {
${each(aPasses, (p) => `{ let k = kt * ${BK}u + ak + ${p * aRows}u;
        let o = ok & vec4<bool>(k < u.K);
        let ky = i32((k % u.KHW) / u.KW);
        let kx = i32(k % u.KW);
        let c = k / u.KHW;
        let b = xb + c * u.HW;
        let tc = tb + c;
        ra[${p}] = vec4f(ldx(o.x, iy.x + ky, ix.x + kx, b.x, tc.x), ldx(o.y, iy.y + ky, ix.y + kx, b.y, tc.y),
                        ldx(o.z, iy.z + ky, ix.z + kx, b.z, tc.z), ldx(o.w, iy.w + ky, ix.w + kx, b.w, tc.w)); }`, "      ")}
${bLoop((p) => `let n = nt + i % ${BN}u; let k = kt * ${BK}u + (i / ${BN}u) * 4u;
        rb[${p}] = vec4f(ldw(n, k), ldw(n, k + 1u), ldw(n, k + 2u), ldw(n, k + 3u));`)}
    }
    if (kt > 0u) {
      for (var kk = 0u; kk < ${BK}u; kk++) {
${each(mq, (q) => `let a${q} = As[kk * ${QM}u + tx + ${q * t.wgm}u];`, "        ")}
${each(nq, (s) => `let b${s} = Bs[kk * ${QN}u + ty + ${s * t.wgn}u];`, "        ")}
${r(mq).map((q) => each(t.tn, (j) => `${acc(q, j)} = fma(a${q}, vec4f(b${j >> 2}[${j & 3}]), ${acc(q, j)});`, "        ")).join("\n")}
      }
    }
  }

  // Epilogue: one call per (pixel quad, channel) register.
${r(mq).map((q) => each(t.tn, (j) => {
  const n = `nt + (ty + ${(j >> 2) * t.wgn}u) * 4u + ${j & 3}u`;
  return `put4(mt + (tx + ${q * t.wgm}u) * 4u, ${n}, ${acc(q, j)});`;
}, "  ")).join("\n")}
}`;
}

// Generated sources, memoised so a launch neither rebuilds nor rehashes the text.
const sources = new Map<string, string>();

/** One thread per (batch, channel): tab = (mean, rstd·w[c], b[c], 0) from stats [B, G, 2] (mean, rstd). */
const NORM_TABLE = uniforms("conv2d inputNorm", { n: "u32", C: "u32", G: "u32", Cg: "u32" });

function normTableWgsl(w: DType | undefined, b: DType | undefined): string {
  const decls: string[] = [];
  let k = 3;
  for (const [name, dt] of [["w", w], ["b", b]] as const) {
    if (dt) decls.push(`@group(0) @binding(${k++}) var<storage, read> ${name}buf: array<${wgslArrayType(dt)}>;`, wgslLoad(name, `${name}buf`, dt));
  }
  return `
${NORM_TABLE.wgsl}
@group(0) @binding(1) var<storage, read_write> out: array<vec4f>;
@group(0) @binding(2) var<storage, read> stats: array<vec2f>;
${decls.join("\n")}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${flatIndex(64)};
  if (i >= u.n) { return; }
  let c = i % u.C;
  let st = stats[(i / u.C) * u.G + c / u.Cg];
  out[i] = vec4f(st.x, st.y${w ? " * load_w(c)" : ""}, ${b ? "load_b(c)" : "0.0"}, 0.0);
}`;
}

/** Checks `inputNorm` against x [B, Cin, ...] and queues its per-(batch, channel) table [B·Cin] of vec4f. */
function normTable(x: Tensor, n: InputNorm): Tensor {
  const what = "conv2d inputNorm";
  const [B, Cin] = x.shape;
  if (!Number.isInteger(n.groups) || n.groups < 1 || Cin % n.groups) {
    throw new Error(`${what}: ${n.groups} groups do not divide the ${Cin} channels of x [${x.shape}]`);
  }
  expectShape(n.stats, `${what} stats`, [B, n.groups, 2]);
  expectDType(n.stats, `${what} stats`, "f32");
  const ts = [n.stats];
  for (const [t, name] of [[n.weight, "weight"], [n.bias, "bias"]] as const) {
    if (!t) continue;
    expectShape(t, `${what} ${name}`, [Cin]);
    expectDType(t, `${what} ${name}`, "f32", "f16", "bf16");
    ts.push(t);
  }
  expectSameDevice(what, x, ...ts);
  const tab = Tensor.empty(x.dev, [B * Cin, 4]);
  const key = `table:${n.weight?.dtype}:${n.bias?.dtype}`;
  let wgsl = sources.get(key);
  if (!wgsl) sources.set(key, (wgsl = normTableWgsl(n.weight?.dtype, n.bias?.dtype)));
  const uni = NORM_TABLE.pack({ n: B * Cin, C: Cin, G: n.groups, Cg: Cin / n.groups });
  x.dev.run(x.dev.pipeline(wgsl), [tab.binding(), ...ts.map((t) => t.binding())], grid1d(B * Cin, 64), uni);
  return tab;
}

/**
 * conv2d(x [B, Cin, H, W] f32, weight [Cout, Cin, kh, kw] f32/f16/bf16, bias [Cout] | undefined) → [B, Cout, Ho, Wo]
 * with zero padding, as torch.nn.functional.conv2d (plus `residual`, added after the bias). With `inputNorm` and/or
 * `upsample2x` it convolves conv2d's input as upsampleNearest2x(groupNorm(x, ...)) would give it (H, W doubled).
 */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  const what = "conv2d";
  expectRank(x, `${what} x`, 4);
  expectRank(weight, `${what} weight`, 4);
  expectDType(x, `${what} x`, "f32");
  expectDType(weight, `${what} weight`, "f32", "f16", "bf16");
  const [B, Cin, Hx, Wx] = x.shape;
  const up = opts.upsample2x ? 2 : 1;
  const H = up * Hx, W = up * Wx;
  const [Cout, wCin, kh, kw] = weight.shape;
  if (wCin !== Cin) {
    throw new Error(`${what}: weight [${weight.shape}] expects ${wCin} input channels, x [${x.shape}] has ${Cin}`);
  }
  const stride = opts.stride ?? 1;
  const [sy, sx] = typeof stride === "number" ? [stride, stride] : stride;
  const pad = opts.padding ?? 0;
  const [pt, pb, pl, pr] = typeof pad === "number" ? [pad, pad, pad, pad] : pad;
  if (![sy, sx].every((s) => Number.isInteger(s) && s >= 1)) throw new Error(`${what}: stride ${stride} must be positive integers`);
  if (![pt, pb, pl, pr].every((p) => Number.isInteger(p) && p >= 0)) throw new Error(`${what}: padding [${pad}] must be integers >= 0`);
  const Ho = convOutSize(H, kh, sy, pt, pb), Wo = convOutSize(W, kw, sx, pl, pr);
  if (Ho < 1 || Wo < 1) {
    throw new Error(`${what}: kernel ${kh}×${kw} does not fit x [${x.shape}]${up > 1 ? " upsampled ×2" : ""} with padding [${pt},${pb},${pl},${pr}]`);
  }
  const ts = [x, weight];
  if (bias) {
    expectShape(bias, `${what} bias`, [Cout]);
    expectDType(bias, `${what} bias`, "f32", "f16", "bf16");
    ts.push(bias);
  }
  const outShape = [B, Cout, Ho, Wo];
  if (opts.residual) {
    expectShape(opts.residual, `${what} residual`, outShape);
    expectDType(opts.residual, `${what} residual`, "f32");
    ts.push(opts.residual);
  }
  expectSameDevice(what, ...ts);

  const dev = x.dev;
  const out = Tensor.empty(dev, outShape);
  const M = B * Ho * Wo, N = Cout, K = Cin * kh * kw;
  const norm = opts.inputNorm;
  const tab = norm && normTable(x, norm);
  if (M === 0 || N === 0) {
    tab?.dispose();
    return out;
  }
  if (tab) ts.push(tab);
  const BM = TILE.wgm * TILE.tm, BN = TILE.wgn * TILE.tn;
  const tilesN = Math.ceil(N / BN), tiles = Math.ceil(M / BM) * tilesN;
  const uni = CONV.pack({
    M, N, K, kTiles: Math.ceil(K / TILE.bk),
    H, W, HW: Hx * Wx, CinHW: Cin * Hx * Wx,
    Wo, HoWo: Ho * Wo, sy, sx,
    padT: pt, padL: pl, KW: kw, KHW: kh * kw,
    tilesN, tiles, Wx, Cin, up: up - 1, silu: norm?.silu ? 1 : 0,
  });
  const key = `${weight.dtype}:${bias?.dtype}:${!!opts.residual}:${!!norm}`;
  let wgsl = sources.get(key);
  if (!wgsl) sources.set(key, (wgsl = conv2dWgsl(TILE, weight.dtype, bias?.dtype ?? null, !!opts.residual, !!norm)));
  dev.run(dev.pipeline(wgsl), [out.binding(), ...ts.map((t) => t.binding())], grid1d(tiles, 1), uni);
  tab?.dispose();
  return out;
}
