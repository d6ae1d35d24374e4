// Declared uniform blocks: WGSL layout (offsets, vector alignment, 16-byte rounding), the packer's name and range
// checks, and on the GPU that the field order a shader reads is the one its block packs: a non-square kernel
// packed with two fields swapped must give other results (so a swap cannot pass unseen), and one declaration in
// either order gives the right ones.
import { describe, expect, test } from "bun:test";
import { flatIndex, grid1d, Tensor, uniforms, type Uniforms } from "../../core/index.ts";
import { testDevice, thrown } from "../util.ts";

const words = (b: Uint8Array) => Array.from(new Uint32Array(b.buffer, b.byteOffset, b.byteLength / 4));
const floats = (b: Uint8Array) => Array.from(new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4));

describe("uniforms", () => {
  test("scalars pack by name in declaration order, padded to 16 bytes", () => {
    const P = uniforms("k", { m: "u32", n: "u32", x: "i32", alpha: "f32", beta: "f32" });
    expect(P.wgsl).toBe("struct P { m: u32, n: u32, x: i32, alpha: f32, beta: f32 }\n@group(0) @binding(0) var<uniform> u: P;");
    expect(P.bytes).toBe(32);
    const b = P.pack({ beta: 0.25, alpha: -1.5, x: -3, n: 7, m: 2 ** 32 - 1 });
    expect(b.byteLength).toBe(32);
    expect(words(b).slice(0, 2)).toEqual([2 ** 32 - 1, 7]);
    expect(new Int32Array(b.buffer)[2]).toBe(-3);
    expect(floats(b).slice(3, 5)).toEqual([-1.5, 0.25]);
    expect(words(b).slice(5)).toEqual([0, 0, 0]);
    expect(uniforms("k", { n: "u32" }).pack({ n: 1 }).byteLength).toBe(16);
  });

  test("vectors align as WGSL's uniform address space says", () => {
    // a@0, v2@8 (align 8), b@16, v3@32 (align 16, 12 bytes), c@44, v4@48; size 64.
    const P = uniforms("k", { a: "u32", v2: "vec2f", b: "u32", v3: "vec3u", c: "f32", v4: "vec4i" });
    expect(P.wgsl).toContain("struct P { a: u32, v2: vec2<f32>, b: u32, v3: vec3<u32>, c: f32, v4: vec4<i32> }");
    expect(P.bytes).toBe(64);
    const b = P.pack({ a: 1, v2: [2, 3], b: 4, v3: [5, 6, 7], c: 8, v4: [-9, 10, 11, 12] });
    const w = words(b), f = floats(b);
    expect([w[0], f[2], f[3], w[4], w[8], w[9], w[10], f[11]]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(Array.from(new Int32Array(b.buffer, 48, 4))).toEqual([-9, 10, 11, 12]);
    // A vec4 raises the struct's alignment to 16: 4 + 16 → 32 bytes, the vec4 at 16.
    const Q = uniforms("k", { n: "u32", mu: "vec4f" });
    expect(Q.bytes).toBe(32);
    expect(floats(Q.pack({ n: 3, mu: [1, 2, 3, 4] })).slice(4)).toEqual([1, 2, 3, 4]);
  });

  test("bad values throw, naming the kernel and the field", () => {
    const P = uniforms("matmul", { m: "u32", off: "i32", alpha: "f32", init: { type: "f32", nonFinite: true }, v: "vec2u" });
    const ok = { m: 1, off: 0, alpha: 1, init: 0, v: [0, 0] };
    const bad = (change: Record<string, unknown>) => () => P.pack({ ...ok, ...change } as typeof ok);
    expect(thrown(bad({ m: -1 }))).toContain("matmul: uniform m = -1 is outside the u32 range [0, 4294967296)");
    expect(thrown(bad({ m: 2 ** 32 }))).toContain("matmul: uniform m = 4294967296 is outside the u32 range");
    expect(thrown(bad({ m: 1.5 }))).toContain("matmul: uniform m = 1.5 is not an integer (u32)");
    expect(thrown(bad({ m: NaN }))).toContain("matmul: uniform m = NaN is not an integer");
    expect(thrown(bad({ m: "3" }))).toContain("matmul: uniform m = 3 is a string, not a number");
    expect(thrown(bad({ off: 2 ** 31 }))).toContain("matmul: uniform off = 2147483648 is outside the i32 range [-2147483648, 2147483648)");
    expect(thrown(bad({ off: -(2 ** 31) - 1 }))).toContain("matmul: uniform off = -2147483649 is outside the i32 range");
    expect(thrown(bad({ alpha: Infinity }))).toContain("matmul: uniform alpha = Infinity is not finite");
    expect(thrown(bad({ alpha: NaN }))).toContain("matmul: uniform alpha = NaN is not finite");
    expect(thrown(bad({ alpha: 1e39 }))).toContain("matmul: uniform alpha = 1e+39 overflows f32");
    expect(thrown(bad({ v: [1, -2] }))).toContain("matmul: uniform v[1] = -2 is outside the u32 range");
    expect(thrown(bad({ v: [1] }))).toContain("matmul: uniform v needs 2 numbers, got 1");
    expect(thrown(bad({ v: 1 }))).toContain("matmul: uniform v needs 2 numbers, got 1");
    expect(thrown(bad({ extra: 1 }))).toContain("matmul: unknown uniform extra (declared: m, off, alpha, init, v)");
    const { m: _, ...missing } = ok;
    expect(thrown(() => P.pack(missing as typeof ok))).toContain("matmul: uniform m is missing");
    // Allowed: the extremes, and non-finite values where declared.
    expect(floats(P.pack({ ...ok, init: -Infinity }))[3]).toBe(-Infinity);
    expect(floats(P.pack({ ...ok, init: Infinity }))[3]).toBe(Infinity);
    expect(Number.isNaN(floats(P.pack({ ...ok, init: NaN }))[3])).toBe(true);
    expect(words(P.pack({ ...ok, m: 2 ** 32 - 1 }))[0]).toBe(2 ** 32 - 1);
    expect(new Int32Array(P.pack({ ...ok, off: -(2 ** 31) }).buffer)[1]).toBe(-(2 ** 31));
  });

  test("bad declarations throw", () => {
    expect(thrown(() => uniforms("k", {}))).toContain("k: a uniform block needs at least one field");
    expect(thrown(() => uniforms("k", { n: "u64" as "u32" }))).toContain('k: uniform n has unknown type "u64"');
    expect(thrown(() => uniforms("k", { n: { type: "u32" as "f32", nonFinite: true } }))).toContain("k: uniform n: only f32 fields may allow non-finite values");
    expect(thrown(() => uniforms("k", { "a b": "u32" }))).toContain('k: uniform field name "a b" is not a WGSL identifier');
  });

  // out[r·n + c] = 1000·r + c for an m × n grid: m and n swapped is another grid.
  const gridWgsl = (P: Uniforms<{ m: "u32"; n: "u32" }>) => `
${P.wgsl}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${flatIndex(64)};
  if (i < u.m * u.n) { out[i] = f32(1000u * (i / u.n) + i % u.n); }
}`;

  test("a swapped field changes a non-square kernel's results; one declaration in either order does not", async () => {
    const dev = await testDevice();
    const [m, n] = [3, 5];
    const want = Array.from({ length: m * n }, (_, i) => 1000 * Math.floor(i / n) + (i % n));
    const MN = uniforms("grid", { m: "u32", n: "u32" });
    const NM = uniforms("grid", { n: "u32", m: "u32" });
    const run = async (shader: typeof MN, packer: typeof MN) => {
      const out = Tensor.empty(dev, [m * n]);
      dev.run(dev.pipeline(gridWgsl(shader)), [out.binding()], grid1d(m * n, 64), packer.pack({ m, n }));
      const got = Array.from(await out.toArray());
      out.dispose();
      return got;
    };
    expect(await run(MN, MN)).toEqual(want);
    expect(await run(NM, NM)).toEqual(want);
    // The shader reads {m, n}, the bytes hold {n, m}: it sees a 5 × 3 grid and writes other values.
    const swapped = await run(MN, NM);
    expect(swapped).not.toEqual(want);
    expect(swapped).toEqual(Array.from({ length: m * n }, (_, i) => 1000 * Math.floor(i / m) + (i % m)));
  }, 60_000);
});
