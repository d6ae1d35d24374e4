// CPU reference for kernels/matmul.ts: f64 accumulation over f32 values, same epilogue order
// (y = residual + gate ⊙ act(a·bᵀ + bias)). a is [batch, M, K]; b is shared (N·K values) or batched (batch·N·K).
import { unaryRef } from "./elementwise.ref.ts";

export interface MatmulRefOptions {
  transposeB?: boolean;
  batch?: number;
  bias?: Float32Array;
  act?: "silu" | "gelu" | "geluTanh" | "quickGelu";
  residual?: Float32Array;
  /** [batch, N]. */
  gate?: Float32Array;
}

export function matmulRef(a: Float32Array, b: Float32Array, M: number, N: number, K: number, o: MatmulRefOptions = {}): Float32Array {
  const batch = o.batch ?? 1;
  const tb = o.transposeB ?? true;
  const bStride = b.length === N * K ? 0 : N * K;
  const act = o.act ? unaryRef[o.act] : null;
  const out = new Float32Array(batch * M * N);
  for (let z = 0; z < batch; z++)
    for (let m = 0; m < M; m++) {
      const ar = (z * M + m) * K;
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a[ar + k] * b[z * bStride + (tb ? n * K + k : k * N + n)];
        if (o.bias) s += o.bias[n];
        if (act) s = act(s);
        const i = (z * M + m) * N + n;
        if (o.gate) s *= o.gate[z * N + n];
        if (o.residual) s += o.residual[i];
        out[i] = s;
      }
    }
  return out;
}
