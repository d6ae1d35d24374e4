// Data movement: permute, concat, slice, 2×2 patchify, latent packing and embedding gather.
// Everything except `embedding` moves 32-bit words without interpreting them, so f32/i32/u32 are bit-exact;
// 16-bit tensors (two elements per word) are moved as words when every contiguous run is an even length.
// - transpose first canonicalises the permutation (drops size-1 dims, merges axes that stay adjacent), then
//   either gathers (innermost axis kept: reads and writes are both contiguous) or runs a 32×32 tiled transpose
//   through workgroup memory over the two innermost axes with the rest as a batch (both sides coalesced).
// - concat and slice are one strided 2-D block copy each ("rows" of the dims before the axis), vectorised to
//   vec4 words when every run and offset is a multiple of 4.
// - embedding decodes f32/bf16/f16 tables and runs one dispatch per row chunk; each writes only the ids that
//   fall in its chunk, the first also writes NaN rows for ids outside the table so bad ids never pass silently.
import { flatIndex, grid1d, itemBytes, numel, Tensor, type UniformFields, uniforms, wgslArrayType, wgslLoad, type DType, type Shape } from "../core/index.ts";
import { expectDType, expectRank, expectSameDevice } from "./check.ts";

const WG = 256;
const MAX_RANK = 6;

// ---- word view of 32/16-bit tensors -------------------------------------------------------------------------

/** Elements per 32-bit word. */
const perWord = (dtype: DType) => 4 / itemBytes[dtype];

function words(n: number, dtype: DType, what: string): number {
  const k = perWord(dtype);
  if (n % k) throw new Error(`${what}: ${dtype} tensors move as 32-bit words, so this run of ${n} elements must be even`);
  return n / k;
}

// ---- strided block copy (concat, slice, identity transpose) ------------------------------------------------

const COPY = uniforms("copy", { n: "u32", count: "u32", srcRow: "u32", srcOff: "u32", dstRow: "u32", dstOff: "u32" });

function copyWgsl(vec: number): string {
  const T = vec === 4 ? "vec4u" : "u32";
  return `
${COPY.wgsl}
@group(0) @binding(1) var<storage, read_write> dst: array<${T}>;
@group(0) @binding(2) var<storage, read> src: array<${T}>;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${flatIndex(WG)};
  if (i >= u.n) { return; }
  let o = i / u.count;
  let k = i % u.count;
  dst[o * u.dstRow + u.dstOff + k] = src[o * u.srcRow + u.srcOff + k];
}`;
}

/** dst[o·dstRow + dstOff + k] = src[o·srcRow + srcOff + k] for o < outer, k < count, all in words. */
function copyBlock(src: Tensor, dst: Tensor, outer: number, c: { count: number; srcRow: number; srcOff: number; dstRow: number; dstOff: number }): void {
  const vec = [c.count, c.srcRow, c.srcOff, c.dstRow, c.dstOff].every((v) => v % 4 === 0) ? 4 : 1;
  const n = outer * (c.count / vec);
  if (n === 0) return;
  const dev = src.dev;
  const u = COPY.pack({ n, count: c.count / vec, srcRow: c.srcRow / vec, srcOff: c.srcOff / vec, dstRow: c.dstRow / vec, dstOff: c.dstOff / vec });
  dev.run(dev.pipeline(copyWgsl(vec)), [dst.binding(), src.binding()], grid1d(n, WG), u);
}

function normAxis(axis: number, rank: number, what: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new Error(`${what}: axis ${axis} out of range for rank ${rank}`);
  return a;
}

/** Concatenates tensors of one dtype along `axis` (negative counts from the end); other dims must match. */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (!xs.length) throw new Error("concat: no tensors");
  expectSameDevice("concat", ...xs);
  const first = xs[0];
  const rank = first.shape.length;
  const a = normAxis(axis, rank, "concat");
  for (const [i, t] of xs.entries()) {
    const same = t.shape.length === rank && t.shape.every((d, k) => k === a || d === first.shape[k]);
    if (!same || t.dtype !== first.dtype) {
      throw new Error(`concat: tensor ${i} [${t.shape}] ${t.dtype} does not match [${first.shape}] ${first.dtype} outside axis ${a}`);
    }
  }
  const shape = [...first.shape];
  shape[a] = xs.reduce((s, t) => s + t.shape[a], 0);
  const out = Tensor.empty(first.dev, shape, first.dtype);
  const outer = numel(shape.slice(0, a));
  const inner = numel(shape.slice(a + 1));
  const dstRow = words(shape[a] * inner, first.dtype, "concat");
  let dstOff = 0;
  for (const t of xs) {
    const count = words(t.shape[a] * inner, t.dtype, "concat");
    copyBlock(t, out, outer, { count, srcRow: count, srcOff: 0, dstRow, dstOff });
    dstOff += count;
  }
  return out;
}

/** x[..., start:end, ...] along `axis` (negative counts from the end), 0 ≤ start ≤ end ≤ size. */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const a = normAxis(axis, x.shape.length, "slice");
  const size = x.shape[a];
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start || end > size) {
    throw new Error(`slice: range [${start}, ${end}) is not inside axis ${a} of [${x.shape}]`);
  }
  const shape = [...x.shape];
  shape[a] = end - start;
  const out = Tensor.empty(x.dev, shape, x.dtype);
  const inner = numel(x.shape.slice(a + 1));
  const w = (n: number) => words(n, x.dtype, "slice");
  copyBlock(x, out, numel(x.shape.slice(0, a)), {
    count: w((end - start) * inner),
    srcRow: w(size * inner),
    srcOff: w(start * inner),
    dstRow: w((end - start) * inner),
    dstOff: 0,
  });
  return out;
}

// ---- transpose ----------------------------------------------------------------------------------------------

/**
 * The same permutation with size-1 axes dropped and runs of input axes that stay adjacent (and in order)
 * merged into one axis: [B, C, h, w] with perm [0, 2, 3, 1] becomes [B, C, hw] with [0, 2, 1].
 */
export function canonicalPermutation(shape: Shape, perm: readonly number[]): { shape: number[]; perm: number[] } {
  const kept = perm.filter((a) => shape[a] !== 1);
  // Adjacency is judged among kept axes: a size-1 axis between two others does not keep them apart.
  const rankOf = new Map([...kept].sort((x, y) => x - y).map((a, i) => [a, i]));
  const merged: number[][] = [];
  for (const a of kept) {
    const g = merged[merged.length - 1];
    if (g && rankOf.get(g[g.length - 1])! + 1 === rankOf.get(a)) g.push(a);
    else merged.push([a]);
  }
  const byInput = [...merged].sort((x, y) => x[0] - y[0]);
  return {
    shape: byInput.map((g) => g.reduce((p, a) => p * shape[a], 1)),
    perm: merged.map((g) => byInput.indexOf(g)),
  };
}

function checkPerm(x: Tensor, perm: readonly number[]): void {
  const r = x.shape.length;
  const ok = perm.length === r && [...perm].sort((a, b) => a - b).every((a, i) => a === i);
  if (!ok) throw new Error(`transpose: [${perm}] is not a permutation of the ${r} axes of [${x.shape}]`);
}

/** Row-major strides. */
const stridesOf = (shape: readonly number[]) => shape.map((_, i) => numel(shape.slice(i + 1)));

/** u32 fields named `${prefix}${k}` for k < count, for each prefix (k outermost). */
const indexedFields = (count: number, ...prefixes: string[]): UniformFields =>
  Object.fromEntries(Array.from({ length: count }, (_, k) => prefixes.map((p) => [`${p}${k}`, "u32"])).flat());

/** Gather parameters per rank: the output size and, per output axis k, its size s<k> and input stride t<k>. */
const GATHER = Array.from({ length: MAX_RANK + 1 }, (_, r) => uniforms(`transpose (gather, rank ${r})`, { n: "u32", ...indexedFields(r, "s", "t") }));

// One invocation per output word; the loop over axes is unrolled per rank so there is one division pair per axis.
function gatherWgsl(rank: number): string {
  const steps = Array.from({ length: rank }, (_, i) => rank - 1 - i)
    .map((k) => `  src += (r % u.s${k}) * u.t${k}; r = r / u.s${k};`)
    .join("\n");
  return `
${GATHER[rank].wgsl}
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<u32>;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${flatIndex(WG)};
  if (i >= u.n) { return; }
  var r = i;
  var src = 0u;
${steps}
  dst[i] = x[src];
}`;
}

const TILE = 32;
const BATCH_AXES = MAX_RANK - 2;

// Tiled transpose of the two innermost axes: Q (the input's innermost axis) and P (the output's innermost axis);
// the remaining axes form a batch decomposed once per workgroup. Tile rows padded to 33 words against bank conflicts.
const TILED = uniforms("transpose (tiled)", {
  total: "u32", nTq: "u32", nTp: "u32", sq: "u32", sp: "u32", inStrideP: "u32", outStrideQ: "u32", ...indexedFields(BATCH_AXES, "b", "bi", "bo"),
});
const TILED_WGSL = `
${TILED.wgsl}
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<u32>;
var<workgroup> tile: array<array<u32, ${TILE + 1}>, ${TILE}>;
@compute @workgroup_size(${TILE}, 8)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  var w = wid.x + wid.y * nwg.x;
  if (w >= u.total) { return; }
  let tq = w % u.nTq; w = w / u.nTq;
  let tp = w % u.nTp; w = w / u.nTp;
  var inBase = 0u;
  var outBase = 0u;
${Array.from({ length: BATCH_AXES }, (_, i) => BATCH_AXES - 1 - i)
  .map((k) => `  inBase += (w % u.b${k}) * u.bi${k}; outBase += (w % u.b${k}) * u.bo${k}; w = w / u.b${k};`)
  .join("\n")}
  let q = tq * ${TILE}u + lid.x;
  for (var k = 0u; k < ${TILE}u; k += 8u) {
    let p = tp * ${TILE}u + lid.y + k;
    if (p < u.sp && q < u.sq) { tile[lid.y + k][lid.x] = x[inBase + p * u.inStrideP + q]; }
  }
  workgroupBarrier();
  let p2 = tp * ${TILE}u + lid.x;
  for (var k = 0u; k < ${TILE}u; k += 8u) {
    let q2 = tq * ${TILE}u + lid.y + k;
    if (p2 < u.sp && q2 < u.sq) { dst[outBase + q2 * u.outStrideQ + p2] = tile[lid.x][lid.y + k]; }
  }
}`;

/** Below this many elements on either tiled axis a tile would be mostly idle; gathering is cheaper. */
const MIN_TILED = 8;

/** Permutes axes: out.shape[i] = x.shape[perm[i]]. Bit-exact for any 32-bit dtype (16-bit: innermost run even). */
export function transpose(x: Tensor, perm: readonly number[]): Tensor {
  checkPerm(x, perm);
  const out = Tensor.empty(x.dev, perm.map((a) => x.shape[a]), x.dtype);
  if (x.size === 0) return out;
  const c = canonicalPermutation(x.shape, perm);
  const r = c.shape.length;
  if (r > MAX_RANK) throw new Error(`transpose: [${x.shape}] by [${perm}] still has rank ${r} > ${MAX_RANK} after merging adjacent axes`);
  if (c.perm.every((a, i) => a === i)) {
    // Same element order: copy every word (a 16-bit tensor's padding half-word included).
    const n = x.bytes / 4;
    copyBlock(x, out, 1, { count: n, srcRow: n, srcOff: 0, dstRow: n, dstOff: 0 });
    return out;
  }
  // Work in words: a 16-bit innermost run must stay in place and be even.
  if (perWord(x.dtype) > 1) {
    if (c.perm[r - 1] !== r - 1) throw new Error(`transpose: ${x.dtype} [${x.shape}] by [${perm}] moves single 16-bit elements; only 32-bit dtypes can`);
    c.shape[r - 1] = words(c.shape[r - 1], x.dtype, "transpose");
  }
  const n = numel(c.shape);
  const dev = x.dev;
  const inStrides = stridesOf(c.shape);
  const outShape = c.perm.map((a) => c.shape[a]);
  const pAxis = c.perm[r - 1];
  const sq = c.shape[r - 1], sp = c.shape[pAxis];
  if (pAxis !== r - 1 && sq >= MIN_TILED && sp >= MIN_TILED) {
    const outStrides = stridesOf(outShape);
    const batch = c.perm.map((a, i) => ({ size: outShape[i], bi: inStrides[a], bo: outStrides[i] })).filter((_, i) => i !== r - 1 && c.perm[i] !== r - 1);
    while (batch.length < BATCH_AXES) batch.unshift({ size: 1, bi: 0, bo: 0 });
    const nTq = Math.ceil(sq / TILE), nTp = Math.ceil(sp / TILE);
    const total = nTq * nTp * numel(batch.map((b) => b.size));
    const u = TILED.pack({
      total, nTq, nTp, sq, sp, inStrideP: inStrides[pAxis], outStrideQ: outStrides[c.perm.indexOf(r - 1)],
      ...Object.fromEntries(batch.flatMap((b, k) => [[`b${k}`, b.size], [`bi${k}`, b.bi], [`bo${k}`, b.bo]])),
    });
    dev.run(dev.pipeline(TILED_WGSL), [out.binding(), x.binding()], grid1d(total, 1), u);
    return out;
  }
  const u = GATHER[r].pack({ n, ...Object.fromEntries(c.perm.flatMap((a, i) => [[`s${i}`, outShape[i]], [`t${i}`, inStrides[a]]])) });
  dev.run(dev.pipeline(gatherWgsl(r)), [out.binding(), x.binding()], grid1d(n, WG), u);
  return out;
}

// ---- model-specific layouts ---------------------------------------------------------------------------------

/** [B, C, 2h, 2w] → [B, 4C, h, w] with channel c·4 + p·2 + q for pixel (2i+p, 2j+q) (FLUX.2 VAE patchify). */
export function patchify2x2(x: Tensor): Tensor {
  expectRank(x, "patchify2x2", 4);
  const [B, C, H, W] = x.shape;
  if (H % 2 || W % 2) throw new Error(`patchify2x2: spatial size of [${x.shape}] must be even`);
  const t = x.reshape([B, C, H / 2, 2, W / 2, 2]);
  const y = transpose(t, [0, 1, 3, 5, 2, 4]);
  t.dispose();
  const out = y.reshape([B, 4 * C, H / 2, W / 2]);
  y.dispose();
  return out;
}

/** Inverse of patchify2x2: [B, 4C, h, w] → [B, C, 2h, 2w]. */
export function unpatchify2x2(x: Tensor): Tensor {
  expectRank(x, "unpatchify2x2", 4);
  const [B, C4, h, w] = x.shape;
  if (C4 % 4) throw new Error(`unpatchify2x2: channels of [${x.shape}] must be a multiple of 4`);
  const t = x.reshape([B, C4 / 4, 2, 2, h, w]);
  const y = transpose(t, [0, 1, 4, 2, 5, 3]);
  t.dispose();
  const out = y.reshape([B, C4 / 4, 2 * h, 2 * w]);
  y.dispose();
  return out;
}

/** Latent grid [B, C, h, w] → tokens [B, h·w, C] (token r·w + c). */
export function packLatents(x: Tensor): Tensor {
  expectRank(x, "packLatents", 4);
  const [B, C, h, w] = x.shape;
  const y = transpose(x, [0, 2, 3, 1]);
  const out = y.reshape([B, h * w, C]);
  y.dispose();
  return out;
}

/** Tokens [B, h·w, C] → latent grid [B, C, h, w]. */
export function unpackLatents(t: Tensor, h: number, w: number): Tensor {
  expectRank(t, "unpackLatents", 3);
  const [B, L, C] = t.shape;
  if (L !== h * w) throw new Error(`unpackLatents: ${L} tokens of [${t.shape}] are not a ${h}×${w} grid`);
  const v = t.reshape([B, h, w, C]);
  const out = transpose(v, [0, 3, 1, 2]);
  v.dispose();
  return out;
}

// ---- embedding gather ---------------------------------------------------------------------------------------

const EMBEDDING = uniforms("embedding", { n: "u32", D: "u32", lo: "i32", hi: "i32", V: "i32", first: "u32", nan: "u32" });

function embeddingWgsl(dtype: DType): string {
  return `
${EMBEDDING.wgsl}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<i32>;
@group(0) @binding(3) var<storage, read> tab: array<${wgslArrayType(dtype)}>;
${wgslLoad("tab", "tab", dtype)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${flatIndex(WG)};
  if (i >= u.n) { return; }
  let id = ids[i / u.D];
  if (id >= u.lo && id < u.hi) {
    out[i] = load_tab(u32(id - u.lo) * u.D + i % u.D);
  } else if (u.first == 1u && (id < 0 || id >= u.V)) {
    out[i] = bitcast<f32>(u.nan); // a uniform: WGSL rejects NaN constants
  }
}`;
}

/**
 * Rows of a table given as row chunks (each [rows, D], consecutive from row 0) gathered by i32/u32 ids of any
 * shape → f32 [...ids.shape, D]. `embedding` passes `table.rowChunks()`; tests pass explicit chunks.
 */
export function embeddingChunks(chunks: readonly { row: number; tensor: Tensor }[], ids: Tensor): Tensor {
  if (!chunks.length) throw new Error("embedding: empty table");
  expectSameDevice("embedding", ids, ...chunks.map((c) => c.tensor));
  expectDType(ids, "embedding ids", "i32", "u32");
  const D = chunks[0].tensor.shape[1];
  let V = 0;
  for (const { row, tensor } of chunks) {
    expectRank(tensor, "embedding table chunk", 2);
    expectDType(tensor, "embedding table", "f32", "bf16", "f16");
    if (row !== V || tensor.shape[1] !== D || tensor.dtype !== chunks[0].tensor.dtype) {
      throw new Error(`embedding: chunk at row ${row} [${tensor.shape}] ${tensor.dtype} does not continue [${V}, ${D}] ${chunks[0].tensor.dtype}`);
    }
    V += tensor.shape[0];
  }
  const dev = ids.dev;
  const out = Tensor.empty(dev, [...ids.shape, D]);
  const n = out.size;
  if (n === 0) return out;
  const pipe = dev.pipeline(embeddingWgsl(chunks[0].tensor.dtype));
  chunks.forEach(({ row, tensor }, k) => {
    const u = EMBEDDING.pack({ n, D, lo: row, hi: row + tensor.shape[0], V, first: k === 0 ? 1 : 0, nan: 0x7fc00000 });
    dev.run(pipe, [out.binding(), ids.binding(), tensor.binding()], grid1d(n, WG), u);
  });
  return out;
}

/** table [V, D] (f32/bf16/f16, possibly chunked) gathered by ids → f32 [...ids.shape, D]; ids outside [0, V) give NaN rows. */
export function embedding(table: Tensor, ids: Tensor): Tensor {
  expectRank(table, "embedding table", 2);
  return embeddingChunks(table.rowChunks(), ids);
}
