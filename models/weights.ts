// Weights: the named tensors of one model, read from a checkpoint (one .safetensors file, a shard index, or a
// folder) and uploaded to the GPU on first use in their stored dtype (bf16 stays bf16: kernels decode it), so
// a model never holds an f32 copy of a weight. Names are the upstream state_dict names, optionally under a prefix
// (a fixture that stores `transformer.` + name); a missing tensor is an error naming the checkpoint and the tensor.
// `Weights.random` serves generated tensors under the same names (models/random_weights.ts): a source that can
// make a tensor on the GPU itself is asked to, instead of streaming bytes.
import { type Device, numel, openCheckpoint, safetensorsItemBytes, Tensor } from "../core/index.ts";
import { type RandomSpec, randomSource, type WeightSource } from "./random_weights.ts";

/** The stored dtypes that are weights (int64 counters such as BN's num_batches_tracked are not uploaded). */
const FLOATS = ["F32", "F16", "BF16"];

export class Weights {
  private cache = new Map<string, Tensor>();
  /** Uploads in flight, so two concurrent `get`s of one name share one upload. */
  private pending = new Map<string, Promise<Tensor>>();

  private constructor(readonly dev: Device, readonly ckpt: WeightSource, readonly prefix: string) {}

  static async open(dev: Device, path: string, prefix = ""): Promise<Weights> {
    return new Weights(dev, await openCheckpoint(path), prefix);
  }

  /** Random bf16 tensors with these names and shapes, generated on the GPU when first asked for. */
  static random(dev: Device, specs: ReadonlyMap<string, RandomSpec>, opts: { seed?: number; path?: string } = {}): Weights {
    return new Weights(dev, randomSource(specs, opts), "");
  }

  /** The same checkpoint seen under another prefix (tensors are not shared between the two views). */
  sub(prefix: string): Weights {
    return new Weights(this.dev, this.ckpt, this.prefix + prefix);
  }

  has(name: string): boolean {
    return this.ckpt.has(this.prefix + name);
  }

  shape(name: string): number[] {
    return this.ckpt.get(this.prefix + name).shape;
  }

  /** The GPU tensor of a weight (uploaded once, even when asked for twice at once; kept until `dispose`). */
  get(name: string): Promise<Tensor> {
    const hit = this.cache.get(name);
    if (hit) return Promise.resolve(hit);
    let p = this.pending.get(name);
    if (!p) {
      const full = this.prefix + name;
      p = (async () => {
        const t = (this.ckpt.generate ? this.ckpt.generate(this.dev, full) : await Tensor.load(this.dev, this.ckpt, full)).keep();
        if (this.pending.get(name) !== p) {
          t.dispose(); // `dispose` ran during the upload: nothing may outlive it
          throw new Error(`${this.ckpt.path}: tensor "${full}" was disposed while it uploaded`);
        }
        this.cache.set(name, t);
        return t;
      })().finally(() => {
        if (this.pending.get(name) === p) this.pending.delete(name);
      });
      this.pending.set(name, p);
    }
    return p;
  }

  /** A weight, or undefined when the checkpoint does not have it (optional biases). */
  async maybe(name: string): Promise<Tensor | undefined> {
    return this.has(name) ? this.get(name) : undefined;
  }

  /** A weight's values on the CPU as f32 (small tensors: norm statistics, embeddings for tables). */
  cpu(name: string): Promise<Float32Array> {
    return this.ckpt.readFloat32(this.prefix + name);
  }

  /** Uploads every weight under this prefix now (so the first forward pass does not stall on reads). */
  async loadAll(filter: (name: string) => boolean = () => true): Promise<void> {
    for (const full of this.ckpt.names()) {
      if (!full.startsWith(this.prefix)) continue;
      const name = full.slice(this.prefix.length);
      const dtype = this.ckpt.get(full).dtype;
      if (filter(name) && FLOATS.includes(dtype)) await this.get(name);
    }
  }

  /** Bytes the float weights under this prefix (those `filter` keeps) take on the GPU once uploaded (`loadAll`). */
  storedBytes(filter: (name: string) => boolean = () => true): number {
    let n = 0;
    for (const full of this.ckpt.names()) {
      const e = this.ckpt.get(full);
      if (!full.startsWith(this.prefix) || !FLOATS.includes(e.dtype) || !filter(full.slice(this.prefix.length))) continue;
      n += Math.ceil((numel(e.shape) * safetensorsItemBytes.get(e.dtype)!) / 4) * 4;
    }
    return n;
  }

  /** Bytes of the weights uploaded so far. */
  get gpuBytes(): number {
    let n = 0;
    for (const t of this.cache.values()) n += t.bytes;
    return n;
  }

  dispose(): void {
    for (const t of this.cache.values()) t.dispose();
    this.cache.clear();
    this.pending.clear();
  }
}
