// hash_noise.ts against its CPU twin, bit for bit: odd sizes (a half-filled last word), offsets into the stream
// (odd ones included), a constant fill (std 0), and the statistics the header promises.
import { describe, expect, test } from "bun:test";
import { Tensor } from "../../core/index.ts";
import { hashNoiseBf16 } from "../../kernels/hash_noise.ts";
import { hashNoiseBf16Ref } from "../../kernels/hash_noise.ref.ts";
import { testDevice, thrown } from "../util.ts";

const CASES = [
  { n: 1, e0: 0, key: 0, std: 1, mean: 0 },
  { n: 7, e0: 3, key: 0xdeadbeef, std: 0.02, mean: 0 },
  { n: 1000, e0: 123456, key: 12345, std: 0.5, mean: 0 },
  { n: 66001, e0: 2 ** 31 - 70000, key: 0xffffffff, std: 3, mean: 0 },
  { n: 5, e0: 10, key: 1, std: 0, mean: 1 },
];

const bf16ToF32 = (b: number) => new Float32Array(Uint32Array.of(b << 16).buffer)[0];

describe("hash noise", () => {
  test("GPU bits = CPU twin (odd sizes, stream offsets, constants)", async () => {
    const dev = await testDevice();
    for (const c of CASES) {
      const t = Tensor.empty(dev, [c.n], "bf16");
      hashNoiseBf16(t, c);
      const got = new Uint16Array((await t.readBytes()).slice(0, 2 * c.n).buffer);
      const want = hashNoiseBf16Ref(c.key, c.std, c.mean, c.e0, c.n);
      let bad = -1;
      for (let i = 0; i < c.n && bad < 0; i++) if (got[i] !== want[i]) bad = i;
      expect(`${JSON.stringify(c)}: first mismatch ${bad}`).toBe(`${JSON.stringify(c)}: first mismatch -1`);
      t.dispose();
    }
  }, 60_000);

  test("mean 0, the given std, bounded at √3·2·std", () => {
    const v = Array.from(hashNoiseBf16Ref(7, 0.5, 0, 0, 200000), bf16ToF32);
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    const std = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length);
    expect(Math.abs(mean)).toBeLessThan(0.005);
    expect(Math.abs(std - 0.5)).toBeLessThan(0.005);
    expect(v.reduce((m, x) => Math.max(m, Math.abs(x)), 0)).toBeLessThanOrEqual(2 * Math.sqrt(3) * 0.5 * 1.004);
  });

  test("bad input names the kernel and the argument", async () => {
    const dev = await testDevice();
    expect(thrown(() => hashNoiseBf16(Tensor.empty(dev, [2]), { key: 1, e0: 0, std: 1, mean: 0 }))).toContain("hashNoiseBf16 t: dtype f32 not supported");
    const t = Tensor.empty(dev, [2], "bf16");
    expect(thrown(() => hashNoiseBf16(t, { key: -1, e0: 0, std: 1, mean: 0 }))).toContain("hashNoiseBf16: uniform key = -1 is outside the u32 range");
    expect(thrown(() => hashNoiseBf16(t, { key: 1, e0: 2 ** 32, std: 1, mean: 0 }))).toContain("hashNoiseBf16: uniform end = 4294967298 is outside the u32 range");
  });
});
