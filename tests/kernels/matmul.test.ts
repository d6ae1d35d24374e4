import { describe, expect, test } from "bun:test";
import { type DType, roundTo, Tensor } from "../../core/index.ts";
import {
  type Activation,
  matmul,
  matmulChunks,
  type MatmulKernel,
  matmulKernel,
  matmulKernels,
  type MatmulTiles,
  setMatmulKernel,
  setMatmulTiles,
} from "../../kernels/matmul.ts";
import { matmulRef } from "../../kernels/matmul.ref.ts";
import { assertClose, rand, testDevice } from "../util.ts";

// Every case compares against the f64 reference on the same (rounded) weights; outputs start as NaN (poisoned pool).
// Pipelines compile for seconds on lavapipe, so the cases reuse a small set of variants. The product cases run on
// each kernel the device has (tiled; subgroup where `subgroups` has one fixed size), forced per call.
const TOL = 1e-5;

interface Case {
  M: number;
  N: number;
  K: number;
  /** a's leading dims (none: a is [M, K]). */
  lead?: number[];
  /** b carries the same leading dims as a. */
  bBatched?: boolean;
  transposeB?: boolean;
  dtype?: DType;
  bias?: DType;
  act?: Activation;
  residual?: boolean;
  gate?: boolean;
  tiles?: MatmulTiles;
  kernel?: MatmulKernel;
}

let seed = 1;
const worst: Record<string, number> = {};

async function check(c: Case, label: string): Promise<void> {
  const dev = await testDevice();
  const { M, N, K, lead = [], transposeB = true, dtype = "f32" } = c;
  const batch = lead.reduce((x, y) => x * y, 1);
  const bLead = c.bBatched ? lead : [];
  const a = rand(batch * M * K, seed++);
  const b = roundTo(rand((c.bBatched ? batch : 1) * N * K, seed++), dtype);
  const bias = c.bias ? roundTo(rand(N, seed++), c.bias) : undefined;
  const residual = c.residual ? rand(batch * M * N, seed++) : undefined;
  const gate = c.gate ? rand(batch * N, seed++, -2, 2) : undefined;
  const y = matmul(Tensor.fromArray(dev, a, [...lead, M, K]), Tensor.fromArray(dev, b, [...bLead, ...(transposeB ? [N, K] : [K, N])], dtype), {
    transposeB,
    bias: bias && Tensor.fromArray(dev, bias, [N], c.bias),
    activation: c.act,
    residual: residual && Tensor.fromArray(dev, residual, [...lead, M, N]),
    gate: gate && Tensor.fromArray(dev, gate, [batch, N]),
    tiles: c.tiles,
    kernel: c.kernel,
  });
  expect(y.shape).toEqual([...lead, M, N]);
  const ref = matmulRef(a, b, M, N, K, { transposeB, batch, bias, act: c.act, residual, gate });
  const e = assertClose(await y.toArray(), ref, TOL, `${label} ${JSON.stringify(c)}`);
  worst[label] = Math.max(worst[label] ?? 0, e);
}

const report = (label: string) => console.log(`matmul ${label}: max relative error ${worst[label].toExponential(2)}`);

/** The kernels this adapter has: the cases of one it lacks are registered as skipped, with the reason. */
const onAdapter = matmulKernels(await testDevice());

const ODD: [number, number, number][] = [[1, 1, 1], [1, 70, 40], [2, 3, 1], [9, 1, 5], [16, 5, 1], [33, 65, 17], [127, 31, 259], [130, 129, 64]];

for (const kernel of ["tiled", "subgroup"] as MatmulKernel[]) {
  describe(`matmul (${kernel} kernel)`, () => {
    const at = (label: string) => `${kernel} ${label}`;
    const missing = !onAdapter.includes(kernel);
    /** A case of this kernel: skipped, saying why, where the adapter has no such kernel. */
    const kernelTest = (name: string, fn: () => Promise<void>, timeout: number) =>
      test.skipIf(missing)(missing ? `${name} (skipped: no ${kernel} kernel on this adapter)` : name, fn, timeout);
    kernelTest("f32 b [N, K]: size-1 dims, M = 1 and shapes off the tile grid", async () => {
      for (const [M, N, K] of ODD) await check({ M, N, K, kernel }, at("bᵀ f32"));
      report(at("bᵀ f32"));
    }, 120_000);

    kernelTest("f32 b [K, N] (transposeB false)", async () => {
      for (const [M, N, K] of [...ODD, [1, 64, 32], [64, 48, 40]] as [number, number, number][]) {
        await check({ M, N, K, transposeB: false, kernel }, at("b f32"));
      }
      report(at("b f32"));
    }, 120_000);

    kernelTest("batched a with shared and batched b", async () => {
      await check({ M: 33, N: 40, K: 20, lead: [3], kernel }, at("batched"));
      await check({ M: 3, N: 40, K: 12, lead: [2], kernel }, at("batched")); // 6 rows: small-M kernel
      await check({ M: 9, N: 17, K: 20, lead: [3], bBatched: true, kernel }, at("batched"));
      await check({ M: 9, N: 17, K: 20, lead: [3], bBatched: true, transposeB: false, kernel }, at("batched"));
      await check({ M: 9, N: 12, K: 8, lead: [2, 2], bBatched: true, transposeB: false, kernel }, at("batched"));
      report(at("batched"));
    }, 120_000);

    kernelTest("f16 and bf16 weights (reference on the rounded weights)", async () => {
      const cases: [DType, Case][] = [
        ["f16", { M: 33, N: 65, K: 24 }],
        ["f16", { M: 20, N: 36, K: 16, transposeB: false }],
        ["f16", { M: 3, N: 7, K: 9 }],
        ["bf16", { M: 33, N: 65, K: 24 }],
        ["bf16", { M: 17, N: 9, K: 13 }],
        ["bf16", { M: 10, N: 7, K: 9, transposeB: false }],
        ["bf16", { M: 1, N: 40, K: 24 }],
        ["bf16", { M: 9, N: 17, K: 20, lead: [2], bBatched: true }],
      ];
      for (const [dtype, c] of cases) await check({ ...c, dtype, kernel }, at("16-bit"));
      report(at("16-bit"));
    }, 120_000);

    kernelTest("fused epilogues: y = residual + gate ⊙ act(a·bᵀ + bias)", async () => {
      await check({ M: 33, N: 40, K: 24, bias: "f32", act: "silu", kernel }, at("epilogue"));
      await check({ M: 33, N: 40, K: 24, bias: "bf16", act: "gelu", kernel }, at("epilogue"));
      await check({ M: 33, N: 40, K: 24, bias: "f16", act: "geluTanh", residual: true, kernel }, at("epilogue"));
      await check({ M: 20, N: 36, K: 16, transposeB: false, act: "quickGelu", residual: true, kernel }, at("epilogue"));
      await check({ M: 40, N: 36, K: 24, lead: [2], residual: true, gate: true, kernel }, at("epilogue"));
      await check({ M: 9, N: 36, K: 16, lead: [3], bBatched: true, dtype: "bf16", bias: "f32", act: "silu", residual: true, gate: true, kernel }, at("epilogue"));
      await check({ M: 10, N: 40, K: 24, lead: [2], bias: "bf16", act: "gelu", residual: true, gate: true, kernel }, at("epilogue")); // small-M, 3 row blocks
      await check({ M: 1, N: 40, K: 24, residual: true, kernel }, at("epilogue"));
      report(at("epilogue"));
    }, 120_000);

    kernelTest("one large case: 256×512×384, and bigger products off every block edge", async () => {
      await check({ M: 256, N: 512, K: 384, kernel }, at("large"));
      await check({ M: 256, N: 512, K: 384, dtype: "bf16", kernel }, at("large"));
      // Several subgroup blocks (32 rows × 128 columns) with b from a texture copy (≥ 96 rows), M and N off their
      // grid, K % 8 = 4 (half a chunk) or odd.
      await check({ M: 100, N: 136, K: 44, kernel }, at("large"));
      await check({ M: 100, N: 132, K: 44, transposeB: false, kernel }, at("large"));
      await check({ M: 99, N: 130, K: 45, bias: "f32", residual: true, kernel }, at("large"));
      // More b rows than one texture holds (16384 texels on lavapipe): the subgroup kernel goes slice by slice.
      const rows = (await testDevice()).limits.maxTextureDimension2D + 100;
      await check({ M: 100, N: rows, K: 8, bias: "bf16", kernel }, at("large"));
      await check({ M: 100, N: rows, K: 5, transposeB: false, kernel }, at("large"));
      report(at("large"));
    }, 240_000);

    kernelTest("weights in row chunks write their own output columns", async () => {
      const dev = await testDevice();
      const K = 24, sizes = [5, 7, 4], N = 16;
      const w = rand(N * K, 50), bias = rand(N, 51);
      for (const M of [40, 1]) {
        const a = rand(M * K, 52 + M), res = rand(M * N, 53 + M);
        const chunks = sizes.map((n, i) => {
          const row = sizes.slice(0, i).reduce((x, y) => x + y, 0);
          return Tensor.fromArray(dev, w.subarray(row * K, (row + n) * K), [n, K]);
        });
        const ta = Tensor.fromArray(dev, a, [M, K]);
        if (M > 1) { // tiled or subgroup kernel
          const y = matmulChunks(ta, chunks, { bias: Tensor.fromArray(dev, bias, [N]), activation: "silu", kernel });
          expect(y.shape).toEqual([M, N]);
          assertClose(await y.toArray(), matmulRef(a, w, M, N, K, { bias, act: "silu" }), TOL, at("chunks"));
        } else { // small-M kernel
          const gate = rand(N, 54);
          const y = matmulChunks(ta, chunks, {
            bias: Tensor.fromArray(dev, roundTo(bias, "bf16"), [N], "bf16"),
            activation: "gelu",
            gate: Tensor.fromArray(dev, gate, [1, N]),
            residual: Tensor.fromArray(dev, res, [M, N]),
            kernel,
          });
          const ref = matmulRef(a, w, M, N, K, { bias: roundTo(bias, "bf16"), act: "gelu", gate, residual: res });
          assertClose(await y.toArray(), ref, TOL, at("chunks small-M"));
        }
      }
      // A real chunked tensor: shrink the binding limit while it is allocated (bf16 rows: 20-row chunks).
      const limit = dev.limits.maxStorageBufferBindingSize;
      const wb = roundTo(rand(50 * K, 55), "bf16");
      let tb: Tensor;
      try {
        dev.limits.maxStorageBufferBindingSize = 1024;
        tb = Tensor.fromArray(dev, wb, [50, K], "bf16");
      } finally {
        dev.limits.maxStorageBufferBindingSize = limit;
      }
      expect(tb.rowChunks().length).toBe(3);
      const a = rand(20 * K, 56);
      assertClose(await matmul(Tensor.fromArray(dev, a, [20, K]), tb, { kernel }).toArray(), matmulRef(a, wb, 20, 50, K), TOL, at("chunked tensor"));
      expect(() => matmul(Tensor.fromArray(dev, rand(2 * 50, 57), [2, 50]), tb, { transposeB: false })).toThrow(/spans 3 bindings/);
      expect(() => matmulChunks(Tensor.zeros(dev, [2, K]), [Tensor.zeros(dev, [3, K]), Tensor.zeros(dev, [3, K + 1])])).toThrow(/weight chunks/);
    }, 120_000);
  });
}

describe("matmul", () => {
  test("other tile shapes give the same products", async () => {
    const tiles = { BM: 64, BN: 32, BK: 16, TM: 4, TN: 8 };
    await check({ M: 70, N: 45, K: 36, tiles, kernel: "tiled" }, "tiles");
    await check({ M: 70, N: 45, K: 19, transposeB: false, tiles, kernel: "tiled" }, "tiles");
    report("tiles");
    const dev = await testDevice();
    expect(() => setMatmulTiles(dev, { BM: 64, BN: 64, BK: 6, TM: 4, TN: 4 })).toThrow(/tiles .* are not valid/);
  }, 120_000);

  test("a batch item's rows come out bit-identical whatever the batch count (small-M choice is per item)", async () => {
    const dev = await testDevice();
    const [M, K, N, B] = [4, 40, 24, 9]; // 9 items × 4 rows = 36 rows: past the small-M limit in total, not per item
    const a = rand(B * M * K, 91);
    const w = Tensor.fromArray(dev, rand(N * K, 92), [N, K]);
    const all = matmul(Tensor.fromArray(dev, a, [B, M, K]), w, { transposeB: true });
    const first = matmul(Tensor.fromArray(dev, a.subarray(0, M * K), [1, M, K]), w, { transposeB: true });
    expect((await all.toArray()).subarray(0, M * N)).toEqual(await first.toArray());
  }, 120_000);

  test("the device profile picks the subgroup kernel on CPU adapters that have one", async () => {
    const dev = await testDevice();
    const has = matmulKernels(dev).includes("subgroup");
    expect(matmulKernel(dev)).toBe(dev.isCpu && has ? "subgroup" : "tiled");
    if (!has) expect(() => setMatmulKernel(dev, "subgroup")).toThrow(/subgroup kernel needs the subgroups feature/);
    const before = matmulKernel(dev);
    setMatmulKernel(dev, "tiled");
    expect(matmulKernel(dev)).toBe("tiled");
    setMatmulKernel(dev, before);
  }, 120_000);

  test("argument errors name the shapes", async () => {
    const dev = await testDevice();
    const z = (shape: number[], dtype: DType = "f32") => Tensor.zeros(dev, shape, dtype);
    expect(() => matmul(z([4, 8]), z([5, 7]))).toThrow(/a \[4,8\], b \[5,7\].*inner dims differ/);
    expect(() => matmul(z([4, 8]), z([7, 5]), { transposeB: false })).toThrow(/inner dims differ \(a has K = 8, b has 7\)/);
    expect(() => matmul(z([2, 3, 8]), z([3, 5, 8]))).toThrow(/batch counts differ \(a has 2, b has 3\)/);
    expect(() => matmul(z([8]), z([5, 8]))).toThrow(/at least 2 dims/);
    expect(() => matmul(z([4, 8], "bf16"), z([5, 8]))).toThrow(/a: dtype bf16 not supported/);
    expect(() => matmul(z([4, 8]), z([5, 8], "i32"))).toThrow(/b: dtype i32 not supported/);
    expect(() => matmul(z([4, 8]), z([5, 8]), { bias: z([4]) })).toThrow(/bias: expected shape \[5\], got \[4\]/);
    expect(() => matmul(z([4, 8]), z([5, 8]), { residual: z([5, 4]) })).toThrow(/residual: expected shape \[4,5\], got \[5,4\]/);
    expect(() => matmul(z([2, 4, 8]), z([5, 8]), { gate: z([2, 5]) })).toThrow(/gate needs a residual/);
    expect(() => matmul(z([2, 4, 8]), z([5, 8]), { gate: z([5]), residual: z([2, 4, 5]) })).toThrow(/gate: expected \[2, 5\].*got \[5\]/);
  }, 120_000);
});
