// Device: one WebGPU device and everything that must be shared per device.
// - Eager execution: every kernel launch encodes a dispatch into one open compute pass. Nothing is submitted
//   until a readback needs it or the batch is full, and nothing ever waits on the queue except a readback.
// - Uniform parameters of all dispatches in a batch are packed into one CPU arena and written with a single
//   writeBuffer right before the submit; queue ordering makes it safe to reuse the same uniform buffer next batch.
// - Storage buffers come from a size-bucketed pool (≤ 12.5% waste) and go back to it on release. A buffer may be
//   reused by a later dispatch of the same batch (dispatches are ordered), but never by a CPU upload while the batch
//   that last used it is unsubmitted: `write` submits pending work first.
// - Pipelines are compiled once per WGSL source text (constants are injected into the text) and cached.
// - Bind group layouts are explicit, derived from the WGSL declarations (uniform at @binding(0) with a dynamic
//   offset into the arena, storage buffers read-only or read-write as declared) and shared by every pipeline with
//   the same signature. "auto" layouts cannot take a dynamic offset, so every dispatch would need its own group.
//   Bind groups are cached by (layout, uniform slot size, each buffer's id + offset + size); pooled buffers come
//   back by identity, so loops hit the cache. Entries of a buffer go when it is destroyed; the cache is an LRU of
//   BIND_CACHE entries. (One new bind group per dispatch cost ~30-80 µs of host time and, under wgpu, exhausted
//   vm.max_map_count over long runs.)
// - Textures: only rgba32float 2D textures, as a kernel's private operand copy (`texture`, `releaseTexture`):
//   a shader reads one with textureLoad (`texture_2d<f32>`) or fills one with textureStore
//   (`texture_storage_2d<rgba32float, write>`). They count in allocatedBytes; a release submits, then destroys.
// - Uncaptured WebGPU errors are collected and thrown at the next readback (or `sync`), so shader bugs never pass
//   silently; a readback first waits for the compiler messages of the pipelines made so far, so a WGSL error always
//   comes with the compiler's line and text (browsers report only "invalid shader module" as the uncaptured error).
// - Device loss (a driver reset, the browser's GPU process gone, `destroy`) is one line, a `DeviceLostError`, thrown
//   by the next readback or `sync` (work submitted after the loss is dropped); a readback pending at the loss throws
//   it too, instead of failing with a blank message.
import { gpu } from "./platform.ts";
import { type PackedUniforms, uniforms } from "./uniforms.ts";

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
  "maxTextureDimension2D",
] as const;

/** The device is gone: every later readback throws this (one line: the reason and the driver's message). */
export class DeviceLostError extends Error {
  override name = "DeviceLostError";
}

/** What `pipeline()` returns in dry-run mode: never dispatched. */
const DRY_PIPELINE = {} as GPUComputePipeline;
const UNIFORM_SLOT = 256; // minUniformBufferOffsetAlignment is at most 256 everywhere
const ARENA_BYTES = 64 * 1024;
const MAX_BATCH = 256; // dispatches per submit
const BIND_CACHE = 4096; // cached bind groups per device

/** What `run` needs of a pipeline: its (shared) layout and that layout's id for cache keys, and what it binds. */
interface PipelineInfo {
  layoutId: number;
  layout: GPUBindGroupLayout;
  uniform: boolean;
  /** Storage buffers and textures after the uniforms, in binding order. */
  resources: number;
}

/** What `run` binds after the uniforms: a storage buffer range or a whole texture. */
export type Resource = Binding | GPUTexture;

interface CachedGroup {
  group: GPUBindGroup;
  buffers: number[];
}

/**
 * The bindings a WGSL module declares, by number (group 0 only; other resources are refused): "u" uniform, "r"/"w"
 * storage read/read_write, "t" texture_2d<f32> (read with textureLoad), "s" texture_storage_2d<rgba32float, write>.
 */
export function bindingSignature(wgsl: string): string[] {
  const sig: string[] = [];
  const buffer = /@binding\(\s*(\d+)\s*\)[^;]*?var\s*<\s*(uniform|storage)\s*(?:,\s*(read_write|read)\s*)?>/g;
  for (const m of wgsl.matchAll(buffer)) sig[Number(m[1])] = m[2] === "uniform" ? "u" : m[3] === "read_write" ? "w" : "r";
  const texture = /@binding\(\s*(\d+)\s*\)\s*var\s+\w+\s*:\s*(texture_2d\s*<\s*f32\s*>|texture_storage_2d\s*<\s*rgba32float\s*,\s*write\s*>)/g;
  for (const m of wgsl.matchAll(texture)) sig[Number(m[1])] = m[2].startsWith("texture_2d") ? "t" : "s";
  const declared = wgsl.match(/@binding\(/g)?.length ?? 0;
  if (declared !== sig.filter(Boolean).length) {
    throw new Error("Device.pipeline: only uniform and storage buffers and rgba32float 2D textures are supported (one declaration each)");
  }
  return sig;
}

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
  private pipelineInfo = new WeakMap<GPUComputePipeline, PipelineInfo>();
  private layouts = new Map<string, { info: PipelineInfo; pipelineLayout: GPUPipelineLayout }>();
  private bufferIds = new WeakMap<GPUBuffer | GPUTexture, number>();
  private nextBufferId = 1;
  private groups = new Map<string, CachedGroup>();
  /** Cache keys per buffer id, so a destroyed buffer's groups can be dropped. */
  private groupsOf = new Map<number, Set<string>>();
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
  /** Compiler messages still being fetched (see `pipeline`); readbacks wait for them before reporting errors. */
  private compiling: Promise<void>[] = [];
  /** The loss as one line, once the device is lost; `lost` resolves with it. */
  private lostLine: string | null = null;
  readonly lost: Promise<string>;
  private scopes: Set<{ dispose(): void }>[] = [];
  /** Bytes of GPU buffers this device holds now (pooled free buffers and readback staging included), and the peak. */
  allocatedBytes = 0;
  peakBytes = 0;
  /** Dispatches and submits since open: the bench and tests read these. */
  stats = { dispatches: 0, submits: 0, pipelines: 0, bindGroups: 0 };

  private constructor(device: GPUDevice, info: GPUAdapterInfo) {
    this.gpu = device;
    this.adapterInfo = info;
    const lim = device.limits as unknown as Record<string, number>;
    this.limits = Object.fromEntries(WANTED_LIMITS.map((k) => [k, Number(lim[k])])) as Device["limits"];
    this.features = new Set([...device.features].map(String));
    this.uniformBuf = device.createBuffer({ size: ARENA_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    const onError = (e: Event) => this.errors.push(String((e as GPUUncapturedErrorEvent).error.message));
    if (typeof device.addEventListener === "function") device.addEventListener("uncapturederror", onError);
    else (device as { onuncapturederror: unknown }).onuncapturederror = onError;
    this.lost = device.lost.then((info) => {
      const why = String(info.message ?? "").replace(/\s+/g, " ").trim();
      return (this.lostLine = `the WebGPU device was lost (${info.reason ?? "unknown"}${why ? `: ${why}` : ""})`);
    });
  }

  /** Throws DeviceLostError once the device is lost. */
  private checkLost(): void {
    if (this.lostLine) throw new DeviceLostError(this.lostLine);
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

  /**
   * A software (CPU) adapter: Mesa llvmpipe/lavapipe, SwiftShader, WARP, or one the implementation flags as a
   * fallback. The one place that decides it (benchmarks size their work by it; kernels may pick shapes by it).
   */
  get isCpu(): boolean {
    const info = this.adapterInfo as GPUAdapterInfo & { isFallbackAdapter?: boolean };
    return info.isFallbackAdapter === true || /llvmpipe|lavapipe|swiftshader|\bwarp\b|basic render/i.test(this.describe());
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
      this.count(size);
      if (exact) this.exact.add(buf);
    }
    if (this.poison && !exact) this.fill({ buffer: buf, offset: 0, size }, 0x7fc00000);
    return buf;
  }

  private count(bytes: number): void {
    this.allocatedBytes += bytes;
    this.peakBytes = Math.max(this.peakBytes, this.allocatedBytes);
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
      this.destroyResource(buf);
    }
  }

  /** Destroys every free pooled buffer (call between phases that use very different sizes). */
  trimPool(): void {
    this.flush();
    for (const list of this.free.values()) for (const b of list) this.destroyResource(b);
    this.free.clear();
  }

  private destroyResource(r: GPUBuffer | GPUTexture): void {
    const id = this.bufferIds.get(r);
    if (id !== undefined) {
      for (const key of this.groupsOf.get(id) ?? []) this.dropGroup(key);
      this.groupsOf.delete(id);
    }
    this.allocatedBytes -= "width" in r ? r.width * r.height * 16 : r.size;
    r.destroy();
  }

  /** Bind groups currently cached (tests read this). */
  get cachedBindGroups(): number {
    return this.groups.size;
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
    const size = Math.ceil(b.size / 4) * 4;
    if (this.dryRun) {
      this.count(size); // the staging buffer a real readback holds, so a plan's peak is execution's
      this.allocatedBytes -= size;
      return new Uint8Array(b.size);
    }
    this.checkLost();
    const staging = this.gpu.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.count(size);
    try {
      this.endPass();
      this.encoder!.copyBufferToBuffer(b.buffer, b.offset, staging, 0, size);
      this.flush();
      await this.settle(staging.mapAsync(GPUMapMode.READ), "readback");
      const out = new Uint8Array(staging.getMappedRange().slice(0, b.size));
      staging.unmap();
      return out;
    } finally {
      staging.destroy();
      this.allocatedBytes -= size;
    }
  }

  /**
   * Waits for `work` (a map or the queue), then reports what went wrong meanwhile: the loss of the device, else
   * the uncaptured errors (with the compiler messages of the pipelines made so far), else the failure of `work`.
   */
  private async settle(work: Promise<unknown>, what: string): Promise<void> {
    const failed = await work.then(() => null, (e: unknown) => e);
    // Runtimes fail a pending map before or after they announce the loss: give the announcement a moment.
    if (failed && !this.lostLine) await Promise.race([this.lost, new Promise((r) => setTimeout(r, 50))]);
    this.checkLost();
    if (this.compiling.length) await Promise.all(this.compiling.splice(0));
    this.throwErrors();
    if (failed) throw new Error(`WebGPU ${what} failed: ${(failed as Error).message || String(failed) || "no reason given"}`);
  }

  /** Fills a binding with a 32-bit pattern, in stream order. */
  fill(b: Binding, bits: number): void {
    const n = Math.floor(b.size / 4);
    this.run(this.pipeline(FILL_WGSL), [b], grid1d(n, 256), FILL.pack({ n, bits }));
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
    await this.settle(this.gpu.queue.onSubmittedWorkDone(), "queue wait");
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
      const { info, pipelineLayout } = this.layoutFor(bindingSignature(wgsl));
      const module = this.gpu.createShaderModule({ code: wgsl });
      p = this.gpu.createComputePipeline({ layout: pipelineLayout, compute: { module, entryPoint: "main" } });
      this.pipelines.set(wgsl, p);
      this.pipelineInfo.set(p, info);
      this.stats.pipelines++;
      const messages = module.getCompilationInfo?.().then(
        (info) => {
          for (const m of info.messages) if (m.type === "error") this.errors.push(`WGSL line ${m.lineNum}: ${m.message}\n${wgsl}`);
        },
        () => {}, // no compiler messages (a lost device): the uncaptured error or the loss says what happened
      );
      if (messages) this.compiling.push(messages);
    }
    return p;
  }

  private layoutFor(sig: string[]): { info: PipelineInfo; pipelineLayout: GPUPipelineLayout } {
    const key = Array.from(sig, (s) => s ?? "-").join("");
    let l = this.layouts.get(key);
    if (!l) {
      const entries: GPUBindGroupLayoutEntry[] = [];
      sig.forEach((s, binding) => {
        if (!s) return;
        const visibility = GPUShaderStage.COMPUTE;
        if (s === "u") entries.push({ binding, visibility, buffer: { type: "uniform", hasDynamicOffset: true } });
        else if (s === "t") entries.push({ binding, visibility, texture: { sampleType: "unfilterable-float" } });
        else if (s === "s") entries.push({ binding, visibility, storageTexture: { access: "write-only", format: "rgba32float" } });
        else entries.push({ binding, visibility, buffer: { type: s === "w" ? "storage" : "read-only-storage" } });
      });
      const layout = this.gpu.createBindGroupLayout({ entries });
      const info = { layoutId: this.layouts.size, layout, uniform: sig[0] === "u", resources: sig.filter((x) => x && x !== "u").length };
      l = { info, pipelineLayout: this.gpu.createPipelineLayout({ bindGroupLayouts: [layout] }) };
      this.layouts.set(key, l);
    }
    return l;
  }

  private bufferId(buf: GPUBuffer | GPUTexture): number {
    let id = this.bufferIds.get(buf);
    if (id === undefined) this.bufferIds.set(buf, (id = this.nextBufferId++));
    return id;
  }

  private dropGroup(key: string): void {
    const g = this.groups.get(key);
    if (!g) return;
    this.groups.delete(key);
    for (const id of g.buffers) this.groupsOf.get(id)?.delete(key);
  }

  /** The bind group for these bindings under `info`'s layout, from the cache when possible. */
  private bindGroup(info: PipelineInfo, buffers: Resource[], uniformSize: number): GPUBindGroup {
    const ids = buffers.map((b) => this.bufferId("buffer" in b ? b.buffer : b));
    let key = `${info.layoutId}:${uniformSize}`;
    for (let i = 0; i < buffers.length; i++) {
      const b = buffers[i];
      key += "buffer" in b ? `|${ids[i]}:${b.offset}:${b.size}` : `|${ids[i]}`;
    }
    const hit = this.groups.get(key);
    if (hit) {
      this.groups.delete(key); // re-insert: Map order is the LRU order
      this.groups.set(key, hit);
      return hit.group;
    }
    const entries: GPUBindGroupEntry[] = [];
    if (info.uniform) entries.push({ binding: 0, resource: { buffer: this.uniformBuf, offset: 0, size: uniformSize } });
    buffers.forEach((b, i) => {
      const resource = "buffer" in b ? { buffer: b.buffer, offset: b.offset, size: b.size } : b.createView();
      entries.push({ binding: i + 1, resource });
    });
    const group = this.gpu.createBindGroup({ layout: info.layout, entries });
    if (this.groups.size >= BIND_CACHE) this.dropGroup(this.groups.keys().next().value!);
    this.groups.set(key, { group, buffers: ids });
    for (const id of ids) {
      let set = this.groupsOf.get(id);
      if (!set) this.groupsOf.set(id, (set = new Set()));
      set.add(key);
    }
    this.stats.bindGroups++;
    return group;
  }

  /**
   * Encodes one dispatch: the one way a kernel is launched. `uniforms` (if any: the bytes of its declared block's
   * `pack`, see uniforms.ts) is bound at @binding(0), the storage buffers and textures at 1..n in order.
   */
  run(pipeline: GPUComputePipeline, buffers: Resource[], grid: [number, number?, number?], uniforms?: PackedUniforms): void {
    const max = this.limits.maxComputeWorkgroupsPerDimension;
    const [x, y = 1, z = 1] = grid;
    if (x > max || y > max || z > max) throw new Error(`dispatch grid ${grid} exceeds ${max} workgroups per dimension`);
    if (x === 0 || y === 0 || z === 0 || this.dryRun) return;
    const uBytes = uniforms ? Math.ceil(uniforms.byteLength / UNIFORM_SLOT) * UNIFORM_SLOT : 0;
    if (this.dispatches >= MAX_BATCH || this.arenaUsed + uBytes > ARENA_BYTES) this.flush();
    const info = this.pipelineInfo.get(pipeline);
    if (!info) throw new Error("Device.run: pipeline was not made by this device's pipeline()");
    if (info.uniform !== !!uniforms) throw new Error(`Device.run: the shader ${info.uniform ? "declares" : "has no"} uniforms at @binding(0)`);
    if (buffers.length !== info.resources) throw new Error(`Device.run: the shader declares ${info.resources} buffers and textures, got ${buffers.length}`);
    const group = this.bindGroup(info, buffers, uBytes);
    if (!this.pass) {
      this.encoder ??= this.gpu.createCommandEncoder();
      this.pass = this.encoder.beginComputePass();
    }
    this.pass.setPipeline(pipeline);
    if (uniforms) {
      this.arena.set(uniforms, this.arenaUsed);
      this.pass.setBindGroup(0, group, [this.arenaUsed]);
      this.arenaUsed += uBytes;
    } else this.pass.setBindGroup(0, group);
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
    if (this.lostLine) {
      // Nothing runs on a lost device: the work is dropped, the next readback throws (disposal stays possible).
      [this.pass, this.encoder, this.arenaUsed, this.dispatches] = [null, null, 0, 0];
      return;
    }
    this.endPass();
    if (this.arenaUsed) this.gpu.queue.writeBuffer(this.uniformBuf, 0, this.arena.buffer, 0, this.arenaUsed);
    this.gpu.queue.submit([this.encoder!.finish()]);
    this.encoder = null;
    this.arenaUsed = 0;
    this.dispatches = 0;
    this.stats.submits++;
  }

  // ---- textures ---------------------------------------------------------------------------------------------

  /** A width × height rgba32float texture that shaders can fill (textureStore) and read (textureLoad). */
  texture(width: number, height: number): GPUTexture {
    const max = this.limits.maxTextureDimension2D;
    if (width < 1 || height < 1 || width > max || height > max) {
      throw new Error(`texture ${width}×${height} is outside this adapter's 1..${max} texels per dimension`);
    }
    const size = { width, height, depthOrArrayLayers: 1 };
    const t = this.dryRun
      ? ({ ...size, destroy() {} } as unknown as GPUTexture)
      : this.gpu.createTexture({ size, format: "rgba32float", usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.STORAGE_BINDING });
    this.count(width * height * 16);
    return t;
  }

  /**
   * Destroys a texture after submitting the batch that may still read it (a destroy after the submit is safe), so
   * memory accounting, and a dry run's plan, see it go at once.
   */
  releaseTexture(t: GPUTexture): void {
    this.flush();
    this.destroyResource(t);
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
   * Runs `fn`; every tensor (or other tracked disposable) created inside is disposed afterwards unless the result
   * reaches it. The result is walked through arrays, plain objects, Maps (keys and values), Sets and the own
   * properties of class instances, to any depth; not through closures, promises, typed arrays or a Device. A tensor
   * that only a closure holds is disposed: `keep()` it. If `fn` throws, everything it created is disposed.
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
    const parent = this.scopes[this.scopes.length - 1];
    for (const t of reachable(result, set)) {
      set.delete(t);
      parent?.add(t);
    }
    for (const t of set) t.dispose();
    return result;
  }

  /**
   * Runs a synchronous `fn`. If it throws, every tensor created inside (and not kept) is disposed, so an error path
   * leaks nothing; if it returns, they stay as if created outside (the enclosing scope tracks them).
   */
  guard<T>(fn: () => T): T {
    const set = new Set<{ dispose(): void }>();
    this.scopes.push(set);
    try {
      return fn();
    } catch (e) {
      for (const t of set) t.dispose();
      set.clear();
      throw e;
    } finally {
      this.scopes.splice(this.scopes.lastIndexOf(set), 1);
      for (const t of set) this.track(t);
    }
  }

  destroy(): void {
    this.flush();
    this.trimPool();
    this.groups.clear();
    this.groupsOf.clear();
    this.gpu.destroy();
  }
}

/** The members of `tracked` that `root` reaches (see `Device.scope` for what the walk follows). */
function reachable<T extends object>(root: unknown, tracked: Set<T>): T[] {
  const found: T[] = [];
  const seen = new Set<object>();
  const todo: unknown[] = [root];
  while (todo.length) {
    const v = todo.pop();
    if (!v || typeof v !== "object" || seen.has(v)) continue;
    seen.add(v);
    if (tracked.has(v as T)) found.push(v as T);
    if (v instanceof Device || v instanceof Promise || ArrayBuffer.isView(v) || v instanceof ArrayBuffer) continue;
    if (v instanceof Map) for (const [k, x] of v) todo.push(k, x);
    else if (v instanceof Set) for (const x of v) todo.push(x);
    else for (const x of Object.values(v)) todo.push(x);
  }
  return found;
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

const FILL = uniforms("fill", { n: "u32", bits: "u32" });
const FILL_WGSL = `
${FILL.wgsl}
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${flatIndex(256)};
  if (i < u.n) { out[i] = u.bits; }
}`;
