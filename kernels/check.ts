// Argument checks shared by the kernel launchers: every message names the kernel, the argument and the shapes.
import type { DType, Tensor } from "../core/index.ts";

export function expectDType(t: Tensor, what: string, ...dtypes: DType[]): void {
  if (!dtypes.includes(t.dtype)) throw new Error(`${what}: dtype ${t.dtype} not supported (want ${dtypes.join(" or ")})`);
}

export function expectRank(t: Tensor, what: string, ...ranks: number[]): void {
  if (!ranks.includes(t.shape.length)) throw new Error(`${what}: expected rank ${ranks.join(" or ")}, got shape [${t.shape}]`);
}

export function expectShape(t: Tensor, what: string, shape: readonly number[]): void {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`${what}: expected shape [${shape}], got [${t.shape}]`);
  }
}

export function expectSameDevice(what: string, ...ts: Tensor[]): void {
  if (ts.some((t) => t.dev !== ts[0].dev)) throw new Error(`${what}: tensors live on different devices`);
}

/** Last dimension, and the product of all others (rows). */
export function rowsCols(t: Tensor): [number, number] {
  const c = t.shape[t.shape.length - 1] ?? 1;
  return [c ? t.size / c : 0, c];
}
