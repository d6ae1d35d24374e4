// Storage dtypes. Activations are f32; weights keep their stored dtype on the GPU. WGSL has no bf16 and f16
// needs an optional feature, so 16-bit tensors are stored as packed u32 words (element 2i in the low half) and
// decoded in the shader with `wgslDecode`.

export type DType = "f32" | "f16" | "bf16" | "i32" | "u32";

export const itemBytes: Record<DType, number> = { f32: 4, f16: 2, bf16: 2, i32: 4, u32: 4 };

export function isDType(s: string): s is DType {
  return s in itemBytes;
}

/** WGSL function `load_<name>(i: u32) -> f32` reading element i of `array<u32|f32>` binding `buf` of this dtype. */
export function wgslLoad(name: string, buf: string, dtype: DType): string {
  switch (dtype) {
    case "f32":
      return `fn load_${name}(i: u32) -> f32 { return ${buf}[i]; }`;
    case "bf16":
      return `fn load_${name}(i: u32) -> f32 { let w = ${buf}[i >> 1u]; return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (i & 1u) == 1u)); }`;
    case "f16":
      return `fn load_${name}(i: u32) -> f32 { let w = unpack2x16float(${buf}[i >> 1u]); return select(w.x, w.y, (i & 1u) == 1u); }`;
    default:
      throw new Error(`wgslLoad: dtype ${dtype} is not a float type`);
  }
}

/** The WGSL element type of a storage array holding this dtype. */
export function wgslArrayType(dtype: DType): string {
  return dtype === "f32" ? "f32" : dtype === "i32" ? "i32" : "u32";
}

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** bf16 bits of x, round to nearest even (as torch does). NaN stays NaN. */
export function f32ToBf16(x: number): number {
  f32buf[0] = x;
  const u = u32buf[0];
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 0x40;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16ToF32(h: number): number {
  u32buf[0] = h << 16;
  return f32buf[0];
}

export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

export function f32ToF16(x: number): number {
  f32buf[0] = x;
  const u = u32buf[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  let r = mant >>> 13;
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) r++;
  if (r === 0x400) {
    r = 0;
    e++;
    if (e >= 31) return sign | 0x7c00;
  }
  return sign | (e << 10) | r;
}

/** Decodes raw little-endian bytes of a float dtype to f32. */
export function decodeFloats(bytes: Uint8Array, dtype: DType): Float32Array {
  const n = bytes.byteLength / itemBytes[dtype];
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  if (dtype === "f32") return new Float32Array(aligned.buffer, aligned.byteOffset, n).slice();
  if (dtype === "i32") return Float32Array.from(new Int32Array(aligned.buffer, aligned.byteOffset, n));
  if (dtype === "u32") return Float32Array.from(new Uint32Array(aligned.buffer, aligned.byteOffset, n));
  const h = new Uint16Array(aligned.buffer.slice(aligned.byteOffset, aligned.byteOffset + n * 2));
  const out = new Float32Array(n);
  if (dtype === "bf16") {
    const o32 = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) o32[i] = h[i] << 16;
  } else for (let i = 0; i < n; i++) out[i] = f16ToF32(h[i]);
  return out;
}

/** Encodes f32 values as raw little-endian bytes of `dtype` (rounding to nearest even for 16-bit types). */
export function encodeFloats(data: Float32Array, dtype: DType): Uint8Array {
  if (dtype === "f32") return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (dtype === "i32") return new Uint8Array(Int32Array.from(data).buffer);
  if (dtype === "u32") return new Uint8Array(Uint32Array.from(data).buffer);
  const h = new Uint16Array(data.length);
  const f = dtype === "bf16" ? f32ToBf16 : f32ToF16;
  for (let i = 0; i < data.length; i++) h[i] = f(data[i]);
  return new Uint8Array(h.buffer);
}

/** Rounds every value through `dtype` and back (the CPU view of what a stored weight holds). */
export function roundTo(data: Float32Array, dtype: DType): Float32Array {
  return dtype === "f32" ? data : decodeFloats(encodeFloats(data, dtype), dtype);
}

/** Concatenates typed arrays of one kind (Float32Array by default when the list is empty). */
export function concatArrays<T extends Float32Array | Uint8Array>(parts: readonly T[]): T {
  const Ctor = (parts[0]?.constructor ?? Float32Array) as new (n: number) => T;
  const out = new Ctor(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
