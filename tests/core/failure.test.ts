// Bad input and failure paths of core/: shapes that do not divide, byte counts that do not fill, activations over
// one storage binding, what a scope keeps, nothing left allocated when a load, a readback or a guarded block
// throws, WGSL compiler messages, uncaptured errors, device loss as one line, and `exists` telling "missing" from
// "cannot look". Leaks are measured with dev.allocatedBytes after emptying the pool (trimPool), so only buffers
// still held count.
import { describe, expect, test } from "bun:test";
import { copyFile, mkdir, mkdtemp, rm, truncate, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { Device, DeviceLostError, exists, joinPath, openSafetensors, Tensor } from "../../core/index.ts";
import { FIXTURES, testDevice } from "../util.ts";

/** Bytes still held once the pool's free buffers are gone. */
function held(dev: Device): number {
  dev.trimPool();
  return dev.allocatedBytes;
}

/** The message of what `fn` throws (or rejects with), "" when it does not. */
async function thrown(fn: () => unknown): Promise<{ error: unknown; message: string }> {
  try {
    await fn();
  } catch (e) {
    return { error: e, message: String((e as Error).message) };
  }
  return { error: undefined, message: "" };
}

const TRANSFORMER = joinPath(FIXTURES, "repos/black-forest-labs/FLUX.2-klein-tiny/transformer/diffusion_pytorch_model.safetensors");
const isRoot = (globalThis as { process?: { getuid?: () => number } }).process?.getuid?.() === 0;

describe("core: bad input", () => {
  test("reshape refuses a shape that does not divide the size, and two -1s", async () => {
    const dev = await testDevice();
    const t = Tensor.zeros(dev, [10]);
    expect(() => t.reshape([-1, 4])).toThrow(/reshape: \[10\] \(10\) cannot become \[-1,4\]/);
    expect(() => t.reshape([-1, 3])).toThrow(/cannot become/);
    expect(() => t.reshape([-1, -1])).toThrow(/cannot become/);
    expect(() => t.reshape([-1, 0])).toThrow(/cannot become/);
    expect(() => t.reshape([2.5, 4])).toThrow(/invalid shape/);
    const v = t.reshape([-1, 5]);
    expect([...v.shape]).toEqual([2, 5]);
    for (const x of [v, t]) x.dispose();
  });

  test("fromBytes refuses a byte count that does not fill the shape", async () => {
    const dev = await testDevice();
    const before = held(dev);
    expect(() => Tensor.fromBytes(dev, new Uint8Array(12), [4], "f32")).toThrow(/Tensor.fromBytes: 12 bytes do not fill \[4\] f32 \(16 bytes\)/);
    expect(() => Tensor.fromBytes(dev, new Uint8Array(16), [3], "f32")).toThrow(/16 bytes do not fill \[3\] f32 \(12 bytes\)/);
    expect(() => Tensor.fromBytes(dev, new Uint8Array(6), [2], "bf16")).toThrow(/6 bytes do not fill \[2\] bf16 \(4 bytes\)/);
    expect(held(dev)).toBe(before);
    const ok = Tensor.fromBytes(dev, new Uint8Array(6), [3], "bf16");
    expect([...(await ok.toArray())]).toEqual([0, 0, 0]);
    ok.dispose();
  });

  test("an activation over one storage binding fails where it is made, naming its shape and the limit; a dry run plans it", async () => {
    const dev = await testDevice();
    const limit = dev.limits.maxStorageBufferBindingSize;
    const rows = Math.floor(limit / 4096) + 1; // [rows, 1024] f32 is 4 KiB over the limit (lavapipe: 128 MiB)
    const before = held(dev);
    const { message } = await thrown(() => Tensor.empty(dev, [rows, 1024]));
    expect(message).toBe(
      `activation [${rows},1024] f32 is ${rows * 4096} bytes, over this adapter's maxStorageBufferBindingSize of ${limit}: use a smaller batch or image size`,
    );
    expect(dev.allocatedBytes).toBe(before); // refused before any allocation
    // A limit lowered on this device shows the dry run's exception without a 128 MiB buffer.
    dev.limits.maxStorageBufferBindingSize = 4096;
    try {
      expect(() => Tensor.zeros(dev, [2, 1024])).toThrow(/activation \[2,1024\] f32 is 8192 bytes, over .* of 4096/);
      dev.dryRun = true;
      const planned = Tensor.empty(dev, [2, 1024]);
      expect(dev.allocatedBytes).toBeGreaterThanOrEqual(before + 8192);
      planned.dispose();
    } finally {
      dev.dryRun = false;
      dev.limits.maxStorageBufferBindingSize = limit;
    }
    expect(held(dev)).toBe(before);
  });
});

/** A class instance holding a tensor in a private field, as models do. */
class Holder {
  constructor(private readonly inner: { t: Tensor }) {}
  get tensor(): Tensor {
    return this.inner.t;
  }
}

describe("core: scopes and error paths leak nothing", () => {
  test("scope keeps tensors reached through Maps, Sets, class instances and deep nesting; a closure does not keep", async () => {
    const dev = await testDevice();
    const made: Record<string, Tensor> = {};
    const res = await dev.scope(() => {
      const mk = (name: string) => (made[name] = Tensor.zeros(dev, [4]));
      const deep = { a: { b: { c: { d: { e: { f: [mk("deep")] } } } } } };
      const closure = mk("closure");
      mk("dropped");
      return {
        map: new Map<unknown, unknown>([["v", mk("mapValue")], [mk("mapKey"), 1]]),
        set: new Set([mk("set")]),
        holder: new Holder({ t: mk("instance") }),
        deep,
        read: () => closure,
      };
    });
    for (const name of ["deep", "mapValue", "mapKey", "set", "instance"]) expect(`${name} ${made[name].disposed}`).toBe(`${name} false`);
    expect(made.dropped.disposed).toBe(true);
    expect(made.closure.disposed).toBe(true);
    expect(res.holder.tensor).toBe(made.instance);
    for (const name of ["deep", "mapValue", "mapKey", "set", "instance"]) made[name].dispose();
  });

  test("guard: a throw disposes what was made inside (kept tensors survive); a return keeps everything", async () => {
    const dev = await testDevice();
    const before = held(dev);
    let inner!: Tensor, kept!: Tensor;
    const { message } = await thrown(() =>
      dev.guard(() => {
        inner = Tensor.zeros(dev, [1000]);
        kept = Tensor.zeros(dev, [8]).keep();
        throw new Error("midway");
      }),
    );
    expect(message).toBe("midway");
    expect(inner.disposed).toBe(true);
    expect(kept.disposed).toBe(false);
    kept.dispose();
    expect(held(dev)).toBe(before);
    const both = dev.guard(() => [Tensor.zeros(dev, [3]), Tensor.zeros(dev, [5])]);
    expect(both.map((t) => t.disposed)).toEqual([false, false]);
    both.forEach((t) => t.dispose());
  });

  test("Tensor.load of a shard cut short after it was opened: the error names the file, no buffer is left", async () => {
    const dev = await testDevice();
    const dir = await mkdtemp(`${tmpdir()}/flux2ts-trunc-`);
    try {
      const path = `${dir}/shard.safetensors`;
      await copyFile(TRANSFORMER, path);
      const st = await openSafetensors(path);
      // The tensor stored last, cut in its middle: the header was valid when read, the data is not there.
      const last = st.names().reduce((a, b) => (st.get(a).end > st.get(b).end ? a : b));
      const { begin, end } = st.get(last);
      await truncate(path, st.dataStart + begin + Math.floor((end - begin) / 2));
      const before = held(dev);
      const { message } = await thrown(() => Tensor.load(dev, st, last));
      expect(message).toMatch(new RegExp(`${path.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: .*end of file`));
      expect(held(dev)).toBe(before);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("core: GPU errors reach the caller", () => {
  test("a WGSL error brings the compiler's message and line; an uncaptured validation error is thrown at the next read", async () => {
    const dev = await Device.open(); // its own device: the errors must not leak into other tests
    try {
      const t = Tensor.fromArray(dev, Float32Array.of(1, 2), [2]);
      dev.run(dev.pipeline(`@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; out[0] = f32(x); }`), [t.binding()], [1]);
      const wgsl = await thrown(() => t.toArray());
      expect(wgsl.message).toMatch(/WGSL line 2: .*(u32|abstract|AbstractFloat)/s);
      expect([...(await t.toArray())]).toEqual([1, 2]); // reported once, then the device carries on
      dev.gpu.createBuffer({ size: 4, usage: 0 }); // invalid: no usage
      const uncaptured = await thrown(() => t.toArray());
      expect(uncaptured.message).toMatch(/^WebGPU error: .*usage/is);
      expect([...(await t.toArray())]).toEqual([1, 2]);
      t.dispose();
    } finally {
      dev.destroy();
    }
  }, 60_000);

  test("device loss: a pending and a later readback throw one line (DeviceLostError), the staging buffer is released", async () => {
    const dev = await Device.open();
    const t = Tensor.fromArray(dev, Float32Array.of(1, 2, 3), [3]);
    const before = dev.allocatedBytes;
    const pending = t.toArray();
    expect(dev.allocatedBytes).toBe(before + 12); // the readback's staging buffer
    dev.gpu.destroy(); // what a driver reset or a lost GPU process does to a device
    for (const r of [await thrown(() => pending), await thrown(() => t.toArray())]) {
      expect(r.error instanceof DeviceLostError).toBe(true);
      expect(r.message).toMatch(/^the WebGPU device was lost \(destroyed(: [^\n]*)?\)$/);
    }
    expect(await dev.lost).toMatch(/^the WebGPU device was lost \(destroyed/);
    expect(dev.allocatedBytes).toBe(before);
    Tensor.zeros(dev, [4]).dispose(); // work after the loss is dropped, not an exception of its own
    t.dispose();
    dev.destroy();
  }, 60_000);
});

describe("core: exists tells missing from cannot-look", () => {
  test("a file: true; no such file: false; a path through a file (ENOTDIR): an error naming it", async () => {
    const dir = await mkdtemp(`${tmpdir()}/flux2ts-exists-`);
    try {
      await writeFile(`${dir}/file.txt`, "x");
      expect(await exists(`${dir}/file.txt`)).toBe(true);
      expect(await exists(`${dir}/none.txt`)).toBe(false);
      const { message } = await thrown(() => exists(`${dir}/file.txt/inner.json`));
      expect(message).toContain(`${dir}/file.txt/inner.json`);
      expect(message).toMatch(/ENOTDIR|not a directory/i);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test.skipIf(isRoot)("a file under a chmod 000 folder: a permission error, not 'missing' (skipped as root: root reads through chmod 000)", async () => {
    const dir = await mkdtemp(`${tmpdir()}/flux2ts-exists-`);
    const { chmod } = await import("node:fs/promises");
    try {
      await mkdir(`${dir}/locked`);
      await writeFile(`${dir}/locked/file.txt`, "x");
      await chmod(`${dir}/locked`, 0o000);
      const { message } = await thrown(() => exists(`${dir}/locked/file.txt`));
      expect(message).toMatch(/EACCES|permission denied/i);
    } finally {
      await chmod(`${dir}/locked`, 0o755).catch(() => {});
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a URL: 200 true; 404 and 410 false; 500 and 403 an error naming the URL", async () => {
    const server = createServer((req, res) => {
      const status = Number(req.url?.slice(1)) || 200;
      res.writeHead(status, { "content-length": "2" });
      res.end("ok");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      expect(await exists(`${base}/200`)).toBe(true);
      expect(await exists(`${base}/404`)).toBe(false);
      expect(await exists(`${base}/410`)).toBe(false);
      for (const s of [500, 403]) expect((await thrown(() => exists(`${base}/${s}`))).message).toBe(`${base}/${s}: HTTP ${s}`);
    } finally {
      server.closeAllConnections?.();
      await new Promise((r) => server.close(r));
    }
  });
});
