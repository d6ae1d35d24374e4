import { describe, expect, test } from "bun:test";
import { openSafetensors, Tensor } from "../../core/index.ts";
import { centerCrop, normalizeChannels, resizeBicubic, upsampleNearest2x } from "../../kernels/resample.ts";
import { cropRef, normalizeRef, resizeBicubicRef, upsampleNearest2xRef } from "../../kernels/resample.ref.ts";
import { assertClose, FIXTURES, maxAbsErr, rand, testDevice } from "../util.ts";

type Quad = [number, number, number, number];
const n = (s: Quad) => s.reduce((a, b) => a * b);

const FIXTURE = `${FIXTURES}/clip_pickscore/io.safetensors`;
const MEAN = [0.48145466, 0.4578275, 0.40821073];
const STD = [0.26862954, 0.26130258, 0.27577711];

describe("resample", () => {
  test("upsampleNearest2x copies each pixel to its 2×2 block", async () => {
    const dev = await testDevice();
    for (const [k, s] of ([[2, 3, 5, 7], [1, 1, 1, 1], [1, 4, 33, 65]] as Quad[]).entries()) {
      const x = rand(n(s), 10 + k);
      const y = upsampleNearest2x(Tensor.fromArray(dev, x, s));
      expect(y.shape).toEqual([s[0], s[1], 2 * s[2], 2 * s[3]]);
      expect(maxAbsErr(await y.toArray(), upsampleNearest2xRef(x, s))).toBe(0);
    }
  }, 60_000);

  test("resizeBicubic matches F.interpolate(bicubic) with and without antialias", async () => {
    const dev = await testDevice();
    const cases: [Quad, number, number][] = [
      [[1, 3, 64, 80], 23, 37], // downscale, odd factors
      [[2, 2, 7, 9], 16, 20], // upscale
      [[1, 3, 40, 12], 17, 29], // down in H, up in W
      [[1, 1, 30, 31], 30, 9], // one axis unchanged (single pass)
      [[1, 2, 1, 5], 3, 1], // size-1 input and output dims
    ];
    const errs: string[] = [];
    for (const antialias of [true, false]) {
      for (const [k, [s, oh, ow]] of cases.entries()) {
        const x = rand(n(s), 20 + k, 0, 1);
        const y = resizeBicubic(Tensor.fromArray(dev, x, s), oh, ow, { antialias });
        expect(y.shape).toEqual([s[0], s[1], oh, ow]);
        const ref = resizeBicubicRef(x, s, oh, ow, antialias);
        errs.push(assertClose(await y.toArray(), ref, 1e-5, `resize [${s}] → ${oh}×${ow} aa=${antialias}`).toExponential(1));
      }
    }
    console.log(`  rel errors: ${errs.join(" ")}`);
    expect(() => resizeBicubic(Tensor.zeros(dev, [1, 1, 4, 4]), 2, 2, { uint8: "pil" })).toThrow(/antialias/);
  }, 60_000);

  test("centerCrop uses torchvision's rounded offsets; normalizeChannels", async () => {
    const dev = await testDevice();
    const s: Quad = [2, 3, 10, 13];
    const x = rand(n(s), 30);
    const c = centerCrop(Tensor.fromArray(dev, x, s), 7, 8);
    // (10 - 7) / 2 = 1.5 and (13 - 8) / 2 = 2.5 both round half to even: top 2, left 2.
    expect(maxAbsErr(await c.toArray(), cropRef(x, s, 2, 2, 7, 8))).toBe(0);
    expect(() => centerCrop(Tensor.fromArray(dev, x, s), 11, 8)).toThrow(/fit/);
    const v = rand(n(s), 31, 0, 255);
    const y = normalizeChannels(Tensor.fromArray(dev, v, s), MEAN, STD, 1 / 255);
    assertClose(await y.toArray(), normalizeRef(v, s, MEAN, STD, 1 / 255), 1e-6, "normalize");
  }, 60_000);

  // The CLIP processor on the fixture's 64×80 image: shortest side to 224 (or 56), center crop, rescale, normalise.
  test("CLIP preprocessing reproduces the fixture's pixel_values (torchvision and PIL backends)", async () => {
    const dev = await testDevice();
    const io = await openSafetensors(FIXTURE);
    const hwc = await io.read("image_uint8");
    const [H, W] = io.get("image_uint8").shape;
    const chw = new Float32Array(3 * H * W);
    for (let i = 0; i < H * W; i++) for (let c = 0; c < 3; c++) chw[c * H * W + i] = hwc[i * 3 + c];
    const img = Tensor.fromArray(dev, chw, [1, 3, H, W]);
    const report: string[] = [];
    for (const size of [224, 56]) {
      const suffix = size === 224 ? "_224" : "";
      const want = {
        torch: await io.readFloat32(`pixel_values${suffix}`),
        pil: await io.readFloat32(`pixel_values${suffix}_pil_backend`),
      };
      const [oh, ow] = H <= W ? [size, Math.trunc((size * W) / H)] : [Math.trunc((size * H) / W), size];
      for (const mode of ["torch", "pil"] as const) {
        const resized = resizeBicubic(img, oh, ow, { antialias: true, uint8: mode });
        const px = await normalizeChannels(centerCrop(resized, size, size), MEAN, STD, 1 / 255).toArray();
        const same = maxAbsErr(px, want[mode]), other = maxAbsErr(px, want[mode === "torch" ? "pil" : "torch"]);
        report.push(`${size} ${mode}: ${same.toExponential(1)} (vs other backend ${other.toExponential(1)})`);
        expect(same).toBeLessThanOrEqual(1e-5);
      }
    }
    console.log(`  max abs errors: ${report.join("; ")}`);
  }, 60_000);
});
