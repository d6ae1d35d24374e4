// Device and Tensor plumbing: limits, the buffer pool, scopes, reshape refcounts, 16-bit readback, ordering of
// uploads against pending kernels, error reporting, tensors split across bindings, grids over 65535 groups, and
// the bind group cache (explicit layouts, dynamic uniform offsets, eviction of destroyed buffers), textures.
import { describe, expect, test } from "bun:test";
import { bucketSize, Device, grid1d, roundTo, Tensor, uniforms } from "../../core/index.ts";
import { bindingSignature } from "../../core/device.ts";
import * as ew from "../../kernels/elementwise.ts";
import { rand, testDevice } from "../util.ts";

const bits = (f: Float32Array) => new Uint32Array(f.buffer, f.byteOffset, f.length);

const FILL_LIKE_P = uniforms("fill-like", { n: "u32" });
const FILL_LIKE = `${FILL_LIKE_P.wgsl}
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(1) fn main() { out[0] = u.n; }`;

function sameBits(a: Float32Array, b: Float32Array): boolean {
  const x = bits(a), y = bits(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

describe("device", () => {
  test("Device.open reports limits and features", async () => {
    const dev = await testDevice();
    for (const [k, v] of Object.entries(dev.limits)) {
      expect(`${k} ${Number.isFinite(v) && v > 0}`).toBe(`${k} true`);
    }
    expect(dev.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 2 ** 20); // the WebGPU minimum
    expect(dev.limits.maxComputeWorkgroupsPerDimension).toBeGreaterThanOrEqual(65535);
    expect(dev.features instanceof Set).toBe(true);
    expect(dev.hasF16).toBe(dev.features.has("shader-f16"));
    expect(dev.describe().length).toBeGreaterThan(0);
    console.log(`adapter: ${dev.describe()}; features: ${[...dev.features].join(", ")}; limits: ${JSON.stringify(dev.limits)}`);
  });

  test("the pool hands a released buffer back for the same bucket", async () => {
    const dev = await testDevice();
    for (const b of [1, 4, 255, 256, 257, 1000, 4097, 65537, 123_456_789]) {
      const s = bucketSize(b);
      expect(s >= b && s % 4 === 0 && bucketSize(s) === s && (b < 256 || s <= b * 1.125)).toBe(true);
    }
    expect(bucketSize(1000)).toBe(bucketSize(1010));
    const a = dev.alloc(1000);
    dev.release(a);
    const before = dev.allocatedBytes;
    const b = dev.alloc(1010);
    expect(b).toBe(a);
    expect(dev.allocatedBytes).toBe(before);
    const c = dev.alloc(1000);
    expect(c === a).toBe(false);
    expect(dev.allocatedBytes).toBe(before + bucketSize(1000));
    dev.release(b);
    dev.release(c);
    // exact (weight) buffers skip the pool and are destroyed on release
    const w = dev.alloc(1002, true);
    expect(w.size).toBe(1004);
    dev.release(w);
    expect(dev.alloc(1002, true) === w).toBe(false);
  });

  test("scope disposes inner tensors and keeps the returned ones", async () => {
    const dev = await testDevice();
    const outside = Tensor.zeros(dev, [3]);
    let inner!: Tensor, nestedInner!: Tensor, nestedKept!: Tensor, kept!: Tensor, pinned!: Tensor;
    const res = await dev.scope(async () => {
      inner = Tensor.zeros(dev, [4]);
      kept = Tensor.fromArray(dev, Float32Array.of(1, 2, 3), [3]);
      pinned = Tensor.zeros(dev, [2]).keep();
      nestedKept = await dev.scope(() => {
        nestedInner = Tensor.zeros(dev, [5]);
        return Tensor.zeros(dev, [6]);
      });
      expect(nestedInner.disposed).toBe(true);
      expect(nestedKept.disposed).toBe(false);
      return { list: [kept], n: 1 };
    });
    expect(res.list[0]).toBe(kept);
    expect(inner.disposed).toBe(true);
    expect(kept.disposed).toBe(false);
    expect(nestedKept.disposed).toBe(true); // returned by the inner scope, dropped by the outer one
    expect(pinned.disposed).toBe(false);
    expect(outside.disposed).toBe(false);
    expect([...(await kept.toArray())]).toEqual([1, 2, 3]);
    for (const t of [kept, pinned, outside]) t.dispose();
  });

  test("reshape shares storage and counts references", async () => {
    const dev = await testDevice();
    const data = rand(12, 1);
    const t = Tensor.fromArray(dev, data, [3, 4]);
    const v = t.reshape([2, -1]);
    expect(v.shape).toEqual([2, 6]);
    const buf = t.binding().buffer;
    expect(v.binding().buffer).toBe(buf);
    expect(() => t.reshape([5])).toThrow(/cannot become/);
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(() => t.binding()).toThrow(/disposed/);
    const other = dev.alloc(t.bytes);
    expect(other === buf).toBe(false); // v still holds the storage
    expect(sameBits(await v.toArray(), data)).toBe(true);
    v.dispose();
    const again = dev.alloc(t.bytes);
    expect(again).toBe(buf); // the last reference returned it to the pool
    dev.release(other);
    dev.release(again);
  });

  test("bf16, f16 and integer tensors read back", async () => {
    const dev = await testDevice();
    for (const n of [1, 7, 1000]) {
      const data = rand(n, n, -300, 300);
      data[0] = 1e-6; // f16 subnormal, bf16 normal
      for (const dtype of ["bf16", "f16"] as const) {
        const t = Tensor.fromArray(dev, data, [n], dtype);
        expect(t.dtype).toBe(dtype);
        expect((await t.readBytes()).length).toBe(2 * n);
        const back = await t.toArray();
        expect(`${dtype} n=${n} ${sameBits(back, roundTo(data, dtype))}`).toBe(`${dtype} n=${n} true`);
      }
    }
    const ints = Int32Array.of(-5, 0, 7, 2 ** 31 - 1);
    expect([...new Int32Array((await Tensor.fromArray(dev, ints, [4]).readBytes()).buffer)]).toEqual([...ints]);
    const uints = Uint32Array.of(0, 1, 2 ** 32 - 1);
    expect([...new Uint32Array((await Tensor.fromArray(dev, uints, [3]).readBytes()).buffer)]).toEqual([...uints]);
    expect([...(await Tensor.fromArray(dev, Int32Array.of(-3, 9), [2]).toArray())]).toEqual([-3, 9]); // as f32
  });

  test("an upload into a released buffer does not overtake a pending kernel", async () => {
    const dev = await testDevice();
    const n = 4099;
    const a = rand(n, 2), b = rand(n, 3);
    const x = Tensor.fromArray(dev, a, [n]);
    const y = ew.scale(x, 2); // encoded, not submitted
    const buf = x.binding().buffer;
    x.dispose();
    const z = Tensor.fromArray(dev, b, [n]); // reuses x's buffer: the upload must wait for the scale
    expect(z.binding().buffer).toBe(buf);
    expect(sameBits(await y.toArray(), a.map((v) => 2 * v))).toBe(true);
    expect(sameBits(await z.toArray(), b)).toBe(true);
    // an exact (weight) buffer is destroyed on release: the pending kernel must still read it
    const w = Tensor.fromBytes(dev, new Uint8Array(a.buffer), [n], "f32", true);
    const y2 = ew.scale(w, 3);
    w.dispose();
    expect(sameBits(await y2.toArray(), a.map((v) => 3 * v))).toBe(true);
  });

  test("textures: filled by one kernel, read by the next, counted in allocatedBytes, released behind a submit", async () => {
    const dev = await testDevice();
    const [W, H] = [5, 3];
    const store = dev.pipeline(`@group(0) @binding(1) var<storage, read> src: array<vec4f>;
@group(0) @binding(2) var T: texture_storage_2d<rgba32float, write>;
@compute @workgroup_size(1) fn main(@builtin(workgroup_id) g: vec3u) { textureStore(T, g.xy, src[g.y * ${W}u + g.x]); }`);
    const load = dev.pipeline(`@group(0) @binding(1) var<storage, read_write> dst: array<vec4f>;
@group(0) @binding(2) var T: texture_2d<f32>;
@compute @workgroup_size(1) fn main(@builtin(workgroup_id) g: vec3u) { dst[g.y * ${W}u + g.x] = textureLoad(T, g.xy, 0); }`);
    const data = rand(W * H * 4, 9);
    const src = Tensor.fromArray(dev, data, [W * H * 4]);
    const dst = Tensor.empty(dev, [W * H * 4]);
    const before = dev.allocatedBytes;
    const t = dev.texture(W, H);
    expect(dev.allocatedBytes - before).toBe(W * H * 16);
    dev.run(store, [src.binding(), t], [W, H]);
    dev.run(load, [dst.binding(), t], [W, H]);
    dev.releaseTexture(t); // still read by the pending batch: it is submitted first
    expect(dev.allocatedBytes).toBe(before);
    expect(sameBits(await dst.toArray(), data)).toBe(true);
    expect(() => dev.texture(dev.limits.maxTextureDimension2D + 1, 1)).toThrow(/texels per dimension/);
  });

  test("bind groups are cached per buffer, uniforms ride on dynamic offsets, destroyed buffers are evicted", async () => {
    const dev = await testDevice();
    expect(bindingSignature(`@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@binding(3) @group(0) var<storage> b: array<u32>;`)).toEqual(["u", "w", "r", "r"]);
    expect(bindingSignature(`@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var t: texture_2d<f32>;
@group(0) @binding(2) var s: texture_storage_2d<rgba32float, write>;`)).toEqual(["u", "t", "s"]);
    expect(() => bindingSignature("@group(0) @binding(1) var t: texture_3d<f32>;")).toThrow(/only uniform and storage/);
    const x = Tensor.fromArray(dev, rand(300, 4), [300]);
    const data = await x.toArray();
    dev.trimPool(); // every output below lives in a buffer new to the cache
    const before = dev.stats.bindGroups;
    // 40 launches in one batch: same buffers, so one bind group; each reads its own uniforms through the offset.
    const outs: Tensor[] = [];
    const buffers = new Set<GPUBuffer>();
    for (let i = 0; i < 40; i++) {
      const y = ew.scale(x, i + 1);
      outs.push(y);
      buffers.add(y.binding().buffer);
      if (i % 2) y.dispose(); // back to the pool: the next launch writes the same buffer through the same group
    }
    expect(buffers.size).toBe(21);
    expect(dev.stats.bindGroups - before).toBe(2 * buffers.size); // per new buffer: the poison fill and the scale
    for (let i = 0; i < 40; i += 2) expect(sameBits(await outs[i].toArray(), data.map((v) => (i + 1) * v))).toBe(true);
    for (let i = 0; i < 40; i += 2) outs[i].dispose();
    const loop = dev.stats.bindGroups;
    for (let i = 0; i < 50; i++) ew.scale(x, 2).dispose();
    expect(dev.stats.bindGroups).toBe(loop);
    // an exact buffer is destroyed on release and takes its groups with it
    const w = Tensor.fromBytes(dev, new Uint8Array(data.buffer), [300], "f32", true);
    const y = ew.scale(w, 3);
    const cached = dev.cachedBindGroups;
    w.dispose();
    expect(dev.cachedBindGroups).toBe(cached - 1);
    expect(sameBits(await y.toArray(), data.map((v) => 3 * v))).toBe(true);
    expect(() => dev.run(dev.pipeline(FILL_LIKE), [], [1], FILL_LIKE_P.pack({ n: 0 }))).toThrow(/declares 1 buffers and textures, got 0/);
    x.dispose();
    y.dispose();
  });

  test("a WGSL error surfaces as a thrown error at the next read", async () => {
    const dev = await Device.open(); // its own device: the error must not leak into other tests
    try {
      const t = Tensor.fromArray(dev, Float32Array.of(1, 2), [2]);
      const bad = dev.pipeline(`@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; out[0] = f32(x); }`);
      dev.run(bad, [t.binding()], [1]);
      await expect(t.toArray()).rejects.toThrow(/WebGPU error|WGSL/);
      expect([...(await t.toArray())]).toEqual([1, 2]); // reported once, then the device carries on
    } finally {
      dev.destroy();
    }
  }, 60_000);

  test("a tensor larger than one binding is split into row chunks", async () => {
    const dev = await testDevice();
    const [rows, cols] = [70000, 512]; // 143 MB of f32: over the 128 MiB binding limit of most adapters
    const limit = dev.limits.maxStorageBufferBindingSize;
    const data = new Float32Array(rows * cols);
    const u = bits(data);
    for (let i = 0; i < u.length; i++) u[i] = (Math.imul(i, 0x9e3779b1) & 0x807fffff) | 0x3f000000; // finite, distinct
    const t = Tensor.fromArray(dev, data, [rows, cols]);
    const chunks = t.rowChunks();
    const perChunk = Math.floor(limit / (cols * 4));
    expect(chunks.length).toBe(Math.ceil(rows / perChunk));
    console.log(`[${rows}, ${cols}] f32 (${(data.byteLength / 1e6).toFixed(0)} MB) in ${chunks.length} chunks of ≤ ${perChunk} rows (binding limit ${limit})`);
    let next = 0;
    for (const { row, tensor } of chunks) {
      expect(row).toBe(next);
      expect(tensor.bytes).toBeLessThanOrEqual(limit);
      next += tensor.shape[0];
    }
    expect(next).toBe(rows);
    if (chunks.length > 1) expect(() => t.binding()).toThrow(/spans \d+ bindings/);
    const back = new Uint32Array((await t.readBytes()).buffer);
    let bad = 0;
    for (let i = 0; i < u.length; i++) if (back[i] !== u[i]) bad++;
    expect(bad).toBe(0);
    const last = chunks[chunks.length - 1];
    const tail = new Uint32Array((await last.tensor.readBytes()).buffer);
    expect(tail[0]).toBe(u[last.row * cols]);
    const v = t.reshape([rows, cols / 2, 2]);
    expect(v.rowChunks().length).toBe(chunks.length);
    if (chunks.length > 1) expect(() => t.reshape([rows / 2, cols * 2])).toThrow(/keeps its rows/);
    v.dispose();
    t.dispose();
    dev.trimPool();
  }, 120_000);

  test("grid1d folds more than 65535 workgroups into y", async () => {
    const dev = await testDevice();
    expect(grid1d(65535 * 256, 256)).toEqual([65535, 1]);
    expect(grid1d(65535 * 256 + 1, 256)).toEqual([65535, 2]);
    expect(grid1d(0, 64)).toEqual([1, 1]);
    const n = 20_000_000; // 78125 groups of 256
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = (i % 4093) - 2000; // small integers: 3x + 1 is exact, fused or not
    const y = await ew.scale(Tensor.fromArray(dev, x, [n]), 3, 1).toArray();
    let bad = 0, first = -1;
    for (let i = 0; i < n; i++) if (y[i] !== 3 * x[i] + 1 && bad++ === 0) first = i;
    expect(`${bad} wrong${bad ? `, first at ${first}: ${y[first]}` : ""}`).toBe("0 wrong");
    dev.trimPool();
  }, 120_000);
});
