// CPU reference for kernels/attention.ts in f64: the naive softmax over all keys of each query row.
// Mask semantics as in the kernel (HF's additive −FLT_MAX bias): a key is allowed when its key-mask value is nonzero
// and, for causal attention, j ≤ i. A row softmaxes over its allowed keys; a row with none gives every one of the
// Lk keys the same logit, i.e. the uniform average of v.

export interface AttentionDims {
  B: number;
  Lq: number;
  Lk: number;
  Hq: number;
  Hkv: number;
  D: number;
}

export function attentionRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  { B, Lq, Lk, Hq, Hkv, D }: AttentionDims,
  opts: { scale?: number; causal?: boolean; keyMask?: ArrayLike<number> } = {},
): Float32Array {
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  const out = new Float32Array(B * Lq * Hq * D);
  const w = new Float64Array(Lk);
  const acc = new Float64Array(D);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < Lq; i++)
      for (let h = 0; h < Hq; h++) {
        const hk = Math.floor(h / (Hq / Hkv));
        const qo = ((b * Lq + i) * Hq + h) * D;
        let max = -Infinity;
        for (let j = 0; j < Lk; j++) {
          const allowed = (!opts.causal || j <= i) && (!opts.keyMask || opts.keyMask[b * Lk + j] !== 0);
          if (!allowed) {
            w[j] = NaN;
            continue;
          }
          const ko = ((b * Lk + j) * Hkv + hk) * D;
          let s = 0;
          for (let d = 0; d < D; d++) s += q[qo + d] * k[ko + d];
          w[j] = s * scale;
          max = Math.max(max, w[j]);
        }
        let sum = 0;
        for (let j = 0; j < Lk; j++) {
          // No allowed key: max stays -Infinity and every key weighs 1.
          w[j] = max === -Infinity ? 1 : Number.isNaN(w[j]) ? 0 : Math.exp(w[j] - max);
          sum += w[j];
        }
        acc.fill(0);
        for (let j = 0; j < Lk; j++) {
          if (w[j] === 0) continue;
          const vo = ((b * Lk + j) * Hkv + hk) * D;
          for (let d = 0; d < D; d++) acc[d] += w[j] * v[vo + d];
        }
        for (let d = 0; d < D; d++) out[qo + d] = acc[d] / sum;
      }
  return out;
}
