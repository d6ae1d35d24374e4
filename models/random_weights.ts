// Random weights with real names, shapes and dtype, made on the GPU: the memory plan and the model benchmark run
// the real FLUX.2-klein-4B configuration without a 16 GB download.
// Design:
// - A spec per tensor (shape, and an init: std for a centred near-normal fill, or a constant) comes from the model's
//   config (models/flux2/klein4b.ts derives them); this file knows no model. Everything is bf16, as the checkpoints.
// - `randomSource(specs)` is a WeightSource (names, shapes, CPU reads: what a Checkpoint offers the loaders), plus
//   `generate`, which Weights.get prefers: the tensor is allocated as Tensor.load would (exact size, row chunks)
//   and filled on the GPU chunk by chunk, so nothing crosses the bus and a dry-run device allocates the same bytes.
// - Values: a tensor's elements are the hash noise stream (kernels/hash_noise.ts: Irwin–Hall of 4 hashed uniforms,
//   close to normal with the given std, bounded at ±3.46·std: enough to keep activations finite) keyed by its name
//   and the seed. CPU reads use the kernel's CPU twin, which gives the same bits.
import { type Device, numel, Tensor } from "../core/index.ts";
import { hashNoiseBf16 } from "../kernels/hash_noise.ts";
import { hashNoiseBf16Ref, lowbias32 } from "../kernels/hash_noise.ref.ts";

/** One tensor: its shape and how to fill it: centred near-normal values of deviation `std`, or the constant `mean`. */
export interface RandomSpec {
  shape: number[];
  std: number;
  /** Only with std 0 (so the GPU's and the CPU's single rounding agree). */
  mean?: number;
}

/** The key of one tensor: FNV-1a of its name, mixed with the source's seed. */
function tensorKey(name: string, seed: number): number {
  let x = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) x = Math.imul(x ^ name.charCodeAt(i), 0x01000193);
  return lowbias32((x ^ lowbias32(seed >>> 0)) >>> 0);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** What Weights reads: a Checkpoint's lookups and CPU reads, and optionally its own GPU upload. */
export interface WeightSource {
  readonly path: string;
  names(): string[];
  has(name: string): boolean;
  get(name: string): { dtype: string; shape: number[] };
  readFloat32(name: string): Promise<Float32Array>;
  stream(name: string, byteOffset: number, byteLength: number, sink: (offset: number, data: Uint8Array) => void | Promise<void>): Promise<void>;
  /** Makes the tensor on the GPU itself (exact-size buffers, row chunks as Tensor.load makes them). */
  generate?(dev: Device, name: string): Tensor;
}

/** A source of random bf16 tensors (see the file header); `seed` varies every tensor's values. */
export function randomSource(specs: ReadonlyMap<string, RandomSpec>, opts: { seed?: number; path?: string } = {}): WeightSource {
  const seed = opts.seed ?? 0;
  const spec = (name: string) => {
    const s = specs.get(name);
    if (!s) throw new Error(`${opts.path ?? "random weights"}: no tensor "${name}"`);
    if (s.std && s.mean) throw new Error(`random weights: "${name}" has both std and mean`);
    if (numel(s.shape) >= 2 ** 31) throw new Error(`random weights: "${name}" [${s.shape}] has 2^31 or more elements`);
    return s;
  };
  const bits = (name: string, e0: number, n: number) => {
    const s = spec(name);
    return hashNoiseBf16Ref(tensorKey(name, seed), s.std, s.mean ?? 0, e0, n);
  };
  return {
    path: opts.path ?? "random weights",
    names: () => [...specs.keys()].sort(),
    has: (name) => specs.has(name),
    get: (name) => ({ dtype: "BF16", shape: [...spec(name).shape] }),
    readFloat32: async (name) => {
      const b = bits(name, 0, numel(spec(name).shape));
      return Float32Array.from(b, (x) => ((u32[0] = x << 16), f32[0]));
    },
    stream: async (name, byteOffset, byteLength, sink) => {
      // bf16: 2 bytes per element; ranges from Tensor.load start and end on element boundaries.
      const b = bits(name, byteOffset / 2, Math.ceil(byteLength / 2));
      await sink(0, new Uint8Array(b.buffer, 0, byteLength));
    },
    generate: (dev, name) => {
      const s = spec(name);
      const shape = s.shape.length ? s.shape : [1];
      const t = Tensor.allocate(dev, shape, "bf16", true);
      const rowSize = numel(shape) / Math.max(1, shape[0]);
      const key = tensorKey(name, seed);
      // Chunks hold an even number of rows (Tensor.allocate), so each starts on a whole u32 word.
      for (const { row, tensor } of t.rowChunks()) hashNoiseBf16(tensor, { key, e0: row * rowSize, std: s.std, mean: s.mean ?? 0 });
      return t;
    },
  };
}
