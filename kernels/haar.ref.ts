// CPU reference for kernels/haar.ts in f64: separable 1-D Haar steps per axis exactly as pywt describes them
// ('symmetric' mode mirrors the last sample of an odd side), written independently of the fused 2×2 kernel.
export interface Plane {
  data: Float64Array;
  /** [B, C, H, W] */
  shape: number[];
}

export interface HaarRef {
  low: Plane;
  /** details[l - 1] = level l (finest first), bands as in pywt (cH, cV, cD). */
  details: { h: Plane; v: Plane; d: Plane }[];
}

/** 1-D analysis along `axis` (2 = H, 3 = W) of a [B, C, H, W] array. */
function analyse(x: Plane, axis: 2 | 3): [Plane, Plane] {
  const [B, C, H, W] = x.shape;
  const n = x.shape[axis];
  const m = Math.ceil(n / 2);
  const shape = axis === 2 ? [B, C, m, W] : [B, C, H, m];
  const a = new Float64Array(B * C * shape[2] * shape[3]), d = new Float64Array(a.length);
  for (let p = 0; p < B * C; p++)
    for (let y = 0; y < shape[2]; y++)
      for (let z = 0; z < shape[3]; z++) {
        const k = axis === 2 ? y : z;
        const i0 = 2 * k, i1 = Math.min(2 * k + 1, n - 1);
        const at = (i: number) => (axis === 2 ? x.data[(p * H + i) * W + z] : x.data[(p * H + y) * W + i]);
        const o = (p * shape[2] + y) * shape[3] + z;
        a[o] = (at(i0) + at(i1)) / Math.SQRT2;
        d[o] = (at(i0) - at(i1)) / Math.SQRT2;
      }
  return [{ data: a, shape }, { data: d, shape }];
}

/** 1-D synthesis along `axis`, producing `len` ≤ 2·(band size) samples. */
function synthesise(a: Plane, d: Plane, axis: 2 | 3, len: number): Plane {
  const [B, C, h, w] = a.shape;
  const shape = axis === 2 ? [B, C, len, w] : [B, C, h, len];
  const out = new Float64Array(B * C * shape[2] * shape[3]);
  for (let p = 0; p < B * C; p++)
    for (let y = 0; y < shape[2]; y++)
      for (let z = 0; z < shape[3]; z++) {
        const src = axis === 2 ? (p * h + (y >> 1)) * w + z : (p * h + y) * w + (z >> 1);
        const odd = (axis === 2 ? y : z) & 1;
        out[(p * shape[2] + y) * shape[3] + z] = (a.data[src] + (odd ? -1 : 1) * d.data[src]) / Math.SQRT2;
      }
  return { data: out, shape };
}

/** pywt wavedec2(x, 'db1', mode='symmetric', level=levels) over the last two axes of [B, C, H, W]. */
export function haarDwt2dRef(x: ArrayLike<number>, shape: number[], levels: number): HaarRef {
  let cur: Plane = { data: Float64Array.from(x), shape: [...shape] };
  const details: HaarRef["details"] = [];
  for (let l = 0; l < levels; l++) {
    const [lo, hi] = analyse(cur, 2);
    const [aa, ad] = analyse(lo, 3);
    const [da, dd] = analyse(hi, 3);
    details.push({ h: da, v: ad, d: dd });
    cur = aa;
  }
  return { low: cur, details };
}

/** pywt waverec2(..., 'db1', 'symmetric') with waverec2's per-level crop, then cropped to (outH, outW). */
export function haarIdwt2dRef(low: Plane, details: HaarRef["details"], outH: number, outW: number): Plane {
  let cur = low;
  for (let l = details.length - 1; l >= 0; l--) {
    const [oh, ow] = l === 0 ? [outH, outW] : details[l - 1].h.shape.slice(2);
    const { h, v, d } = details[l];
    cur = synthesise(synthesise(cur, v, 3, ow), synthesise(h, d, 3, ow), 2, oh);
  }
  return cur;
}
