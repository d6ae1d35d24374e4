// JPEG decoding through jpeg-js (npm, pinned 0.4.4: pure JS, no Node APIs with `useTArray`, so browsers can use it
// too). Before jpeg-js sees the bytes we read the frame headers (SOF) ourselves and refuse an image over Pillow's
// pixel limit, so a 65535×65535 header costs nothing; jpeg-js runs strict (`tolerantDecoding: false`), so a cut or
// corrupt file is an error, as in Pillow, rather than a grey tail.
// Pixels are not bit-identical to Pillow's libjpeg-turbo (a different IDCT, and jpeg-js upsamples 4:2:0 / 4:2:2
// chroma by replication where libjpeg-turbo interpolates); tests/core/image.test.ts holds it to the bound measured on
// tests/fixtures/images (JPEG_BOUND there holds the figures).
import jpeg from "jpeg-js";
import { checkPixelLimit, type Image8, PIXEL_LIMIT } from "./png.ts";

/** Checks every frame header (SOFn) before the first scan against the pixel limit; the size of the last one, as
 * Pillow and jpeg-js take it. Walks the marker segments from SOI. */
function frameSize(bytes: Uint8Array, name: string, fail: (msg: string) => never): { width: number; height: number } {
  if (bytes[0] !== 0xff || bytes[1] !== 0xd8) fail("not a JPEG file (no SOI marker)");
  let size: { width: number; height: number } | undefined;
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
    if (m === 0xd9 || m === 0xda) break; // EOI, or the first scan: every frame header is behind us
    if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc && pos + 9 <= bytes.length) {
      size = { height: (bytes[pos + 5] << 8) | bytes[pos + 6], width: (bytes[pos + 7] << 8) | bytes[pos + 8] };
      if (size.width === 0 || size.height === 0) fail(`unsupported size ${size.width}×${size.height} (a zero height needs a DNL marker)`);
      checkPixelLimit(name, size.width, size.height);
    }
    pos += 2 + ((bytes[pos + 2] << 8) | bytes[pos + 3]);
  }
  return size ?? fail("corrupt JPEG: no frame header (SOF)");
}

/** Decodes JPEG bytes to 8-bit RGB (gray replicated); `name` (a path) prefixes every error message. */
export function decodeJpeg(bytes: Uint8Array, name = "JPEG data"): Image8 {
  const fail = (msg: string): never => {
    throw new Error(`${name}: ${msg}`);
  };
  frameSize(bytes, name, fail);
  try {
    // jpeg-js checks the limit again, on frame headers after a scan too.
    const out = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, tolerantDecoding: false, maxResolutionInMP: PIXEL_LIMIT / 1e6, maxMemoryUsageInMB: 4096 });
    return { width: out.width, height: out.height, channels: 3, data: out.data };
  } catch (e) {
    return fail(`corrupt or truncated JPEG (${String((e as Error).message ?? e).split("\n")[0]})`);
  }
}
