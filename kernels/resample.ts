// Spatial resampling of NCHW f32 images: nearest ×2 upsampling (the VAE upsampler), bicubic (and Pillow's Lanczos)
// resize, center crop and per-channel normalisation (CLIP preprocessing, FLUX.2 reference images).
// Bicubic resize is separable like PyTorch's: a horizontal pass, then a vertical one, each a 1-D filter whose
// taps (first source index, count, weights) are computed once per (size, mode) on the CPU in f64 with PyTorch's
// formulas and kept on the GPU. The "uint8" modes reproduce resizing a uint8 image bit-exactly: weights quantised
// to fixed point, integer sums, and a rounded, clamped uint8 result after each pass — torch's CPU uint8 kernel
// (what torchvision and the transformers 5 CLIP processor run) or Pillow's Image.resize(BICUBIC).
import { Device, flatIndex, grid1d, Tensor, type UniformFields, uniforms, type Uniforms } from "../core/index.ts";
import { expectDType, expectRank } from "./check.ts";

/** Workgroup size of `flatWgsl` kernels (dispatch them over grid1d(n, FLAT_WG)). */
export const FLAT_WG = 256;
const WG = FLAT_WG;

/**
 * A one-thread-per-element kernel over u.n elements (u from `uniforms`): `out` (f32 or vec2f), input `x` (f32 or
 * u32), optionally a u32 `tab`; `body` runs with the index `i`.
 */
export function flatWgsl(o: {
  uniforms: Uniforms<{ n: "u32" } & UniformFields>;
  body: string;
  out?: "f32" | "vec2f" | "u32";
  input?: "f32" | "u32";
  table?: boolean;
  /** WGSL functions the body calls. */
  fns?: string;
}): string {
  return `
${o.uniforms.wgsl}
@group(0) @binding(1) var<storage, read_write> out: array<${o.out ?? "f32"}>;
@group(0) @binding(2) var<storage, read> x: array<${o.input ?? "f32"}>;
${o.table ? "@group(0) @binding(3) var<storage, read> tab: array<u32>;" : ""}
${o.fns ?? ""}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${flatIndex(WG)};
  if (i >= u.n) { return; }
${o.body}
}`;
}

function nchw(x: Tensor, what: string): [number, number, number, number] {
  expectRank(x, `${what} x`, 4);
  expectDType(x, `${what} x`, "f32");
  return x.shape as [number, number, number, number];
}

// ---- nearest ×2 ------------------------------------------------------------------------------------------------

// One thread per input pixel writes its 2×2 block as two vec2 stores (output rows have an even length).
const UPSAMPLE = uniforms("upsampleNearest2x", { n: "u32", W: "u32" });
const UPSAMPLE_WGSL = flatWgsl({
  uniforms: UPSAMPLE,
  out: "vec2f",
  body: `  let xw = i % u.W;
  let row = i / u.W; // (b·C + c)·H + y
  let v = vec2f(x[i]);
  let o = 2u * row * u.W + xw; // vec2 index of output row 2·row
  out[o] = v;
  out[o + u.W] = v;`,
});

/** Nearest-neighbour ×2 upsampling [B, C, H, W] → [B, C, 2H, 2W] (F.interpolate(scale_factor=2, mode="nearest")). */
export function upsampleNearest2x(x: Tensor): Tensor {
  const [B, C, H, W] = nchw(x, "upsampleNearest2x");
  const out = Tensor.empty(x.dev, [B, C, 2 * H, 2 * W]);
  const n = x.size;
  x.dev.run(x.dev.pipeline(UPSAMPLE_WGSL), [out.binding(), x.binding()], grid1d(n, WG), UPSAMPLE.pack({ n, W }));
  return out;
}

// ---- bicubic resize ----------------------------------------------------------------------------------------------

export type Uint8Resize = "torch" | "pil";

export interface ResizeOptions {
  /** PyTorch's antialias flag: true filters with a = -0.5 widened by the downscale factor, false is the plain
   * 4-tap a = -0.75 kernel. Default false, as F.interpolate. */
  antialias?: boolean;
  /** Resize as a uint8 image (x must hold integers 0..255; so will the result): "torch" is torch's CPU uint8
   * kernel (torchvision resize of a uint8 tensor), "pil" is Pillow's (always antialiased). */
  uint8?: Uint8Resize;
  /** "lanczos" is Pillow's LANCZOS (a = 3 windowed sinc, antialiased); only with uint8: "pil". Default "bicubic". */
  filter?: "bicubic" | "lanczos";
}

/** The 1-D filter for one output size: per output index its first source index, tap count and weights. */
export interface Taps {
  taps: number;
  start: Int32Array;
  count: Int32Array;
  /** [out, taps] row-major, zero past `count`. */
  weights: Float64Array;
}

const cubic = (a: number) => (x: number) => {
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
};

// Pillow writes the outer lobe as (((x - 5)·x + 8)·x - 4)·a; the rounding differs from torch's form in the last
// bit, which can move a fixed-point weight.
const pilCubic = (x: number) => {
  x = Math.abs(x);
  if (x < 1) return (1.5 * x - 2.5) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * -0.5;
  return 0;
};

// Pillow's lanczos_filter: sinc(x)·sinc(x/3) on [-3, 3), with sinc(0) = 1.
const sinc = (x: number) => (x === 0 ? 1 : Math.sin(x * Math.PI) / (x * Math.PI));
const pilLanczos = (x: number) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0);

/**
 * Resampling taps exactly as PyTorch computes bicubic ones (align_corners=False, size given): antialiased as in
 * `_compute_indices_min_size_weights_aa` (also Pillow's `precompute_coeffs`, which takes any filter of support
 * `radius`), plain as upsample_bicubic2d with its clamped source indices folded into a contiguous window.
 * `maxPartial` is torch's running maximum weight, which sets the uint8 kernel's fixed-point precision.
 */
export function resampleTaps(
  inSize: number,
  outSize: number,
  antialias: boolean,
  filter: (x: number) => number = cubic(antialias ? -0.5 : -0.75),
  radius = 2,
): Taps & { maxPartial: number } {
  const scale = inSize / outSize;
  const support = antialias && scale >= 1 ? radius * scale : radius;
  const taps = antialias ? Math.ceil(support) * 2 + 1 : 4;
  const start = new Int32Array(outSize), count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * taps);
  let maxPartial = 0;
  for (let i = 0; i < outSize; i++) {
    const w = weights.subarray(i * taps, (i + 1) * taps);
    if (antialias) {
      const center = scale * (i + 0.5);
      const invscale = scale >= 1 ? 1 / scale : 1;
      const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
      const n = Math.min(Math.max(Math.min(Math.trunc(center + support + 0.5), inSize) - xmin, 0), taps);
      let total = 0;
      for (let j = 0; j < n; j++) total += w[j] = filter((j + xmin - center + 0.5) * invscale);
      if (total !== 0) for (let j = 0; j < n; j++) w[j] /= total;
      for (let j = 0; j < n; j++) maxPartial = Math.max(maxPartial, w[j]);
      start[i] = xmin;
      count[i] = n;
    } else {
      const real = scale * (i + 0.5) - 0.5;
      const idx = Math.min(Math.floor(real), inSize - 1);
      const lambda = Math.min(Math.max(real - idx, 0), 1);
      const xmin = Math.max(idx - 1, 0);
      start[i] = xmin;
      count[i] = Math.min(idx + 3, inSize) - xmin;
      for (let j = 0; j < 4; j++) {
        const at = Math.min(Math.max(idx - 1 + j, 0), inSize - 1) - xmin;
        w[at] += filter(j - 1 - lambda);
        maxPartial = Math.max(maxPartial, w[at]);
      }
    }
  }
  return { taps, start, count, weights, maxPartial };
}

/** Fixed-point weights of the uint8 kernels and their precision (fraction bits). */
export function quantizeTaps(t: Taps & { maxPartial: number }, mode: Uint8Resize): { weights: Int32Array; bits: number } {
  let bits = 22; // Pillow: 32 - 8 - 2
  if (mode === "torch") {
    // The largest precision whose largest weight still fits int16.
    for (bits = 0; bits < 22; bits++) if (Math.trunc(0.5 + t.maxPartial * 2 ** (bits + 1)) >= 1 << 15) break;
  }
  // Round half away from zero, as both libraries do.
  const weights = Int32Array.from(t.weights, (w) => Math.trunc(w * 2 ** bits + (w < 0 ? -0.5 : 0.5)));
  return { weights, bits };
}

// Table layout per output index: [start, count, weight_0 .. weight_{taps-1}] as u32 words (f32 or i32 bits).
const RESAMPLE = uniforms("resizeBicubic", { n: "u32", inLen: "u32", outLen: "u32", inner: "u32", taps: "u32", bits: "u32" });
const resampleWgsl = (int: boolean) =>
  flatWgsl({
    uniforms: RESAMPLE,
    table: true,
    body: `  let r = i % u.inner;
  let j = (i / u.inner) % u.outLen;
  let o = i / (u.inner * u.outLen);
  let row = j * (u.taps + 2u);
  let base = (o * u.inLen + tab[row]) * u.inner + r;
  let count = tab[row + 1u];
${int
  ? `  var s = 1 << (u.bits - 1u);
  for (var t = 0u; t < count; t++) { s += i32(x[base + t * u.inner]) * bitcast<i32>(tab[row + 2u + t]); }
  out[i] = f32(clamp(s >> u.bits, 0, 255));`
  : `  var s = 0.0;
  for (var t = 0u; t < count; t++) { s += x[base + t * u.inner] * bitcast<f32>(tab[row + 2u + t]); }
  out[i] = s;`}`,
  });

const RESAMPLE_WGSL = [resampleWgsl(false), resampleWgsl(true)];

interface Table {
  tensor: Tensor;
  taps: number;
  bits: number;
}

const tables = new WeakMap<Device, Map<string, Table>>();

function table(dev: Device, inSize: number, outSize: number, antialias: boolean, mode?: Uint8Resize, lanczos = false): Table {
  const key = `${inSize}:${outSize}:${antialias}:${mode ?? "f32"}:${lanczos}`;
  let cache = tables.get(dev);
  if (!cache) tables.set(dev, (cache = new Map()));
  let t = cache.get(key);
  if (!t) {
    const taps = lanczos ? resampleTaps(inSize, outSize, true, pilLanczos, 3) : resampleTaps(inSize, outSize, antialias, mode === "pil" ? pilCubic : undefined);
    const q = mode ? quantizeTaps(taps, mode) : { weights: Float32Array.from(taps.weights), bits: 0 };
    const wBits = new Uint32Array(q.weights.buffer);
    const words = new Uint32Array(outSize * (taps.taps + 2));
    for (let i = 0; i < outSize; i++) {
      const row = i * (taps.taps + 2);
      words[row] = taps.start[i];
      words[row + 1] = taps.count[i];
      words.set(wBits.subarray(i * taps.taps, (i + 1) * taps.taps), row + 2);
    }
    t = { tensor: Tensor.fromArray(dev, words, [words.length]).keep(), taps: taps.taps, bits: q.bits };
    cache.set(key, t);
  }
  return t;
}

/** One separable pass: x viewed as [outer, inLen, inner] → [outer, outLen, inner]. */
function pass(x: Tensor, shape: number[], axis: 2 | 3, outLen: number, opts: ResizeOptions): Tensor {
  const dev = x.dev;
  const inLen = shape[axis];
  const mode = opts.uint8;
  const tab = table(dev, inLen, outLen, opts.antialias ?? false, mode, opts.filter === "lanczos");
  const outShape = [...shape];
  outShape[axis] = outLen;
  const out = Tensor.empty(dev, outShape);
  const inner = axis === 2 ? shape[3] : 1;
  const n = out.size;
  const uni = RESAMPLE.pack({ n, inLen, outLen, inner, taps: tab.taps, bits: tab.bits });
  dev.run(dev.pipeline(RESAMPLE_WGSL[mode ? 1 : 0]), [out.binding(), x.binding(), tab.tensor.binding()], grid1d(n, WG), uni);
  return out;
}

/**
 * Bicubic resize [B, C, H, W] → [B, C, outH, outW] as F.interpolate(mode="bicubic", align_corners=False, antialias)
 * (width first, then height, as PyTorch's separable kernel and Pillow), or as a uint8 image resize (see
 * ResizeOptions, which also selects Pillow's Lanczos filter).
 */
export function resizeBicubic(x: Tensor, outH: number, outW: number, opts: ResizeOptions = {}): Tensor {
  const what = "resizeBicubic";
  const [B, C, H, W] = nchw(x, what);
  const antialias = opts.antialias ?? false;
  if (!(Number.isInteger(outH) && Number.isInteger(outW) && outH > 0 && outW > 0)) {
    throw new Error(`${what}: output size ${outH}×${outW} must be positive integers`);
  }
  if (H === 0 || W === 0) throw new Error(`${what}: cannot resize an empty image [${x.shape}]`);
  if (opts.uint8 === "pil" && !antialias) {
    throw new Error(`${what}: Pillow's bicubic resize always antialiases; pass antialias: true`);
  }
  if (opts.filter === "lanczos" && opts.uint8 !== "pil") throw new Error(`${what}: the Lanczos filter is Pillow's: pass uint8: "pil"`);
  if (H === outH && W === outW) {
    const out = Tensor.empty(x.dev, x.shape);
    x.dev.copy(x.binding(), out.binding());
    return out;
  }
  let y = x;
  let shape = [B, C, H, W];
  if (W !== outW) {
    y = pass(y, shape, 3, outW, opts);
    shape = [B, C, H, outW];
  }
  if (H !== outH) {
    const h = pass(y, shape, 2, outH, opts);
    if (y !== x) y.dispose();
    y = h;
  }
  return y;
}

// ---- crop and normalise ------------------------------------------------------------------------------------------

const CROP = uniforms("centerCrop", { n: "u32", h: "u32", w: "u32", H: "u32", W: "u32", top: "u32", left: "u32" });
const CROP_WGSL = flatWgsl({
  uniforms: CROP,
  body: `  let xo = i % u.w;
  let yo = (i / u.w) % u.h;
  let plane = i / (u.w * u.h);
  out[i] = x[(plane * u.H + u.top + yo) * u.W + u.left + xo];`,
});

/** Python's round(): halves go to the even neighbour. */
const roundHalfEven = (v: number) => (Math.abs(v % 1) === 0.5 ? 2 * Math.round(v / 2) : Math.round(v));

/** Center crop [B, C, H, W] → [B, C, h, w] with torchvision's offsets: top = round((H - h) / 2), likewise left. */
export function centerCrop(x: Tensor, h: number, w: number): Tensor {
  const [B, C, H, W] = nchw(x, "centerCrop");
  if (!(h >= 1 && w >= 1 && h <= H && w <= W && Number.isInteger(h) && Number.isInteger(w))) {
    throw new Error(`centerCrop: crop ${h}×${w} must fit inside x [${x.shape}]`);
  }
  const top = roundHalfEven((H - h) / 2), left = roundHalfEven((W - w) / 2);
  const out = Tensor.empty(x.dev, [B, C, h, w]);
  const n = out.size;
  const uni = CROP.pack({ n, h, w, H, W, top, left });
  x.dev.run(x.dev.pipeline(CROP_WGSL), [out.binding(), x.binding()], grid1d(n, WG), uni);
  return out;
}

const NORMALIZE = uniforms("normalizeChannels", { n: "u32", hw: "u32", C: "u32", mu: "vec4f", sigma: "vec4f" });
const NORMALIZE_WGSL = flatWgsl({
  uniforms: NORMALIZE,
  body: `  let c = (i / u.hw) % u.C;
  out[i] = (x[i] - u.mu[c]) / u.sigma[c];`,
});

/**
 * Per-channel (x·rescale − mean) / std for [B, C, H, W] with C ≤ 4, computed as transformers' fused
 * rescale-and-normalise does: (x − mean/rescale) / (std/rescale) with both divided in f32.
 */
export function normalizeChannels(x: Tensor, mean: readonly number[], std: readonly number[], rescale = 1): Tensor {
  const [B, C, H, W] = nchw(x, "normalizeChannels");
  if (C > 4 || mean.length !== C || std.length !== C) {
    const got = `${mean.length} means and ${std.length} stds`;
    throw new Error(`normalizeChannels: need one mean and std per channel of x [${x.shape}] (at most 4 channels), got ${got}`);
  }
  const f = Math.fround;
  const inv = f(1 / rescale);
  const lanes = [0, 1, 2, 3];
  const mu = lanes.map((c) => (c < C ? f(f(mean[c]) * inv) : 0));
  const sigma = lanes.map((c) => (c < C ? f(f(std[c]) * inv) : 1));
  const out = Tensor.empty(x.dev, [B, C, H, W]);
  x.dev.run(x.dev.pipeline(NORMALIZE_WGSL), [out.binding(), x.binding()], grid1d(x.size, WG), NORMALIZE.pack({ n: x.size, hw: H * W, C, mu, sigma }));
  return out;
}
