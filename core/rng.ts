// Counter-based Gaussian RNG: Philox4x32-10 keyed by the seed, counter = (element index / 4 + offset), then
// Box-Muller on pairs of 32-bit words. Each element depends only on (seed, offset, index), so any batch, split or
// runtime gives the same stream. `philoxRef`/`randnRef` are the CPU versions of the same generator.
import { flatIndex, grid1d, params } from "./device.ts";
import type { Tensor } from "./tensor.ts";

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

const WGSL = `
struct P { n: u32, k0: u32, k1: u32, offset: u32 }
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

// 32x32 -> 64-bit product as (hi, lo) from 16-bit halves: WGSL has no widening multiply.
fn mulhilo(a: u32, b: u32) -> vec2u {
  let al = a & 0xffffu; let ah = a >> 16u; let bl = b & 0xffffu; let bh = b >> 16u;
  let ll = al * bl; let lh = al * bh; let hl = ah * bl; let hh = ah * bh;
  let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
  return vec2u(hi, a * b);
}

fn philox(ctr: vec4u, key: vec2u) -> vec4u {
  var c = ctr; var k = key;
  for (var r = 0u; r < 10u; r++) {
    let p0 = mulhilo(${M0}u, c.x);
    let p1 = mulhilo(${M1}u, c.z);
    c = vec4u(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    k = k + vec2u(${W0}u, ${W1}u);
  }
  return c;
}

fn boxMuller(a: u32, b: u32) -> vec2f {
  let u1 = (f32(a >> 8u) + 1.0) * 5.9604644775390625e-8; // (0, 1]
  let u2 = f32(b >> 8u) * 5.9604644775390625e-8;          // [0, 1)
  let r = sqrt(-2.0 * log(u1));
  let t = 6.283185307179586 * u2;
  return vec2f(r * cos(t), r * sin(t));
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let q = ${flatIndex(64)};
  let base = q * 4u;
  if (base >= u.n) { return; }
  let w = philox(vec4u(q + u.offset, 0u, 0u, 0u), vec2u(u.k0, u.k1));
  let z0 = boxMuller(w.x, w.y);
  let z1 = boxMuller(w.z, w.w);
  let v = array<f32, 4>(z0.x, z0.y, z1.x, z1.y);
  for (var j = 0u; j < 4u; j++) { if (base + j < u.n) { out[base + j] = v[j]; } }
}`;

function seedKey(seed: number): [number, number] {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`randn: seed must be a non-negative integer, got ${seed}`);
  return [seed >>> 0, Math.floor(seed / 2 ** 32) >>> 0];
}

/** Fills an f32 tensor with N(0,1) samples of stream (seed, offset): element i uses counter offset + floor(i/4). */
export function randnInto(t: Tensor, seed: number, offset = 0): Tensor {
  if (t.dtype !== "f32") throw new Error(`randn: output must be f32, got ${t.dtype}`);
  const [k0, k1] = seedKey(seed);
  const quads = Math.ceil(t.size / 4);
  t.dev.run(t.dev.pipeline(WGSL), [t.binding()], grid1d(quads, 64), params().u32(t.size).u32(k0).u32(k1).u32(offset).bytes());
  return t;
}

// ---- CPU reference ------------------------------------------------------------------------------------------

function mulhilo(a: number, b: number): [number, number] {
  const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
  const ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  const hi = (hh + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) >>> 0;
  return [hi, Math.imul(a, b) >>> 0];
}

/** Philox4x32-10 of one counter block. */
export function philoxRef(ctr: [number, number, number, number], key: [number, number]): Uint32Array {
  let [c0, c1, c2, c3] = ctr.map((x) => x >>> 0);
  let [k0, k1] = key.map((x) => x >>> 0);
  for (let r = 0; r < 10; r++) {
    const [h0, l0] = mulhilo(M0, c0);
    const [h1, l1] = mulhilo(M1, c2);
    [c0, c1, c2, c3] = [(h1 ^ c1 ^ k0) >>> 0, l1, (h0 ^ c3 ^ k1) >>> 0, l0];
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  return Uint32Array.of(c0, c1, c2, c3);
}

/** CPU version of `randnInto`, in f64 transcendentals rounded to f32. */
export function randnRef(n: number, seed: number, offset = 0): Float32Array {
  const key = seedKey(seed);
  const out = new Float32Array(n);
  for (let q = 0; q * 4 < n; q++) {
    const w = philoxRef([(q + offset) >>> 0, 0, 0, 0], key);
    for (let p = 0; p < 2; p++) {
      const u1 = Math.fround((Math.fround(w[2 * p] >>> 8) + 1) * 5.9604644775390625e-8);
      const u2 = Math.fround((w[2 * p + 1] >>> 8) * 5.9604644775390625e-8);
      const r = Math.sqrt(-2 * Math.log(u1));
      const t = 2 * Math.PI * u2;
      if (q * 4 + 2 * p < n) out[q * 4 + 2 * p] = r * Math.cos(t);
      if (q * 4 + 2 * p + 1 < n) out[q * 4 + 2 * p + 1] = r * Math.sin(t);
    }
  }
  return out;
}
