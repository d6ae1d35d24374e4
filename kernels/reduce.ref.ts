// CPU references for kernels/reduce.ts: f64 accumulation over the last dim of row-major data.
type Fold = (acc: number, v: number) => number;

function rowsRef(x: ArrayLike<number>, len: number, init: number, f: Fold): Float64Array {
  const rows = len ? x.length / len : 0;
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let acc = init;
    for (let i = 0; i < len; i++) acc = f(acc, x[r * len + i]);
    out[r] = acc;
  }
  return out;
}

export const sumRef = (x: ArrayLike<number>, len: number) => rowsRef(x, len, 0, (a, v) => a + v);
export const meanRef = (x: ArrayLike<number>, len: number) => sumRef(x, len).map((s) => s / len);
export const maxRef = (x: ArrayLike<number>, len: number) => rowsRef(x, len, -Infinity, (a, v) => Math.max(a, v));
