// The Gaussian RNG: Philox known answers, GPU output equal to the CPU twin bit for bit (sizes, offsets past 2^32,
// 53-bit seeds, edge words fed straight to the WGSL Box-Muller), accuracy against f64 Box-Muller, and N(0,1)
// statistics of a million samples. A pinned hash of one stream guards the stream itself against silent change.
import { describe, expect, test } from "bun:test";
import { flatIndex, grid1d, Tensor, uniforms } from "../../core/index.ts";
import { boxMullerRef, philoxRef, RNG_WGSL, randnInto, randnRef } from "../../core/rng.ts";
import { erf } from "../../kernels/elementwise.ref.ts";
import { testDevice } from "../util.ts";

const bitsOf = (f: Float32Array) => new Uint32Array(f.buffer, f.byteOffset, f.length);

function mismatches(a: Float32Array, b: Float32Array): string {
  if (a.length !== b.length) return `length ${a.length} vs ${b.length}`;
  const x = bitsOf(a), y = bitsOf(b);
  let n = 0, first = -1;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i] && n++ === 0) first = i;
  return n ? `${n} differing words, first at ${first}: ${a[first]} vs ${b[first]}` : "";
}

/** Box-Muller in f64 on the same uniforms: u1 = (a + 1)/2^32, u2 = b/2^32. */
function idealPair(a: number, b: number): [number, number] {
  const r = Math.sqrt(-2 * Math.log((a + 1) / 2 ** 32));
  const t = (2 * Math.PI * b) / 2 ** 32;
  return [r * Math.cos(t), r * Math.sin(t)];
}

/** Word pairs where the integer steps switch branches: u1 at 0, 1, powers of two, the 2/3 split; θ at octant edges. */
function edgePairs(): [number, number][] {
  const as = [0, 1, 2, 3, 0x3fffffff, 0x40000000, 0x55555555, 0x7fffffff, 0x80000000, 0xaaaaaaaa, 0xaaaaaaab, 0xffff0000, 0xfffffff0, 0xfffffffe, 0xffffffff];
  const bs: number[] = [];
  for (let o = 0; o < 8; o++) for (const d of [-1, 0, 1]) bs.push(((o << 29) + d) >>> 0);
  return as.flatMap((a) => bs.map((b): [number, number] => [a, b]));
}

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
}

describe("rng", () => {
  test("philoxRef matches the Random123 known-answer vectors", () => {
    const hex = (u: Uint32Array) => [...u].map((x) => x.toString(16).padStart(8, "0")).join(" ");
    expect(hex(philoxRef([0, 0, 0, 0], [0, 0]))).toBe("6627e8d5 e169c58d bc57ac4c 9b00dbd8");
    const ones = 0xffffffff;
    expect(hex(philoxRef([ones, ones, ones, ones], [ones, ones]))).toBe("408f276d 41c83b0e a20bc7c6 6d5451fd");
    expect(hex(philoxRef([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]))).toBe(
      "d16cfe09 94fdcceb 5001e420 24126ea1",
    );
  });

  test("the stream is pinned and follows the documented layout", () => {
    let h = 0x811c9dc5; // FNV-1a over the 32-bit words
    for (const w of bitsOf(randnRef(4096, 1234, 5))) h = Math.imul(h ^ w, 0x01000193) >>> 0;
    expect(h.toString(16)).toBe("87646fb4");
    // offset counts blocks of 4; elements 4c..4c+3 are (r cos, r sin) of words (w0, w1) then (w2, w3).
    expect(mismatches(randnRef(10, 77, 3), randnRef(22, 77).subarray(12))).toBe("");
    const w = philoxRef([0xffffffff, 1, 0, 0], [5, 0x1fffff]);
    const z = [...boxMullerRef(w[0], w[1]), ...boxMullerRef(w[2], w[3])];
    expect(mismatches(randnRef(4, 0x1fffff00000005, 2 ** 33 - 1), Float32Array.from(z))).toBe("");
  });

  test("GPU output equals the CPU twin bit for bit", async () => {
    const dev = await testDevice();
    const cases: [number, number, number][] = [
      [1, 0, 0],
      [5, 42, 0],
      [5, 42, 3],
      [4099, 2 ** 53 - 1, 2 ** 32 - 7], // counter carries into its high word mid-tensor
      [1 << 20, 20240601, 12345],
    ];
    for (const [n, seed, offset] of cases) {
      const gpu = await Tensor.randn(dev, [n], { seed, offset }).toArray();
      expect(`n=${n} seed=${seed} offset=${offset}: ${mismatches(gpu, randnRef(n, seed, offset))}`).toBe(
        `n=${n} seed=${seed} offset=${offset}: `,
      );
    }
    // Two launches at block offsets equal one launch.
    const whole = await Tensor.randn(dev, [16], { seed: 3 }).toArray();
    const parts = [randnInto(Tensor.empty(dev, [8]), 3, 0), randnInto(Tensor.empty(dev, [8]), 3, 2)];
    const joined = new Float32Array(16);
    joined.set(await parts[0].toArray());
    joined.set(await parts[1].toArray(), 8);
    expect(mismatches(joined, whole)).toBe("");
  }, 120_000);

  test("edge words through the WGSL boxMuller equal boxMullerRef", async () => {
    const dev = await testDevice();
    const next = lcg(5);
    const pairs = edgePairs();
    for (let i = 0; i < 4000; i++) pairs.push([next() >>> (i % 32), next()], [(0xffffffff - (next() >>> (i % 32))) >>> 0, next()]);
    const P = uniforms("boxMuller test", { n: "u32" });
    const wgsl = `
${P.wgsl}
@group(0) @binding(1) var<storage, read_write> out: array<vec2f>;
@group(0) @binding(2) var<storage, read> words: array<vec2u>;
${RNG_WGSL}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${flatIndex(64)};
  if (i < u.n) { out[i] = boxMuller(words[i].x, words[i].y); }
}`;
    const input = Tensor.fromArray(dev, Uint32Array.from(pairs.flat()), [pairs.length, 2]);
    const out = Tensor.empty(dev, [pairs.length, 2]);
    dev.run(dev.pipeline(wgsl), [out.binding(), input.binding()], grid1d(pairs.length, 64), P.pack({ n: pairs.length }));
    const ref = Float32Array.from(pairs.flatMap(([a, b]) => boxMullerRef(a, b)));
    expect(mismatches(await out.toArray(), ref)).toBe("");
  }, 120_000);

  test("integer Box-Muller is within 1e-6 of f64 Box-Muller", () => {
    const next = lcg(11);
    const pairs = edgePairs();
    for (let i = 0; i < 100_000; i++) pairs.push([next(), next()]);
    // the tails (u1 near 0: |z| up to 6.66) and the centre (u1 near 1, where sqrt amplifies errors)
    for (let i = 0; i < 50_000; i++) pairs.push([next() >>> (8 + (i % 24)), next()], [(0xffffffff - (next() >>> (i % 32))) >>> 0, next()]);
    let maxErr = 0, maxExcess = 0, maxAbs = 0;
    for (const [a, b] of pairs) {
      const z = boxMullerRef(a, b), w = idealPair(a, b);
      for (let j = 0; j < 2; j++) {
        const err = Math.abs(z[j] - w[j]);
        const halfUlp = z[j] === 0 ? 0 : 2 ** (Math.floor(Math.log2(Math.abs(z[j]))) - 24);
        maxErr = Math.max(maxErr, err);
        maxExcess = Math.max(maxExcess, err - halfUlp);
        maxAbs = Math.max(maxAbs, Math.abs(z[j]));
      }
    }
    console.log(`box-muller: max |err| ${maxErr.toExponential(3)}, beyond f32 rounding ${maxExcess.toExponential(3)}, max |z| ${maxAbs.toFixed(4)} over ${pairs.length} pairs`);
    expect(maxErr).toBeLessThanOrEqual(1e-6);
    expect(maxExcess).toBeLessThan(1e-8);
    expect(maxAbs).toBeGreaterThan(6.6); // u1 = 2^-32 reaches sqrt(64 ln 2) = 6.660
    expect(maxAbs).toBeLessThan(6.661);
    expect(boxMullerRef(0xffffffff, 12345)).toEqual([0, 0]); // u1 = 1
  });

  test("a million samples have N(0,1) moments and KS distance", async () => {
    const dev = await testDevice();
    const n = 1 << 20;
    const z = await Tensor.randn(dev, [n], { seed: 987654321, offset: 77 }).toArray();
    let s1 = 0;
    for (const v of z) s1 += v;
    const mean = s1 / n;
    let m2 = 0, m3 = 0, m4 = 0;
    for (const v of z) {
      const d = v - mean, d2 = d * d;
      m2 += d2;
      m3 += d2 * d;
      m4 += d2 * d2;
    }
    m2 /= n;
    const skew = m3 / n / m2 ** 1.5, exKurt = m4 / n / (m2 * m2) - 3;
    const sorted = Float64Array.from(z).sort();
    let ks = 0;
    for (let i = 0; i < n; i++) {
      const cdf = 0.5 * (1 + erf(sorted[i] / Math.SQRT2));
      ks = Math.max(ks, Math.abs(cdf - i / n), Math.abs(cdf - (i + 1) / n));
    }
    console.log(`randn 2^20: mean ${mean.toExponential(2)} var ${m2.toFixed(5)} skew ${skew.toExponential(2)} excess kurtosis ${exKurt.toExponential(2)} KS ${ks.toExponential(2)} (sqrt(n)·KS ${(ks * Math.sqrt(n)).toFixed(3)})`);
    // 5 standard errors of each sample statistic; KS at the 0.1% level (1.95/sqrt(n)).
    expect(Math.abs(mean)).toBeLessThan(5 / Math.sqrt(n));
    expect(Math.abs(m2 - 1)).toBeLessThan(5 * Math.sqrt(2 / n));
    expect(Math.abs(skew)).toBeLessThan(5 * Math.sqrt(6 / n));
    expect(Math.abs(exKurt)).toBeLessThan(5 * Math.sqrt(24 / n));
    expect(ks).toBeLessThan(1.95 / Math.sqrt(n));
  }, 120_000);

  test("Tensor.randn uses randnInto and arguments are checked", async () => {
    const dev = await testDevice();
    const t = Tensor.randn(dev, [3, 5], { seed: 9, offset: 2 });
    expect(t.shape).toEqual([3, 5]);
    expect(mismatches(await t.toArray(), randnRef(15, 9, 2))).toBe("");
    expect((await Tensor.randn(dev, [0], { seed: 1 }).toArray()).length).toBe(0);
    expect(() => Tensor.randn(dev, [4], { seed: -1 })).toThrow(/seed must be a non-negative integer/);
    expect(() => Tensor.randn(dev, [4], { seed: 1.5 })).toThrow(/seed/);
    expect(() => Tensor.randn(dev, [4], { seed: 2 ** 53 })).toThrow(/seed/);
    expect(() => Tensor.randn(dev, [4], { seed: 1, offset: -4 })).toThrow(/offset/);
    expect(() => randnInto(Tensor.empty(dev, [4], "i32"), 1)).toThrow(/must be f32/);
  }, 60_000);
});

