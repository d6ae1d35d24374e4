// Softmax over the last dim, numerically stable, in two reads of the row: each thread keeps an online
// (running max, sum of exp(x - max)) pair, rescaling the sum when the max grows; the segment tree combines pairs
// the same way; the second pass writes exp(x - max) / sum. Rows of any length (1 … 100000+) use the shared
// row layout of reduce.ts: one workgroup per long row, several short rows per workgroup.
// Rows of a multiple of 4 load and store vec4f (a quarter of the loads and bounds checks, one max test per four
// elements), with fewer, busier threads per row (fewer barrier steps); other rows take the scalar variant.
import { Tensor, uniforms } from "../core/index.ts";
import { expectDType, rowsCols } from "./check.ts";
import { ROW_FIELDS, rowGrid, rowLayout, rowValues, vec4RowLayout, wgslRowMain, wgslSegReduce } from "./reduce.ts";

const P = uniforms("softmax", ROW_FIELDS);

// The running max starts at the lowest finite f32, not -inf, so empty partners combine to 0 instead of
// 0 · exp(-inf + inf) = NaN; -inf inputs (masked scores) then contribute exp(-inf) = 0.
const wgsl = (T: "f32" | "vec4f") => `
${P.wgsl}
@group(0) @binding(1) var<storage, read_write> out: array<${T}>;
@group(0) @binding(2) var<storage, read> x: array<${T}>;
${wgslSegReduce("ms", "vec2f", "let m = max(a.x, b.x); return vec2f(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));")}
${wgslRowMain(`
  var ms = vec2f(-3.4028234663852886e38, 0.0);
  for (var i = lane; i < n; i += seg) {
    let v = x[base + i];
    let m = ${T === "f32" ? "v" : "max(max(v.x, v.y), max(v.z, v.w))"};
    if (m > ms.x) { ms = vec2f(m, ms.y * exp(ms.x - m)); }
    ms.y += ${T === "f32" ? "exp(v - ms.x)" : "dot(exp(v - ms.x), vec4f(1.0))"};
  }
  ms = reduce_ms(tid, seg, ms);
  let inv = 1.0 / ms.y;
  for (var i = lane; i < n; i += seg) { out[base + i] = exp(x[base + i] - ms.x) * inv; }`)}`;
const WGSL = { f32: wgsl("f32"), vec4f: wgsl("vec4f") };

/** softmax(x) over the last dim; same shape. */
export function softmax(x: Tensor): Tensor {
  expectDType(x, "softmax x", "f32");
  const [rows, len] = rowsCols(x);
  const out = Tensor.empty(x.dev, x.shape);
  const v4 = len % 4 === 0;
  const l = v4 ? vec4RowLayout(x.dev, rows, len) : rowLayout(rows, len);
  if (out.size) x.dev.run(x.dev.pipeline(WGSL[v4 ? "vec4f" : "f32"]), [out.binding(), x.binding()], rowGrid(l), P.pack(rowValues(l)));
  return out;
}
