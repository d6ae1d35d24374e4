import { describe, expect, test } from "bun:test";
import { type DType, roundTo, Tensor } from "../../core/index.ts";
import { conv2d } from "../../kernels/conv2d.ts";
import { conv2dRef } from "../../kernels/conv2d.ref.ts";
import { assertClose, rand, testDevice } from "../util.ts";

type Quad = [number, number, number, number];

interface Case {
  x: Quad; // B, Cin, H, W
  w: Quad; // Cout, Cin, kh, kw
  stride?: [number, number];
  pad?: Quad;
  bias?: boolean;
  residual?: boolean;
  dtype?: DType; // weights and bias
}

/** Runs one convolution on the GPU and against the f64 reference (on the same rounded weights); returns rel err. */
async function check(c: Case, seed: number): Promise<number> {
  const dev = await testDevice();
  const dt = c.dtype ?? "f32";
  const n = (s: Quad) => s.reduce((a, b) => a * b);
  const x = rand(n(c.x), seed, -1, 1);
  const w = roundTo(rand(n(c.w), seed + 1, -0.5, 0.5), dt);
  const bias = c.bias ? roundTo(rand(c.w[0], seed + 2), dt) : undefined;
  const ref = conv2dRef({ x, xShape: c.x, w, wShape: c.w, bias, stride: c.stride, padding: c.pad });
  const residual = c.residual ? rand(ref.out.length, seed + 3) : undefined;
  if (residual) ref.out.forEach((v, i) => (ref.out[i] = v + residual[i]));
  const y = conv2d(
    Tensor.fromArray(dev, x, c.x),
    Tensor.fromArray(dev, w, c.w, dt),
    bias && Tensor.fromArray(dev, bias, [c.w[0]], dt),
    { stride: c.stride, padding: c.pad, residual: residual && Tensor.fromArray(dev, residual, ref.shape) },
  );
  expect(y.shape).toEqual(ref.shape);
  return assertClose(await y.toArray(), ref.out, 1e-5, `conv2d ${JSON.stringify(c)}`);
}

async function checkAll(cases: Case[]): Promise<void> {
  const errs: string[] = [];
  for (const [i, c] of cases.entries()) errs.push((await check(c, 100 + 10 * i)).toExponential(1));
  console.log(`  rel errors: ${errs.join(" ")}`);
}

describe("conv2d", () => {
  test("f32 weights with bias: 3×3, stride 2, 1×1, odd kernels and sizes, several tiles", async () => {
    await checkAll([
      { x: [1, 5, 9, 7], w: [6, 5, 3, 3], pad: [1, 1, 1, 1], bias: true },
      // The VAE encoder's downsample: pad right/bottom by one, 3×3 stride 2.
      { x: [2, 4, 13, 11], w: [8, 4, 3, 3], stride: [2, 2], pad: [0, 1, 0, 1], bias: true },
      { x: [2, 4, 16, 16], w: [9, 4, 3, 3], stride: [2, 2], pad: [0, 1, 0, 1], bias: true },
      { x: [1, 8, 9, 9], w: [20, 8, 1, 1], bias: true },
      { x: [1, 3, 17, 19], w: [5, 3, 5, 7], pad: [2, 1, 3, 0], bias: true },
      { x: [2, 3, 11, 6], w: [7, 3, 3, 3], stride: [1, 2], pad: [1, 1, 1, 1], bias: true },
      // Several pixel and channel tiles, both with tails.
      { x: [1, 16, 12, 12], w: [130, 16, 1, 1], bias: true },
      { x: [1, 64, 48, 48], w: [64, 64, 3, 3], pad: [1, 1, 1, 1], bias: true },
    ]);
  }, 180_000);

  test("CLIP patch embedding: 14×14 stride 14, no bias", async () => {
    await checkAll([
      { x: [2, 3, 56, 56], w: [48, 3, 14, 14], stride: [14, 14] },
      { x: [1, 3, 224, 224], w: [40, 3, 14, 14], stride: [14, 14] },
    ]);
  }, 180_000);

  test("bf16 weights and bias with a fused residual", async () => {
    await checkAll([
      { x: [2, 16, 10, 10], w: [24, 16, 3, 3], pad: [1, 1, 1, 1], bias: true, residual: true, dtype: "bf16" },
      { x: [1, 7, 5, 3], w: [3, 7, 1, 1], bias: true, residual: true, dtype: "bf16" },
    ]);
  }, 180_000);

  test("Cout ≤ 4 (the VAE's conv_out) with f16 weights, size-1 dims", async () => {
    await checkAll([
      { x: [1, 32, 20, 18], w: [3, 32, 3, 3], pad: [1, 1, 1, 1], bias: true, residual: true, dtype: "f16" },
      { x: [2, 1, 1, 5], w: [1, 1, 1, 3], pad: [0, 0, 1, 1], bias: true, residual: true, dtype: "f16" },
    ]);
  }, 180_000);

  test("rejects mismatched shapes", async () => {
    const dev = await testDevice();
    const x = Tensor.zeros(dev, [1, 3, 8, 8]);
    expect(() => conv2d(x, Tensor.zeros(dev, [4, 2, 3, 3]))).toThrow(/input channels/);
    expect(() => conv2d(x, Tensor.zeros(dev, [4, 3, 9, 9]))).toThrow(/does not fit/);
    expect(() => conv2d(x, Tensor.zeros(dev, [4, 3, 3, 3]), Tensor.zeros(dev, [5]))).toThrow(/bias/);
    const residual = Tensor.zeros(dev, [1, 4, 8, 8]); // the output is [1, 4, 6, 6]
    expect(() => conv2d(x, Tensor.zeros(dev, [4, 3, 3, 3]), null, { residual })).toThrow(/residual/);
  });
});
