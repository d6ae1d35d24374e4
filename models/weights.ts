// Weights: the named tensors of one model, read from a checkpoint (one .safetensors file, a shard index, or a
// folder) and uploaded to the GPU on first use in their stored dtype (bf16 stays bf16: kernels decode it), so
// a model never holds an f32 copy of a weight. Names are the upstream state_dict names, optionally under a prefix
// (a fixture that stores `transformer.` + name); a missing tensor is an error naming the checkpoint and the tensor.
import { type Checkpoint, type Device, openCheckpoint, Tensor } from "../core/index.ts";

export class Weights {
  private cache = new Map<string, Tensor>();

  private constructor(readonly dev: Device, readonly ckpt: Checkpoint, readonly prefix: string) {}

  static async open(dev: Device, path: string, prefix = ""): Promise<Weights> {
    return new Weights(dev, await openCheckpoint(path), prefix);
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

  /** The GPU tensor of a weight (uploaded once, kept until `dispose`). */
  async get(name: string): Promise<Tensor> {
    let t = this.cache.get(name);
    if (!t) {
      t = (await Tensor.load(this.dev, this.ckpt, this.prefix + name)).keep();
      this.cache.set(name, t);
    }
    return t;
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
      if (filter(name) && ["F32", "F16", "BF16"].includes(dtype)) await this.get(name);
    }
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
  }
}
