import { describe, expect, test } from "bun:test";
import { Tensor } from "../../core/index.ts";
import * as ew from "../../kernels/elementwise.ts";
import * as ref from "../../kernels/elementwise.ref.ts";
import { assertClose, rand, testDevice } from "../util.ts";

const SHAPES = [[1], [7], [3, 257], [2, 5, 96], [70000]];

describe("elementwise", () => {
  for (const op of Object.keys(ew.UNARY) as ew.UnaryOp[]) {
    test(`${op} matches the CPU reference`, async () => {
      const dev = await testDevice();
      for (const [k, shape] of SHAPES.entries()) {
        const data = rand(shape.reduce((a, b) => a * b), 10 + k, -6, 6);
        const y = ew.unary(Tensor.fromArray(dev, data, shape), op);
        expect(y.shape).toEqual(shape);
        assertClose(await y.toArray(), ref.mapRef(data, ref.unaryRef[op]), 2e-6, `${op} [${shape}]`);
      }
    }, 120_000);
  }

  test("add/mul broadcast a trailing vector and reject mismatched shapes", async () => {
    const dev = await testDevice();
    const a = rand(6 * 35, 1), b = rand(35, 2);
    const ta = Tensor.fromArray(dev, a, [6, 35]), tb = Tensor.fromArray(dev, b, [35]);
    assertClose(await ew.add(ta, tb).toArray(), ref.binaryRef(a, b, (x, y) => x + y), 1e-7, "add");
    assertClose(await ew.mul(ta, tb).toArray(), ref.binaryRef(a, b, (x, y) => x * y), 1e-7, "mul");
    assertClose(await ew.scale(ta, 0.5, 2).toArray(), ref.mapRef(a, (x) => 0.5 * x + 2), 1e-7, "scale");
    expect(() => ew.add(ta, Tensor.fromArray(dev, rand(6, 3), [6]))).toThrow(/cannot broadcast/);
  }, 120_000);

  test("modulate, gatedResidual and swiglu", async () => {
    const dev = await testDevice();
    const [B, L, D] = [3, 5, 33];
    const x = rand(B * L * D, 4), s = rand(B * D, 5), t = rand(B * D, 6), y = rand(B * L * D, 7);
    const tx = Tensor.fromArray(dev, x, [B, L, D]);
    const ts = Tensor.fromArray(dev, s, [B, D]), tt = Tensor.fromArray(dev, t, [B, D]);
    assertClose(await ew.modulate(tx, ts, tt).toArray(), ref.modulateRef(x, B, D, s, t), 1e-6, "modulate");
    const ty = Tensor.fromArray(dev, y, [B, L, D]);
    assertClose(await ew.gatedResidual(tx, ts, ty).toArray(), ref.gatedResidualRef(x, B, D, s, y), 1e-6, "gatedResidual");
    const z = rand(4 * 2 * 19, 8, -4, 4);
    const sw = ew.swiglu(Tensor.fromArray(dev, z, [4, 38]));
    expect(sw.shape).toEqual([4, 19]);
    assertClose(await sw.toArray(), ref.swigluRef(z, 19), 2e-6, "swiglu");
    // Columns [7, 45) of rows 45 wide: the halves of the MLP part of a fused projection, read in place.
    const wide = rand(4 * 45, 9, -4, 4);
    const part = Float32Array.from({ length: 4 * 38 }, (_, i) => wide[Math.floor(i / 38) * 45 + 7 + (i % 38)]);
    assertClose(await ew.swiglu(Tensor.fromArray(dev, wide, [4, 45]), 7).toArray(), ref.swigluRef(part, 19), 2e-6, "swiglu from column 7");
    expect(() => ew.swiglu(Tensor.fromArray(dev, wide, [4, 45]), 6)).toThrow(/even/);
  }, 120_000);

  test("axpby, lerpHalves and clamped scale", async () => {
    const dev = await testDevice();
    const n = 3 * 41;
    const x = rand(n, 11, -3, 3), y = rand(n, 12, -3, 3);
    const tx = Tensor.fromArray(dev, x, [3, 41]), ty = Tensor.fromArray(dev, y, [3, 41]);
    assertClose(await ew.axpby(0.5, tx, -2, ty).toArray(), ref.binaryRef(x, y, (a, b) => 0.5 * a - 2 * b), 1e-7, "axpby");
    expect(() => ew.axpby(1, tx, 1, Tensor.fromArray(dev, y.subarray(0, 5), [5]))).toThrow(/must match/);
    const v2 = rand(4 * 2 * 9, 13, -3, 3);
    const half = v2.length / 2;
    const lerp = ew.lerpHalves(Tensor.fromArray(dev, v2, [4, 2, 9]), 4);
    expect(lerp.shape).toEqual([2, 2, 9]);
    assertClose(await lerp.toArray(), Float32Array.from(v2.subarray(half), (b, i) => b + 4 * (v2[i] - b)), 1e-6, "lerpHalves");
    expect(() => ew.lerpHalves(Tensor.fromArray(dev, x, [3, 41]), 2)).toThrow(/must be even/);
    assertClose(await ew.scale(tx, 0.5, 0.5, [0, 1]).toArray(), ref.mapRef(x, (v) => Math.min(1, Math.max(0, 0.5 * v + 0.5))), 1e-7, "clamped scale");
  }, 120_000);
});
