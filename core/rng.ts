// Counter-based Gaussian RNG whose output bits are the same on every runtime and backend.
//
// Stream layout. Stream (seed, offset) keys Philox4x32-10 with the 53-bit seed (key = low word, high word).
// Element i = 4q + j uses counter offset + q, q = floor(i / 4), a 64-bit integer in words (x = low, y = high),
// z = w = 0: 4 normals per counter. Its output words (w0, w1) give j = 0, 1 and (w2, w3) give j = 2, 3 by
// Box-Muller on a word pair (a, b): u1 = (a + 1) / 2^32 ∈ (0, 1], u2 = b / 2^32, r = sqrt(-2 ln u1) ≤ 6.66,
// (r cos 2πu2, r sin 2πu2). Each element depends only on (seed, offset, i), so any batch or split agrees; a
// stream continues at offset + n/4 after n elements (n a multiple of 4).
//
// Box-Muller uses integer arithmetic only: WGSL's log/cos/sin (and FMA contraction) differ between GPUs and drivers,
// u32 operations do not. 64-bit values are (hi, lo) word pairs; 32×32→64 products come from 16-bit halves.
// - 2·(-ln u1)·2^58: normalise a + 1 with countLeadingZeros to m/2^32 ∈ [1/2, 1) (scaled by 3/2 below 2/3, adding
//   ln 3/2) so that t = 1 - m/2^32 ∈ (0, 1/3]; -ln(1 - t) = t·g(t) with g = Σ t^k/(k+1) by Horner in Q1.31. The
//   exact product t·g keeps relative precision as u1 → 1, where sqrt amplifies absolute errors.
// - r·2^29 = floor(sqrt(that)): the exact digit-by-digit square root of a 64-bit integer.
// - cos/sin: octant from the top 3 bits of b, reflected to ψ ∈ [0, π/4], Taylor series nested as
//   1 - ψ²/(k(k+1))·(…) so every partial value stays in [0, 1] (Q1.31).
// - r·cos as an exact 64-bit product, rounded to nearest-even f32 with integer ops and assembled by bitcast.
// Every step is an exact integer function, so the CPU twin below, written with the same steps in JS integer
// arithmetic, yields the same bits. Error of the integer result before the final f32 rounding: < 1e-8.
import { flatIndex, grid1d } from "./device.ts";
import { uniforms } from "./uniforms.ts";
import type { Tensor } from "./tensor.ts";

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** ln 2 · 2^59 and ln(3/2) · 2^59 as (hi, lo), π/4 · 2^32, rounded to nearest (computed with 60-digit mpmath). */
const LN2: [number, number] = [0x058b90bf, 0xbe8e7bcd];
const LN3_2: [number, number] = [0x033e647d, 0x97f3097e];
const PI_4 = 0xc90fdaa2;
/** 1/(k+1) in Q1.31 for g(t) = Σ_{k ≤ 17} t^k/(k+1): truncation < 2^-32 for t ≤ 1/3. */
const G = Array.from({ length: 18 }, (_, k) => Math.round(2 ** 31 / (k + 1)));
/** 1/(k(k+1)) in Q0.32, innermost first, for the nested series of cos (through ψ^12) and sin (through ψ^11). */
const COS_D = [11, 9, 7, 5, 3, 1].map((k) => Math.round(2 ** 32 / (k * (k + 1))));
const SIN_D = [10, 8, 6, 4, 2].map((k) => Math.round(2 ** 32 / (k * (k + 1))));
const ONE = 0x80000000; // 1.0 in Q1.31

const hex = (x: number) => `0x${(x >>> 0).toString(16)}u`;
const nested = (v: string, ds: number[]) => ds.map((d) => `${v} = ${hex(ONE)} - mulhi(mulhi(x, ${hex(d)}), ${v});`).join("\n  ");

/**
 * WGSL functions `philox(ctr: vec4u, key: vec2u) -> vec4u` and `boxMuller(a: u32, b: u32) -> vec2f` (the integer
 * Box-Muller above), for kernels that generate noise in place. Helpers: mulhilo, mulhi, add64, negLog2, isqrt64,
 * cosSin, toF32.
 */
export const RNG_WGSL: string = `
// 32x32 -> 64-bit product as (hi, lo) from 16-bit halves: WGSL has no widening multiply.
fn mulhilo(a: u32, b: u32) -> vec2u {
  let al = a & 0xffffu; let ah = a >> 16u; let bl = b & 0xffffu; let bh = b >> 16u;
  let ll = al * bl; let lh = al * bh; let hl = ah * bl; let hh = ah * bh;
  let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
  return vec2u(hi, a * b);
}
fn mulhi(a: u32, b: u32) -> u32 { return mulhilo(a, b).x; }
fn add64(a: vec2u, b: vec2u) -> vec2u { let lo = a.y + b.y; return vec2u(a.x + b.x + select(0u, 1u, lo < b.y), lo); }

fn philox(ctr: vec4u, key: vec2u) -> vec4u {
  var c = ctr; var k = key;
  for (var r = 0u; r < 10u; r++) {
    let p0 = mulhilo(${hex(M0)}, c.x);
    let p1 = mulhilo(${hex(M1)}, c.z);
    c = vec4u(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    k = k + vec2u(${hex(W0)}, ${hex(W1)});
  }
  return c;
}

// -2 ln((a + 1) / 2^32) · 2^58, for a < 2^32 - 1.
fn negLog2(a: u32) -> vec2u {
  let x = a + 1u;
  let lz = countLeadingZeros(x);
  var m = x << lz; // u1 = (m / 2^32) · 2^-lz
  var s = vec2u(${hex(LN2[0])} * lz + mulhi(${hex(LN2[1])}, lz), ${hex(LN2[1])} * lz);
  if (m < 0xaaaaaaabu) { m = m + (m >> 1u); s = add64(s, vec2u(${hex(LN3_2[0])}, ${hex(LN3_2[1])})); }
  let y = 0u - m; // t = y / 2^32 ∈ (0, 1/3]
  var g = ${hex(G[G.length - 1])};
  ${G.slice(0, -1).reverse().map((c) => `g = ${hex(c)} + mulhi(g, y);`).join("\n  ")}
  let p = mulhilo(y, g); // t·g(t) · 2^63
  return add64(s, vec2u(p.x >> 4u, (p.y >> 4u) | (p.x << 28u)));
}

// floor(sqrt(v)) of a 64-bit v, one result bit per step.
fn isqrt64(v: vec2u) -> u32 {
  var rem = v; var res = vec2u(0u, 0u); var one = vec2u(0x40000000u, 0u);
  for (var i = 0u; i < 32u; i++) {
    let t = add64(res, one);
    res = vec2u(res.x >> 1u, (res.y >> 1u) | (res.x << 31u));
    if (rem.x > t.x || (rem.x == t.x && rem.y >= t.y)) {
      rem = vec2u(rem.x - t.x - select(0u, 1u, rem.y < t.y), rem.y - t.y);
      res = add64(res, one);
    }
    one = vec2u(one.x >> 2u, (one.y >> 2u) | (one.x << 30u));
  }
  return res.y;
}

// (cos ψ, sin ψ) · 2^31 for ψ = p / 2^32 ∈ [0, π/4].
fn cosSin(p: u32) -> vec2u {
  let x = mulhi(p, p);
  var c = ${hex(ONE)};
  ${nested("c", COS_D)}
  var s = ${hex(ONE)};
  ${nested("s", SIN_D)}
  return vec2u(c, mulhi(p, s));
}

// The f32 nearest to p · 2^-60 (ties to even), negated if neg.
fn toF32(p: vec2u, neg: bool) -> f32 {
  if (p.x == 0u && p.y == 0u) { return 0.0; }
  var hi = p.x; var lo = p.y; var e = 3i;
  if (hi == 0u) { hi = lo; lo = 0u; e = e - 32i; }
  let s = countLeadingZeros(hi);
  hi = (hi << s) | ((lo >> 1u) >> (31u - s));
  lo = lo << s;
  let keep = hi >> 8u;
  let rest = hi & 0xffu;
  let up = rest > 0x80u || (rest == 0x80u && (lo != 0u || (keep & 1u) == 1u));
  let bits = (u32(e - i32(s) + 126i) << 23u) + keep + select(0u, 1u, up);
  return bitcast<f32>(bits | select(0u, 0x80000000u, neg));
}

fn boxMuller(a: u32, b: u32) -> vec2f {
  let r = select(isqrt64(negLog2(a)), 0u, a == 0xffffffffu); // sqrt(-2 ln u1) · 2^29
  let o = b >> 29u;
  var w = b & 0x1fffffffu;
  if ((o & 1u) == 1u) { w = 0x20000000u - w; }
  let pw = mulhilo(w, ${hex(PI_4)});
  let cs = cosSin((pw.x << 3u) | (pw.y >> 29u));
  let swap = ((o + 1u) & 2u) != 0u;
  return vec2f(toF32(mulhilo(r, select(cs.x, cs.y, swap)), ((o + 2u) & 4u) != 0u),
               toF32(mulhilo(r, select(cs.y, cs.x, swap)), o >= 4u));
}
`;

const P = uniforms("randn", { n: "u32", k0: "u32", k1: "u32", c0: "u32", c1: "u32" });
const WGSL = `
${P.wgsl}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${RNG_WGSL}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let q = ${flatIndex(64)};
  let base = q * 4u;
  if (base >= u.n) { return; }
  let lo = u.c0 + q;
  let w = philox(vec4u(lo, u.c1 + select(0u, 1u, lo < q), 0u, 0u), vec2u(u.k0, u.k1));
  let z0 = boxMuller(w.x, w.y);
  let z1 = boxMuller(w.z, w.w);
  out[base] = z0.x;
  if (base + 1u < u.n) { out[base + 1u] = z0.y; }
  if (base + 2u < u.n) { out[base + 2u] = z1.x; }
  if (base + 3u < u.n) { out[base + 3u] = z1.y; }
}`;

function words(x: number, what: string): [number, number] {
  if (!Number.isSafeInteger(x) || x < 0) throw new Error(`randn: ${what} must be a non-negative integer below 2^53, got ${x}`);
  return [x >>> 0, Math.floor(x / 2 ** 32)];
}

/** Fills an f32 tensor with N(0,1) samples of stream (seed, offset): element i uses counter offset + floor(i/4). */
export function randnInto(t: Tensor, seed: number, offset = 0): Tensor {
  if (t.dtype !== "f32") throw new Error(`randn: output must be f32, got ${t.dtype}`);
  const [k0, k1] = words(seed, "seed");
  const [c0, c1] = words(offset, "offset");
  if (t.size === 0) return t;
  const quads = Math.ceil(t.size / 4);
  t.dev.run(t.dev.pipeline(WGSL), [t.binding()], grid1d(quads, 64), P.pack({ n: t.size, k0, k1, c0, c1 }));
  return t;
}

// ---- CPU twin: the same integer steps; values are uint32 held in JS numbers ---------------------------------

/** floor(a·b / 2^32): a·bh and the partial sums stay below 2^53, so f64 arithmetic is exact. */
function mulhi(a: number, b: number): number {
  return Math.floor((a * (b >>> 16) + Math.floor((a * (b & 0xffff)) / 65536)) / 65536);
}
const mullo = (a: number, b: number) => Math.imul(a, b) >>> 0;

/** Philox4x32-10 of one counter block. */
export function philoxRef(ctr: [number, number, number, number], key: [number, number]): Uint32Array {
  let [c0, c1, c2, c3] = ctr.map((x) => x >>> 0);
  let [k0, k1] = key.map((x) => x >>> 0);
  for (let r = 0; r < 10; r++) {
    const h0 = mulhi(M0, c0), l0 = mullo(M0, c0);
    const h1 = mulhi(M1, c2), l1 = mullo(M1, c2);
    [c0, c1, c2, c3] = [(h1 ^ c1 ^ k0) >>> 0, l1, (h0 ^ c3 ^ k1) >>> 0, l0];
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  return Uint32Array.of(c0, c1, c2, c3);
}

/** r · 2^29 = floor(sqrt(-2 ln((a + 1) / 2^32) · 2^58)): negLog2 then isqrt64 of the WGSL. */
function radius(a: number): number {
  if (a === 0xffffffff) return 0;
  const x = (a + 1) >>> 0;
  const lz = Math.clz32(x | 0); // `| 0`: V8's Maglev deopt-loops on clz32 of a non-int32
  let m = (x << lz) >>> 0;
  let sh = (LN2[0] * lz + mulhi(LN2[1], lz)) >>> 0, sl = mullo(LN2[1], lz);
  if (m < 0xaaaaaaab) {
    m += m >>> 1;
    const lo = sl + LN3_2[1];
    sh = (sh + LN3_2[0] + (lo >= 2 ** 32 ? 1 : 0)) >>> 0;
    sl = lo >>> 0;
  }
  const y = (0 - m) >>> 0;
  let g = G[G.length - 1];
  for (let k = G.length - 2; k >= 0; k--) g = G[k] + mulhi(g, y);
  const ph = mulhi(y, g), pl = mullo(y, g);
  const lo = sl + (((pl >>> 4) | (ph << 28)) >>> 0);
  let vh = (sh + (ph >>> 4) + (lo >= 2 ** 32 ? 1 : 0)) >>> 0, vl = lo >>> 0;
  // isqrt64: floor(sqrt(v)), one result bit per step
  let rh = 0, rl = 0, oh = 0x40000000, ol = 0;
  for (let i = 0; i < 32; i++) {
    const t = rl + ol;
    const tl = t >>> 0, th = rh + oh + (t >= 2 ** 32 ? 1 : 0);
    rl = ((rl >>> 1) | (rh << 31)) >>> 0;
    rh >>>= 1;
    if (vh > th || (vh === th && vl >= tl)) {
      vh = (vh - th - (vl < tl ? 1 : 0)) >>> 0;
      vl = (vl - tl) >>> 0;
      const u = rl + ol;
      rh = rh + oh + (u >= 2 ** 32 ? 1 : 0);
      rl = u >>> 0;
    }
    ol = ((ol >>> 2) | (oh << 30)) >>> 0;
    oh >>>= 2;
  }
  return rl;
}

/** f32 bits of the value nearest to (hi·2^32 + lo) · 2^-60, ties to even; sign bit set if neg. */
function toF32Bits(hi: number, lo: number, neg: boolean): number {
  if (hi === 0 && lo === 0) return 0;
  let e = 3;
  if (hi === 0) {
    hi = lo;
    lo = 0;
    e -= 32;
  }
  const s = Math.clz32(hi | 0);
  hi = ((hi << s) | ((lo >>> 1) >>> (31 - s))) >>> 0;
  lo = (lo << s) >>> 0;
  const keep = hi >>> 8, rest = hi & 0xff;
  const up = rest > 0x80 || (rest === 0x80 && (lo !== 0 || (keep & 1) === 1));
  return ((((e - s + 126) << 23) + keep + (up ? 1 : 0)) | (neg ? 0x80000000 : 0)) >>> 0;
}

/** f32 bits of the Box-Muller pair of words (a, b), as the WGSL `boxMuller`. */
function boxMullerBits(a: number, b: number): [number, number] {
  const r = radius(a);
  const o = b >>> 29;
  let w = b & 0x1fffffff;
  if (o & 1) w = 0x20000000 - w;
  const p = ((mulhi(w, PI_4) << 3) | (mullo(w, PI_4) >>> 29)) >>> 0;
  const x = mulhi(p, p);
  let c = ONE, s = ONE;
  for (const d of COS_D) c = ONE - mulhi(mulhi(x, d), c);
  for (const d of SIN_D) s = ONE - mulhi(mulhi(x, d), s);
  s = mulhi(p, s);
  const swap = ((o + 1) & 2) !== 0;
  const cm = swap ? s : c, sm = swap ? c : s;
  return [toF32Bits(mulhi(r, cm), mullo(r, cm), ((o + 2) & 4) !== 0), toF32Bits(mulhi(r, sm), mullo(r, sm), o >= 4)];
}

/** The Box-Muller pair (r cos θ, r sin θ) of two uint32 words, exactly as the GPU computes it. */
export function boxMullerRef(a: number, b: number): [number, number] {
  const f = new Float32Array(new Uint32Array(boxMullerBits(a >>> 0, b >>> 0)).buffer);
  return [f[0], f[1]];
}

/** CPU version of `randnInto`: the same bits. */
export function randnRef(n: number, seed: number, offset = 0): Float32Array {
  const key = words(seed, "seed");
  words(offset, "offset");
  const out = new Float32Array(n);
  const bits = new Uint32Array(out.buffer);
  for (let q = 0; q * 4 < n; q++) {
    const [c0, c1] = words(offset + q, "offset");
    const w = philoxRef([c0, c1, 0, 0], key);
    const z = [...boxMullerBits(w[0], w[1]), ...boxMullerBits(w[2], w[3])];
    for (let j = 0; j < 4 && q * 4 + j < n; j++) bits[q * 4 + j] = z[j];
  }
  return out;
}
