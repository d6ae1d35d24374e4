// Image files by content, not by extension: PNG (core/png.ts) or JPEG (core/jpeg.ts), told apart by their magic
// bytes, decoded to 8-bit samples. Both refuse images over Pillow's 178,956,970 pixels before decoding. readImage
// looks at the first bytes before reading the rest, so a large file of another kind costs one short read.
import { decodeJpeg } from "./jpeg.ts";
import { openFile } from "./platform.ts";
import { decodePng, type Image8 } from "./png.ts";

function decoderFor(head: Uint8Array, name: string): (bytes: Uint8Array, name: string) => Image8 {
  if (head[0] === 0x89 && head[1] === 0x50 && head[2] === 0x4e && head[3] === 0x47) return decodePng;
  if (head[0] === 0xff && head[1] === 0xd8) return decodeJpeg;
  const start = Array.from(head.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join(" ") || "nothing";
  throw new Error(`${name}: not a PNG or JPEG file (starts with ${start})`);
}

/** Decodes PNG or JPEG bytes; `name` (a path) prefixes every error message. */
export function decodeImage(bytes: Uint8Array, name = "image data"): Image8 {
  return decoderFor(bytes, name)(bytes, name);
}

/** Reads and decodes a PNG or JPEG file (or URL); every error, I/O included, is one line starting with the path. */
export async function readImage(path: string): Promise<Image8> {
  let decode: (bytes: Uint8Array, name: string) => Image8, bytes: Uint8Array;
  try {
    const f = openFile(path);
    const size = await f.size();
    decode = decoderFor(await f.read(0, Math.min(size, 4)), path);
    bytes = await f.read(0, size);
  } catch (e) {
    const msg = String((e as Error).message ?? e).split("\n")[0];
    throw new Error(msg.startsWith(`${path}: `) ? msg : `${path}: cannot read (${msg})`);
  }
  return decode(bytes, path);
}
