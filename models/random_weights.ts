// Random weights with real names, shapes and dtype, made on the GPU: the memory plan and the model benchmark run
// the real FLUX.2-klein-4B configuration without a 16 GB download.
// Design:
// - A spec per tensor (shape, and an init: std for a centred near-normal fill, or a constant) comes from the model's
//   config (models/flux2/klein4b.ts derives them); this file knows no model. Everything is bf16, as the checkpoints.
// - `randomSource(specs)` is a WeightSource (names, shapes, CPU reads: what a Checkpoint offers the loaders), plus
//   `generate`, which Weights.get prefers: the tensor is allocated as Tensor.load would (exact size, row chunks)
//   and filled on the GPU chunk by chunk, so nothing crosses the bus and a dry-run device allocates the same bytes.
// - Values: element e of a tensor with key s is std·√3·(Σ_{j<4} u_j − 2), u_j = (2k_j + 1)/2^17 from the 16-bit
//   halves k_j of two lowbias32 hashes of (s, e): Irwin–Hall with 4 terms (mean 0, the given std, bounded at
//   ±3.46·std, close to normal: enough to keep activations finite). Integer hashing, one exact sum, one f32
//   multiply-add and a round-to-nearest-even to bf16: the CPU twin (`randomValues`) gives the same bits, and it
//   costs a few integer ops per value (the Philox stream of core/rng is ~10× slower on lavapipe).
import { type Device, flatIndex, grid1d, numel, params, Tensor } from "../core/index.ts";

/** One tensor: its shape and how to fill it: centred near-normal values of deviation `std`, or the constant `mean`. */
export interface RandomSpec {
  shape: number[];
  std: number;
  /** Only with std 0 (so the GPU's and the CPU's single rounding agree). */
  mean?: number;
}

const WG = 256;
/** √3: Irwin–Hall of 4 uniforms has variance 1/3. */
const SQRT3 = Math.sqrt(3);

const WGSL = `
struct P { words: u32, end: u32, e0: u32, key: u32, scale: f32, mean: f32 }
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
// lowbias32 (C. Wellons' integer hash): full avalanche in two multiplies.
fn h(x0: u32) -> u32 {
  var x = x0;
  x ^= x >> 16u; x *= 0x7feb352du; x ^= x >> 15u; x *= 0x846ca68bu; x ^= x >> 16u;
  return x;
}
fn bf16(e: u32) -> u32 {
  let a = h(h(2u * e) ^ u.key);
  let b = h(h(2u * e + 1u) ^ u.key);
  let k = (a & 0xffffu) + (a >> 16u) + (b & 0xffffu) + (b >> 16u);
  let v = f32(2u * k + 4u) * (1.0 / 131072.0) - 2.0;
  let x = bitcast<u32>(v * u.scale + u.mean);
  return (x + 0x7fffu + ((x >> 16u) & 1u)) >> 16u;
}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${flatIndex(WG)};
  if (i >= u.words) { return; }
  let e = u.e0 + 2u * i;
  out[i] = bf16(e) | select(0u, bf16(e + 1u) << 16u, e + 1u < u.end);
}`;

function lowbias32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** The key of one tensor: FNV-1a of its name, mixed with the source's seed. */
function tensorKey(name: string, seed: number): number {
  let x = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) x = Math.imul(x ^ name.charCodeAt(i), 0x01000193);
  return lowbias32((x ^ lowbias32(seed >>> 0)) >>> 0);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** CPU twin of the kernel: bf16 bits of elements [e0, e0 + n) of a tensor with this key and spec. */
export function randomValues(key: number, spec: RandomSpec, e0: number, n: number): Uint16Array {
  const scale = Math.fround(spec.std * SQRT3);
  const mean = Math.fround(spec.mean ?? 0);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    const e = e0 + i;
    const a = lowbias32((lowbias32((2 * e) >>> 0) ^ key) >>> 0);
    const b = lowbias32((lowbias32((2 * e + 1) >>> 0) ^ key) >>> 0);
    const k = (a & 0xffff) + (a >>> 16) + (b & 0xffff) + (b >>> 16);
    f32[0] = Math.fround(Math.fround((2 * k + 4) / 131072 - 2) * scale + mean);
    const x = u32[0];
    out[i] = ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

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
  const bits = (name: string, e0: number, n: number) => randomValues(tensorKey(name, seed), spec(name), e0, n);
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
      const pipeline = dev.pipeline(WGSL);
      for (const { row, tensor } of t.rowChunks()) {
        // Chunks hold an even number of rows (Tensor.allocate), so each starts on a whole u32 word.
        const e0 = row * rowSize;
        const words = Math.ceil(tensor.size / 2);
        const uni = params().u32(words).u32(e0 + tensor.size).u32(e0).u32(key).f32(s.std * SQRT3).f32(s.mean ?? 0).bytes();
        if (words) dev.run(pipeline, [tensor.binding()], grid1d(words, WG), uni);
      }
      return t;
    },
  };
}
