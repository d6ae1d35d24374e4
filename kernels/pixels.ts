// Pixels: conversions between float NCHW images and 8-bit RGB, one thread per output element (or word), on
// resample.ts's one-thread-per-element template.
// - packRgbBytes: a decoder output [B, 3, H, W] in about [−1, 1] → HWC RGB bytes, four per u32 word (byte e of the
//   [B, H, W, 3] array in word e / 4, lane e % 4), so a readback moves a quarter of the f32 bytes. "round" is
//   diffusers' numpy_to_pil, round-half-even(clamp(x/2 + 0.5, 0, 1)·255); "trunc" is DiffSynth's
//   vae_output_to_image, trunc(clamp((x + 1)·127.5, 0, 255)).
// - unpackRgbBytes: the inverse layout change, HWC bytes packed in u32 words → integer-valued f32 NCHW.
// - quantizePixels: a float image → the integer-valued f32 image that q(clamp((x + offset)·scale, 0, 255)) gives,
//   q truncating or rounding half to even: how a pipeline turns its float output into the uint8 image a later
//   processor sees.
// Every step is f32 arithmetic in the written order, so pixels.ref.ts reproduces the bytes exactly.
import { grid1d, Tensor, uniforms } from "../core/index.ts";
import { expectDType, expectRank } from "./check.ts";
import { FLAT_WG as WG, flatWgsl } from "./resample.ts";

/** How packRgbBytes maps [−1, 1] to 0..255 (see the file header). */
export type PixelRounding = "round" | "trunc";

/** How a float image becomes a uint8 image: q(clamp((x + offset)·scale, 0, 255)). */
export interface Quantize {
  offset: number;
  scale: number;
  rounding: "trunc" | "round";
}

const PACK = uniforms("packRgbBytes", { n: "u32", bytes: "u32", hw: "u32", trunc: "u32" }); // n: words
const PACK_WGSL = flatWgsl({
  uniforms: PACK,
  out: "u32",
  fns: `
fn pixel(e: u32) -> u32 {
  let b = e / (3u * u.hw);
  let r = e - b * 3u * u.hw;
  let p = r / 3u;
  let v = x[(b * 3u + r - p * 3u) * u.hw + p];
  if (u.trunc == 1u) { return u32(clamp((v + 1.0) * 127.5, 0.0, 255.0)); }
  return u32(round(clamp(v / 2.0 + 0.5, 0.0, 1.0) * 255.0));
}`,
  body: `  var word = 0u;
  for (var j = 0u; j < 4u; j++) {
    let e = 4u * i + j;
    if (e < u.bytes) { word = word | (pixel(e) << (8u * j)); }
  }
  out[i] = word;`,
});

const UNPACK = uniforms("unpackRgbBytes", { n: "u32", hw: "u32" });
const UNPACK_WGSL = flatWgsl({
  uniforms: UNPACK,
  input: "u32",
  body: `  let plane = i / u.hw; // b·3 + c
  let byte = ((plane / 3u) * u.hw + i % u.hw) * 3u + plane % 3u;
  out[i] = f32((x[byte >> 2u] >> ((byte & 3u) * 8u)) & 255u);`,
});

const QUANTIZE = uniforms("quantizePixels", { n: "u32", round: "u32", offset: "f32", scale: "f32" });
const QUANTIZE_WGSL = flatWgsl({
  uniforms: QUANTIZE,
  body: `  let q = clamp((x[i] + u.offset) * u.scale, 0.0, 255.0);
  out[i] = select(trunc(q), round(q), u.round == 1u);`,
});

function expectRgb(x: Tensor, what: string): [number, number, number, number] {
  expectRank(x, what, 4);
  expectDType(x, what, "f32");
  if (x.shape[1] !== 3) throw new Error(`${what}: expected f32 [B, 3, H, W], got [${x.shape}]`);
  return x.shape as [number, number, number, number];
}

/** A decoder output [B, 3, H, W] (f32) → u32 [ceil(B·H·W·3 / 4)]: its HWC RGB bytes, four per word. */
export function packRgbBytes(x: Tensor, rounding: PixelRounding): Tensor {
  const [B, , H, W] = expectRgb(x, "packRgbBytes x");
  if (rounding !== "round" && rounding !== "trunc") throw new Error(`packRgbBytes: unknown rounding "${rounding}"`);
  const n = B * H * W * 3;
  const words = Math.ceil(n / 4);
  const out = Tensor.empty(x.dev, [words], "u32");
  const uni = PACK.pack({ n: words, bytes: n, hw: H * W, trunc: rounding === "trunc" ? 1 : 0 });
  x.dev.run(x.dev.pipeline(PACK_WGSL), [out.binding(), x.binding()], grid1d(words, WG), uni);
  return out;
}

/** HWC RGB bytes of `shape` [B, 3, H, W] images packed four per u32 word → integer-valued f32 NCHW of `shape`. */
export function unpackRgbBytes(words: Tensor, shape: readonly [number, number, number, number]): Tensor {
  expectDType(words, "unpackRgbBytes words", "u32");
  const [B, C, H, W] = shape;
  if (C !== 3) throw new Error(`unpackRgbBytes: shape [${shape}] must be [B, 3, H, W]`);
  if (words.size * 4 < B * H * W * 3) throw new Error(`unpackRgbBytes: ${words.size} words hold fewer than the ${B * H * W * 3} bytes of [${shape}]`);
  const out = Tensor.empty(words.dev, shape);
  const uni = UNPACK.pack({ n: out.size, hw: H * W });
  words.dev.run(words.dev.pipeline(UNPACK_WGSL), [out.binding(), words.binding()], grid1d(out.size, WG), uni);
  return out;
}

/** A float image (any shape, f32) → the integer-valued f32 image `q` makes of it (see Quantize). */
export function quantizePixels(x: Tensor, q: Quantize): Tensor {
  expectDType(x, "quantizePixels x", "f32");
  const out = Tensor.empty(x.dev, x.shape);
  const uni = QUANTIZE.pack({ n: out.size, round: q.rounding === "round" ? 1 : 0, offset: q.offset, scale: q.scale });
  x.dev.run(x.dev.pipeline(QUANTIZE_WGSL), [out.binding(), x.binding()], grid1d(out.size, WG), uni);
  return out;
}
