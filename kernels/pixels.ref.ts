// CPU reference for kernels/pixels.ts: the same f32 operations in the same order (Math.fround after each), with
// WGSL's round() (half to even) and trunc; byte layouts written out index by index.
import type { PixelRounding, Quantize } from "./pixels.ts";

const f = Math.fround;
const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
/** Nearest integer, halves to the even one (WGSL round). */
export const roundHalfEven = (v: number) => (Math.abs(v % 1) === 0.5 ? 2 * Math.round(v / 2) : Math.round(v));

/** HWC RGB bytes [B, H, W, 3] of a decoder output x NCHW [B, 3, H, W]. */
export function packRgbBytesRef(x: Float32Array, B: number, H: number, W: number, rounding: PixelRounding): Uint8Array {
  const out = new Uint8Array(B * H * W * 3);
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < H * W; p++) {
      for (let c = 0; c < 3; c++) {
        const v = x[(b * 3 + c) * H * W + p];
        const byte = rounding === "trunc" ? Math.trunc(clamp(f(f(v + 1) * 127.5), 0, 255)) : roundHalfEven(f(clamp(f(f(v / 2) + 0.5), 0, 1) * 255));
        out[(b * H * W + p) * 3 + c] = byte;
      }
    }
  }
  return out;
}

/** NCHW [B, 3, H, W] f32 of HWC RGB bytes [B, H, W, 3]. */
export function unpackRgbBytesRef(bytes: Uint8Array, B: number, H: number, W: number): Float32Array {
  const out = new Float32Array(B * 3 * H * W);
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < H * W; p++) for (let c = 0; c < 3; c++) out[(b * 3 + c) * H * W + p] = bytes[(b * H * W + p) * 3 + c];
  }
  return out;
}

/** q(clamp((x + offset)·scale, 0, 255)) element by element. */
export function quantizePixelsRef(x: Float32Array, q: Quantize): Float32Array {
  const [offset, scale] = [f(q.offset), f(q.scale)];
  return x.map((v) => {
    const y = clamp(f(f(v + offset) * scale), 0, 255);
    return q.rounding === "round" ? roundHalfEven(y) : Math.trunc(y);
  });
}
