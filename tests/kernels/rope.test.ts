import { describe, expect, test } from "bun:test";
import { joinPath, openSafetensors, Tensor } from "../../core/index.ts";
import { rope, ropeTableData, ropeTables, type RopeLayout } from "../../kernels/rope.ts";
import { ropeRef } from "../../kernels/rope.ref.ts";
import { assertClose, FIXTURES, maxAbsErr, rand, testDevice } from "../util.ts";

const FIXTURE = `${FIXTURES}/flux2_transformer`;

/** Positions [L, nAxes] mixing FLUX-like text rows (0,0,0,k) and image rows (0,r,c,0), plus arbitrary ints. */
function positions(L: number, nAxes: number, seed: number): Int32Array {
  const r = rand(L * nAxes, seed, 0, 600);
  return Int32Array.from(r, (v, i) => (Math.floor(i / nAxes) % 3 === 0 ? 0 : Math.floor(v)));
}

describe("rope", () => {
  const cases: { D: number; axes: number[]; theta: number; layout: RopeLayout }[] = [
    { D: 32, axes: [8, 8, 8, 8], theta: 2000, layout: "interleaved" },
    { D: 128, axes: [32, 32, 32, 32], theta: 2000, layout: "interleaved" },
    { D: 32, axes: [32], theta: 1e6, layout: "halves" },
    { D: 128, axes: [128], theta: 1e6, layout: "halves" },
    { D: 128, axes: [64, 32, 32], theta: 1e4, layout: "halves" },
    // Tables over part of the head: dims past R pass through.
    { D: 32, axes: [8, 8], theta: 2000, layout: "interleaved" },
    { D: 128, axes: [48], theta: 1e4, layout: "halves" },
  ];
  for (const c of cases) {
    test(`${c.layout} D=${c.D} axes [${c.axes}] matches the CPU reference`, async () => {
      const dev = await testDevice();
      const [B, L, H] = [2, 7, 3];
      const pos = positions(L, c.axes.length, c.D + c.axes.length);
      const { cos, sin } = ropeTables(dev, pos, c.axes, c.theta);
      const tab = ropeTableData(pos, c.axes, c.theta);
      const x = rand(B * L * H * c.D, c.D * 7 + c.axes.length, -2, 2);
      const y = rope(Tensor.fromArray(dev, x, [B, L, H, c.D]), cos, sin, { layout: c.layout });
      expect(y.shape).toEqual([B, L, H, c.D]);
      const want = ropeRef(x, [B, L, H, c.D], tab.cos, tab.sin, tab.half, c.layout);
      const e = assertClose(await y.toArray(), want, 1e-6, `rope ${c.layout} D=${c.D}`);
      console.log(`rope ${c.layout} D=${c.D} axes [${c.axes}]: rel err ${e.toExponential(2)}`);
    }, 60_000);
  }

  test("large interleaved case (L=300, H=24, D=128)", async () => {
    const dev = await testDevice();
    const [B, L, H, D] = [1, 300, 24, 128];
    const pos = positions(L, 4, 99);
    const { cos, sin } = ropeTables(dev, pos, [32, 32, 32, 32], 2000);
    const tab = ropeTableData(pos, [32, 32, 32, 32], 2000);
    const x = rand(B * L * H * D, 5, -3, 3);
    const y = rope(Tensor.fromArray(dev, x, [B, L, H, D]), cos, sin, { layout: "interleaved" });
    const e = assertClose(await y.toArray(), ropeRef(x, [B, L, H, D], tab.cos, tab.sin, tab.half, "interleaved"), 1e-6, "rope large");
    console.log(`rope large: rel err ${e.toExponential(2)}`);
  }, 60_000);

  test("tables reproduce diffusers' Flux2PosEmbed (fixture flux2_transformer)", async () => {
    const dev = await testDevice();
    const io = await openSafetensors(joinPath(FIXTURE, "io.safetensors"));
    const ids = async (name: string) => {
      const b = await io.read(name);
      return new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4).slice();
    };
    const txt = await ids("txt_ids"), img = await ids("img_ids");
    const pos = new Int32Array(txt.length + img.length);
    pos.set(txt);
    pos.set(img, txt.length); // text rows first, as the transformer concatenates [txt; img]
    const wantCos = await io.readFloat32("rope_cos"), wantSin = await io.readFloat32("rope_sin");
    const [L, D] = io.get("rope_cos").shape;
    const { cos, sin } = ropeTables(dev, pos, [8, 8, 8, 8], 2000);
    expect(cos.shape).toEqual([L, D / 2]);
    // diffusers stores full-width tables with each angle repeated for the two members of a pair.
    const full = (half: Float32Array) => Float32Array.from({ length: L * D }, (_, i) => half[Math.floor(i / D) * (D / 2) + ((i % D) >> 1)]);
    const eCos = maxAbsErr(full(await cos.toArray()), wantCos);
    const eSin = maxAbsErr(full(await sin.toArray()), wantSin);
    console.log(`fixture rope tables: max abs err cos ${eCos.toExponential(2)}, sin ${eSin.toExponential(2)}`);
    expect(eCos).toBeLessThanOrEqual(1e-6);
    expect(eSin).toBeLessThanOrEqual(1e-6);
  }, 60_000);

  test("f32 table precision (transformers' Qwen3) stays within f32 angle rounding of f64", () => {
    const pos = Int32Array.from({ length: 512 }, (_, i) => i);
    const a = ropeTableData(pos, [128], 1e6, "f64");
    const b = ropeTableData(pos, [128], 1e6, "f32");
    expect(Array.from(b.cos.subarray(0, 64))).toEqual(new Array(64).fill(1)); // position 0
    const e = Math.max(maxAbsErr(a.cos, b.cos), maxAbsErr(a.sin, b.sin));
    console.log(`f32 vs f64 tables, positions < 512: max abs diff ${e.toExponential(2)}`);
    expect(e).toBeGreaterThan(0);
    expect(e).toBeLessThan(1e-4); // ulp(511)/2 ≈ 3e-5 rad of angle rounding, plus inv_freq rounding
  });

  test("rejects bad arguments", async () => {
    const dev = await testDevice();
    const { cos, sin } = ropeTables(dev, positions(5, 1, 1), [16], 1e4);
    expect(() => rope(Tensor.zeros(dev, [1, 6, 2, 16]), cos, sin, { layout: "halves" })).toThrow(/tables \[5,8\]/);
    expect(() => rope(Tensor.zeros(dev, [1, 5, 2, 8]), cos, sin, { layout: "halves" })).toThrow(/R ≤ D/);
    expect(() => rope(Tensor.zeros(dev, [5, 2, 16]), cos, sin, { layout: "halves" })).toThrow(/rank 4/);
    expect(() => ropeTables(dev, new Int32Array(7), [8, 8], 1e4)).toThrow(/not rows of 2 axes/);
    expect(() => ropeTables(dev, new Int32Array(4), [7], 1e4)).toThrow(/even/);
  }, 60_000);
});
