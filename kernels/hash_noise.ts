// Hash noise: centred near-normal bf16 values from an integer hash of (key, element index), for random weights
// with real shapes (models/random_weights.ts) without a download.
// - Element e of stream `key` is std·√3·(Σ_{j<4} u_j − 2) + mean, u_j = (2k_j + 1)/2^17 from the 16-bit halves k_j
//   of two lowbias32 hashes of (key, e): Irwin–Hall with 4 terms (mean 0, the given std, bounded at ±3.46·std,
//   close to normal). Integer hashing, one exact sum, one f32 multiply-add and a round-to-nearest-even to bf16, so
//   hash_noise.ref.ts gives the same bits; a few integer ops per value (the Philox stream of core/rng is ~10×
//   slower on lavapipe).
// - One thread writes one u32 word (two bf16) of the tensor; a fill starts at any element of the stream, so a
//   tensor stored in row chunks fills chunk by chunk.
import { flatIndex, grid1d, Tensor, uniforms } from "../core/index.ts";
import { expectDType } from "./check.ts";

const WG = 256;
/** √3: Irwin–Hall of 4 uniforms has variance 1/3. */
const SQRT3 = Math.sqrt(3);

const P = uniforms("hashNoiseBf16", { words: "u32", end: "u32", e0: "u32", key: "u32", scale: "f32", mean: "f32" });
const WGSL = `
${P.wgsl}
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
// lowbias32 (C. Wellons' integer hash): full avalanche in two multiplies.
fn h(x0: u32) -> u32 {
  var x = x0;
  x ^= x >> 16u; x *= 0x7feb352du; x ^= x >> 15u; x *= 0x846ca68bu; x ^= x >> 16u;
  return x;
}
fn bf16(e: u32) -> u32 {
  let a = h(h(2u * e) ^ u.key);
  let b = h(h(2u * e + 1u) ^ u.key);
  let k = (a & 0xffffu) + (a >> 16u) + (b & 0xffffu) + (b >> 16u);
  let v = f32(2u * k + 4u) * (1.0 / 131072.0) - 2.0;
  let x = bitcast<u32>(v * u.scale + u.mean);
  return (x + 0x7fffu + ((x >> 16u) & 1u)) >> 16u;
}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${flatIndex(WG)};
  if (i >= u.words) { return; }
  let e = u.e0 + 2u * i;
  out[i] = bf16(e) | select(0u, bf16(e + 1u) << 16u, e + 1u < u.end);
}`;

/** Fills bf16 tensor t with elements [e0, e0 + t.size) of stream `key` (u32): deviation `std` around `mean`. */
export function hashNoiseBf16(t: Tensor, opts: { key: number; e0: number; std: number; mean: number }): void {
  expectDType(t, "hashNoiseBf16 t", "bf16");
  const words = Math.ceil(t.size / 2);
  const uni = P.pack({ words, end: opts.e0 + t.size, e0: opts.e0, key: opts.key, scale: opts.std * SQRT3, mean: opts.mean });
  if (words) t.dev.run(t.dev.pipeline(WGSL), [t.binding()], grid1d(words, WG), uni);
}
