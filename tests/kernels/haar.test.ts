import { describe, expect, test } from "bun:test";
import { Tensor } from "../../core/index.ts";
import { haarDwt2d, haarIdwt2d, haarSize } from "../../kernels/haar.ts";
import { haarDwt2dRef, haarIdwt2dRef } from "../../kernels/haar.ref.ts";
import { assertClose, maxAbsErr, rand, testDevice } from "../util.ts";

// [B, C, H, W], levels: odd sides at several levels, 1×1 planes, levels past the point where sides reach 1, B = 2,
// and the real SES size.
const CASES: [number[], number][] = [
  [[1, 1, 1, 1], 1],
  [[2, 3, 1, 1], 3],
  [[1, 2, 5, 1], 2],
  [[2, 3, 20, 27], 4],
  [[1, 2, 7, 13], 5],
  [[2, 1, 33, 9], 1],
  [[1, 128, 64, 64], 4],
];

describe("haar", () => {
  test("haarDwt2d matches the f64 reference and haarIdwt2d inverts it", async () => {
    const dev = await testDevice();
    for (const [k, [shape, levels]] of CASES.entries()) {
      const x = rand(shape.reduce((a, b) => a * b), 100 + k);
      const label = `[${shape}] L${levels}`;
      const ref = haarDwt2dRef(x, shape, levels);
      const coeffs = haarDwt2d(Tensor.fromArray(dev, x, shape), levels);
      expect(coeffs.details.length).toBe(levels);
      expect(coeffs.low.shape).toEqual([shape[0], shape[1], haarSize(shape[2], levels), haarSize(shape[3], levels)]);
      expect(coeffs.low.shape).toEqual(ref.low.shape);
      assertClose(await coeffs.low.toArray(), ref.low.data, 1e-6, `${label} low`);
      for (let l = 0; l < levels; l++) {
        for (const b of ["h", "v", "d"] as const) {
          expect(coeffs.details[l][b].shape).toEqual(ref.details[l][b].shape);
          assertClose(await coeffs.details[l][b].toArray(), ref.details[l][b].data, 1e-6, `${label} level ${l + 1} ${b}`);
        }
      }
      const back = haarIdwt2d(coeffs.low, coeffs.details, shape[2], shape[3]);
      expect(back.shape).toEqual(shape);
      const err = maxAbsErr(await back.toArray(), x);
      expect(err).toBeLessThanOrEqual(1e-6); // |x| < 1: exact inverse up to f32 rounding
      // The f64 inverse of the f64 coefficients is the identity too (checks the reference against itself).
      expect(maxAbsErr(haarIdwt2dRef(ref.low, ref.details, shape[2], shape[3]).data, x)).toBeLessThan(1e-12);
    }
  }, 120_000);

  test("haarIdwt2d with a replaced low band matches the reference", async () => {
    const dev = await testDevice();
    const shape = [2, 3, 11, 14];
    const x = rand(2 * 3 * 11 * 14, 7);
    const ref = haarDwt2dRef(x, shape, 3);
    const coeffs = haarDwt2d(Tensor.fromArray(dev, x, shape), 3);
    const low = rand(coeffs.low.size, 8);
    const out = haarIdwt2d(Tensor.fromArray(dev, low, coeffs.low.shape), coeffs.details, 11, 14);
    const want = haarIdwt2dRef({ data: Float64Array.from(low), shape: ref.low.shape }, ref.details, 11, 14);
    assertClose(await out.toArray(), want.data, 1e-6, "new low");
  }, 60_000);

  test("argument checks name the kernel and the shapes", async () => {
    const dev = await testDevice();
    const x = Tensor.fromArray(dev, rand(2 * 8 * 8, 1), [2, 8, 8]);
    expect(() => haarDwt2d(x, 1)).toThrow(/haarDwt2d x: expected rank 4/);
    const c = haarDwt2d(x.reshape([1, 2, 8, 8]), 2);
    expect(() => haarDwt2d(x.reshape([1, 2, 8, 8]), 0)).toThrow(/levels must be/);
    expect(() => haarIdwt2d(c.low, c.details, 17, 8)).toThrow(/cannot reconstruct 17×8/);
    expect(() => haarIdwt2d(c.details[0].h, c.details, 8, 8)).toThrow(/level 2 h: expected shape \[1,2,4,4\], got \[1,2,2,2\]/);
  }, 60_000);
});
