// CPU references for kernels/elementwise.ts, in f64 on f32 inputs.
export function erf(x: number): number {
  // Abramowitz-Stegun 7.1.28 is too coarse; use the same series/continued fraction split in f64.
  const a = Math.abs(x);
  if (a < 3) {
    let term = a, sum = a;
    for (let n = 1; n < 60; n++) {
      term *= (-a * a) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * Math.min(1, sum * 1.1283791670955126);
  }
  let f = a, c = a, d = 0;
  for (let k = 1; k < 60; k++) {
    const ak = k * 0.5;
    d = 1 / (a + ak * d);
    c = a + ak / c;
    f *= c * d;
  }
  return Math.sign(x) * (1 - Math.exp(-a * a) / (f * 1.7724538509055159));
}

export const unaryRef = {
  silu: (x: number) => x / (1 + Math.exp(-x)),
  gelu: (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  geluTanh: (x: number) => 0.5 * x * (1 + Math.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3))),
  quickGelu: (x: number) => x / (1 + Math.exp(-1.702 * x)),
  neg: (x: number) => -x,
  exp: (x: number) => Math.exp(x),
};

export const mapRef = (x: Float32Array, f: (v: number) => number) => Float32Array.from(x, f);

/** a op b with b broadcast over leading dims (b.length divides a.length). */
export function binaryRef(a: Float32Array, b: Float32Array, f: (x: number, y: number) => number): Float32Array {
  return Float32Array.from(a, (x, i) => f(x, b[i % b.length]));
}

export function modulateRef(x: Float32Array, B: number, D: number, scale: Float32Array, shift: Float32Array): Float32Array {
  const L = x.length / (B * D);
  return Float32Array.from(x, (v, i) => {
    const j = Math.floor(i / (L * D)) * D + (i % D);
    return v * (1 + scale[j]) + shift[j];
  });
}

export function gatedResidualRef(x: Float32Array, B: number, D: number, gate: Float32Array, y: Float32Array): Float32Array {
  const L = x.length / (B * D);
  return Float32Array.from(x, (v, i) => v + gate[Math.floor(i / (L * D)) * D + (i % D)] * y[i]);
}

export function swigluRef(x: Float32Array, F: number): Float32Array {
  const rows = x.length / (2 * F);
  const out = new Float32Array(rows * F);
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < F; j++) {
      const a = x[r * 2 * F + j], b = x[r * 2 * F + F + j];
      out[r * F + j] = (a / (1 + Math.exp(-a))) * b;
    }
  return out;
}
