// pixels.ts against pixels.ref.ts, bit for bit: awkward sizes (byte counts not a multiple of 4, 1×1 images, B > 1),
// values past the clamps, and values that land exactly on halves (rounding to even) or integers (truncation).
import { describe, expect, test } from "bun:test";
import { Tensor } from "../../core/index.ts";
import { packRgbBytes, quantizePixels, unpackRgbBytes } from "../../kernels/pixels.ts";
import { packRgbBytesRef, quantizePixelsRef, unpackRgbBytesRef } from "../../kernels/pixels.ref.ts";
import { rand, testDevice, thrown } from "../util.ts";

const SHAPES: [number, number, number][] = [[1, 1, 1], [2, 3, 5], [1, 7, 9], [3, 17, 31]];

/** Decoder-like values in [−1.2, 1.2] with exact edges: 0 (→ 127.5 before rounding), ±1, and past the clamps. */
function decoderValues(n: number, seed: number): Float32Array {
  const x = rand(n, seed, -1.2, 1.2);
  const edges = [0, 1, -1, 1.5, -1.5, 2 / 255 - 1, 0.5 / 127.5];
  for (let i = 0; i < n; i += 5) x[i] = edges[(i / 5) % edges.length];
  return x;
}

describe("pixels", () => {
  test("packRgbBytes = ref (round and trunc), padding lanes zero", async () => {
    const dev = await testDevice();
    for (const [k, [B, H, W]] of SHAPES.entries()) {
      const n = B * 3 * H * W;
      const x = decoderValues(n, 40 + k);
      for (const rounding of ["round", "trunc"] as const) {
        const words = packRgbBytes(Tensor.fromArray(dev, x, [B, 3, H, W]), rounding);
        expect(words.shape).toEqual([Math.ceil(n / 4)]);
        const bytes = await words.readBytes();
        const want = new Uint8Array(words.size * 4);
        want.set(packRgbBytesRef(x, B, H, W, rounding));
        expect(Array.from(bytes)).toEqual(Array.from(want));
        words.dispose();
      }
    }
  }, 60_000);

  test("unpackRgbBytes = ref", async () => {
    const dev = await testDevice();
    for (const [k, [B, H, W]] of SHAPES.entries()) {
      const bytes = Uint8Array.from(rand(B * H * W * 3, 60 + k, 0, 256), Math.floor);
      const padded = new Uint8Array(Math.ceil(bytes.length / 4) * 4);
      padded.set(bytes);
      padded.fill(0xab, bytes.length); // padding must not show up
      const src = Tensor.fromBytes(dev, padded, [padded.length / 4], "u32");
      const out = unpackRgbBytes(src, [B, 3, H, W]);
      expect(out.shape).toEqual([B, 3, H, W]);
      expect(Array.from(await out.toArray())).toEqual(Array.from(unpackRgbBytesRef(bytes, B, H, W)));
    }
  }, 60_000);

  test("quantizePixels = ref for trunc and round-half-even", async () => {
    const dev = await testDevice();
    const n = 3 * 11 * 13;
    const x = rand(n, 7, -1.1, 1.1);
    const halves = rand(n, 8, -2, 258).map((v) => Math.floor(v) + 0.5); // exact halves with offset 0, scale 1
    const cases = [
      { x, q: { offset: 1, scale: 127.5, rounding: "trunc" as const } },
      { x: x.map((v) => v / 2 + 0.5), q: { offset: 0, scale: 255, rounding: "round" as const } },
      { x: halves, q: { offset: 0, scale: 1, rounding: "round" as const } },
      { x: halves, q: { offset: 0, scale: 1, rounding: "trunc" as const } },
    ];
    for (const { x: data, q } of cases) {
      const out = quantizePixels(Tensor.fromArray(dev, data, [1, 3, 11, 13]), q);
      expect(Array.from(await out.toArray())).toEqual(Array.from(quantizePixelsRef(data, q)));
    }
    // Halves go to the even neighbour: 0.5 → 0, 1.5 → 2, 2.5 → 2.
    const even = quantizePixels(Tensor.fromArray(dev, Float32Array.of(0.5, 1.5, 2.5, 254.5), [4]), { offset: 0, scale: 1, rounding: "round" });
    expect(Array.from(await even.toArray())).toEqual([0, 2, 2, 254]);
  }, 60_000);

  test("bad input names the kernel and the argument", async () => {
    const dev = await testDevice();
    const gray = Tensor.empty(dev, [1, 1, 2, 2]);
    expect(thrown(() => packRgbBytes(gray, "round"))).toContain("packRgbBytes x: expected f32 [B, 3, H, W], got [1,1,2,2]");
    const words = Tensor.empty(dev, [2], "u32");
    expect(thrown(() => unpackRgbBytes(words, [1, 3, 2, 2]))).toContain("unpackRgbBytes: 2 words hold fewer than the 12 bytes of [1,3,2,2]");
    expect(thrown(() => quantizePixels(words, { offset: 0, scale: 1, rounding: "round" }))).toContain("quantizePixels x: dtype u32 not supported");
    expect(thrown(() => quantizePixels(gray, { offset: 0, scale: Infinity, rounding: "round" }))).toContain("quantizePixels: uniform scale = Infinity is not finite");
  });
});
