// JPEG decoding through jpeg-js (npm, pinned 0.4.4: pure JS, no Node APIs with `useTArray`, so browsers can use it
// too). Before jpeg-js sees the bytes we read the frame header (SOF) ourselves and refuse an image over Pillow's
// pixel limit, so a 65535×65535 header costs nothing; jpeg-js runs strict (`tolerantDecoding: false`), so a cut or
// corrupt file is an error, as in Pillow, rather than a grey tail.
// Pixels are not bit-identical to Pillow's libjpeg-turbo (a different IDCT, and jpeg-js upsamples 4:2:0 / 4:2:2
// chroma by replication where libjpeg-turbo interpolates); tests/core/image.test.ts holds it to the bound measured on
// tests/fixtures/images (the header of that test states the figures).
import jpeg from "jpeg-js";
import { checkPixelLimit, type Image8 } from "./png.ts";

/** Width and height from the first frame header (SOFn), walking the marker segments from SOI. */
function frameSize(bytes: Uint8Array, fail: (msg: string) => never): { width: number; height: number } {
  if (bytes[0] !== 0xff || bytes[1] !== 0xd8) fail("not a JPEG file (no SOI marker)");
  let pos = 2;
  while (pos + 4 <= bytes.length) {
    if (bytes[pos] !== 0xff) fail(`corrupt JPEG: no marker at byte ${pos}`);
    const m = bytes[pos + 1];
    if (m === 0xff) {
      pos++; // fill byte
      continue;
    }
    if (m === 0x01 || (m >= 0xd0 && m <= 0xd8)) {
      pos += 2; // markers without a length
      continue;
    }
    if (m === 0xd9 || m === 0xda) break; // EOI or a scan before any frame header
    if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) {
      if (pos + 9 > bytes.length) break;
      return { height: (bytes[pos + 5] << 8) | bytes[pos + 6], width: (bytes[pos + 7] << 8) | bytes[pos + 8] };
    }
    pos += 2 + ((bytes[pos + 2] << 8) | bytes[pos + 3]);
  }
  return fail("corrupt JPEG: no frame header (SOF)");
}

/** Decodes JPEG bytes to 8-bit RGB (gray replicated); `name` (a path) prefixes every error message. */
export function decodeJpeg(bytes: Uint8Array, name = "JPEG data"): Image8 {
  const fail = (msg: string): never => {
    throw new Error(`${name}: ${msg}`);
  };
  const { width, height } = frameSize(bytes, fail);
  if (width === 0 || height === 0) fail(`unsupported size ${width}×${height} (a zero height needs a DNL marker)`);
  checkPixelLimit(name, width, height);
  try {
    const out = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, tolerantDecoding: false, maxResolutionInMP: 1000, maxMemoryUsageInMB: 4096 });
    return { width: out.width, height: out.height, channels: 3, data: out.data };
  } catch (e) {
    return fail(`corrupt or truncated JPEG (${String((e as Error).message ?? e).split("\n")[0]})`);
  }
}
