// PNG decode/encode, pure TypeScript over fflate's zlib, so it runs in Bun, Deno, Node and browsers (web/ uses core/).
// - Decode: every standard PNG (bit depths 1/2/4/8/16; gray, gray+alpha, RGB, RGBA, palette; Adam7; tRNS; split
//   IDATs; ancillary chunks ignored) to 8-bit samples as Pillow's `Image.open(f).convert("RGB")` sees them: 16-bit
//   samples keep their high byte, 1/2/4-bit gray scales to 0–255 (×255, ×85, ×17), palette expands to RGB. Alpha
//   channels are kept (toRgb drops them, as convert("RGB") does); tRNS changes no RGB pixel in Pillow, so it is
//   ignored. One exception, on purpose: Pillow 9.4 opens 16-bit gray as mode "I" and convert("RGB") clips it
//   (1000 → 255, a white image); we take the high byte like every other 16-bit form (the corpus records both).
// - Why our own decoder and not a package: measured on this machine (shared/spec/png.md, 37 valid + 18 malformed
//   files), fast-png 8.0.0 fails every Adam7 image below 8 bits, skips CRCs and accepts a palette image without PLTE;
//   pngjs 7.0.0 needs Node's zlib (no browsers) and inflated a 900-MP image for 86 s. Ours decodes all 57 corpus
//   PNGs from pypng and Pillow pixel-exactly (tests/core/image.test.ts) in ~250 lines on the fflate we already ship.
// - Hostile input fails with one line naming the file, before any large allocation: IHDR is checked as soon as it
//   is read (depth/colour combination, 1 ≤ size ≤ 2³¹−1, at most 178,956,970 pixels, where Pillow raises
//   DecompressionBombError), every chunk's CRC is checked, and the inflate buffer is never larger than deflate's
//   1032:1 ratio allows for the bytes present, so a file claiming more pixels than it carries is refused without
//   allocating the claimed size. Rejected where Pillow 9.4 returns made-up pixels: a palette image without PLTE or
//   an index outside PLTE (Pillow shows index i as gray i,i,i), too little image data (Pillow pads with black), no
//   IEND. The zlib Adler-32 is not checked (fflate skips it; the chunk CRCs cover the same bytes).
// - Encode: RGB or RGBA (and gray), one IDAT, per-row adaptive filter (the minimum sum of absolute differences
//   heuristic libpng uses), zlib level 6 by default.
import { unzlibSync, zlibSync } from "fflate";
import { nodeFs, openFile } from "./platform.ts";
import { concatArrays } from "./dtype.ts";

/** Interleaved 8-bit pixels, row-major: channels 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA. */
export interface Image8 {
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
  data: Uint8Array;
}

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
/** Samples per pixel and the valid bit depths of each colour type (0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA). */
const SAMPLES: Record<number, 1 | 2 | 3 | 4> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const DEPTHS: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
/** The colour type the encoder writes for 1–4 channels. */
const COLOR_TYPE: Record<number, number> = { 1: 0, 2: 4, 3: 2, 4: 6 };
/** Adam7 passes: first column, first row, column step, row step. */
const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]];
/** Deflate's largest expansion: a 258-byte match per 2 bits. */
const MAX_INFLATE_RATIO = 1032;

/** Pillow's decompression-bomb limit (2 × Image.MAX_IMAGE_PIXELS in Pillow 9.4: it warns above half of this and
 * raises DecompressionBombError above it); larger images are refused before anything is decoded. */
export const PIXEL_LIMIT = 178_956_970;

/** Throws `name: …` for a width × height over PIXEL_LIMIT. */
export function checkPixelLimit(name: string, width: number, height: number): void {
  const n = width * height;
  if (n > PIXEL_LIMIT) {
    throw new Error(`${name}: ${width}×${height} is ${n.toLocaleString("en-US")} pixels, over the limit of 178,956,970 (Pillow's decompression-bomb limit); refused before decoding`);
  }
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (PNG/zlib polynomial) of bytes[start, end). */
export function crc32(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Decodes PNG bytes to 8-bit samples (see the header); `name` (a path) prefixes every error message. */
export function decodePng(bytes: Uint8Array, name = "PNG data"): Image8 {
  const fail = (msg: string): never => {
    throw new Error(`${name}: ${msg}`);
  };
  if (bytes.length < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) fail("not a PNG file (bad signature)");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 8;
  let header: { width: number; height: number; depth: number; colorType: number; interlace: number } | undefined;
  let palette: Uint8Array | undefined;
  const idat: Uint8Array[] = [];
  let ended = false;
  while (!ended) {
    if (pos + 8 > bytes.length) {
      fail(`truncated: ${pos === bytes.length ? "no IEND chunk" : `chunk header at byte ${pos} cut off`} (file ends at byte ${bytes.length})`);
    }
    const len = view.getUint32(pos);
    const type = String.fromCharCode(...bytes.subarray(pos + 4, pos + 8));
    if (pos + 12 + len > bytes.length) fail(`truncated: chunk ${type} at byte ${pos} needs ${len + 12} bytes, ${bytes.length - pos} left`);
    if (crc32(bytes, pos + 4, pos + 8 + len) !== view.getUint32(pos + 8 + len)) fail(`bad CRC in chunk ${type} at byte ${pos}`);
    const data = bytes.subarray(pos + 8, pos + 8 + len);
    if (!header && type !== "IHDR") fail(`first chunk is ${type}, not IHDR`);
    if (type === "IHDR" && !header) {
      if (len !== 13) fail(`IHDR has ${len} bytes, not 13`);
      header = { width: view.getUint32(pos + 8), height: view.getUint32(pos + 12), depth: data[8], colorType: data[9], interlace: data[12] };
      const { width, height, depth, colorType, interlace } = header;
      const depths = DEPTHS[colorType] ?? fail(`invalid colour type ${colorType}`);
      if (!depths.includes(depth)) fail(`bit depth ${depth} is invalid for colour type ${colorType}`);
      if (data[10] !== 0 || data[11] !== 0) fail(`unknown compression ${data[10]} / filter method ${data[11]}`);
      if (interlace > 1) fail(`unknown interlace method ${interlace}`);
      if (!(width >= 1 && height >= 1 && width < 2 ** 31 && height < 2 ** 31)) fail(`invalid size ${width}×${height} (PNG allows 1 to 2³¹−1)`);
      checkPixelLimit(name, width, height);
    } else if (type === "PLTE") {
      if (len === 0 || len > 768 || len % 3) fail(`PLTE has ${len} bytes (want 3 to 768, a multiple of 3)`);
      palette = data;
    } else if (type === "IDAT") {
      if (header!.colorType === 3 && !palette) fail("palette image without a PLTE chunk before IDAT");
      idat.push(data);
    } else if (type === "IEND") ended = true;
    pos += 12 + len;
  }
  if (!idat.length) fail("no IDAT chunk");
  const { width, height, depth, colorType, interlace } = header!;
  const samples = SAMPLES[colorType];
  const bits = samples * depth;
  const bpp = Math.max(1, bits >> 3);
  const passes = (interlace ? ADAM7 : [[0, 0, 1, 1]])
    .map(([x0, y0, dx, dy]) => ({ x0, y0, dx, dy, w: Math.ceil((width - x0) / dx), h: Math.ceil((height - y0) / dy) }))
    .filter((p) => p.w > 0 && p.h > 0)
    .map((p) => ({ ...p, rowBytes: Math.ceil((p.w * bits) / 8) }));
  const need = passes.reduce((s, p) => s + p.h * (p.rowBytes + 1), 0);
  const zdata = idat.length === 1 ? idat[0] : concatArrays(idat);
  let raw: Uint8Array;
  try {
    raw = unzlibSync(zdata, { out: new Uint8Array(Math.min(need, zdata.length * MAX_INFLATE_RATIO + 1024)) });
  } catch (e) {
    return fail(`corrupt image data (${(e as Error).message})`);
  }
  const form = `${width}×${height}, ${depth}-bit colour type ${colorType}${interlace ? ", Adam7" : ""}`;
  if (raw.length < need) fail(`image data holds ${raw.length} bytes, ${form} needs ${need}`);

  const channels = colorType === 3 ? 3 : samples;
  const px = new Uint8Array(width * height * channels);
  const mask = (1 << depth) - 1;
  const scale = colorType === 3 || depth >= 8 ? 1 : 255 / mask; // 1/2/4-bit gray: ×255, ×85, ×17
  let row = 0;
  for (const { x0, y0, dx, dy, w, h, rowBytes } of passes) {
    for (let y = 0; y < h; y++, row += rowBytes + 1) {
      if (!unfilter(raw, row, rowBytes, bpp, y > 0 ? row - rowBytes : -1)) fail(`invalid filter type ${raw[row]} in row ${y}${interlace ? ` of Adam7 pass ${ADAM7.findIndex((a) => a[0] === x0 && a[1] === y0) + 1}` : ""}`);
      const s = row + 1;
      let o = ((y0 + y * dy) * width + x0) * channels;
      if (depth === 8 && dx === 1 && colorType !== 3) {
        px.set(raw.subarray(s, s + rowBytes), o); // the common case: the row is the pixels
        continue;
      }
      for (let x = 0, j = 0; x < w; x++, o += dx * channels) {
        for (let k = 0; k < samples; k++, j++) {
          const v = depth === 8 ? raw[s + j] : depth === 16 ? raw[s + 2 * j] : (raw[s + ((j * depth) >> 3)] >> (8 - depth - ((j * depth) & 7))) & mask;
          if (colorType !== 3) px[o + k] = v * scale;
          else if (v * 3 < palette!.length) px.set(palette!.subarray(v * 3, v * 3 + 3), o);
          else fail(`palette index ${v} outside the ${palette!.length / 3}-entry PLTE`);
        }
      }
    }
  }
  return { width, height, channels, data: px };
}

/** Undoes the row filter in place: raw[row] is the filter type, the row's n bytes follow, `up` is the row above's
 * first byte (−1 for none, when "up" reads as zeros). False for an unknown filter type. */
function unfilter(raw: Uint8Array, row: number, n: number, bpp: number, up: number): boolean {
  const s = row + 1;
  const f = raw[row];
  if (f === 0 || (f === 2 && up < 0)) return true;
  if (f === 1 || (f === 4 && up < 0)) {
    for (let i = s + bpp; i < s + n; i++) raw[i] += raw[i - bpp];
  } else if (f === 2) {
    for (let i = 0; i < n; i++) raw[s + i] += raw[up + i];
  } else if (f === 3) {
    for (let i = 0; i < n; i++) raw[s + i] += ((i >= bpp ? raw[s + i - bpp] : 0) + (up >= 0 ? raw[up + i] : 0)) >> 1;
  } else if (f === 4) {
    for (let i = 0; i < bpp; i++) raw[s + i] += raw[up + i];
    for (let i = bpp; i < n; i++) {
      const a = raw[s + i - bpp], b = raw[up + i], c = raw[up + i - bpp];
      const pa = Math.abs(b - c), pb = Math.abs(a - c), pc = Math.abs(a + b - 2 * c);
      raw[s + i] += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
  } else return false;
  return true;
}

/** Encodes an 8-bit image as PNG. */
export function encodePng(img: Image8, opts: { level?: 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 } = {}): Uint8Array {
  const { width, height, channels, data } = img;
  if (!(width > 0 && height > 0 && Number.isInteger(width) && Number.isInteger(height))) throw new Error(`encodePng: bad size ${width}×${height}`);
  if (!(channels in COLOR_TYPE)) throw new Error(`encodePng: ${channels} channels (want 1–4)`);
  const stride = width * channels;
  if (data.length !== height * stride) throw new Error(`encodePng: ${data.length} bytes is not ${width}×${height}×${channels}`);
  const raw = new Uint8Array(height * (stride + 1));
  const cand = Array.from({ length: 5 }, () => new Uint8Array(stride));
  const zero = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const row = data.subarray(y * stride, (y + 1) * stride);
    const up = y > 0 ? data.subarray((y - 1) * stride, y * stride) : zero;
    let best = 0, bestCost = Infinity;
    for (let f = 0; f < 5; f++) {
      const out = cand[f];
      let cost = 0;
      for (let i = 0; i < stride; i++) {
        const a = i >= channels ? row[i - channels] : 0;
        const c = i >= channels ? up[i - channels] : 0;
        const pred = f === 0 ? 0 : f === 1 ? a : f === 2 ? up[i] : f === 3 ? (a + up[i]) >> 1 : paeth(a, up[i], c);
        const v = (out[i] = (row[i] - pred) & 0xff);
        cost += v < 128 ? v : 256 - v;
      }
      if (cost < bestCost) [best, bestCost] = [f, cost];
    }
    raw[y * (stride + 1)] = best;
    raw.set(cand[best], y * (stride + 1) + 1);
  }
  const ihdr = new Uint8Array(13);
  const hv = new DataView(ihdr.buffer);
  hv.setUint32(0, width);
  hv.setUint32(4, height);
  ihdr.set([8, COLOR_TYPE[channels], 0, 0, 0], 8);
  const chunks = [chunk("IHDR", ihdr), chunk("IDAT", zlibSync(raw, { level: opts.level ?? 6 })), chunk("IEND", new Uint8Array(0))];
  return concatArrays([Uint8Array.from(SIGNATURE), ...chunks]);
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(data.length + 12);
  const v = new DataView(out.buffer);
  v.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  v.setUint32(8 + data.length, crc32(out, 4, 8 + data.length));
  return out;
}

/** The image as RGB (gray replicated, alpha dropped), as PIL's convert("RGB") does. */
export function toRgb(img: Image8): Image8 {
  if (img.channels === 3) return img;
  const n = img.width * img.height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const s = i * img.channels;
    if (img.channels <= 2) out.fill(img.data[s], i * 3, i * 3 + 3);
    else out.set(img.data.subarray(s, s + 3), i * 3);
  }
  return { width: img.width, height: img.height, channels: 3, data: out };
}

/** Reads and decodes a PNG file (or URL). */
export async function readPng(path: string): Promise<Image8> {
  const f = openFile(path);
  return decodePng(await f.read(0, await f.size()), path);
}

/** Encodes and writes a PNG file through a temp name of its own and a rename, so a crash or a full disk never
 * leaves a half-written PNG under `path`. */
export async function writePng(path: string, img: Image8): Promise<void> {
  const fs = await nodeFs();
  const tmp = `${path}.${Date.now()}-${Math.random().toString(36).slice(2)}.tmp`;
  try {
    await fs.writeFile(tmp, encodePng(img));
    await fs.rename(tmp, path);
  } finally {
    await fs.rm(tmp, { force: true });
  }
}
