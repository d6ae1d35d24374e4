import { describe, expect, test } from "bun:test";
import { type DType, roundTo, Tensor } from "../../core/index.ts";
import { groupNorm, layerNorm, rmsNorm } from "../../kernels/norm.ts";
import * as ref from "../../kernels/norm.ref.ts";
import { assertClose, rand, testDevice } from "../util.ts";

// Multiples of 4 take the vec4 variant (from one vec4 per row to 2049, segments of 1 to 32 threads on a CPU
// adapter), the rest the scalar one.
const LENS = [1, 3, 4, 12, 127, 128, 129, 1000, 3072, 4097, 8196];
const manyRows = (len: number) => Math.max(2, Math.ceil(20000 / len));

describe("norm", () => {
  test("rmsNorm over awkward row lengths, without weight and with f32/bf16/f16 weights", async () => {
    const dev = await testDevice();
    let worst = 0;
    for (const [k, len] of LENS.entries()) {
      for (const rows of [1, manyRows(len)]) {
        const data = rand(rows * len, 100 + k + rows, -2, 2);
        const x = Tensor.fromArray(dev, data, [rows, len]);
        for (const dt of [null, "f32", "bf16", "f16"] as (DType | null)[]) {
          const w = dt ? roundTo(rand(len, 200 + k, 0.5, 1.5), dt) : undefined;
          const y = rmsNorm(x, w && Tensor.fromArray(dev, w, [len], dt!), { eps: 1e-6 });
          expect(y.shape).toEqual([rows, len]);
          worst = Math.max(worst, assertClose(await y.toArray(), ref.rmsNormRef(data, len, 1e-6, w), 1e-6, `rmsNorm [${rows}, ${len}] w=${dt}`));
        }
      }
    }
    console.log(`rmsNorm: worst rel err ${worst.toExponential(2)}`);
  }, 60_000);

  test("rmsNorm per head (q/k norm over [B, L, H, 128]) and eps handling", async () => {
    const dev = await testDevice();
    const data = rand(2 * 5 * 3 * 128, 7);
    const w = roundTo(rand(128, 8, 0.5, 1.5), "bf16");
    const y = rmsNorm(Tensor.fromArray(dev, data, [2, 5, 3, 128]), Tensor.fromArray(dev, w, [128], "bf16"), { eps: 1e-6 });
    expect(y.shape).toEqual([2, 5, 3, 128]);
    assertClose(await y.toArray(), ref.rmsNormRef(data, 128, 1e-6, w), 1e-6, "rmsNorm per head");
    // tiny activations: eps dominates mean(x²), so a dropped or misplaced eps shows
    const small = rand(4 * 64, 9, -1e-3, 1e-3);
    const xs = Tensor.fromArray(dev, small, [4, 64]);
    for (const eps of [1e-6, 1e-3, 0]) {
      assertClose(await rmsNorm(xs, null, { eps }).toArray(), ref.rmsNormRef(small, 64, eps), 1e-6, `rmsNorm eps ${eps}`);
      assertClose(await layerNorm(xs, null, null, { eps }).toArray(), ref.layerNormRef(small, 64, eps), 1e-5, `layerNorm eps ${eps}`);
    }
  }, 60_000);

  test("layerNorm with and without affine, f32 and bf16 parameters", async () => {
    const dev = await testDevice();
    let worst = 0;
    for (const [k, len] of LENS.entries()) {
      for (const rows of [1, manyRows(len)]) {
        const data = rand(rows * len, 300 + k + rows, -3, 1);
        const x = Tensor.fromArray(dev, data, [rows, len]);
        const plain = layerNorm(x, null, null, { eps: 1e-6 });
        // a single element normalises to 0: compare absolutely
        worst = Math.max(worst, assertClose(await plain.toArray(), ref.layerNormRef(data, len, 1e-6), len === 1 ? 0 : 1e-5, `layerNorm [${rows}, ${len}]`));
        const dt: DType = k % 2 ? "bf16" : "f32";
        const w = roundTo(rand(len, 400 + k, 0.5, 1.5), dt), b = roundTo(rand(len, 500 + k), dt);
        const y = layerNorm(x, Tensor.fromArray(dev, w, [len], dt), Tensor.fromArray(dev, b, [len], dt), { eps: 1e-5 });
        worst = Math.max(worst, assertClose(await y.toArray(), ref.layerNormRef(data, len, 1e-5, w, b), 1e-5, `layerNorm affine ${dt} [${rows}, ${len}]`));
      }
    }
    console.log(`layerNorm: worst rel err ${worst.toExponential(2)}`);
  }, 60_000);

  test("layerNorm keeps precision on large-offset data (1000 + noise of σ=1)", async () => {
    const dev = await testDevice();
    for (const [rows, len] of [[64, 3072], [3, 4097], [200, 128]]) {
      const data = rand(rows * len, rows + len, -Math.sqrt(3), Math.sqrt(3)).map((v) => 1000 + v);
      const e = assertClose(await layerNorm(Tensor.fromArray(dev, data, [rows, len]), null, null, { eps: 1e-6 }).toArray(), ref.layerNormRef(data, len, 1e-6), 1e-5, `layerNorm offset [${rows}, ${len}]`);
      console.log(`layerNorm 1000+noise [${rows}, ${len}]: rel err ${e.toExponential(2)}`);
    }
  }, 60_000);

  test("groupNorm: small groups in one workgroup, big groups over many, SiLU fused", async () => {
    const dev = await testDevice();
    const cases: [number, number, number, number, number][] = [
      // B, C, groups, H, W
      [3, 6, 3, 5, 7],
      [2, 32, 8, 16, 16],
      [2, 64, 32, 96, 96], // 18432 per group: chunked, planes of whole vec4s
      [1, 4, 2, 700, 700], // 980000 per group
      [2, 6, 3, 99, 101], // 19998 per group: chunked, planes of 9999 take the scalar variant
    ];
    for (const [k, [B, C, G, H, W]] of cases.entries()) {
      const data = rand(B * C * H * W, 600 + k, -2, 3);
      const x = Tensor.fromArray(dev, data, [B, C, H, W]);
      const dt: DType = k % 2 ? "bf16" : "f32";
      const w = roundTo(rand(C, 700 + k, 0.5, 1.5), dt), b = roundTo(rand(C, 800 + k), dt);
      const [tw, tb] = [Tensor.fromArray(dev, w, [C], dt), Tensor.fromArray(dev, b, [C], dt)];
      for (const silu of [false, true]) {
        const y = groupNorm(x, G, tw, tb, { eps: 1e-6, silu });
        expect(y.shape).toEqual([B, C, H, W]);
        const e = assertClose(await y.toArray(), ref.groupNormRef(data, C, H * W, G, 1e-6, { w, b, silu }), 1e-5, `groupNorm [${B},${C},${H},${W}] g=${G} silu=${silu}`);
        console.log(`groupNorm [${B},${C},${H},${W}] groups=${G} ${dt} silu=${silu}: rel err ${e.toExponential(2)}`);
      }
    }
    const d = rand(2 * 8 * 10, 9, 500, 502);
    const plain = groupNorm(Tensor.fromArray(dev, d, [2, 8, 10]), 4, null, null, { eps: 1e-5 });
    assertClose(await plain.toArray(), ref.groupNormRef(d, 8, 10, 4, 1e-5), 1e-5, "groupNorm rank 3, no affine, offset");
  }, 60_000);

  test("argument checks name the kernel and the shapes", async () => {
    const dev = await testDevice();
    const x = Tensor.fromArray(dev, rand(2 * 6 * 4, 1), [2, 6, 4]);
    expect(() => rmsNorm(x, Tensor.fromArray(dev, rand(5, 1), [5]), { eps: 1e-6 })).toThrow(/rmsNorm weight: expected shape \[4\], got \[5\]/);
    expect(() => groupNorm(x, 4, null, null, { eps: 1e-6 })).toThrow(/groupNorm: 4 groups do not divide the 6 channels/);
    expect(() => layerNorm(x, Tensor.fromArray(dev, new Int32Array(4), [4]), null, { eps: 1e-6 })).toThrow(/layerNorm weight: dtype i32/);
  }, 60_000);

  test("rmsNorm [4096, 3072] throughput", async () => {
    const dev = await testDevice();
    const [rows, len] = [4096, 3072];
    const data = rand(rows * len, 77);
    const w = roundTo(rand(len, 78, 0.5, 1.5), "bf16");
    const x = Tensor.fromArray(dev, data, [rows, len]), tw = Tensor.fromArray(dev, w, [len], "bf16");
    const first = await rmsNorm(x, tw, { eps: 1e-6 }).toArray();
    assertClose(first.subarray(0, 8 * len), ref.rmsNormRef(data.subarray(0, 8 * len), len, 1e-6, w), 1e-6, "rmsNorm [4096, 3072] first rows");
    const iters = 3;
    await dev.sync();
    const t0 = performance.now();
    for (let i = 0; i < iters; i++) rmsNorm(x, tw, { eps: 1e-6 }).dispose();
    await dev.sync();
    const s = (performance.now() - t0) / 1000 / iters;
    const gbs = (2 * rows * len * 4) / s / 1e9;
    console.log(`rmsNorm [4096, 3072] bf16 weight on ${dev.describe()}: ${(s * 1e3).toFixed(1)} ms, ${gbs.toFixed(2)} GB/s (read x + write y)`);
    expect(gbs).toBeGreaterThan(0);
  }, 60_000);
});
