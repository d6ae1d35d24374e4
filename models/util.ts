// Small helpers every model file uses: freeing intermediates, reshaping while handing over ownership, and
// config checks whose errors name the model and the key.
import type { Tensor } from "../core/index.ts";

/** Frees every tensor of a list (undefined entries are skipped). */
export const free = (...ts: (Tensor | undefined)[]) => ts.forEach((t) => t?.dispose());

/** `t` viewed as `shape`, taking over t's reference (t itself is disposed). */
export function reshaped(t: Tensor, shape: number[]): Tensor {
  const v = t.reshape(shape);
  t.dispose();
  return v;
}

/** A config value that must be a positive integer; `what` names it, e.g. "Qwen3Encoder config: hidden_size". */
export function positiveInt(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw new Error(`${what} = ${v} must be a positive integer`);
  return v;
}
