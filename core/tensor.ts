// Tensor: a shape, a storage dtype and GPU memory. Contiguous row-major, no strides: views are reshapes only,
// everything else is a kernel that writes a new tensor. Storage is refcounted so reshapes share it.
// A tensor larger than one storage binding (maxStorageBufferBindingSize) is a list of row chunks, each its own
// tensor; kernels that read weights iterate `rowChunks()`, every other kernel asks for `binding()`.
import { type Binding, Device } from "./device.ts";
import { decodeFloats, type DType, encodeFloats, itemBytes } from "./dtype.ts";
import { randnInto } from "./rng.ts";
import { openSafetensors, safetensorsDType } from "./safetensors.ts";

/** Where `Tensor.load` reads from: a safetensors file or a sharded checkpoint. */
export interface TensorSource {
  readonly path: string;
  get(name: string): { dtype: string; shape: number[] };
  stream(name: string, byteOffset: number, byteLength: number, sink: (offset: number, data: Uint8Array) => void | Promise<void>): Promise<void>;
}

interface Store {
  buffer: GPUBuffer;
  refs: number;
}

export type Shape = readonly number[];

export const numel = (shape: Shape): number => shape.reduce((a, b) => a * b, 1);

function checkShape(shape: Shape, what: string): void {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new Error(`${what}: invalid shape [${shape}]`);
  }
}

export class Tensor {
  readonly dev: Device;
  readonly shape: Shape;
  readonly dtype: DType;
  private store: Store | null;
  private parts: Tensor[] | null;

  private constructor(dev: Device, shape: Shape, dtype: DType, store: Store | null, parts: Tensor[] | null) {
    this.dev = dev;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.store = store;
    this.parts = parts;
    dev.track(this);
  }

  get size(): number {
    return numel(this.shape);
  }

  /** Bytes of the data (16-bit tensors round up to whole 32-bit words). */
  get bytes(): number {
    return Math.ceil((this.size * itemBytes[this.dtype]) / 4) * 4;
  }

  get disposed(): boolean {
    return !this.store && !this.parts;
  }

  /** The one binding of this tensor; throws for chunked tensors. */
  binding(): Binding {
    if (!this.store) {
      if (this.parts) {
        throw new Error(`tensor [${this.shape}] ${this.dtype} spans ${this.parts.length} bindings; this kernel needs one`);
      }
      throw new Error(`tensor [${this.shape}] ${this.dtype} was disposed`);
    }
    return { buffer: this.store.buffer, offset: 0, size: Math.max(4, this.bytes) };
  }

  /** Row chunks (along dim 0) with their first row; a plain tensor is one chunk. */
  rowChunks(): { row: number; tensor: Tensor }[] {
    if (!this.parts) return [{ row: 0, tensor: this }];
    let row = 0;
    return this.parts.map((t) => {
      const r = { row, tensor: t };
      row += t.shape[0];
      return r;
    });
  }

  /**
   * An uninitialised tensor from the pool: an activation, which a kernel binds whole, so one larger than a storage
   * binding is refused here, where its shape is known, rather than as a bind-group error at some later readback.
   * A dry run (memory planning) allows it: the plan reports such activations.
   */
  static empty(dev: Device, shape: Shape, dtype: DType = "f32"): Tensor {
    checkShape(shape, "Tensor.empty");
    const bytes = Math.max(4, Math.ceil((numel(shape) * itemBytes[dtype]) / 4) * 4);
    const limit = dev.limits.maxStorageBufferBindingSize;
    if (bytes > limit && !dev.dryRun) {
      throw new Error(
        `activation [${shape}] ${dtype} is ${bytes} bytes, over this adapter's maxStorageBufferBindingSize of ${limit}: use a smaller batch or image size`,
      );
    }
    return new Tensor(dev, shape, dtype, { buffer: dev.alloc(bytes), refs: 1 }, null);
  }

  static zeros(dev: Device, shape: Shape, dtype: DType = "f32"): Tensor {
    const t = Tensor.empty(dev, shape, dtype);
    dev.fill(t.binding(), 0);
    return t;
  }

  /** Uploads f32 data (converted to `dtype` when it is a 16-bit type); i32/u32 data uploads as is. */
  static fromArray(dev: Device, data: Float32Array | Int32Array | Uint32Array, shape: Shape, dtype?: DType): Tensor {
    checkShape(shape, "Tensor.fromArray");
    if (data.length !== numel(shape)) {
      throw new Error(`Tensor.fromArray: ${data.length} values do not fill shape [${shape}] (${numel(shape)})`);
    }
    const dt: DType = dtype ?? (data instanceof Int32Array ? "i32" : data instanceof Uint32Array ? "u32" : "f32");
    const bytes =
      data instanceof Float32Array ? encodeFloats(data, dt) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return Tensor.fromBytes(dev, bytes, shape, dt);
  }

  /** Uploads raw little-endian bytes; splits into row chunks when larger than one binding. */
  static fromBytes(dev: Device, bytes: Uint8Array, shape: Shape, dtype: DType, exact = false): Tensor {
    checkShape(shape, "Tensor.fromBytes");
    const want = numel(shape) * itemBytes[dtype];
    if (bytes.byteLength !== want) {
      throw new Error(`Tensor.fromBytes: ${bytes.byteLength} bytes do not fill [${shape}] ${dtype} (${want} bytes)`);
    }
    const t = Tensor.allocate(dev, shape, dtype, exact);
    for (const { row, tensor } of t.rowChunks()) {
      const rowBytes = (numel(shape) / Math.max(1, shape[0])) * itemBytes[dtype];
      dev.write(tensor.store!.buffer, 0, bytes.subarray(row * rowBytes, row * rowBytes + tensor.size * itemBytes[dtype]));
    }
    return t;
  }

  /** Allocates a tensor, in row chunks when it exceeds one binding. `exact` buffers bypass the pool (weights). */
  static allocate(dev: Device, shape: Shape, dtype: DType, exact = false): Tensor {
    checkShape(shape, "Tensor.allocate");
    const total = numel(shape) * itemBytes[dtype];
    const maxBind = dev.limits.maxStorageBufferBindingSize;
    if (total <= maxBind) {
      const bytes = Math.max(4, Math.ceil(total / 4) * 4);
      return new Tensor(dev, shape, dtype, { buffer: dev.alloc(bytes, exact), refs: 1 }, null);
    }
    const rowBytes = (numel(shape) / shape[0]) * itemBytes[dtype];
    // Even row counts keep 16-bit chunks word-aligned.
    let rows = Math.floor(maxBind / rowBytes);
    if (itemBytes[dtype] === 2) rows -= rows % 2;
    if (rows < 1) throw new Error(`tensor [${shape}] ${dtype}: one row (${rowBytes} bytes) exceeds a binding (${maxBind})`);
    const parts: Tensor[] = [];
    for (let r = 0; r < shape[0]; r += rows) {
      const n = Math.min(rows, shape[0] - r);
      parts.push(Tensor.allocate(dev, [n, ...shape.slice(1)], dtype, exact));
    }
    for (const p of parts) dev.untrack(p);
    return new Tensor(dev, shape, dtype, null, parts);
  }

  /** A chunked tensor made of row chunks [n_i, ...rest] (takes ownership of the parts). */
  static fromChunks(parts: Tensor[]): Tensor {
    const rest = parts[0]?.shape.slice(1) ?? [];
    if (!parts.length || parts.some((p) => p.dtype !== parts[0].dtype || p.shape.slice(1).join() !== rest.join() || p.parts)) {
      throw new Error(`Tensor.fromChunks: parts must be plain tensors of one dtype with equal trailing dims`);
    }
    for (const p of parts) parts[0].dev.untrack(p);
    const rows = parts.reduce((a, p) => a + p.shape[0], 0);
    return new Tensor(parts[0].dev, [rows, ...rest], parts[0].dtype, null, parts);
  }

  /** Standard normal samples from the counter-based generator: the same seed gives the same values everywhere. */
  static randn(dev: Device, shape: Shape, opts: { seed: number; offset?: number }): Tensor {
    checkShape(shape, "Tensor.randn");
    return randnInto(Tensor.empty(dev, shape, "f32"), opts.seed, opts.offset ?? 0);
  }

  /** Reads one tensor of a .safetensors file (or a URL), streaming it to the GPU; keeps the stored dtype. */
  static async fromSafetensors(dev: Device, path: string, name: string): Promise<Tensor> {
    return Tensor.load(dev, await openSafetensors(path), name);
  }

  /** Streams a named tensor of a checkpoint to the GPU in its stored dtype (weights: exact-size, unpooled). */
  static async load(dev: Device, src: TensorSource, name: string): Promise<Tensor> {
    const entry = src.get(name);
    const dtype = safetensorsDType(entry.dtype, `${src.path}: tensor "${name}"`);
    const shape = entry.shape.length ? entry.shape : [1];
    const t = Tensor.allocate(dev, shape, dtype, true);
    const rowBytes = (numel(shape) / Math.max(1, shape[0])) * itemBytes[dtype];
    try {
      for (const { row, tensor } of t.rowChunks()) {
        await src.stream(name, row * rowBytes, tensor.size * itemBytes[dtype], (offset, data) =>
          dev.write(tensor.store!.buffer, offset, data),
        );
      }
    } catch (e) {
      t.dispose(); // a read that fails midway (a file cut short, a network error) leaves no buffer behind
      throw e;
    }
    return t;
  }

  /** A view with another shape over the same storage. */
  reshape(shape: Shape): Tensor {
    const s = [...shape];
    const infer = s.indexOf(-1);
    const cannot = () => new Error(`reshape: [${this.shape}] (${this.size}) cannot become [${shape}]`);
    if (infer >= 0) {
      const known = numel(s.filter((d, i) => i !== infer));
      // -1 stands for one whole dimension: the other dimensions must divide the size (10 → [-1, 4] does not).
      if (s.lastIndexOf(-1) !== infer || known === 0 || this.size % known !== 0) throw cannot();
      s[infer] = this.size / known;
    }
    checkShape(s, "reshape");
    if (numel(s) !== this.size) throw cannot();
    if (this.parts) {
      if (s[0] !== this.shape[0]) throw new Error(`reshape: a chunked tensor keeps its rows (${this.shape[0]})`);
      return new Tensor(this.dev, s, this.dtype, null, this.parts.map((p) => p.reshape([p.shape[0], ...s.slice(1)])));
    }
    if (!this.store) throw new Error(`reshape: tensor [${this.shape}] was disposed`);
    this.store.refs++;
    return new Tensor(this.dev, s, this.dtype, this.store, null);
  }

  /** Raw bytes of the data. */
  async readBytes(): Promise<Uint8Array> {
    const out = new Uint8Array(this.size * itemBytes[this.dtype]);
    let at = 0;
    for (const { tensor } of this.rowChunks()) {
      const b = await this.dev.read(tensor.binding());
      out.set(b.subarray(0, tensor.size * itemBytes[this.dtype]), at);
      at += tensor.size * itemBytes[this.dtype];
    }
    return out;
  }

  /** The values as f32 (16-bit types decoded, integers converted). */
  async toArray(): Promise<Float32Array> {
    return decodeFloats(await this.readBytes(), this.dtype);
  }

  /** Keeps this tensor alive past the scopes that are open now. */
  keep(): this {
    this.dev.untrack(this);
    return this;
  }

  dispose(): void {
    if (this.parts) for (const p of this.parts) p.dispose();
    else if (this.store && --this.store.refs === 0) this.dev.release(this.store.buffer);
    this.store = null;
    this.parts = null;
  }

  toString(): string {
    return `Tensor([${this.shape}], ${this.dtype})`;
  }
}
