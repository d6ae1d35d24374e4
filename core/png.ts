// PNG encode/decode for 8-bit images, pure TypeScript over fflate's zlib (runs in Bun, Deno, Node and browsers).
// - Decode: grayscale, gray+alpha, RGB, RGBA and palette images at bit depth 8, non-interlaced, all five row
//   filters; every chunk's CRC is checked. Anything else is an error naming the file and what is wrong (bad
//   signature, CRC mismatch, truncation, unsupported depth/colour type/interlace), never a silent wrong image.
//   Palette images expand to RGB (transparency chunks are ignored).
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
const CHANNELS: Record<number, 1 | 2 | 3 | 4> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const COLOR_TYPE: Record<number, number> = { 1: 0, 2: 4, 3: 2, 4: 6 };

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

/** Decodes PNG bytes; `name` (a path) prefixes every error message. */
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
    if (type === "IHDR") {
      if (len !== 13) fail(`IHDR has ${len} bytes, not 13`);
      header = { width: view.getUint32(pos + 8), height: view.getUint32(pos + 12), depth: data[8], colorType: data[9], interlace: data[12] };
      if (data[10] !== 0 || data[11] !== 0) fail(`unknown compression ${data[10]} / filter method ${data[11]}`);
    } else if (type === "PLTE") palette = data;
    else if (type === "IDAT") idat.push(data);
    else if (type === "IEND") ended = true;
    pos += 12 + len;
  }
  const { width, height, depth, colorType, interlace } = header!;
  const channels = CHANNELS[colorType] ?? fail(`invalid colour type ${colorType}`);
  if (depth !== 8) fail(`unsupported bit depth ${depth} (only 8-bit images are read)`);
  if (interlace !== 0) fail("interlaced (Adam7) PNG is not supported");
  if (width === 0 || height === 0) fail(`empty image ${width}×${height}`);
  if (colorType === 3 && !palette) fail("palette image without a PLTE chunk");
  if (!idat.length) fail("no IDAT chunk");
  let raw: Uint8Array;
  try {
    raw = unzlibSync(idat.length === 1 ? idat[0] : concatArrays(idat));
  } catch (e) {
    return fail(`corrupt image data (${(e as Error).message})`);
  }
  const stride = width * channels;
  if (raw.length < height * (stride + 1)) fail(`image data holds ${raw.length} bytes, ${width}×${height}×${channels} needs ${height * (stride + 1)}`);
  const px = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = px.subarray(y * stride, (y + 1) * stride);
    const up = y > 0 ? px.subarray((y - 1) * stride, y * stride) : new Uint8Array(stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? row[i - channels] : 0;
      const c = i >= channels ? up[i - channels] : 0;
      const pred = f === 0 ? 0 : f === 1 ? a : f === 2 ? up[i] : f === 3 ? (a + up[i]) >> 1 : f === 4 ? paeth(a, up[i], c) : fail(`invalid filter type ${f} in row ${y}`);
      row[i] = src[i] + pred;
    }
  }
  if (colorType !== 3) return { width, height, channels, data: px };
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < px.length; i++) {
    if (px[i] * 3 + 3 > palette!.length) fail(`palette index ${px[i]} outside the ${palette!.length / 3}-entry PLTE`);
    rgb.set(palette!.subarray(px[i] * 3, px[i] * 3 + 3), i * 3);
  }
  return { width, height, channels: 3, data: rgb };
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

/** Encodes and writes a PNG file. */
export async function writePng(path: string, img: Image8): Promise<void> {
  await (await nodeFs()).writeFile(path, encodePng(img));
}
