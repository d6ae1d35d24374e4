import { describe, expect, test } from "bun:test";
import { Tensor } from "../../core/index.ts";
import * as red from "../../kernels/reduce.ts";
import * as ref from "../../kernels/reduce.ref.ts";
import { assertClose, rand, testDevice } from "../util.ts";

const LENS = [1, 3, 127, 128, 129, 1000, 4097];
const OPS = [
  ["sum", red.sum, ref.sumRef],
  ["mean", red.mean, ref.meanRef],
  ["max", red.max, ref.maxRef],
] as const;

describe("reduce", () => {
  test("sum/mean/max over awkward row lengths, one row and many", async () => {
    const dev = await testDevice();
    let worst = 0;
    for (const len of LENS) {
      for (const rows of [1, Math.max(2, Math.ceil(20000 / len))]) {
        // mean 0.5 keeps the sums away from catastrophic cancellation, so relative error is meaningful
        const data = rand(rows * len, len * 7 + rows, -1, 2);
        const x = Tensor.fromArray(dev, data, [rows, len]);
        for (const [name, f, r] of OPS) {
          const y = f(x);
          expect(y.shape).toEqual([rows]);
          worst = Math.max(worst, assertClose(await y.toArray(), r(data, len), 1e-6, `${name} [${rows}, ${len}]`));
        }
      }
    }
    console.log(`sum/mean/max over ${LENS}: worst rel err ${worst.toExponential(2)}`);
  }, 60_000);

  test("leading dims are kept, a 1-D input gives [1], -inf rows give -inf", async () => {
    const dev = await testDevice();
    const data = rand(2 * 3 * 5, 3, -1, 2);
    const y = red.sum(Tensor.fromArray(dev, data, [2, 3, 5]));
    expect(y.shape).toEqual([2, 3]);
    assertClose(await y.toArray(), ref.sumRef(data, 5), 1e-6, "sum [2,3,5]");
    const v = red.mean(Tensor.fromArray(dev, data, [30]));
    expect(v.shape).toEqual([1]);
    assertClose(await v.toArray(), ref.meanRef(data, 30), 1e-6, "mean [30]");
    const m = await red.max(Tensor.fromArray(dev, new Float32Array(6).fill(-Infinity), [2, 3])).toArray();
    expect(m[0]).toBe(-Infinity);
    expect(m[1]).toBe(-Infinity);
  }, 60_000);

  test("few long rows split over workgroups: rows=3, len=300000", async () => {
    const dev = await testDevice();
    const [rows, len] = [3, 300000];
    const data = rand(rows * len, 42, -1, 2);
    const x = Tensor.fromArray(dev, data, [rows, len]);
    for (const [name, f, r] of OPS) {
      const e = assertClose(await f(x).toArray(), r(data, len), 2e-6, `${name} [${rows}, ${len}]`);
      console.log(`${name} [3, 300000]: rel err ${e.toExponential(2)}`);
    }
  }, 60_000);

  test("sumAll/maxAll over 3000001 elements (partials per chunk, then a second pass)", async () => {
    const dev = await testDevice();
    const n = 3000001;
    const data = rand(n, 9, -1, 2);
    data[1234567] = 7.5; // a unique maximum deep inside
    const x = Tensor.fromArray(dev, data, [n]);
    const s = red.sumAll(x), m = red.maxAll(x);
    expect(s.shape).toEqual([1]);
    const e = assertClose(await s.toArray(), ref.sumRef(data, n), 2e-6, "sumAll");
    console.log(`sumAll of ${n}: rel err ${e.toExponential(2)}`);
    expect((await m.toArray())[0]).toBe(7.5);
    assertClose(await red.sumAll(Tensor.fromArray(dev, data.subarray(0, 5), [5])).toArray(), ref.sumRef(data.subarray(0, 5), 5), 1e-6, "sumAll of 5");
  }, 60_000);

  test("rejects non-f32 input", async () => {
    const dev = await testDevice();
    expect(() => red.sum(Tensor.fromArray(dev, new Int32Array(4), [4]))).toThrow(/sum x: dtype i32/);
  }, 60_000);
});
