// CPU twin of kernels/hash_noise.ts: the same integer hashing, exact sum, one f32 multiply-add and bf16 rounding, so
// it gives the kernel's bits (random weights read on the CPU use it as their values too).
/** √3: Irwin–Hall of 4 uniforms has variance 1/3. */
const SQRT3 = Math.sqrt(3);

export function lowbias32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** bf16 bits of elements [e0, e0 + n) of stream `key` with deviation `std` around `mean`. */
export function hashNoiseBf16Ref(key: number, std: number, mean: number, e0: number, n: number): Uint16Array {
  const scale = Math.fround(std * SQRT3);
  const m = Math.fround(mean);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    const e = e0 + i;
    const a = lowbias32((lowbias32((2 * e) >>> 0) ^ key) >>> 0);
    const b = lowbias32((lowbias32((2 * e + 1) >>> 0) ^ key) >>> 0);
    const k = (a & 0xffff) + (a >>> 16) + (b & 0xffff) + (b >>> 16);
    f32[0] = Math.fround(Math.fround((2 * k + 4) / 131072 - 2) * scale + m);
    const x = u32[0];
    out[i] = ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}
