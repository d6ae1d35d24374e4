// Device: one WebGPU device and everything that must be shared per device.
// - Eager execution: every kernel launch encodes a dispatch into one open compute pass. Nothing is submitted
//   until a readback needs it or the batch is full, and nothing ever waits on the queue except a readback.
// - Uniform parameters of all dispatches in a batch are packed into one CPU arena and written with a single
//   writeBuffer right before the submit; queue ordering makes it safe to reuse the same uniform buffer next batch.
// - Storage buffers come from a size-bucketed pool (≤ 12.5% waste) and go back to it on release. A buffer may be
//   reused by a later dispatch of the same batch (dispatches are ordered), but never by a CPU upload while the batch
//   that last used it is unsubmitted: `write` submits pending work first.
// - Pipelines are compiled once per WGSL source text (constants are injected into the text) and cached.
// - Uncaptured WebGPU errors are collected and thrown at the next readback, so shader bugs never pass silently.
import { gpu } from "./platform.ts";

export interface Binding {
  buffer: GPUBuffer;
  offset: number;
  size: number;
}

const WANTED_FEATURES: GPUFeatureName[] = ["shader-f16", "subgroups", "timestamp-query"] as GPUFeatureName[];
const WANTED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
] as const;

/** What `pipeline()` returns in dry-run mode: never dispatched. */
const DRY_PIPELINE = {} as GPUComputePipeline;
const UNIFORM_SLOT = 256; // minUniformBufferOffsetAlignment is at most 256 everywhere
const ARENA_BYTES = 64 * 1024;
const MAX_BATCH = 256; // dispatches per submit

/** Rounds a byte size up to a pool bucket: 8 buckets per power of two. */
export function bucketSize(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes / 4) * 4);
  const p = 2 ** Math.floor(Math.log2(b));
  const step = Math.max(4, p / 8);
  return Math.ceil(b / step) * step;
}

export class Device {
  readonly gpu: GPUDevice;
  readonly adapterInfo: GPUAdapterInfo;
  readonly limits: Record<(typeof WANTED_LIMITS)[number], number>;
  readonly features: Set<string>;

  private pipelines = new Map<string, GPUComputePipeline>();
  private free = new Map<number, GPUBuffer[]>();
  private exact = new WeakSet<GPUBuffer>();
  /** Tests set this: every pooled allocation is filled with NaN so unwritten outputs show. */
  poison = false;
  /**
   * Memory planning: buffers are really allocated (so allocatedBytes/peakBytes are measured by the same pool),
   * but no shader is compiled or dispatched, nothing is copied or uploaded, and readbacks return zeros.
   */
  dryRun = false;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private dispatches = 0;
  private arena = new Uint8Array(ARENA_BYTES);
  private arenaUsed = 0;
  private uniformBuf: GPUBuffer;
  private errors: string[] = [];
  private scopes: Set<{ dispose(): void }>[] = [];
  /** Bytes of GPU buffers currently allocated by this device (pooled free buffers included), and the peak. */
  allocatedBytes = 0;
  peakBytes = 0;
  /** Dispatches and submits since open: the bench and tests read these. */
  stats = { dispatches: 0, submits: 0, pipelines: 0 };

  private constructor(device: GPUDevice, info: GPUAdapterInfo) {
    this.gpu = device;
    this.adapterInfo = info;
    const lim = device.limits as unknown as Record<string, number>;
    this.limits = Object.fromEntries(WANTED_LIMITS.map((k) => [k, Number(lim[k])])) as Device["limits"];
    this.features = new Set([...device.features].map(String));
    this.uniformBuf = device.createBuffer({ size: ARENA_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    device.addEventListener?.("uncapturederror", (e) => this.errors.push(String((e as GPUUncapturedErrorEvent).error.message)));
  }

  /** Opens the default adapter with its own limits and the optional features it has. */
  static async open(opts: { powerPreference?: GPUPowerPreference } = {}): Promise<Device> {
    let api: GPU;
    try {
      api = await gpu();
    } catch (e) {
      throw new Error(`no WebGPU implementation could be loaded (${(e as Error).message}); on Bun/Node install the npm package "webgpu"`);
    }
    const adapter = await api.requestAdapter({ powerPreference: opts.powerPreference ?? "high-performance" });
    if (!adapter) {
      throw new Error(
        "no WebGPU adapter found. On Linux without a GPU install Mesa's lavapipe (Debian: apt-get install -t bookworm-backports mesa-vulkan-drivers); in Deno pass --unstable-webgpu if needed",
      );
    }
    const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f));
    const requiredLimits: Record<string, number> = {};
    const al = adapter.limits as unknown as Record<string, number>;
    for (const k of WANTED_LIMITS) requiredLimits[k] = al[k];
    const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
    const info = adapter.info ?? ({} as GPUAdapterInfo);
    return new Device(device, info);
  }

  get hasF16(): boolean {
    return this.features.has("shader-f16");
  }

  /** One line describing the adapter, for logs and benchmark tables. */
  describe(): string {
    const i = this.adapterInfo;
    return [i.vendor, i.architecture, i.device, i.description].filter((s) => s && s !== "0").join(" ") || "unknown adapter";
  }

  // ---- buffers ----------------------------------------------------------------------------------------------

  /** A storage buffer of at least `bytes` from the pool (or exactly `bytes`, unpooled, for long-lived weights). */
  alloc(bytes: number, exact = false): GPUBuffer {
    const size = exact ? Math.max(4, Math.ceil(bytes / 4) * 4) : bucketSize(bytes);
    if (size > this.limits.maxBufferSize) {
      throw new Error(`buffer of ${bytes} bytes exceeds this adapter's maxBufferSize ${this.limits.maxBufferSize}`);
    }
    let buf = exact ? undefined : this.free.get(size)?.pop();
    if (!buf) {
      buf = this.gpu.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
      this.allocatedBytes += size;
      this.peakBytes = Math.max(this.peakBytes, this.allocatedBytes);
      if (exact) this.exact.add(buf);
    }
    if (this.poison && !exact) this.fill({ buffer: buf, offset: 0, size }, 0x7fc00000);
    return buf;
  }

  /** Returns a buffer to the pool (pooled sizes) or destroys it (exact sizes). */
  release(buf: GPUBuffer): void {
    const size = buf.size;
    if (!this.exact.has(buf)) {
      const list = this.free.get(size) ?? [];
      list.push(buf);
      this.free.set(size, list);
    } else {
      this.flush(); // the pending batch may still read it
      buf.destroy();
      this.allocatedBytes -= size;
    }
  }

  /** Destroys every free pooled buffer (call between phases that use very different sizes). */
  trimPool(): void {
    this.flush();
    for (const list of this.free.values()) for (const b of list) {
      this.allocatedBytes -= b.size;
      b.destroy();
    }
    this.free.clear();
  }

  resetPeak(): void {
    this.peakBytes = this.allocatedBytes;
  }

  /** Uploads bytes; pending dispatches are submitted first so they still see the old contents. */
  write(buf: GPUBuffer, offset: number, data: Uint8Array): void {
    if (this.dryRun) return;
    this.flush();
    const n = data.byteLength & ~3;
    if (n) this.gpu.queue.writeBuffer(buf, offset, data.buffer, data.byteOffset, n);
    if (n < data.byteLength) {
      const tail = new Uint8Array(4);
      tail.set(data.subarray(n));
      this.gpu.queue.writeBuffer(buf, offset + n, tail);
    }
  }

  /** Reads `size` bytes back from a binding: the only place that waits for the GPU. */
  async read(b: Binding): Promise<Uint8Array> {
    if (this.dryRun) return new Uint8Array(b.size);
    const size = Math.ceil(b.size / 4) * 4;
    const staging = this.gpu.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.endPass();
    this.encoder!.copyBufferToBuffer(b.buffer, b.offset, staging, 0, size);
    this.flush();
    await staging.mapAsync(GPUMapMode.READ);
    const out = new Uint8Array(staging.getMappedRange().slice(0, b.size));
    staging.unmap();
    staging.destroy();
    this.throwErrors();
    return out;
  }

  /** Fills a binding with a 32-bit pattern, in stream order. */
  fill(b: Binding, bits: number): void {
    const n = Math.floor(b.size / 4);
    const p = this.pipeline(FILL_WGSL);
    this.run(p, [b], grid1d(n, 256), params().u32(n).u32(bits).bytes());
  }

  /** Copies bytes between buffers in stream order. */
  copy(src: Binding, dst: Binding): void {
    if (src.size !== dst.size) throw new Error(`copy: size mismatch ${src.size} vs ${dst.size}`);
    if (this.dryRun) return;
    this.endPass();
    this.encoder!.copyBufferToBuffer(src.buffer, src.offset, dst.buffer, dst.offset, src.size);
  }

  /** Waits until everything submitted so far has run (benchmarks only). */
  async sync(): Promise<void> {
    this.flush();
    await this.gpu.queue.onSubmittedWorkDone();
    this.throwErrors();
  }

  private throwErrors(): void {
    if (this.errors.length) {
      const msg = this.errors.join("\n");
      this.errors = [];
      throw new Error(`WebGPU error: ${msg}`);
    }
  }

  // ---- pipelines and dispatch -------------------------------------------------------------------------------

  /** The compute pipeline for this WGSL source (entry point `main`), compiled once. */
  pipeline(wgsl: string): GPUComputePipeline {
    if (this.dryRun) return DRY_PIPELINE;
    let p = this.pipelines.get(wgsl);
    if (!p) {
      const module = this.gpu.createShaderModule({ code: wgsl });
      p = this.gpu.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
      this.pipelines.set(wgsl, p);
      this.stats.pipelines++;
      module.getCompilationInfo?.().then((info) => {
        for (const m of info.messages) if (m.type === "error") this.errors.push(`WGSL line ${m.lineNum}: ${m.message}\n${wgsl}`);
      });
    }
    return p;
  }

  /**
   * Encodes one dispatch. `uniforms` (if any) is bound at @binding(0), the storage buffers at 1..n in order.
   */
  run(pipeline: GPUComputePipeline, buffers: Binding[], grid: [number, number?, number?], uniforms?: Uint8Array): void {
    const max = this.limits.maxComputeWorkgroupsPerDimension;
    const [x, y = 1, z = 1] = grid;
    if (x > max || y > max || z > max) throw new Error(`dispatch grid ${grid} exceeds ${max} workgroups per dimension`);
    if (x === 0 || y === 0 || z === 0 || this.dryRun) return;
    const uBytes = uniforms ? Math.ceil(uniforms.byteLength / UNIFORM_SLOT) * UNIFORM_SLOT : 0;
    if (this.dispatches >= MAX_BATCH || this.arenaUsed + uBytes > ARENA_BYTES) this.flush();
    const entries: GPUBindGroupEntry[] = [];
    if (uniforms) {
      this.arena.set(uniforms, this.arenaUsed);
      entries.push({ binding: 0, resource: { buffer: this.uniformBuf, offset: this.arenaUsed, size: uniforms.byteLength } });
      this.arenaUsed += uBytes;
    }
    buffers.forEach((b, i) => entries.push({ binding: i + 1, resource: { buffer: b.buffer, offset: b.offset, size: b.size } }));
    const group = this.gpu.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    if (!this.pass) {
      this.encoder ??= this.gpu.createCommandEncoder();
      this.pass = this.encoder.beginComputePass();
    }
    this.pass.setPipeline(pipeline);
    this.pass.setBindGroup(0, group);
    this.pass.dispatchWorkgroups(x, y, z);
    this.dispatches++;
    this.stats.dispatches++;
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
    this.encoder ??= this.gpu.createCommandEncoder();
  }

  /** Submits everything encoded so far (no wait). */
  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    if (this.arenaUsed) this.gpu.queue.writeBuffer(this.uniformBuf, 0, this.arena.buffer, 0, this.arenaUsed);
    this.gpu.queue.submit([this.encoder!.finish()]);
    this.encoder = null;
    this.arenaUsed = 0;
    this.dispatches = 0;
    this.stats.submits++;
  }

  // ---- lifetimes --------------------------------------------------------------------------------------------

  /** Registers a disposable with the innermost open scope. */
  track(t: { dispose(): void }): void {
    this.scopes[this.scopes.length - 1]?.add(t);
  }

  /** Forgets a disposable in every open scope (it outlives them). */
  untrack(t: { dispose(): void }): void {
    for (const s of this.scopes) s.delete(t);
  }

  /**
   * Runs `fn`; every tensor created inside and not reachable from its result is disposed afterwards.
   * Scopes nest; do not interleave two scopes of one device across awaits.
   */
  async scope<T>(fn: () => Promise<T> | T): Promise<T> {
    const set = new Set<{ dispose(): void }>();
    this.scopes.push(set);
    let result: T;
    try {
      result = await fn();
    } catch (e) {
      for (const t of set) t.dispose();
      throw e;
    } finally {
      this.scopes.splice(this.scopes.lastIndexOf(set), 1);
    }
    const keep = new Set<unknown>();
    const walk = (v: unknown, depth: number) => {
      if (!v || typeof v !== "object" || depth > 4 || keep.has(v)) return;
      keep.add(v);
      if (Array.isArray(v)) v.forEach((x) => walk(x, depth + 1));
      else if (Object.getPrototypeOf(v) === Object.prototype) Object.values(v).forEach((x) => walk(x, depth + 1));
    };
    walk(result, 0);
    const parent = this.scopes[this.scopes.length - 1];
    for (const t of set) {
      if (keep.has(t)) parent?.add(t);
      else t.dispose();
    }
    return result;
  }

  destroy(): void {
    this.flush();
    this.trimPool();
    this.gpu.destroy();
  }
}

/**
 * Workgroup grid covering n invocations of `wg` threads, folded into y when x would exceed 65535.
 * Shaders recover the flat index with `WGSL_FLAT_INDEX`.
 */
export function grid1d(n: number, wg: number): [number, number] {
  const groups = Math.max(1, Math.ceil(n / wg));
  return groups <= 65535 ? [groups, 1] : [65535, Math.ceil(groups / 65535)];
}

/** WGSL expression of the flat invocation index for a `grid1d` dispatch (needs `gid` and `nwg` builtins). */
export const flatIndex = (wg: number) => `(gid.x + gid.y * nwg.x * ${wg}u)`;

const FILL_WGSL = `
struct P { n: u32, bits: u32 }
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${flatIndex(256)};
  if (i < u.n) { out[i] = u.bits; }
}`;

/** Packs uniform parameters: `params().u32(M).u32(N).f32(eps).bytes()`. Follows WGSL's 4-byte scalar layout. */
export function params(): Params {
  return new Params();
}

export class Params {
  private view = new DataView(new ArrayBuffer(256));
  private n = 0;
  u32(x: number): this {
    this.view.setUint32(this.n, x >>> 0, true);
    this.n += 4;
    return this;
  }
  i32(x: number): this {
    this.view.setInt32(this.n, x | 0, true);
    this.n += 4;
    return this;
  }
  f32(x: number): this {
    this.view.setFloat32(this.n, x, true);
    this.n += 4;
    return this;
  }
  bytes(): Uint8Array {
    // uniform structs are padded to 16 bytes
    return new Uint8Array(this.view.buffer, 0, Math.max(16, Math.ceil(this.n / 16) * 16));
  }
}
