// Row reductions and the row-kernel scaffolding that norm.ts and softmax.ts share.
// - A row kernel runs 256-thread workgroups; each row is owned by a segment of `seg` threads (a power of two,
//   chosen from the row length so every thread has a few elements), so long rows get a whole workgroup and
//   short rows share one (e.g. 8 rows of 128 per workgroup). Threads stride through their row (coalesced),
//   accumulate privately, then combine in a shared-memory tree inside their segment (no subgroup ops).
// - A row may be split into chunks, each its own logical row (`nChunks` per row): reductions over few long rows
//   write one partial per chunk and reduce the partials again, so a 300000-long row or a full reduction spreads
//   over many workgroups; the partial pass is the same kernel. Per-thread sums run over ≤ 32 elements there,
//   then a tree, so the summation is close to pairwise.
// - Grids fold into y past 65535 workgroups; rows past the end are masked, never returned early, so every
//   thread reaches the barriers.
import { type Device, grid1d, Tensor, uniforms } from "../core/index.ts";
import { expectDType, rowsCols } from "./check.ts";

export const ROW_WG = 256;
/** Fewest elements per thread before a row gets a wider segment. */
const PER_THREAD = 4;
/** Chunk length of split reductions (32 elements per thread), and the row count below which rows are split. */
const CHUNK = ROW_WG * 32;
const SPLIT_BELOW_ROWS = 2048;

export interface RowLayout {
  rows: number;
  len: number;
  chunk: number;
  nChunks: number;
  seg: number;
}

/**
 * Layout of `rows` rows of `len`, each split into chunks of `chunk` (default: unsplit), with at least
 * `perThread` elements per thread before a row gets a wider segment.
 */
export function rowLayout(rows: number, len: number, chunk = len, perThread = PER_THREAD): RowLayout {
  const c = Math.max(1, chunk);
  const n = Math.max(1, Math.ceil(len / c));
  const perRow = Math.ceil(Math.min(len, c) / perThread);
  const seg = Math.min(ROW_WG, 2 ** Math.ceil(Math.log2(Math.max(1, perRow))));
  return { rows, len, chunk: c, nChunks: n, seg };
}

/**
 * Layout of a vec4 row kernel over rows of `len` in chunks of `chunk` (both multiples of 4), counted in vec4s. A CPU adapter runs a
 * workgroup's threads as SIMD loops that switch at every barrier, so there a row gets few threads (8 for 3072
 * columns: 3 tree steps, 32 rows per workgroup), which ran 2-4x faster on lavapipe than 8 vec4s per thread;
 * a GPU keeps wide, coalesced segments.
 */
export function vec4RowLayout(dev: Device, rows: number, len: number, chunk = len): RowLayout {
  return rowLayout(rows, len / 4, chunk / 4, dev.isCpu ? 96 : 8);
}

/** The uniform fields every row kernel's block starts with (spread into its declaration; values from `rowValues`). */
export const ROW_FIELDS = { rows: "u32", len: "u32", chunk: "u32", nChunks: "u32", seg: "u32" } as const;

/** Values of ROW_FIELDS for layout `l`: `rows` counts logical rows (chunks). */
export function rowValues(l: RowLayout): Record<keyof typeof ROW_FIELDS, number> {
  return { rows: l.rows * l.nChunks, len: l.len, chunk: l.chunk, nChunks: l.nChunks, seg: l.seg };
}

/** The dispatch grid of a row kernel over layout `l` (no workgroups when there are no rows). */
export function rowGrid(l: RowLayout): [number, number] {
  const logical = l.rows * l.nChunks;
  return logical ? grid1d(Math.ceil(logical / (ROW_WG / l.seg)), 1) : [0, 1];
}

/**
 * WGSL entry point of a row kernel. Before `body` runs these are defined: `tid`, `seg`, `lane` (index in the
 * segment), `row` (logical row = chunk), `live`, `r` (the row the chunk is in), `base` (its first element)
 * and `n` (its length, 0 when not live).
 */
export function wgslRowMain(body: string): string {
  return `
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let seg = u.seg;
  let row = (wid.x + wid.y * nwg.x) * (${ROW_WG}u / seg) + tid / seg;
  let lane = tid & (seg - 1u);
  let live = row < u.rows;
  let r = row / u.nChunks;
  let start = (row % u.nChunks) * u.chunk;
  let base = r * u.len + start;
  let n = select(0u, min(u.chunk, u.len - start), live);
${body}
}`;
}

/**
 * WGSL `fn reduce_<name>(tid, seg, v) -> T`: combines v over the thread's segment with `combine` (a function body
 * over a, b) and returns the result to every lane. Must be called in uniform control flow with a uniform seg.
 */
export function wgslSegReduce(name: string, type: string, combine: string): string {
  const red = `red_${name}`;
  return `
var<workgroup> ${red}: array<${type}, ${ROW_WG}>;
fn combine_${name}(a: ${type}, b: ${type}) -> ${type} { ${combine} }
fn reduce_${name}(tid: u32, seg: u32, v: ${type}) -> ${type} {
  ${red}[tid] = v;
  workgroupBarrier();
  for (var s = seg >> 1u; s > 0u; s = s >> 1u) {
    if ((tid & (seg - 1u)) < s) { ${red}[tid] = combine_${name}(${red}[tid], ${red}[tid + s]); }
    workgroupBarrier();
  }
  let out = ${red}[tid & ~(seg - 1u)];
  workgroupBarrier();
  return out;
}`;
}

// The identity comes in as a uniform: WGSL constants cannot be -inf, and max must start there so that rows of
// -inf (masked scores) reduce to -inf.
const OPS = {
  sum: { init: 0, combine: "return a + b;" },
  max: { init: -Infinity, combine: "return max(a, b);" },
} as const;
type Op = keyof typeof OPS;

const P = uniforms("reduce", { ...ROW_FIELDS, scale: "f32", init: { type: "f32", nonFinite: true } });

function reduceWgsl(op: Op): string {
  return `
${P.wgsl}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
${wgslSegReduce("acc", "f32", OPS[op].combine)}
${wgslRowMain(`
  var acc = u.init;
  for (var i = lane; i < n; i += seg) { acc = combine_acc(acc, x[base + i]); }
  acc = reduce_acc(tid, seg, acc);
  if (live && lane == 0u) { out[row] = acc * u.scale; }`)}`;
}

/** Reduces `rows` rows of `len` of x into a new tensor of `shape`, splitting few long rows into chunks. */
function reduceRows(x: Tensor, rows: number, len: number, op: Op, scale: number, shape: readonly number[]): Tensor {
  const dev = x.dev;
  const pipeline = dev.pipeline(reduceWgsl(op));
  const init = OPS[op].init;
  if (len > CHUNK && rows < SPLIT_BELOW_ROWS) {
    const l = rowLayout(rows, len, CHUNK);
    const part = Tensor.empty(dev, [rows, l.nChunks]);
    dev.run(pipeline, [part.binding(), x.binding()], rowGrid(l), P.pack({ ...rowValues(l), scale: 1, init }));
    const out = reduceRows(part, rows, l.nChunks, op, scale, shape);
    part.dispose(); // stream order: a later dispatch may reuse the buffer, this batch's reads come first
    return out;
  }
  const out = Tensor.empty(dev, shape);
  const l = rowLayout(rows, len);
  dev.run(pipeline, [out.binding(), x.binding()], rowGrid(l), P.pack({ ...rowValues(l), scale, init }));
  return out;
}

function overLastDim(x: Tensor, op: Op, what: string, byLen = false): Tensor {
  expectDType(x, `${what} x`, "f32");
  const [rows, len] = rowsCols(x);
  const shape = x.shape.length > 1 ? x.shape.slice(0, -1) : [1];
  return reduceRows(x, rows, len, op, byLen ? 1 / len : 1, shape);
}

/** Sum over the last dim: [..., D] → [...] (a 1-D input gives [1]). */
export const sum = (x: Tensor): Tensor => overLastDim(x, "sum", "sum");
/** Mean over the last dim: [..., D] → [...] (a 1-D input gives [1]). */
export const mean = (x: Tensor): Tensor => overLastDim(x, "sum", "mean", true);
/** Maximum over the last dim: [..., D] → [...] (a 1-D input gives [1]). */
export const max = (x: Tensor): Tensor => overLastDim(x, "max", "max");

function all(x: Tensor, op: Op, what: string): Tensor {
  expectDType(x, `${what} x`, "f32");
  return reduceRows(x, 1, x.size, op, 1, [1]);
}

/** Sum of every element → [1] (a tree over workgroups). */
export const sumAll = (x: Tensor): Tensor => all(x, "sum", "sumAll");
/** Maximum of every element → [1]. */
export const maxAll = (x: Tensor): Tensor => all(x, "max", "maxAll");
