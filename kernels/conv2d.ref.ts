// CPU reference for kernels/conv2d.ts: direct convolution in f64 on f32 (or pre-rounded 16-bit) values. The input
// prologue composes the other families' references as the unfused graph runs them: groupNorm (+SiLU), rounded to
// f32 as a materialised activation would be, then nearest ×2 upsampling, then the convolution.
import { groupNormRef } from "./norm.ref.ts";
import { upsampleNearest2xRef } from "./resample.ref.ts";

export interface Conv2dRefArgs {
  x: Float32Array;
  xShape: readonly [number, number, number, number];
  w: Float32Array;
  wShape: readonly [number, number, number, number];
  bias?: Float32Array;
  residual?: Float32Array;
  stride?: readonly [number, number];
  padding?: readonly [number, number, number, number];
  /** GroupNorm (statistics computed here from x) applied to x first. */
  inputNorm?: { groups: number; eps: number; w?: Float32Array; b?: Float32Array; silu?: boolean };
  upsample2x?: boolean;
}

/** Returns the output [B, Cout, Ho, Wo] and its shape. */
export function conv2dRef(a: Conv2dRefArgs): { out: Float32Array; shape: [number, number, number, number] } {
  const [B, Cin] = a.xShape;
  let [, , H, W] = a.xShape;
  let x = a.x;
  if (a.inputNorm) {
    const n = a.inputNorm;
    x = Float32Array.from(groupNormRef(x, Cin, H * W, n.groups, n.eps, { w: n.w, b: n.b, silu: n.silu }));
  }
  if (a.upsample2x) {
    x = upsampleNearest2xRef(x, [B, Cin, H, W]);
    [H, W] = [2 * H, 2 * W];
  }
  const [Cout, , kh, kw] = a.wShape;
  const [sy, sx] = a.stride ?? [1, 1];
  const [pt, pb, pl, pr] = a.padding ?? [0, 0, 0, 0];
  const Ho = Math.floor((H + pt + pb - kh) / sy) + 1, Wo = Math.floor((W + pl + pr - kw) / sx) + 1;
  const out = new Float32Array(B * Cout * Ho * Wo);
  for (let b = 0; b < B; b++)
    for (let co = 0; co < Cout; co++)
      for (let oy = 0; oy < Ho; oy++)
        for (let ox = 0; ox < Wo; ox++) {
          let s = 0;
          for (let ci = 0; ci < Cin; ci++)
            for (let ky = 0; ky < kh; ky++) {
              const iy = oy * sy - pt + ky;
              if (iy < 0 || iy >= H) continue;
              const xrow = ((b * Cin + ci) * H + iy) * W;
              const wrow = ((co * Cin + ci) * kh + ky) * kw;
              for (let kx = 0; kx < kw; kx++) {
                const ix = ox * sx - pl + kx;
                if (ix >= 0 && ix < W) s += x[xrow + ix] * a.w[wrow + kx];
              }
            }
          const i = ((b * Cout + co) * Ho + oy) * Wo + ox;
          out[i] = s + (a.bias?.[co] ?? 0) + (a.residual?.[i] ?? 0);
        }
  return { out, shape: [B, Cout, Ho, Wo] };
}
