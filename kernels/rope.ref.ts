// CPU reference for kernels/rope.ts: rotation in f64 on f32 inputs, written from the two conventions' definitions
// (FLUX apply_rotary_emb with repeat-interleaved tables, transformers' rotate_half with [f, f] tables).
import type { RopeLayout } from "./rope.ts";

/** x [B, L, H, D] rotated by cos/sin [L, R/2]; dims ≥ R unchanged. */
export function ropeRef(
  x: Float32Array,
  [B, L, H, D]: readonly number[],
  cos: Float32Array,
  sin: Float32Array,
  rh: number,
  layout: RopeLayout,
): Float32Array {
  const out = Float32Array.from(x);
  const R = 2 * rh;
  for (let b = 0; b < B; b++)
    for (let l = 0; l < L; l++)
      for (let h = 0; h < H; h++) {
        const base = ((b * L + l) * H + h) * D;
        for (let d = 0; d < R; d++) {
          // out = x·cos + rot(x)·sin with full-width tables; rot(x)[d] = −partner: (−x_odd, x_even) or [−x2, x1].
          const j = layout === "interleaved" ? d >> 1 : d % rh;
          const partner = layout === "interleaved" ? (d % 2 ? -x[base + d - 1] : x[base + d + 1]) : d < rh ? x[base + d + rh] : -x[base + d - rh];
          out[base + d] = x[base + d] * cos[l * rh + j] - partner * sin[l * rh + j];
        }
      }
  return out;
}
