// flashAttention vs the f64 reference on fresh random inputs: every head-dim variant (incl. one not a multiple of 4)
// at lengths that are not block multiples, GQA, causal, right-padding key masks per batch, rows with no allowed key,
// batch independence (bit-exact) and one larger case. f32 accumulation over ≤ 512-term dots and an online
// softmax keep the relative error near 1e-6; the bound is 1e-5.
import { describe, expect, test } from "bun:test";
import { type Device, Tensor } from "../../core/index.ts";
import { attentionTiles, flashAttention } from "../../kernels/attention.ts";
import { type AttentionDims, attentionRef } from "../../kernels/attention.ref.ts";
import { assertClose, maxAbsErr, rand, testDevice } from "../util.ts";

interface Case extends AttentionDims {
  causal?: boolean;
  scale?: number;
  /** Per-batch key mask values (length Lk each). */
  mask?: number[][];
  maskDType?: "i32" | "f32";
}

/** Right padding: the first n of Lk keys attend. */
const padded = (Lk: number, ...lens: number[]) => lens.map((n) => Array.from({ length: Lk }, (_, j) => (j < n ? 1 : 0)));

function inputs(c: Case, seed: number) {
  return {
    q: rand(c.B * c.Lq * c.Hq * c.D, seed, -2, 2),
    k: rand(c.B * c.Lk * c.Hkv * c.D, seed + 1, -2, 2),
    v: rand(c.B * c.Lk * c.Hkv * c.D, seed + 2),
  };
}

function run(dev: Device, c: Case, x: ReturnType<typeof inputs>): Tensor {
  const mask = c.mask
    ? Tensor.fromArray(dev, (c.maskDType === "f32" ? Float32Array : Int32Array).from(c.mask.flat()), [c.B, c.Lk])
    : undefined;
  return flashAttention(
    Tensor.fromArray(dev, x.q, [c.B, c.Lq, c.Hq, c.D]),
    Tensor.fromArray(dev, x.k, [c.B, c.Lk, c.Hkv, c.D]),
    Tensor.fromArray(dev, x.v, [c.B, c.Lk, c.Hkv, c.D]),
    { causal: c.causal, scale: c.scale, keyMask: mask },
  );
}

/** Runs one case on fresh inputs against the f64 reference; returns the relative error. */
async function check(c: Case, seed: number): Promise<number> {
  const dev = await testDevice();
  const x = inputs(c, seed);
  const y = run(dev, c, x);
  expect(y.shape).toEqual([c.B, c.Lq, c.Hq, c.D]);
  const label = `B${c.B} Lq${c.Lq} Lk${c.Lk} H${c.Hq}/${c.Hkv} D${c.D}${c.causal ? " causal" : ""}${c.mask ? " masked" : ""}`;
  const ref = attentionRef(x.q, x.k, x.v, c, { causal: c.causal, scale: c.scale, keyMask: c.mask?.flat() });
  return assertClose(await y.toArray(), ref, 1e-5, label);
}

async function checkAll(name: string, cases: Case[], seed: number): Promise<void> {
  let e = 0;
  for (const [i, c] of cases.entries()) e = Math.max(e, await check(c, seed + 10 * i));
  console.log(`attention ${name}: max relative error ${e.toExponential(2)}`);
}

describe("flashAttention", () => {
  for (const D of [16, 64, 80, 128, 512]) {
    test(`head dim ${D}: sizes 1, 5, 77, 130 against the f64 reference`, async () => {
      await checkAll(`D=${D}`, [
        { B: 1, Lq: 1, Lk: 1, Hq: 1, Hkv: 1, D },
        { B: 2, Lq: 5, Lk: 77, Hq: 2, Hkv: 2, D },
        { B: 1, Lq: 130, Lk: 130, Hq: 1, Hkv: 1, D },
      ], D);
    }, 120_000);
  }

  test("head dim not a multiple of 4 (scalar loads), custom scale", async () => {
    await checkAll("D=33", [
      { B: 2, Lq: 77, Lk: 5, Hq: 2, Hkv: 1, D: 33, scale: 0.3 },
      { B: 1, Lq: 66, Lk: 130, Hq: 1, Hkv: 1, D: 33 },
    ], 500);
  }, 120_000);

  test("sharp softmax (scale 1: logits with std ≈ 15)", async () => {
    await checkAll("sharp", [{ B: 1, Lq: 200, Lk: 200, Hq: 2, Hkv: 2, D: 128, scale: 1 }], 550);
  }, 120_000);

  test("grouped-query attention (4/2 and 32/8 heads), plain and causal", async () => {
    await checkAll("GQA", [
      { B: 1, Lq: 77, Lk: 77, Hq: 4, Hkv: 2, D: 64 },
      { B: 2, Lq: 77, Lk: 77, Hq: 4, Hkv: 2, D: 64, causal: true },
      { B: 1, Lq: 5, Lk: 13, Hq: 32, Hkv: 8, D: 128 },
      { B: 1, Lq: 13, Lk: 13, Hq: 32, Hkv: 8, D: 128, causal: true },
    ], 600);
  }, 120_000);

  test("causal across query blocks", async () => {
    await checkAll("causal", [
      { B: 1, Lq: 130, Lk: 130, Hq: 2, Hkv: 2, D: 64, causal: true },
      { B: 2, Lq: 77, Lk: 77, Hq: 2, Hkv: 1, D: 128, causal: true },
      { B: 1, Lq: 1, Lk: 1, Hq: 1, Hkv: 1, D: 128, causal: true },
    ], 700);
  }, 120_000);

  test("right-padding key masks, different per batch, with and without causal (Qwen3 layout)", async () => {
    await checkAll("key mask", [
      { B: 2, Lq: 5, Lk: 77, Hq: 2, Hkv: 2, D: 64, mask: padded(77, 5, 60) },
      { B: 2, Lq: 77, Lk: 77, Hq: 32, Hkv: 8, D: 128, causal: true, mask: padded(77, 77, 20) },
      { B: 2, Lq: 130, Lk: 130, Hq: 2, Hkv: 1, D: 64, causal: true, mask: padded(130, 3, 100), maskDType: "f32" },
    ], 800);
  }, 120_000);

  test("rows with no allowed key average v uniformly over all keys (no NaN)", async () => {
    const left = [Array.from({ length: 130 }, (_, j) => (j >= 70 ? 1 : 0))]; // left padding: rows < 70 see nothing
    const none = [Array(40).fill(0), Array.from({ length: 40 }, (_, j) => j % 3)];
    await checkAll("fully masked", [
      { B: 1, Lq: 130, Lk: 130, Hq: 2, Hkv: 2, D: 64, causal: true, mask: left },
      { B: 2, Lq: 9, Lk: 40, Hq: 1, Hkv: 1, D: 64, mask: none },
      { B: 2, Lq: 40, Lk: 40, Hq: 1, Hkv: 1, D: 16, causal: true, mask: none, maskDType: "f32" },
    ], 900);
  }, 120_000);

  test("results do not depend on the batch size", async () => {
    const dev = await testDevice();
    const c: Case = { B: 2, Lq: 77, Lk: 77, Hq: 4, Hkv: 2, D: 64, causal: true, mask: padded(77, 50, 33) };
    const x = inputs(c, 1000);
    const both = await run(dev, c, x).toArray();
    const half = (a: Float32Array) => a.subarray(a.length / 2);
    const one: Case = { ...c, B: 1, mask: [c.mask![1]] };
    const second = await run(dev, one, { q: half(x.q), k: half(x.k), v: half(x.v) }).toArray();
    expect(maxAbsErr(half(both), second)).toBe(0);
  }, 120_000);

  test("large case: L=512, H=2, D=128", async () => {
    const t0 = performance.now();
    await checkAll("large", [{ B: 1, Lq: 512, Lk: 512, Hq: 2, Hkv: 2, D: 128 }], 1100);
    console.log(`attention large case: ${(performance.now() - t0).toFixed(0)} ms incl. reference`);
  }, 120_000);

  test("block shapes fit workgroup memory for every head dim down to 16 KiB", () => {
    for (const bytes of [16384, 32768, 49152])
      for (let D = 1; D <= 512; D++) {
        const t = attentionTiles(D, bytes);
        const vec4s = t.REGION + 32 * t.TR + t.TR * t.TC + 1;
        expect(vec4s * 16).toBeLessThanOrEqual(Math.min(bytes, 32768));
        expect(t.NCH * t.DC4).toBeGreaterThanOrEqual(t.D4);
        expect(t.NE * t.TC).toBeGreaterThanOrEqual(t.D4);
        expect(4 * t.NE).toBeLessThanOrEqual(16);
      }
    const flux = attentionTiles(128, 32768);
    expect([flux.BQ, flux.TR * flux.TC, flux.BKV]).toEqual([64, 128, 32]);
  });

  test("rejects bad shapes and options", async () => {
    const dev = await testDevice();
    const t = (shape: number[]) => Tensor.zeros(dev, shape);
    const q = t([1, 4, 4, 16]), k = t([1, 6, 2, 16]);
    expect(() => flashAttention(q, k, t([1, 6, 2, 8]))).toThrow(/v \(same as k\)/);
    expect(() => flashAttention(q, t([1, 6, 3, 16]), t([1, 6, 3, 16]))).toThrow(/multiple of kv heads/);
    expect(() => flashAttention(q, t([1, 6, 2, 8]), t([1, 6, 2, 8]))).toThrow(/must be \[1, Lk, Hkv, 16\]/);
    expect(() => flashAttention(q, k, k, { causal: true })).toThrow(/Lq == Lk/);
    expect(() => flashAttention(q, k, k, { keyMask: Tensor.zeros(dev, [1, 5], "i32") })).toThrow(/keyMask/);
    expect(() => flashAttention(t([4, 4, 16]), k, k)).toThrow(/rank 4/);
    const big = t([1, 1, 1, 513]);
    expect(() => flashAttention(big, big, big)).toThrow(/head dim 513/);
  }, 60_000);
});
