// Matrix products y = a·bᵀ (weights, PyTorch Linear layout) or y = a·b, f32 activations a [..., M, K] times
// f32/f16/bf16 b, with a fused epilogue. Design:
// - Tiled kernel (GPUs): a workgroup owns a BM×BN output tile. Per BK step it stages an A tile and a B tile in
//   workgroup memory, both k-major as vec4 (4 rows / 4 columns per element), and every thread accumulates a TM×TN
//   block in registers as outer products of vec4 reads. Tile sizes are per device (`matmulTiles`) and injected as
//   constants; tile loads and the TM×TN block are unrolled in the text, the k loop is left to the driver. The
//   epilogue goes out through workgroup memory one accumulator row at a time, so stores are coalesced.
// - Subgroup kernel (CPU adapters, `subgroups` with one fixed subgroup size S): one workgroup = one subgroup, no
//   workgroup memory, no barriers. A block is SG_ROWS rows × 4·SG_GROUPS columns per lane. Per K chunk of 8, each
//   pair of lanes loads one row's 8 a values as two vec4 (S/2 rows per round) and each lane the b values of its own
//   columns; every a value reaches all lanes through `subgroupBroadcast`, so each lane does SG_ROWS·4 FMAs per loaded
//   b value and every FMA reads registers. On llvmpipe each lane is a SIMD lane: a storage load costs ~10
//   instructions per component and lane (bounds-checked, lane by lane), a broadcast ~2 and an FMA 2 (mul + add),
//   so the kernel is built to load few values per FMA, and reads unbatched b from an rgba32float texture copy
//   (texel fetches are vector gathers there; see TEX_BYTES); the tiled one spends most of its time on per-lane
//   workgroup-memory loads there. K, M and N edges: loads are clamped or zeroed, stores bounds-checked.
// - Which of the two a device uses is its profile (`matmulKernel`, `setMatmulKernel`); a call may force one.
// - Small-M kernel (up to GEMV_MAX_ROWS rows, unbatched transposed b): 32 threads per output column stride over K
//   with coalesced reads of the weight row, for GEMV_ROWS rows at once; partial sums meet in workgroup memory. Up to
//   8 rows the weights are read once; beyond, each 8 rows re-read them, which still beats a 128-row tile that is
//   mostly empty and leaves most of a big GPU idle.
// - Loads: when every row of a and b starts 4-aligned (K % 4 == 0, and N % 4 == 0 for b [K, N]) a and f32 b are read
//   as vec4 and 16-bit b as two packed u32 words; otherwise element by element. Tile edges are bounds-checked in both.
// - Epilogue, in this order: v = acc; v += bias[n]; v = act(v); v = gate[batch, n]·v; v += residual[m, n].
//   So y = residual + gate ⊙ act(a·bᵀ + bias); a gate needs a residual (the transformer's gated residual).
// - Batches: a's leading dims flatten to Ba. With b unbatched ([N, K] / [K, N]) a is treated as Ba·M rows in one
//   grid; with b batched (same leading count) grid z runs the batches.
// - Weights in row chunks (`rowChunks()`, each [n_i, K], transposeB only): one dispatch per chunk, writing output
//   columns [row, row + n_i) (column offset and row stride in the uniforms).
// - Pipeline variants: kernel × b dtype × transposeB × vec4 × bias dtype × activation × gate × residual, generated on
//   first use; the text is memoised so the device's pipeline cache hits without rebuilding it.
import { type Device, type DType, type Resource, Tensor, uniforms, wgslArrayType, wgslLoad } from "../core/index.ts";
import { expectDType, expectSameDevice, expectShape } from "./check.ts";
import { activationWgsl } from "./elementwise.ts";

export type Activation = "silu" | "gelu" | "geluTanh" | "quickGelu";

/** Output tile BM×BN per workgroup, K step BK, TM×TN outputs per thread (TM, TN, BK multiples of 4). */
export interface MatmulTiles {
  BM: number;
  BN: number;
  BK: number;
  TM: number;
  TN: number;
}

export interface MatmulOptions {
  /** b is [N, K] (default, weights) rather than [K, N]. */
  transposeB?: boolean;
  /** [N], any float dtype. */
  bias?: Tensor;
  activation?: Activation;
  /** f32, the output's shape; added last. */
  residual?: Tensor;
  /** f32 [Ba, N] per-batch scale of act(a·bᵀ + bias), for a [Ba, M, K]; needs `residual`. */
  gate?: Tensor;
  /** Overrides the device's tile sizes (benchmarks, tests). */
  tiles?: MatmulTiles;
  /** Overrides the device's kernel for products the small-M kernel does not take (benchmarks, tests). */
  kernel?: MatmulKernel;
}

/** The kernel for products the small-M kernel does not take: see the header. */
export type MatmulKernel = "tiled" | "subgroup";

const GEMV_ROWS = 8; // rows per small-M workgroup
const GEMV_MAX_ROWS = 32; // the most rows that take the small-M kernel
const GEMV_LANES = 32; // threads per output column
const GEMV_WG = 256;

// The classic register-blocked sgemm shape: 256 threads, 8×8 outputs each, 16 KiB of workgroup memory (within
// WebGPU's default limits). On lavapipe 8×16 and 16×16 blocks run 10-30% faster but compile 3-8× slower than this
// one's 1.2 s, so every device starts here; a benchmark sweep can pick others per device with `setMatmulTiles`.
const DEFAULT_TILES: MatmulTiles = { BM: 128, BN: 128, BK: 16, TM: 8, TN: 8 };
const deviceTiles = new WeakMap<Device, MatmulTiles>();

// Subgroup kernel: SG_K k values per chunk, a block of SG_ROWS rows × 4·SG_GROUPS columns per lane (SG_ROWS a
// multiple of S / 2). llvmpipe (AVX2, S = 8), 1024³ f32 with b from a texture, % of fma_peak (medians of paired
// rounds): 16×4 33, 32×2 40, 32×4 44, 64×2 40, 64×4 43, compiling in 0.9, 1.4, 2.1, 2.6 and 7.3 s. (With b from
// its storage buffer the best was 64×4 at 28-33%: there every b value loaded costs ~10 instructions per lane.)
const SG_ROWS = 32;
const SG_GROUPS = 4;
const SG_K = 8;
const deviceKernel = new WeakMap<Device, MatmulKernel>();

/** The subgroup size the subgroup kernel can rely on (the adapter reports one fixed size, a multiple of 4), or 0. */
function subgroupSize(dev: Device): number {
  const info = dev.adapterInfo as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
  const s = info.subgroupMinSize ?? 0;
  return dev.features.has("subgroups") && s === info.subgroupMaxSize && s % 4 === 0 && s <= 64 ? s : 0;
}

/** The kernel matmul uses on this device: the subgroup kernel on CPU adapters that support it, else the tiled one. */
export function matmulKernel(dev: Device): MatmulKernel {
  return deviceKernel.get(dev) ?? (dev.isCpu && subgroupSize(dev) ? "subgroup" : "tiled");
}

/** The kernels this device can run. */
export function matmulKernels(dev: Device): MatmulKernel[] {
  return subgroupSize(dev) ? ["tiled", "subgroup"] : ["tiled"];
}

/** Sets this device's kernel (the subgroup kernel needs `subgroups` with one fixed subgroup size). */
export function setMatmulKernel(dev: Device, kernel: MatmulKernel): void {
  expectKernel(dev, kernel);
  deviceKernel.set(dev, kernel);
}

function expectKernel(dev: Device, kernel: MatmulKernel): void {
  if (kernel === "subgroup" && !subgroupSize(dev)) {
    throw new Error("matmul: the subgroup kernel needs the subgroups feature with one fixed subgroup size (a multiple of 4)");
  }
}

/** The tile sizes matmul uses on this device unless a call overrides them. */
export function matmulTiles(dev: Device): MatmulTiles {
  return deviceTiles.get(dev) ?? DEFAULT_TILES;
}

/** Sets this device's tile sizes (validated against its limits). */
export function setMatmulTiles(dev: Device, tiles: MatmulTiles): void {
  checkTiles(tiles, dev);
  deviceTiles.set(dev, { ...tiles });
}

function checkTiles(t: MatmulTiles, dev: Device): number {
  const threads = (t.BM / t.TM) * (t.BN / t.TN);
  const ok =
    [t.BM, t.BN, t.BK, t.TM, t.TN].every((x) => Number.isInteger(x) && x > 0) &&
    [t.BK, t.TM, t.TN].every((x) => x % 4 === 0) &&
    t.BM % t.TM === 0 &&
    t.BN % t.TN === 0 &&
    ((t.BM * t.BK) / 4) % threads === 0 &&
    ((t.BN * t.BK) / 4) % threads === 0 &&
    threads <= dev.limits.maxComputeInvocationsPerWorkgroup &&
    (t.BM + t.BN) * t.BK * 4 <= dev.limits.maxComputeWorkgroupStorageSize;
  if (!ok) throw new Error(`matmul: tiles ${JSON.stringify(t)} are not valid on this device`);
  return threads;
}

// ---- WGSL ------------------------------------------------------------------------------------------------------

interface Variant {
  dtype: DType; // b
  transposeB: boolean;
  vec: boolean;
  bias: DType | null;
  act: Activation | null;
  gate: boolean;
  residual: boolean;
  /** b is read from an rgba32float texture (texel (q, n) = b[n, 4q .. 4q+3]) rather than its buffer. */
  tex: boolean;
}

// ldX(i, left): elements i..i+3 of the flat array X, of which `left` (≥ 1) are inside the row.
const scalarLoad = (x: string) => `fn ld${x}(i: u32, left: u32) -> vec4f {
  var r = vec4f(0.0);
  for (var j = 0u; j < 4u; j++) { if (j < left) { r[j] = load_${x}(i + j); } }
  return r;
}`;
const vecB = {
  f32: "return B[i >> 2u];",
  bf16: "let w0 = B[i >> 1u]; let w1 = B[(i >> 1u) + 1u];\n  return bitcast<vec4f>(vec4u(w0 << 16u, w0 & 0xffff0000u, w1 << 16u, w1 & 0xffff0000u));",
  f16: "return vec4f(unpack2x16float(B[i >> 1u]), unpack2x16float(B[(i >> 1u) + 1u]));",
} as Record<DType, string>;

/** b's storage element type and `ldB` (plus `load_B` when not `vec`: whole vec4 or packed words need 4-aligned rows). */
function bLoader(dtype: DType, vec: boolean): { type: string; fns: string } {
  const type = dtype === "f32" ? (vec ? "vec4f" : "f32") : "u32";
  const fns = vec ? `fn ldB(i: u32, left: u32) -> vec4f {\n  ${vecB[dtype]}\n}` : `${wgslLoad("B", "B", dtype)}\n${scalarLoad("B")}`;
  return { type, fns };
}

const P = uniforms("matmul", { M: "u32", N: "u32", K: "u32", ldo: "u32", nOff: "u32", bStride: "u32", gateRows: "u32" });
const TEXTURE_COPY = uniforms("matmul b texture copy", { K: "u32", W: "u32", rows: "u32", r0: "u32", ld: "u32" });

/** Uniforms, bindings, load helpers and the epilogue `store(row, n, acc)` shared by the kernels. */
function common(v: Variant): string {
  const aVec = v.vec;
  const extra: string[] = [];
  if (v.bias) extra.push(`var<storage, read> bias: array<${wgslArrayType(v.bias)}>;`);
  if (v.gate) extra.push("var<storage, read> gate: array<f32>;");
  if (v.residual) extra.push("var<storage, read> residual: array<f32>;");
  const b = bLoader(v.dtype, v.vec);
  return `
${P.wgsl}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> A: array<${aVec ? "vec4f" : "f32"}>;
@group(0) @binding(3) ${v.tex ? "var BT: texture_2d<f32>;" : `var<storage, read> B: array<${b.type}>;`}
${extra.map((d, i) => `@group(0) @binding(${i + 4}) ${d}`).join("\n")}
${aVec ? "fn ldA(i: u32, left: u32) -> vec4f { return A[i >> 2u]; }" : `${wgslLoad("A", "A", "f32")}\n${scalarLoad("A")}`}
${v.tex ? "" : b.fns}
${v.bias ? wgslLoad("bias", "bias", v.bias) : ""}
${v.act ? activationWgsl(v.act, "act") : ""}
fn store(row: u32, n: u32, acc: f32) {
  let col = u.nOff + n;
  let o = row * u.ldo + col;
  var y = acc;
  ${v.bias ? "y = y + load_bias(col);" : ""}
  ${v.act ? "y = act(y);" : ""}
  ${v.gate ? "y = gate[(row / u.gateRows) * u.ldo + col] * y;" : ""}
  ${v.residual ? "y = y + residual[o];" : ""}
  out[o] = y;
}`;
}

function tiledWgsl(v: Variant, t: MatmulTiles, threads: number): string {
  const { BM, BN, BK, TM, TN } = t;
  const TX = BN / TN, TY = BM / TM; // threads along n and m
  const am = BM / 4, bn = BN / 4; // vec4 per k row of the A / B tile
  const bOff = BK * am; // the B tile follows the A tile in S
  const L: string[] = [];
  // Tile loads: thread `lid` handles vec4 number lid + q·threads of the tile.
  // A (and b [N, K]): rows × BK/4 vec4 along k, stored transposed (k-major) element by element.
  const loadRows = (base: number, stride: number, rows: number, bound: string, first: string, index: string, ld: string) => {
    for (let q = 0; q < (rows * BK) / 4 / threads; q++) {
      L.push(`    {
      let l = lid + ${q * threads}u; let r = l / ${BK / 4}u; let c = (l % ${BK / 4}u) * 4u;
      let g = ${first} + r; let k = k0 + c;
      var x = vec4f(0.0);
      if (g < ${bound} && k < u.K) { x = ${ld}(${index}, u.K - k); }
      let s = ${base}u + c * ${stride}u + r / 4u; let e = r % 4u;
      S[s][e] = x.x; S[s + ${stride}u][e] = x.y; S[s + ${2 * stride}u][e] = x.z; S[s + ${3 * stride}u][e] = x.w;
    }`);
    }
  };
  loadRows(0, am, BM, "u.M", "m0", "(rowBase + g) * u.K + k", "ldA");
  if (v.transposeB) loadRows(bOff, bn, BN, "u.N", "n0", "bBase + g * u.K + k", "ldB");
  else {
    // b [K, N]: BK rows × BN/4 vec4 along n, already k-major.
    for (let q = 0; q < (BN * BK) / 4 / threads; q++) {
      L.push(`    {
      let l = lid + ${q * threads}u; let r = l / ${bn}u; let c = (l % ${bn}u) * 4u;
      let k = k0 + r; let n = n0 + c;
      var x = vec4f(0.0);
      if (k < u.K && n < u.N) { x = ldB(bBase + k * u.N + n, u.N - n); }
      S[${bOff}u + r * ${bn}u + c / 4u] = x;
    }`);
    }
  }
  // Thread (tx, ty) owns row quads i·TY + ty and column quads j·TX + tx (strided so a warp's vec4 reads are contiguous).
  const acc = (i: number, j: number) => `c${i}_${j}`;
  const decl: string[] = [];
  for (let i = 0; i < TM; i++) for (let j = 0; j < TN / 4; j++) decl.push(`var ${acc(i, j)} = vec4f(0.0);`);
  // One k step: TM/4 + TN/4 vec4 reads, TM·TN FMAs. The k loop itself is left to the driver (unrolling it in the
  // text made lavapipe compile 3× slower for no speed).
  const body = [
    ...Array.from({ length: TM / 4 }, (_, i) => `      let a${i} = S[kk * ${am}u + ${i * TY}u + ty];`),
    ...Array.from({ length: TN / 4 }, (_, j) => `      let b${j} = S[${bOff}u + kk * ${bn}u + ${j * TX}u + tx];`),
  ];
  for (let i = 0; i < TM; i++) {
    for (let j = 0; j < TN / 4; j++) body.push(`      ${acc(i, j)} = fma(vec4f(a${i >> 2}[${i & 3}]), b${j}, ${acc(i, j)});`);
  }
  // Epilogue: pass i stages every thread's accumulator row i (TY tile rows, 4 apart) in S, then the workgroup writes
  // those rows out with consecutive threads on consecutive columns: coalesced, and one copy of the epilogue code.
  const cases: string[] = [];
  for (let i = 0; i < TM; i++) {
    const st = Array.from({ length: TN / 4 }, (_, j) => `S[ty * ${bn}u + ${j * TX}u + tx] = ${acc(i, j)};`);
    cases.push(`      case ${i}u: { ${st.join(" ")} }`);
  }
  return `${common(v)}
var<workgroup> S: array<vec4f, ${Math.max((BM + BN) * BK, TY * BN) / 4}>;
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let tx = lid % ${TX}u;
  let ty = lid / ${TX}u;
  let m0 = wg.y * ${BM}u;
  let n0 = wg.x * ${BN}u;
  let rowBase = wg.z * u.M;
  let bBase = wg.z * u.bStride;
  ${decl.join("\n  ")}
  for (var k0 = 0u; k0 < u.K; k0 += ${BK}u) {
${L.join("\n")}
    workgroupBarrier();
    for (var kk = 0u; kk < ${BK}u; kk++) {
${body.join("\n")}
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < ${TM}u; i++) {
    workgroupBarrier();
    switch i {
${cases.join("\n")}
      default: {}
    }
    workgroupBarrier();
    for (var e = lid; e < ${TY * BN}u; e += ${threads}u) {
      let m = m0 + ((i / 4u) * ${TY}u + e / ${BN}u) * 4u + i % 4u;
      let n = n0 + e % ${BN}u;
      if (m < u.M && n < u.N) { store(rowBase + m, n, S[e / 4u][e % 4u]); }
    }
  }
}`;
}

function subgroupWgsl(v: Variant, S: number): string {
  const R = SG_ROWS, G = SG_GROUPS;
  const P = S / 2; // rows per round: two lanes hold one row's SG_K = 8 k values, a quad each
  const L: string[] = [];
  // a, round q: lane l holds the quad k0 + 4(l % 2) .. +3 of row m0 + P·q + l / 2 (zero past K; rows past M repeat
  // the last), so row P·q + i at k = k0 + kk lives in lane 2i + kk / 4, component kk % 4. Each round is loaded just
  // before its rows: on llvmpipe a load is a per-lane branchy sequence, and fewer half-built vectors spill less.
  const loadA = (q: number) => `let a${q} = select(vec4f(0.0), ldA(aRow${q} + kaq, u.K - kaq), inK);`;
  // b${g}_${kk}: vec4 of lane l's 4 columns in group g (n = n0 + 4(l + S·g) + j) at k = k0 + kk. Indices past K
  // are clamped into the row (their a is zero), so every load reads the tensor's own values.
  for (let g = 0; g < G; g++) {
    if (v.transposeB) {
      // b [N, K]: 4 rows of b × 2 quads along k, transposed in registers.
      for (let h = 0; h < 2; h++) {
        for (let j = 0; j < 4; j++) {
          const w = v.tex ? `textureLoad(BT, vec2u(kb${h}, bCol${g}_${j}), 0)` : `ldB(bCol${g}_${j} + kb${h}, u.K - kb${h})`;
          L.push(`let w${g}_${j}_${h} = ${w};`);
        }
        for (let e = 0; e < 4; e++) {
          L.push(`let b${g}_${4 * h + e} = vec4f(${[0, 1, 2, 3].map((j) => `w${g}_${j}_${h}[${e}]`).join(", ")});`);
        }
      }
    } else {
      // b [K, N]: one vec4 along n per k.
      for (let kk = 0; kk < SG_K; kk++) {
        L.push(`let b${g}_${kk} = ldB(bBase + min(k0 + ${kk}u, u.K - 1u) * u.N + bCol${g}, u.N - bCol${g});`);
      }
    }
  }
  // Each accumulator is written once per chunk (llvmpipe blends every write to a loop variable with the lane mask).
  for (let r = 0; r < R; r++) {
    const [q, i] = [Math.floor(r / P), r % P];
    if (i === 0) L.push(loadA(q));
    for (let kk = 0; kk < SG_K; kk++) L.push(`let s${r}_${kk} = vec4f(subgroupBroadcast(a${q}[${kk & 3}], ${2 * i + (kk >> 2)}u));`);
    for (let g = 0; g < G; g++) {
      let e = `acc[${r * G + g}]`;
      for (let kk = 0; kk < SG_K; kk++) e = `fma(s${r}_${kk}, b${g}_${kk}, ${e})`;
      L.push(`acc[${r * G + g}] = ${e};`);
    }
  }
  const cols: string[] = [];
  for (let g = 0; g < G; g++) {
    // Column indices clamped into b (past N they repeat the last columns; stores skip them). Vec loads along n
    // need a 4-aligned start: N % 4 == 0 there, so (N - 1) & ~3 is the last quad.
    cols.push(`let nq${g} = n0 + ${4 * S * g}u + 4u * lane;`);
    if (v.transposeB) {
      for (let j = 0; j < 4; j++) {
        const row = `min(nq${g} + ${j}u, u.N - 1u)`; // a texture row, or where the row starts in b
        cols.push(`let bCol${g}_${j} = ${v.tex ? row : `bBase + ${row} * u.K`};`);
      }
    } else cols.push(`let bCol${g} = min(nq${g}, (u.N - 1u) & ~3u);`);
  }
  // Where each lane's two quads of b start: element offsets, or texel columns in the texture.
  const kb = [0, 1].map((h) => `let kb${h} = min(k0 + ${4 * h}u, lastQuad)${v.tex ? " / 4u" : ""};`);
  return `enable subgroups;
${common(v)}
@compute @workgroup_size(${S})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let m0 = wg.y * ${R}u;
  let n0 = wg.x * ${4 * S * G}u;
  let rowBase = wg.z * u.M;
  let bBase = wg.z * u.bStride;
  let lastQuad = (u.K - 1u) & ~3u; // the last quad that starts inside a row
  ${Array.from({ length: R / P }, (_, q) => `let aRow${q} = (rowBase + min(m0 + ${P * q}u + lane / 2u, u.M - 1u)) * u.K;`).join("\n  ")}
  ${cols.join("\n  ")}
  var acc: array<vec4f, ${R * G}>;
  for (var k0 = 0u; k0 < u.K; k0 += ${SG_K}u) {
    let ka = k0 + 4u * (lane % 2u);
    let inK = ka < u.K;
    let kaq = min(ka, lastQuad);
    ${kb.join("\n    ")}
    ${L.join("\n    ")}
  }
  for (var i = 0u; i < ${R * G}u; i++) {
    let m = m0 + i / ${G}u;
    let n = n0 + 4u * (lane + ${S}u * (i % ${G}u));
    let y = acc[i];
    for (var j = 0u; j < 4u; j++) {
      if (m < u.M && n + j < u.N) { store(rowBase + m, n + j, y[j]); }
    }
  }
}`;
}

function gemvWgsl(v: Variant): string {
  const R = GEMV_ROWS, W = GEMV_WG, C = W / GEMV_LANES, P = W + C; // P: padded row of `part` (no bank conflicts)
  const rows = (f: (r: number) => string) => Array.from({ length: R }, (_, r) => f(r)).join("\n");
  // Thread lid: column c = lid % C of the workgroup's C columns, k slice lane = lid / C. A warp reads 4 slices of
  // 8 weight rows (whole 32-byte sectors) and shares the activation reads.
  return `${common(v)}
var<workgroup> part: array<f32, ${R * P}>;
@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = lid % ${C}u;
  let n = wg.x * ${C}u + c;
  let r0 = wg.y * ${R}u;
${rows((r) => `  var s${r} = 0.0;`)}
  if (n < u.N) {
    for (var k = (lid / ${C}u) * 4u; k < u.K; k += ${GEMV_LANES * 4}u) {
      let w = ldB(n * u.K + k, u.K - k);
${rows((r) => `      if (r0 + ${r}u < u.M) { s${r} += dot(ldA((r0 + ${r}u) * u.K + k, u.K - k), w); }`)}
    }
  }
${rows((r) => `  part[${r * P}u + lid] = s${r};`)}
  // One barrier, then one thread per (row, column) adds the slices and runs the epilogue (a single copy of its code;
  // barriers inside loops make lavapipe's compile several times slower).
  workgroupBarrier();
  if (lid < ${R * C}u) {
    let r = lid / ${C}u;
    var t = 0.0;
    for (var l = 0u; l < ${GEMV_LANES}u; l++) { t += part[r * ${P}u + l * ${C}u + c]; }
    if (r0 + r < u.M && n < u.N) { store(r0 + r, n, t); }
  }
}`;
}

// The subgroup kernel reads unbatched b from an rgba32float copy: llvmpipe turns a storage-buffer load into a
// bounds-checked loop over lanes (~10 instructions per value and lane) but a texel fetch into a vector gather:
// 1024³ f32 went from 28-33% of fma_peak to 40-58%, the copy included. The copy costs about as much as 64 rows of
// product (3072² weights: 64 rows 92 ms vs 75 from the buffer, 96 rows 106 vs 113, 192 rows 172 vs 214), so fewer
// than TEX_MIN_ROWS rows read the buffer. A copy holds at most TEX_BYTES: bigger weights go in row slices.
const TEX_MIN_ROWS = 96;
const TEX_BYTES = 64 << 20;

/**
 * Copies rows [r0, r0 + rows) of b into texels (k / 4, row): b [N, K] through `ldB` (vec4 or packed words when rows
 * are 4-aligned), b [K, N] (`transposeB` false) element by element across rows.
 */
function bTextureWgsl(dtype: DType, transposeB: boolean, vec: boolean): string {
  const b = bLoader(dtype, transposeB && vec);
  const texel = transposeB
    ? "ldB((u.r0 + n) * u.K + 4u * q, u.K - 4u * q);"
    : "vec4f(0.0);\n  for (var j = 0u; j < min(4u, u.K - 4u * q); j++) { t[j] = load_B((4u * q + j) * u.ld + u.r0 + n); }";
  return `
${TEXTURE_COPY.wgsl}
@group(0) @binding(1) var<storage, read> B: array<${b.type}>;
@group(0) @binding(2) var BT: texture_storage_2d<rgba32float, write>;
${b.fns}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let q = gid.x;
  let n = gid.y;
  if (q >= u.W || n >= u.rows) { return; }
  var t = ${texel}
  textureStore(BT, vec2u(q, n), t);
}`;
}


const texts = new Map<string, string>();

type Plan =
  | { kind: "gemv" }
  | { kind: "tiled"; tiles: MatmulTiles; threads: number }
  | { kind: "subgroup"; size: number };

function copyText(dtype: DType, transposeB: boolean, vec: boolean): string {
  const key = JSON.stringify(["copy", dtype, transposeB, vec]);
  if (!texts.has(key)) texts.set(key, bTextureWgsl(dtype, transposeB, vec));
  return texts.get(key)!;
}

function shaderText(v: Variant, plan: Plan): string {
  const key = JSON.stringify([v, plan]);
  let s = texts.get(key);
  if (!s) {
    s = plan.kind === "tiled" ? tiledWgsl(v, plan.tiles, plan.threads) : plan.kind === "subgroup" ? subgroupWgsl(v, plan.size) : gemvWgsl(v);
    texts.set(key, s);
  }
  return s;
}

// ---- launchers -------------------------------------------------------------------------------------------------

const FLOAT: DType[] = ["f32", "f16", "bf16"];

/**
 * y = act(a·bᵀ + bias), then gate and residual as in the header: a f32 [..., M, K]; b [N, K] or [..., N, K] with
 * `transposeB` (default), [K, N] or [..., K, N] without; a batched b has a's leading batch count. → [..., M, N] f32.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const chunks = b.rowChunks();
  if (chunks.length > 1) {
    if (opts.transposeB === false || b.shape.length !== 2) {
      throw new Error(`matmul: b [${b.shape}] spans ${chunks.length} bindings; only unbatched [N, K] weights (transposeB) may`);
    }
    return matmulChunks(a, chunks.map((c) => c.tensor), opts);
  }
  return product(a, [b], b.shape, opts);
}

/** matmul with transposed weights given as row chunks [n_i, K] of one [Σn_i, K] matrix (what chunked tensors hold). */
export function matmulChunks(a: Tensor, chunks: readonly Tensor[], opts: Omit<MatmulOptions, "transposeB"> = {}): Tensor {
  if (!chunks.length) throw new Error("matmul: no weight chunks");
  const K = chunks[0].shape[1];
  for (const c of chunks) {
    if (c.shape.length !== 2 || c.shape[1] !== K || c.dtype !== chunks[0].dtype) {
      throw new Error(`matmul: weight chunks must all be [n_i, ${K}] ${chunks[0].dtype}, got [${c.shape}] ${c.dtype}`);
    }
  }
  const N = chunks.reduce((s, c) => s + c.shape[0], 0);
  return product(a, chunks, [N, K], { ...opts, transposeB: true });
}

function product(a: Tensor, parts: readonly Tensor[], bShape: readonly number[], opts: MatmulOptions): Tensor {
  const tb = opts.transposeB ?? true;
  const b = parts[0];
  const what = `matmul(a [${a.shape}], b [${bShape}]${tb ? "ᵀ" : ""})`;
  const epilogue = [opts.bias, opts.gate, opts.residual].filter((t): t is Tensor => t !== undefined);
  expectSameDevice(what, a, ...parts, ...epilogue);
  expectDType(a, `${what} a`, "f32");
  expectDType(b, `${what} b`, ...FLOAT);
  if (a.shape.length < 2 || bShape.length < 2) throw new Error(`${what}: a and b need at least 2 dims`);
  const [M, K] = a.shape.slice(-2);
  const Ba = a.shape.slice(0, -2).reduce((x, y) => x * y, 1);
  const [bR, bC] = bShape.slice(-2);
  const [Kb, N] = tb ? [bC, bR] : [bR, bC];
  if (Kb !== K) throw new Error(`${what}: inner dims differ (a has K = ${K}, b has ${Kb})`);
  const Bb = bShape.slice(0, -2).reduce((x, y) => x * y, 1);
  const shared = bShape.length === 2 || Bb === 1;
  if (!shared && Bb !== Ba) throw new Error(`${what}: batch counts differ (a has ${Ba}, b has ${Bb})`);
  const outShape = [...a.shape.slice(0, -1), N];
  const { bias, gate, residual, activation } = opts;
  if (bias) {
    expectDType(bias, `${what} bias`, ...FLOAT);
    expectShape(bias, `${what} bias`, [N]);
  }
  if (residual) {
    expectDType(residual, `${what} residual`, "f32");
    expectShape(residual, `${what} residual`, outShape);
  }
  if (gate) {
    expectDType(gate, `${what} gate`, "f32");
    if (!residual) throw new Error(`${what}: a gate needs a residual (y = residual + gate·(a·bᵀ + bias))`);
    if (gate.size !== Ba * N || gate.shape[gate.shape.length - 1] !== N) {
      throw new Error(`${what} gate: expected [${Ba}, ${N}] (one row per batch), got [${gate.shape}]`);
    }
  }
  const dev = a.dev;
  const out = Tensor.empty(dev, outShape);
  // Unbatched b: every batch of a is just more rows.
  const [Z, rows] = shared ? [1, Ba * M] : [Ba, M];
  const vec = K > 0 && K % 4 === 0 && (tb || N % 4 === 0);
  const kernel = opts.kernel ?? matmulKernel(dev);
  expectKernel(dev, kernel);
  const tiles = opts.tiles ?? matmulTiles(dev);
  // The small-M choice looks at rows per batch item, never at the batch count, so a batch of noises gives the same
  // bits as each noise alone (a 2-D a has no batch axis: its rows are the items).
  const itemRows = a.shape.length >= 3 ? M : rows;
  const plan: Plan =
    tb && shared && itemRows <= GEMV_MAX_ROWS && Math.ceil(rows / GEMV_ROWS) <= dev.limits.maxComputeWorkgroupsPerDimension
      ? { kind: "gemv" }
      : kernel === "subgroup"
        ? { kind: "subgroup", size: subgroupSize(dev) }
        : { kind: "tiled", tiles, threads: checkTiles(tiles, dev) };
  // Unbatched b reaches the subgroup kernel as texture slices (see TEX_BYTES); a texture is always [n][k / 4].
  const W = Math.ceil(K / 4), maxTex = dev.limits.maxTextureDimension2D;
  const tex = plan.kind === "subgroup" && shared && rows >= TEX_MIN_ROWS && K > 0 && W <= maxTex;
  const variant: Variant = {
    dtype: tex ? "f32" : b.dtype,
    transposeB: tex || tb,
    vec: tex ? K % 4 === 0 : vec,
    bias: bias?.dtype ?? null,
    act: activation ?? null,
    gate: !!gate,
    residual: !!residual,
    tex,
  };
  const pipeline = dev.pipeline(shaderText(variant, plan));
  const extra = epilogue.map((t) => t.binding());
  const launch = (bRes: Resource, n: number, nOff: number) => {
    const uni = P.pack({ M: rows, N: n, K, ldo: N, nOff, bStride: shared ? 0 : N * K, gateRows: Math.max(1, M) });
    const grid: [number, number, number] =
      plan.kind === "gemv"
        ? [Math.ceil(n / (GEMV_WG / GEMV_LANES)), Math.ceil(rows / GEMV_ROWS), 1]
        : plan.kind === "subgroup"
          ? [Math.ceil(n / (4 * plan.size * SG_GROUPS)), Math.ceil(rows / SG_ROWS), Z]
          : [Math.ceil(n / tiles.BN), Math.ceil(rows / tiles.BM), Z];
    dev.run(pipeline, [out.binding(), a.binding(), bRes, ...extra], grid, uni);
  };
  const sliceRows = Math.min(maxTex, Math.max(1, Math.floor(TEX_BYTES / (16 * W))));
  let nOff = 0;
  for (const part of parts) {
    const n = tb ? part.shape[part.shape.length - 2] : N;
    if (!tex) launch(part.binding(), n, nOff);
    for (let r0 = 0; tex && r0 < n; r0 += sliceRows) {
      const count = Math.min(sliceRows, n - r0);
      const t = dev.texture(W, count);
      const uni = TEXTURE_COPY.pack({ K, W, rows: count, r0, ld: N });
      dev.run(dev.pipeline(copyText(b.dtype, tb, vec)), [part.binding(), t], [Math.ceil(W / 64), count], uni);
      launch(t, count, nOff + r0);
      dev.releaseTexture(t);
    }
    nOff += n;
  }
  return out;
}
