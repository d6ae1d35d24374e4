import { describe, expect, test } from "bun:test";
import { Tensor } from "../../core/index.ts";
import { softmax } from "../../kernels/softmax.ts";
import { softmaxRef } from "../../kernels/softmax.ref.ts";
import { assertClose, rand, testDevice } from "../util.ts";

describe("softmax", () => {
  test("awkward row lengths, one row and many", async () => {
    const dev = await testDevice();
    let worst = 0;
    // Multiples of 4 take the vec4 variant (1 to 2049 vec4s per row), the rest the scalar one.
    for (const len of [1, 3, 4, 12, 127, 128, 129, 1000, 3072, 4097, 8196]) {
      for (const rows of [1, Math.max(2, Math.ceil(20000 / len))]) {
        const data = rand(rows * len, len + 3 * rows, -8, 8);
        const y = softmax(Tensor.fromArray(dev, data, [rows, len]));
        expect(y.shape).toEqual([rows, len]);
        worst = Math.max(worst, assertClose(await y.toArray(), softmaxRef(data, len), 1e-6, `softmax [${rows}, ${len}]`));
      }
    }
    console.log(`softmax: worst rel err ${worst.toExponential(2)}`);
  }, 60_000);

  test("one row of 100000 and leading dims", async () => {
    const dev = await testDevice();
    const data = rand(100000, 5, -10, 10);
    const e = assertClose(await softmax(Tensor.fromArray(dev, data, [1, 100000])).toArray(), softmaxRef(data, 100000), 1e-5, "softmax [1, 100000]");
    console.log(`softmax [1, 100000]: rel err ${e.toExponential(2)}`);
    const d3 = rand(2 * 3 * 40, 6, -3, 3);
    const y = softmax(Tensor.fromArray(dev, d3, [2, 3, 40]));
    expect(y.shape).toEqual([2, 3, 40]);
    assertClose(await y.toArray(), softmaxRef(d3, 40), 1e-6, "softmax [2, 3, 40]");
  }, 60_000);

  test("large logits are max-subtracted and -inf entries give 0", async () => {
    const dev = await testDevice();
    const len = 300;
    const data = rand(4 * len, 8, 50, 120); // exp(120) overflows f32
    for (let i = 0; i < data.length; i += 7) data[i] = -Infinity; // masked scores
    const out = await softmax(Tensor.fromArray(dev, data, [4, len])).toArray();
    assertClose(out, softmaxRef(data, len), 1e-6, "softmax large/masked");
    expect(out[0]).toBe(0);
  }, 60_000);
});
