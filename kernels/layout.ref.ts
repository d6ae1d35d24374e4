// CPU references for kernels/layout.ts, written from the index definitions (not from the GPU decomposition).
import { numel } from "../core/index.ts";

type Arr = Float32Array | Int32Array;

/** out[i0..] = x[...] with out.shape[k] = shape[perm[k]]. */
export function transposeRef<T extends Arr>(x: T, shape: readonly number[], perm: readonly number[]): T {
  const r = shape.length;
  const outShape = perm.map((a) => shape[a]);
  const inStrides = shape.map((_, i) => numel(shape.slice(i + 1)));
  const out = new (x.constructor as new (n: number) => T)(x.length);
  const idx = new Array<number>(r).fill(0);
  for (let o = 0; o < x.length; o++) {
    let src = 0;
    for (let k = 0; k < r; k++) src += idx[k] * inStrides[perm[k]];
    out[o] = x[src];
    for (let k = r - 1; k >= 0; k--) {
      if (++idx[k] < outShape[k]) break;
      idx[k] = 0;
    }
  }
  return out;
}

export function concatRef(xs: { data: Float32Array; shape: readonly number[] }[], axis: number): Float32Array {
  const outer = numel(xs[0].shape.slice(0, axis));
  const out = new Float32Array(xs.reduce((n, t) => n + t.data.length, 0));
  let at = 0;
  for (let o = 0; o < outer; o++) {
    for (const { data, shape } of xs) {
      const run = numel(shape.slice(axis));
      out.set(data.subarray(o * run, (o + 1) * run), at);
      at += run;
    }
  }
  return out;
}

export function sliceRef(x: Float32Array, shape: readonly number[], axis: number, start: number, end: number): Float32Array {
  const outer = numel(shape.slice(0, axis));
  const inner = numel(shape.slice(axis + 1));
  const run = (end - start) * inner;
  const out = new Float32Array(outer * run);
  for (let o = 0; o < outer; o++) out.set(x.subarray((o * shape[axis] + start) * inner, (o * shape[axis] + end) * inner), o * run);
  return out;
}

/** [B, C, 2h, 2w] → [B, 4C, h, w]: out[b, c·4 + p·2 + q, i, j] = x[b, c, 2i + p, 2j + q]. */
export function patchifyRef(x: Float32Array, [B, C, H, W]: readonly number[]): Float32Array {
  const h = H / 2, w = W / 2;
  const out = new Float32Array(x.length);
  for (let b = 0; b < B; b++)
    for (let c = 0; c < C; c++)
      for (let p = 0; p < 2; p++)
        for (let q = 0; q < 2; q++)
          for (let i = 0; i < h; i++)
            for (let j = 0; j < w; j++) {
              out[((b * 4 * C + c * 4 + p * 2 + q) * h + i) * w + j] = x[((b * C + c) * H + 2 * i + p) * W + 2 * j + q];
            }
  return out;
}

/** Rows of table [V, D] by ids; NaN rows for ids outside [0, V). */
export function embeddingRef(table: Float32Array, D: number, ids: Int32Array): Float32Array {
  const V = table.length / D;
  const out = new Float32Array(ids.length * D);
  ids.forEach((id, n) => {
    for (let d = 0; d < D; d++) out[n * D + d] = id >= 0 && id < V ? table[id * D + d] : NaN;
  });
  return out;
}
