// CPU references for kernels/norm.ts in f64 (weights already rounded to their stored dtype by the caller).
type Vec = ArrayLike<number>;

/** Normalises each row of `len` values: centred with biased variance (LayerNorm) or not (RMSNorm). */
function normRows(x: Vec, len: number, center: boolean, eps: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / len; r++) {
    const o = r * len;
    let m = 0;
    if (center) {
      for (let i = 0; i < len; i++) m += x[o + i];
      m /= len;
    }
    let v = 0;
    for (let i = 0; i < len; i++) v += (x[o + i] - m) ** 2;
    const rstd = 1 / Math.sqrt(v / len + eps);
    for (let i = 0; i < len; i++) out[o + i] = (x[o + i] - m) * rstd;
  }
  return out;
}

export function rmsNormRef(x: Vec, len: number, eps: number, w?: Vec): Float64Array {
  return normRows(x, len, false, eps).map((v, i) => v * (w ? w[i % len] : 1));
}

export function layerNormRef(x: Vec, len: number, eps: number, w?: Vec, b?: Vec): Float64Array {
  return normRows(x, len, true, eps).map((v, i) => v * (w ? w[i % len] : 1) + (b ? b[i % len] : 0));
}

/** GroupNorm of NCHW x [B, C, HW] with `groups` groups, affine per channel, then SiLU when asked. */
export function groupNormRef(x: Vec, C: number, HW: number, groups: number, eps: number, opts: { w?: Vec; b?: Vec; silu?: boolean } = {}): Float64Array {
  return normRows(x, (C / groups) * HW, true, eps).map((v, i) => {
    const c = Math.floor(i / HW) % C;
    const a = v * (opts.w ? opts.w[c] : 1) + (opts.b ? opts.b[c] : 0);
    return opts.silu ? a / (1 + Math.exp(-a)) : a;
  });
}
