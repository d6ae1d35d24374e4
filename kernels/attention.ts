// Flash attention: softmax(scale · q kᵀ + mask) v without materialising the score matrix.
// Layout: q [B, Lq, Hq, D], k/v [B, Lk, Hkv, D] (a Linear output reshaped to heads), output [B, Lq, Hq, D].
// GQA: query head h reads kv head floor(h / (Hq / Hkv)).
// Design (FlashAttention-2 on plain SIMT lanes, f32 throughout):
// - A workgroup owns BQ = 4·TR query rows of one (batch, head); threads form a TR×TC grid and thread (tr, tc) owns
//   the rows tr + TR·a (a = 0..3, the components of every per-row vec4). Keys go by in tiles of BK = 32.
// - Scores S = Q Kᵀ: d is streamed in chunks of DC4 vec4s; each chunk stages the Q rows and the K tile in workgroup
//   memory (row stride made odd so the column reads of 8 neighbouring lanes hit distinct banks) and thread
//   (tr, tc) accumulates its 4 rows × RN keys (keys tc + TC·b) in registers. Re-staging Q per tile (from L2) keeps
//   workgroup memory independent of D, so one design covers D = 16 … 512.
// - Online softmax in the log2 domain: row maxima combine through workgroup memory (TC partials per row); every
//   thread of a row computes the same running max m, rescales its accumulators by exp2(m_old − m_new) and keeps a
//   partial row sum over its own keys, summed across the row once at the end.
// - O += P V: P goes to workgroup memory as vec4 over the 4 rows; V is staged in sub-tiles of BKV keys × D, and
//   thread (tr, tc) owns the output dims d4 = tc + TC·e (e < NE) of its 4 rows: 4·NE vec4 accumulators.
// - The barrier-separated loops (d chunks, V sub-tiles), the cooperative staging loops and the loops over a row's
//   TC partials take their trip counts from uniforms: unrolling them gains nothing and tripled lavapipe's compile
//   time. The compute loops (S and PV inner products) keep constant bounds.
// - Block shapes come from D (TC grows with D so the accumulators stay ≤ 64 floats per thread) and the chunk sizes
//   from the workgroup-memory limit (capped at 32 KiB, so every device runs the same reduction order).
// Mask semantics (HF's eager additive-bias path): a disallowed key (key mask 0, or j > i when causal) gets the logit
// −FLT_MAX, the most negative finite f32. A row with any allowed key thus ignores the masked ones exactly, and a row
// with none averages v uniformly over all Lk keys (all logits equal) instead of producing NaN. Causal workgroups
// stop at their diagonal unless their first row has no allowed key yet, in which case they run to Lk so that
// uniform average is exact. Key-mask values are read as 32-bit words: any nonzero value other than −0.0 attends, so
// i32, u32 and f32 masks all work without a variant.
import { Tensor, uniforms } from "../core/index.ts";
import { expectDType, expectRank, expectSameDevice, expectShape } from "./check.ts";

export interface AttentionOptions {
  /** Multiplies q·k; default 1/√D. */
  scale?: number;
  /** Query i attends keys j ≤ i (needs Lq == Lk). */
  causal?: boolean;
  /** [B, Lk] i32/u32/f32: 1 attends, 0 masks the key (padding). */
  keyMask?: Tensor;
}

export const MAX_HEAD_DIM = 512;
const BK = 32;
const WORKGROUP_BYTES_CAP = 32 * 1024;

/** Block shape for head dim D under a workgroup-memory limit (bytes). */
export interface AttentionTiles {
  D: number;
  /** D in vec4s. */
  D4: number;
  /** Thread grid TR×TC; BQ = 4·TR query rows, BK = RN·TC keys per tile. */
  TR: number;
  TC: number;
  RN: number;
  BQ: number;
  /** Output vec4s per row per thread. */
  NE: number;
  /** d-chunk of the score phase in vec4s, its chunk count and padded row stride. */
  DC4: number;
  NCH: number;
  ROW: number;
  /** Keys per V sub-tile. */
  BKV: number;
  /** vec4s of the shared staging region. */
  REGION: number;
}

export function attentionTiles(D: number, workgroupBytes: number): AttentionTiles {
  const D4 = Math.ceil(D / 4);
  const TC = D4 <= 32 ? 8 : D4 <= 64 ? 16 : 32;
  const TR = TC === 8 ? 16 : 8;
  const RN = BK / TC;
  const BQ = 4 * TR;
  const NE = Math.ceil(D4 / TC);
  // vec4 slots left for the staging region after P (BK×TR), the row partials (one per thread) and the flag.
  const budget = Math.floor(Math.min(workgroupBytes, WORKGROUP_BYTES_CAP) / 16) - BK * TR - TR * TC - 1;
  const maxRow = Math.floor(budget / (BQ + BK));
  let NCH = 1;
  while ((Math.ceil(D4 / NCH) | 1) > maxRow && NCH < D4) NCH++;
  const DC4 = Math.ceil(D4 / NCH);
  const ROW = DC4 | 1;
  let BKV = BK;
  while (BKV > 1 && BKV * D4 > budget) BKV /= 2;
  if (ROW > maxRow || BKV * D4 > budget) {
    throw new Error(`flashAttention: head dim ${D} does not fit ${workgroupBytes} bytes of workgroup memory`);
  }
  return { D, D4, TR, TC, RN, BQ, NE, DC4, NCH, ROW, BKV, REGION: Math.max((BQ + BK) * ROW, BKV * D4) };
}

const rows = [0, 1, 2, 3];
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Loader `fn ld_<name>(row, d4) -> vec4f` for row `row` (flat over B·L·H) of a [.., D] buffer, zero past D. */
function loader(name: string, D: number): string {
  if (D % 4 === 0) return `fn ld_${name}(row: u32, d4: u32) -> vec4f { return ${name}[row * ${D / 4}u + d4]; }`;
  return `fn ld_${name}(row: u32, d4: u32) -> vec4f {
  var r = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) { if (d4 * 4u + c < ${D}u) { r[c] = ${name}[row * ${D}u + d4 * 4u + c]; } }
  return r;
}`;
}

const wgslCache = new Map<string, string>();

const P = uniforms("attention", {
  Lq: "u32", Lk: "u32", Hq: "u32", Hkv: "u32", group: "u32", causal: "u32", hasMask: "u32", scale: "f32",
  dEnd: "u32", qkStage: "u32", vStage: "u32", bk: "u32", tc: "u32",
});

function attentionWgsl(t: AttentionTiles): string {
  const key = JSON.stringify(t);
  const hit = wgslCache.get(key);
  if (hit) return hit;
  const { D, D4, TR, TC, RN, BQ, NE, DC4, NCH, ROW, BKV, REGION } = t;
  const T = TR * TC;
  const vec = D % 4 === 0;
  const elem = vec ? "vec4f" : "f32";
  const cols = range(RN);
  const dims = range(NE);
  // d4 = tc + TC·e is past D4 only for the last e when TC does not divide D4.
  const dimOk = (e: number) => ((e + 1) * TC > D4 ? `tc + ${TC * e}u < ${D4}u` : "true");
  const store = vec
    ? (e: number, a: number) => `out[row${a} * ${D4}u + tc + ${TC * e}u] = o${a}_${e} * inv[${a}];`
    : (e: number, a: number) => `{ let w = o${a}_${e} * inv[${a}];
        for (var c = 0u; c < 4u; c++) { let d = (tc + ${TC * e}u) * 4u + c; if (d < ${D}u) { out[row${a} * ${D}u + d] = w[c]; } } }`;

  const src = `
${P.wgsl}
@group(0) @binding(1) var<storage, read_write> out: array<${elem}>;
@group(0) @binding(2) var<storage, read> q: array<${elem}>;
@group(0) @binding(3) var<storage, read> k: array<${elem}>;
@group(0) @binding(4) var<storage, read> v: array<${elem}>;
@group(0) @binding(5) var<storage, read> mask: array<u32>;

const NEG = -3.4028234663852886e38f;
var<workgroup> region: array<vec4f, ${REGION}>;
var<workgroup> ps: array<vec4f, ${BK * TR}>;
var<workgroup> part: array<vec4f, ${T}>;
var<workgroup> extendFlag: u32;

${loader("q", D)}
${loader("k", D)}
${loader("v", D)}

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let q0 = wid.x * ${BQ}u;
  let h = wid.y;
  let b = wid.z;
  let hk = h / u.group;
  let tr = lid / ${TC}u;
  let tc = lid % ${TC}u;
  let qi = vec4u(${rows.map((a) => `q0 + tr + ${TR * a}u`).join(", ")});
  var m = vec4f(NEG);
  var l = vec4f(0.0);
  ${rows.flatMap((a) => dims.map((e) => `var o${a}_${e} = vec4f(0.0);`)).join(" ")}
  var kEnd = u.Lk;
  if (u.causal != 0u) { kEnd = min(u.Lk, q0 + ${BQ}u); }
  var j0 = 0u;
  loop {
    if (j0 >= kEnd) {
      // Causal diagonal reached: keys further right are masked for every row, which only matters when the
      // first (least-allowed) row has no allowed key at all and so averages uniformly over all Lk keys.
      if (kEnd == u.Lk) { break; }
      if (lid == 0u) { extendFlag = select(0u, 1u, m.x == NEG); }
      if (workgroupUniformLoad(&extendFlag) == 0u) { break; }
      kEnd = u.Lk;
    }
    // ---- S = Q Kᵀ for keys j0 + tc + TC·b, d streamed in ${NCH} chunk(s) of ${DC4} vec4s
    ${cols.map((c) => `var s${c} = vec4f(0.0);`).join(" ")}
    for (var ch = 0u; ch < u.dEnd; ch += ${DC4}u) {
      workgroupBarrier();
      for (var idx = lid; idx < u.qkStage; idx += ${T}u) {
        let r = idx / ${DC4}u;
        let c4 = idx % ${DC4}u;
        let d4 = ch + c4;
        var x = vec4f(0.0);
        if (d4 < ${D4}u) {
          if (r < ${BQ}u) {
            let i = q0 + r;
            if (i < u.Lq) { x = ld_q((b * u.Lq + i) * u.Hq + h, d4); }
          } else {
            let j = j0 + r - ${BQ}u;
            if (j < u.Lk) { x = ld_k((b * u.Lk + j) * u.Hkv + hk, d4); }
          }
        }
        region[r * ${ROW}u + c4] = x;
      }
      workgroupBarrier();
      for (var c4 = 0u; c4 < ${DC4}u; c4++) {
        ${rows.map((a) => `let qa${a} = region[(tr + ${TR * a}u) * ${ROW}u + c4];`).join(" ")}
        ${cols.map((c) => `{ let kb = region[(${BQ}u + tc + ${TC * c}u) * ${ROW}u + c4];
        s${c} += vec4f(${rows.map((a) => `dot(qa${a}, kb)`).join(", ")}); }`).join("\n        ")}
      }
    }
    // ---- mask, scale (log2 domain) and the tile's row maxima
    var tmax = vec4f(NEG);
    ${cols.map((c) => `let key${c} = j0 + tc + ${TC * c}u;
    {
      // Branch-free: without a mask the binding is q and word 0 is read and ignored.
      let mk = mask[select(0u, b * u.Lk + min(key${c}, u.Lk - 1u), u.hasMask != 0u)];
      let keyOk = (key${c} < u.Lk) & ((u.hasMask == 0u) | ((mk & 0x7fffffffu) != 0u));
      let ok = vec4<bool>(keyOk) & (vec4<bool>(u.causal == 0u) | (vec4u(key${c}) <= qi));
      s${c} = select(vec4f(NEG), s${c} * u.scale, ok);
      tmax = max(tmax, s${c});
    }`).join("\n    ")}
    part[lid] = tmax;
    workgroupBarrier();
    var mNew = m;
    for (var c = 0u; c < u.tc; c++) { mNew = max(mNew, part[tr * ${TC}u + c]); }
    let alpha = exp2(m - mNew);
    m = mNew;
    l *= alpha;
    ${rows.flatMap((a) => dims.map((e) => `o${a}_${e} *= alpha[${a}];`)).join(" ")}
    ${cols.map((c) => `{
      let p = select(exp2(s${c} - mNew), vec4f(0.0), vec4<bool>(key${c} >= u.Lk));
      l += p;
      ps[(tc + ${TC * c}u) * ${TR}u + tr] = p;
    }`).join("\n    ")}
    // ---- O += P V over sub-tiles of ${BKV} keys (the first load needs no barrier: S reads ended before part's)
    for (var kv = 0u; kv < u.bk; kv += ${BKV}u) {
      if (kv > 0u) { workgroupBarrier(); }
      for (var idx = lid; idx < u.vStage; idx += ${T}u) {
        let j = j0 + kv + idx / ${D4}u;
        var x = vec4f(0.0);
        if (j < u.Lk) { x = ld_v((b * u.Lk + j) * u.Hkv + hk, idx % ${D4}u); }
        region[idx] = x;
      }
      workgroupBarrier();
      for (var jj = 0u; jj < ${BKV}u; jj++) {
        let p = ps[(kv + jj) * ${TR}u + tr];
        ${dims.map((e) => `if (${dimOk(e)}) {
          let x = region[jj * ${D4}u + tc + ${TC * e}u];
          ${rows.map((a) => `o${a}_${e} += p[${a}] * x;`).join(" ")}
        }`).join("\n        ")}
      }
    }
    j0 += ${BK}u;
  }
  // ---- row sums across the TC threads of each row, then normalise and store
  part[lid] = l;
  workgroupBarrier();
  var lt = vec4f(0.0);
  for (var c = 0u; c < u.tc; c++) { lt += part[tr * ${TC}u + c]; }
  let inv = 1.0 / lt;
  ${rows.map((a) => `let row${a} = (b * u.Lq + qi[${a}]) * u.Hq + h;`).join(" ")}
  ${rows.map((a) => `if (qi[${a}] < u.Lq) {
    ${dims.map((e) => `if (${dimOk(e)}) { ${store(e, a)} }`).join("\n    ")}
  }`).join("\n  ")}
}`;
  wgslCache.set(key, src);
  return src;
}

/** Scaled dot-product attention of q [B, Lq, Hq, D] over k, v [B, Lk, Hkv, D] → [B, Lq, Hq, D] (f32). */
export function flashAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const what = "flashAttention";
  expectSameDevice(what, q, k, v, ...(opts.keyMask ? [opts.keyMask] : []));
  for (const [t, n] of [[q, "q"], [k, "k"], [v, "v"]] as const) {
    expectRank(t, `${what} ${n}`, 4);
    expectDType(t, `${what} ${n}`, "f32");
  }
  const [B, Lq, Hq, D] = q.shape;
  const [, Lk, Hkv] = k.shape;
  expectShape(v, `${what} v (same as k)`, k.shape);
  if (k.shape[0] !== B || k.shape[3] !== D) {
    throw new Error(`${what}: k [${k.shape}] must be [${B}, Lk, Hkv, ${D}] for q [${q.shape}]`);
  }
  if (Hkv === 0 || Hq % Hkv !== 0) throw new Error(`${what}: query heads ${Hq} must be a multiple of kv heads ${Hkv}`);
  if (D < 1 || D > MAX_HEAD_DIM) throw new Error(`${what}: head dim ${D} outside 1..${MAX_HEAD_DIM}`);
  if (Lk === 0 && Lq > 0) throw new Error(`${what}: no keys (k [${k.shape}]) for ${Lq} queries`);
  if (opts.causal && Lq !== Lk) throw new Error(`${what}: causal attention needs Lq == Lk, got q [${q.shape}], k [${k.shape}]`);
  const mask = opts.keyMask;
  if (mask) {
    expectDType(mask, `${what} keyMask`, "i32", "u32", "f32");
    if (mask.size !== B * Lk || mask.shape[0] !== B) {
      throw new Error(`${what}: keyMask [${mask.shape}] must be [${B}, ${Lk}] for k [${k.shape}]`);
    }
  }
  const dev = q.dev;
  const out = Tensor.empty(dev, [B, Lq, Hq, D]);
  const t = attentionTiles(D, dev.limits.maxComputeWorkgroupStorageSize);
  const blocks = Math.ceil(Lq / t.BQ);
  if (blocks > dev.limits.maxComputeWorkgroupsPerDimension) throw new Error(`${what}: ${Lq} queries need too many workgroups`);
  const scale = (opts.scale ?? 1 / Math.sqrt(D)) * Math.LOG2E;
  const uni = P.pack({
    Lq, Lk, Hq, Hkv, group: Hq / Hkv, causal: opts.causal ? 1 : 0, hasMask: mask ? 1 : 0, scale,
    dEnd: t.NCH * t.DC4, qkStage: (t.BQ + BK) * t.DC4, vStage: t.BKV * t.D4, bk: BK, tc: t.TC,
  });
  const bindings = [out.binding(), q.binding(), k.binding(), v.binding(), (mask ?? q).binding()];
  dev.run(dev.pipeline(attentionWgsl(t)), bindings, [blocks, Hq, B], uni);
  return out;
}
