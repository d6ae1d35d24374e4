// Image files by content, not by extension: PNG (core/png.ts) or JPEG (core/jpeg.ts), told apart by their magic
// bytes, decoded to 8-bit samples. Both refuse images over Pillow's 178,956,970 pixels before decoding.
import { decodeJpeg } from "./jpeg.ts";
import { openFile } from "./platform.ts";
import { decodePng, type Image8 } from "./png.ts";

/** Decodes PNG or JPEG bytes; `name` (a path) prefixes every error message. */
export function decodeImage(bytes: Uint8Array, name = "image data"): Image8 {
  if (bytes[0] === 0x89 && bytes[1] === 0x50) return decodePng(bytes, name);
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return decodeJpeg(bytes, name);
  throw new Error(`${name}: not a PNG or JPEG file (starts with ${Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join(" ") || "nothing"})`);
}

/** Reads and decodes a PNG or JPEG file (or URL). */
export async function readImage(path: string): Promise<Image8> {
  const f = openFile(path);
  return decodeImage(await f.read(0, await f.size()), path);
}
