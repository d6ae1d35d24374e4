// CPU reference for kernels/softmax.ts: max-subtracted softmax over the last dim, in f64.
export function softmaxRef(x: ArrayLike<number>, len: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / len; r++) {
    let m = -Infinity, s = 0;
    for (let i = 0; i < len; i++) m = Math.max(m, x[r * len + i]);
    for (let i = 0; i < len; i++) s += Math.exp(x[r * len + i] - m);
    for (let i = 0; i < len; i++) out[r * len + i] = Math.exp(x[r * len + i] - m) / s;
  }
  return out;
}
