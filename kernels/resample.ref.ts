// CPU references for kernels/resample.ts in f64, written from PyTorch's definitions (not from the GPU's tap tables):
// bicubic without antialias is upsample_bicubic2d's 4 clamped taps with Keys' a = -0.75; with antialias each output
// averages the a = -0.5 kernel stretched by the downscale factor over its support, normalised to sum 1.
type Shape4 = readonly [number, number, number, number];

export function upsampleNearest2xRef(x: Float32Array, [B, C, H, W]: Shape4): Float32Array {
  const out = new Float32Array(B * C * 4 * H * W);
  for (let p = 0; p < B * C; p++)
    for (let y = 0; y < 2 * H; y++)
      for (let xo = 0; xo < 2 * W; xo++) out[(p * 2 * H + y) * 2 * W + xo] = x[(p * H + (y >> 1)) * W + (xo >> 1)];
  return out;
}

function keys(a: number, t: number): number {
  t = Math.abs(t);
  return t <= 1 ? (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1 : t < 2 ? a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a : 0;
}

/** Source indices and weights of every output position along one axis. */
function axisWeights(inSize: number, outSize: number, antialias: boolean): { idx: number[]; w: number[] }[] {
  const scale = inSize / outSize;
  return Array.from({ length: outSize }, (_, i) => {
    if (!antialias) {
      const real = scale * (i + 0.5) - 0.5;
      const i0 = Math.min(Math.floor(real), inSize - 1);
      const t = Math.min(Math.max(real - i0, 0), 1);
      const idx = [-1, 0, 1, 2].map((d) => Math.min(Math.max(i0 + d, 0), inSize - 1));
      return { idx, w: [1 + t, t, 1 - t, 2 - t].map((d) => keys(-0.75, d)) };
    }
    const stretch = Math.max(scale, 1);
    const center = scale * (i + 0.5);
    const lo = Math.max(Math.trunc(center - 2 * stretch + 0.5), 0);
    const hi = Math.min(Math.trunc(center + 2 * stretch + 0.5), inSize);
    const idx: number[] = [], w: number[] = [];
    for (let j = lo; j < hi; j++) {
      idx.push(j);
      w.push(keys(-0.5, (j - center + 0.5) / stretch));
    }
    const total = w.reduce((a, b) => a + b, 0);
    return { idx, w: w.map((v) => v / total) };
  });
}

export function resizeBicubicRef(
  x: Float32Array,
  [B, C, H, W]: Shape4,
  outH: number,
  outW: number,
  antialias: boolean,
): Float32Array {
  const wx = axisWeights(W, outW, antialias), wy = axisWeights(H, outH, antialias);
  const out = new Float32Array(B * C * outH * outW);
  const row = new Float64Array(outW);
  const tmp = new Float64Array(H * outW);
  for (let p = 0; p < B * C; p++) {
    for (let y = 0; y < H; y++) {
      for (let xo = 0; xo < outW; xo++) {
        let s = 0;
        wx[xo].idx.forEach((j, t) => (s += x[(p * H + y) * W + j] * wx[xo].w[t]));
        row[xo] = s;
      }
      tmp.set(row, y * outW);
    }
    for (let yo = 0; yo < outH; yo++)
      for (let xo = 0; xo < outW; xo++) {
        let s = 0;
        wy[yo].idx.forEach((j, t) => (s += tmp[j * outW + xo] * wy[yo].w[t]));
        out[(p * outH + yo) * outW + xo] = s;
      }
  }
  return out;
}

export function cropRef(x: Float32Array, [B, C, H, W]: Shape4, top: number, left: number, h: number, w: number) {
  const out = new Float32Array(B * C * h * w);
  for (let p = 0; p < B * C; p++)
    for (let y = 0; y < h; y++) {
      for (let xo = 0; xo < w; xo++) out[(p * h + y) * w + xo] = x[(p * H + top + y) * W + left + xo];
    }
  return out;
}

/** (x·rescale − mean_c) / std_c. */
export function normalizeRef(x: Float32Array, [, C, H, W]: Shape4, mean: readonly number[], std: readonly number[], rescale: number) {
  return Float32Array.from(x, (v, i) => {
    const c = Math.floor(i / (H * W)) % C;
    return (v * rescale - mean[c]) / std[c];
  });
}
