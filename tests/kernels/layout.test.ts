import { describe, expect, test } from "bun:test";
import { numel, roundTo, Tensor } from "../../core/index.ts";
import * as lay from "../../kernels/layout.ts";
import * as ref from "../../kernels/layout.ref.ts";
import { rand, testDevice } from "../util.ts";

/** Index of the first element whose bits differ (NaN matches NaN), or -1: data movement must be bit-exact. */
function firstDiff(out: ArrayLike<number>, want: ArrayLike<number>): number {
  if (out.length !== want.length) return -2;
  for (let i = 0; i < want.length; i++) if (!Object.is(out[i], want[i])) return i;
  return -1;
}

async function expectExact(t: Tensor, want: Float32Array, shape: readonly number[], label: string): Promise<void> {
  expect(t.shape).toEqual([...shape]);
  const got = await t.toArray();
  const at = firstDiff(got, want);
  if (at !== -1) throw new Error(`${label}: first difference at ${at}: got ${got[at]}, want ${want[at]}`);
}

const upload = (dev: Awaited<ReturnType<typeof testDevice>>, shape: number[], seed: number) => {
  const data = rand(numel(shape), seed, -100, 100);
  return { data, t: Tensor.fromArray(dev, data, shape) };
};

describe("layout", () => {
  test("canonicalPermutation drops size-1 axes and merges adjacent ones", () => {
    expect(lay.canonicalPermutation([2, 3, 4, 5], [0, 2, 3, 1])).toEqual({ shape: [2, 3, 20], perm: [0, 2, 1] });
    expect(lay.canonicalPermutation([1, 3, 1, 5], [3, 1, 0, 2])).toEqual({ shape: [3, 5], perm: [1, 0] });
    expect(lay.canonicalPermutation([4, 1, 6], [1, 0, 2])).toEqual({ shape: [24], perm: [0] });
    expect(lay.canonicalPermutation([1, 1], [1, 0])).toEqual({ shape: [], perm: [] });
  });

  const PERMS: [number[], number[]][] = [
    ...[[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]].map((p): [number[], number[]] => [[5, 9, 13], p]),
    [[5, 1, 7, 3], [3, 1, 0, 2]],
    [[1, 33, 1, 65], [3, 2, 0, 1]],
    [[2, 3, 4, 5, 6, 2], [4, 1, 5, 0, 3, 2]],
    [[2, 3, 4, 5, 6, 3], [5, 3, 1, 4, 2, 0]],
    [[2, 3, 9, 2, 10, 11], [1, 5, 3, 0, 4, 2]], // tiled with four batch axes
    [[37, 70], [1, 0]],
    [[3, 40, 50], [0, 2, 1]],
    [[4, 33, 17, 9], [2, 0, 3, 1]],
    [[2, 16, 9, 11], [0, 2, 3, 1]], // packLatents-shaped, tiled with a batch
    [[1], [0]],
  ];
  test("transpose matches the CPU reference bit for bit (gather and tiled paths)", async () => {
    const dev = await testDevice();
    for (const [k, [shape, perm]] of PERMS.entries()) {
      const { data, t } = upload(dev, shape, 100 + k);
      await expectExact(lay.transpose(t, perm), ref.transposeRef(data, shape, perm), perm.map((a) => shape[a]), `transpose [${shape}] by [${perm}]`);
    }
  }, 60_000);

  test("transpose of a large 2-D matrix and of i32/bf16 tensors", async () => {
    const dev = await testDevice();
    const shape = [1000, 1531];
    const { data, t } = upload(dev, shape, 7);
    const t0 = performance.now();
    const y = lay.transpose(t, [1, 0]);
    await expectExact(y, ref.transposeRef(data, shape, [1, 0]), [1531, 1000], "large transpose");
    console.log(`transpose [${shape}]: ${(performance.now() - t0).toFixed(0)} ms incl. readback`);
    // More than 65535 tiles: the workgroup grid folds into y.
    const many = upload(dev, [66000, 8, 8], 11);
    await expectExact(lay.transpose(many.t, [0, 2, 1]), ref.transposeRef(many.data, [66000, 8, 8], [0, 2, 1]), [66000, 8, 8], "66000 tiles");

    const ints = Int32Array.from(rand(6 * 35, 8, -1e6, 1e6), Math.round);
    const yi = lay.transpose(Tensor.fromArray(dev, ints, [6, 35]), [1, 0]);
    expect(yi.dtype).toBe("i32");
    expect(firstDiff(await yi.toArray(), Float32Array.from(ref.transposeRef(ints, [6, 35], [1, 0])))).toBe(-1);

    // 16-bit: allowed when the innermost run stays in place and is even.
    const bf = roundTo(rand(3 * 5 * 4, 9), "bf16");
    const tb = Tensor.fromArray(dev, bf, [3, 5, 4], "bf16");
    await expectExact(lay.transpose(tb, [1, 0, 2]), ref.transposeRef(bf, [3, 5, 4], [1, 0, 2]), [5, 3, 4], "bf16 transpose");
    expect(() => lay.transpose(tb, [0, 2, 1])).toThrow(/16-bit/);
    expect(() => lay.transpose(tb, [0, 1])).toThrow(/not a permutation/);
  }, 60_000);

  test("concat and slice on every axis", async () => {
    const dev = await testDevice();
    const base = [3, 4, 8];
    for (let axis = 0; axis < 3; axis++) {
      const parts = [1, 2, 5].map((n, k) => {
        const shape = base.map((d, i) => (i === axis ? n : d));
        return { shape, ...upload(dev, shape, 10 * axis + k) };
      });
      const shape = base.map((d, i) => (i === axis ? 8 : d));
      const want = ref.concatRef(parts, axis);
      await expectExact(lay.concat(parts.map((p) => p.t), axis), want, shape, `concat axis ${axis}`);
      await expectExact(lay.concat(parts.map((p) => p.t), axis - 3), want, shape, `concat axis ${axis - 3}`);
      const x = Tensor.fromArray(dev, want, shape);
      for (const [s, e] of [[0, 8], [1, 4], [4, 8], [3, 3], [7, 8]]) {
        await expectExact(lay.slice(x, axis, s, e), ref.sliceRef(want, shape, axis, s, e), shape.map((d, i) => (i === axis ? e - s : d)), `slice axis ${axis} [${s}, ${e})`);
      }
    }
    const a = upload(dev, [2, 3], 1).t;
    expect(() => lay.concat([a, upload(dev, [3, 3], 2).t], 1)).toThrow(/does not match/);
    expect(() => lay.slice(a, 1, 2, 4)).toThrow(/not inside/);
    expect(() => lay.slice(a, 2, 0, 1)).toThrow(/axis 2 out of range/);
    // 16-bit tensors move as words: even runs only.
    const h = roundTo(rand(4 * 6, 3), "f16");
    const th = Tensor.fromArray(dev, h, [4, 6], "f16");
    await expectExact(lay.slice(th, 1, 2, 6), ref.sliceRef(h, [4, 6], 1, 2, 6), [4, 4], "f16 slice");
    await expectExact(lay.concat([th, th], 0), ref.concatRef([{ data: h, shape: [4, 6] }, { data: h, shape: [4, 6] }], 0), [8, 6], "f16 concat");
    expect(() => lay.slice(th, 1, 1, 4)).toThrow(/even/);
  }, 60_000);

  test("patchify2x2 follows the channel order c·4 + p·2 + q and round-trips exactly", async () => {
    const dev = await testDevice();
    for (const [k, shape] of [[1, 3, 8, 12], [2, 5, 2, 6], [1, 32, 34, 18]].entries()) {
      const { data, t } = upload(dev, shape, 40 + k);
      const [B, C, H, W] = shape;
      const p = lay.patchify2x2(t);
      await expectExact(p, ref.patchifyRef(data, shape), [B, 4 * C, H / 2, W / 2], `patchify [${shape}]`);
      await expectExact(lay.unpatchify2x2(p), data, shape, `unpatchify [${shape}]`);
    }
    expect(() => lay.patchify2x2(upload(dev, [1, 2, 3, 4], 1).t)).toThrow(/even/);
  }, 60_000);

  test("packLatents / unpackLatents are the token transposes", async () => {
    const dev = await testDevice();
    const shape = [2, 16, 4, 6];
    const { data, t } = upload(dev, shape, 50);
    const tok = lay.packLatents(t);
    await expectExact(tok, ref.transposeRef(data, shape, [0, 2, 3, 1]), [2, 24, 16], "packLatents");
    await expectExact(lay.unpackLatents(tok, 4, 6), data, shape, "unpackLatents");
    expect(() => lay.unpackLatents(tok, 5, 6)).toThrow(/not a 5×6 grid/);
  }, 60_000);

  test("embedding gathers rows of f32/bf16/f16 tables, chunked or not", async () => {
    const dev = await testDevice();
    const [V, D] = [37, 19];
    const table = rand(V * D, 60, -3, 3);
    const ids = Int32Array.of(0, 36, 5, 5, 17, 1, 36, 0, 20);
    const tIds = Tensor.fromArray(dev, ids, [3, 3]);
    for (const dtype of ["f32", "bf16", "f16"] as const) {
      const w = roundTo(table, dtype);
      const y = lay.embedding(Tensor.fromArray(dev, table, [V, D], dtype), tIds);
      await expectExact(y, ref.embeddingRef(w, D, ids), [3, 3, D], `embedding ${dtype}`);
    }
    // Three row chunks of odd sizes (each its own binding); ids on both sides of every chunk boundary.
    const w = roundTo(table, "bf16");
    const rows = [13, 11, 13];
    let at = 0;
    const chunks = rows.map((n) => {
      const c = { row: at, tensor: Tensor.fromArray(dev, w.subarray(at * D, (at + n) * D), [n, D], "bf16") };
      at += n;
      return c;
    });
    const edge = Int32Array.of(0, 12, 13, 23, 24, 36, 12, 13, 24, 23, -1, 37, 1 << 30);
    const ye = lay.embeddingChunks(chunks, Tensor.fromArray(dev, edge, [edge.length]));
    await expectExact(ye, ref.embeddingRef(w, D, edge), [edge.length, D], "chunked embedding (out-of-range ids give NaN rows)");
    expect(() => lay.embeddingChunks([chunks[0], chunks[2]], tIds)).toThrow(/does not continue/);
    expect(() => lay.embedding(Tensor.fromArray(dev, table, [V, D]), Tensor.fromArray(dev, table.subarray(0, 4), [4]))).toThrow(/ids: dtype f32/);
  }, 60_000);
});
