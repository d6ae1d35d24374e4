import { describe, expect, test } from "bun:test";
import { type DType, roundTo, Tensor } from "../../core/index.ts";
import { conv2d } from "../../kernels/conv2d.ts";
import { conv2dRef } from "../../kernels/conv2d.ref.ts";
import { groupNormStats } from "../../kernels/norm.ts";
import { assertClose, rand, testDevice } from "../util.ts";

type Quad = [number, number, number, number];

interface Case {
  x: Quad; // B, Cin, H, W
  w: Quad; // Cout, Cin, kh, kw
  stride?: [number, number];
  pad?: Quad;
  bias?: boolean;
  residual?: boolean;
  dtype?: DType; // weights and bias (and the norm's)
  /** Fused GroupNorm of the input: groups, SiLU, affine weight and bias. */
  norm?: { groups: number; silu?: boolean; affine?: boolean };
  up?: boolean; // fused nearest ×2 upsampling of the input
  range?: [number, number]; // of x (default [-1, 1])
}

const EPS = 1e-6;

/** Runs one convolution on the GPU and against the f64 reference (on the same rounded weights); returns rel err. */
async function check(c: Case, seed: number): Promise<number> {
  const dev = await testDevice();
  const dt = c.dtype ?? "f32";
  const n = (s: Quad) => s.reduce((a, b) => a * b);
  const x = rand(n(c.x), seed, ...(c.range ?? [-1, 1]));
  const w = roundTo(rand(n(c.w), seed + 1, -0.5, 0.5), dt);
  const bias = c.bias ? roundTo(rand(c.w[0], seed + 2), dt) : undefined;
  const cin = c.x[1];
  const nw = c.norm?.affine ? roundTo(rand(cin, seed + 4, 0.5, 1.5), dt) : undefined;
  const nb = c.norm?.affine ? roundTo(rand(cin, seed + 5), dt) : undefined;
  const inputNorm = c.norm && { groups: c.norm.groups, eps: EPS, w: nw, b: nb, silu: c.norm.silu };
  const ref = conv2dRef({ x, xShape: c.x, w, wShape: c.w, bias, stride: c.stride, padding: c.pad, inputNorm, upsample2x: c.up });
  const residual = c.residual ? rand(ref.out.length, seed + 3) : undefined;
  if (residual) ref.out.forEach((v, i) => (ref.out[i] = v + residual[i]));
  const xt = Tensor.fromArray(dev, x, c.x);
  const vec = (v: Float32Array | undefined) => v && Tensor.fromArray(dev, v, [cin], dt);
  const y = conv2d(xt, Tensor.fromArray(dev, w, c.w, dt), bias && Tensor.fromArray(dev, bias, [c.w[0]], dt), {
    stride: c.stride,
    padding: c.pad,
    residual: residual && Tensor.fromArray(dev, residual, ref.shape),
    inputNorm: c.norm && { stats: groupNormStats(xt, c.norm.groups, { eps: EPS }), groups: c.norm.groups, weight: vec(nw), bias: vec(nb), silu: c.norm.silu },
    upsample2x: c.up,
  });
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

  // The VAE resnet's conv2 (input GroupNorm+SiLU, shortcut residual) and conv_out (Cout ≤ 4) with 16-bit
  // parameters; a norm case replaces a plain one where the plain variant is compiled elsewhere (lavapipe compiles slowly).
  test("bf16 weights and bias with a fused residual and input GroupNorm+SiLU", async () => {
    await checkAll([
      { x: [2, 16, 10, 10], w: [24, 16, 3, 3], pad: [1, 1, 1, 1], bias: true, residual: true, dtype: "bf16", norm: { groups: 4, silu: true, affine: true } },
      { x: [1, 7, 5, 3], w: [3, 7, 1, 1], bias: true, residual: true, dtype: "bf16" },
    ]);
  }, 180_000);

  test("Cout ≤ 4 (the VAE's conv_out) with f16 weights and input GroupNorm, size-1 dims", async () => {
    await checkAll([
      { x: [1, 32, 20, 18], w: [3, 32, 3, 3], pad: [1, 1, 1, 1], bias: true, residual: true, dtype: "f16", norm: { groups: 8, silu: true, affine: true } },
      { x: [2, 1, 1, 5], w: [1, 1, 1, 3], pad: [0, 0, 1, 1], bias: true, residual: true, dtype: "f16", norm: { groups: 1, affine: true }, up: true },
    ]);
  }, 180_000);

  test("fused input GroupNorm(+SiLU) and nearest ×2: odd sizes, channels not multiples of groups·4, size 1, batch 2", async () => {
    await checkAll([
      { x: [2, 6, 7, 5], w: [10, 6, 3, 3], pad: [1, 1, 1, 1], bias: true, norm: { groups: 3, silu: true, affine: true } },
      { x: [2, 6, 5, 3], w: [7, 6, 3, 3], pad: [1, 1, 1, 1], bias: true, up: true },
      { x: [2, 5, 4, 3], w: [9, 5, 3, 3], pad: [1, 1, 1, 1], bias: true, norm: { groups: 5, silu: true }, up: true },
      { x: [1, 3, 1, 1], w: [4, 3, 3, 3], pad: [1, 1, 1, 1], bias: true, norm: { groups: 1, affine: true }, up: true },
      // Stride and uneven padding after the prologue; groups over two chunks of the statistics kernel.
      { x: [1, 9, 3, 2], w: [5, 9, 3, 3], stride: [2, 1], pad: [0, 1, 2, 0], norm: { groups: 3, silu: true, affine: true }, up: true },
      { x: [1, 8, 48, 48], w: [16, 8, 3, 3], pad: [1, 1, 1, 1], bias: true, norm: { groups: 2, silu: true, affine: true }, up: true, range: [-2, 3] },
    ]);
  }, 180_000);

  test("groupNormStats: mean and 1/sqrt(var + eps) per (batch, group), one chunk and several", async () => {
    const dev = await testDevice();
    for (const [B, C, G, H, W] of [[2, 6, 3, 5, 7], [1, 4, 2, 130, 70]]) {
      const data = rand(B * C * H * W, 7 + C, -2, 3);
      const got = await groupNormStats(Tensor.fromArray(dev, data, [B, C, H, W]), G, { eps: EPS }).toArray();
      const want = new Float64Array(B * G * 2);
      const len = (C / G) * H * W;
      for (let r = 0; r < B * G; r++) {
        const row = data.subarray(r * len, (r + 1) * len);
        const mean = row.reduce((a, v) => a + v, 0) / len;
        want[2 * r] = mean;
        want[2 * r + 1] = 1 / Math.sqrt(row.reduce((a, v) => a + (v - mean) ** 2, 0) / len + EPS);
      }
      console.log(`  groupNormStats [${B},${C},${H},${W}] g=${G}: rel err ${assertClose(got, want, 1e-5, "groupNormStats").toExponential(1)}`);
    }
  }, 60_000);

  test("rejects mismatched shapes", async () => {
    const dev = await testDevice();
    const x = Tensor.zeros(dev, [1, 3, 8, 8]);
    expect(() => conv2d(x, Tensor.zeros(dev, [4, 2, 3, 3]))).toThrow(/input channels/);
    expect(() => conv2d(x, Tensor.zeros(dev, [4, 3, 9, 9]))).toThrow(/does not fit/);
    expect(() => conv2d(x, Tensor.zeros(dev, [4, 3, 3, 3]), Tensor.zeros(dev, [5]))).toThrow(/bias/);
    const residual = Tensor.zeros(dev, [1, 4, 8, 8]); // the output is [1, 4, 6, 6]
    expect(() => conv2d(x, Tensor.zeros(dev, [4, 3, 3, 3]), null, { residual })).toThrow(/residual/);
    const stats = Tensor.zeros(dev, [1, 3, 2]);
    expect(() => conv2d(x, Tensor.zeros(dev, [4, 3, 3, 3]), null, { inputNorm: { stats, groups: 2 } })).toThrow(/groups do not divide/);
    expect(() => conv2d(x, Tensor.zeros(dev, [4, 3, 3, 3]), null, { inputNorm: { stats, groups: 1 } })).toThrow(/inputNorm stats/);
    const weight = Tensor.zeros(dev, [4]);
    expect(() => conv2d(x, Tensor.zeros(dev, [4, 3, 3, 3]), null, { inputNorm: { stats, groups: 3, weight } })).toThrow(/inputNorm weight/);
  });
});
