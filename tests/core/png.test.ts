// PNG: round trips for every channel count and odd sizes, decoding of each of the five row filters and of palette
// images from hand-built files, and one clear error per kind of bad input (signature, CRC, truncation, depth,
// interlace method, corrupt zlib), each naming the file, on damaged copies of a Pillow-written file. Files from independent encoders: tests/core/image.test.ts.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { zlibSync } from "fflate";
import { crc32, decodePng, encodePng, type Image8, readPng, toRgb, writePng } from "../../core/png.ts";
import { concatArrays } from "../../core/dtype.ts";
import { fileUrlToPath } from "../../core/platform.ts";
import { rand } from "../util.ts";

function image(width: number, height: number, channels: Image8["channels"], seed: number, smooth = false): Image8 {
  const n = width * height * channels;
  const r = rand(n, seed, 0, 256);
  const data = smooth ? Uint8Array.from({ length: n }, (_, i) => (Math.floor(i / channels) % width) * 3 + (i % channels) * 40 + (r[i] > 250 ? 1 : 0)) : Uint8Array.from(r, Math.floor);
  return { width, height, channels, data };
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(data.length + 12);
  const v = new DataView(out.buffer);
  v.setUint32(0, data.length);
  out.set([...type].map((c) => c.charCodeAt(0)), 4);
  out.set(data, 8);
  v.setUint32(8 + data.length, crc32(out, 4, 8 + data.length));
  return out;
}

/** A PNG whose rows are filtered with the given filter types in turn (the reference filter maths, written out). */
function handMade(img: Image8, colorType: number, filters: number[], extra: Uint8Array[] = []): Uint8Array {
  const { width, height, channels: bpp, data } = img;
  const stride = width * bpp;
  const raw = new Uint8Array(height * (stride + 1));
  for (let y = 0; y < height; y++) {
    const f = filters[y % filters.length];
    raw[y * (stride + 1)] = f;
    for (let i = 0; i < stride; i++) {
      const x = data[y * stride + i];
      const a = i >= bpp ? data[y * stride + i - bpp] : 0;
      const b = y > 0 ? data[(y - 1) * stride + i] : 0;
      const c = i >= bpp && y > 0 ? data[(y - 1) * stride + i - bpp] : 0;
      const p = a + b - c;
      const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
      const pred = [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][f];
      raw[y * (stride + 1) + 1 + i] = (x - pred) & 255;
    }
  }
  const ihdr = new Uint8Array(13);
  new DataView(ihdr.buffer).setUint32(0, width);
  new DataView(ihdr.buffer).setUint32(4, height);
  ihdr.set([8, colorType, 0, 0, 0], 8);
  const z = zlibSync(raw);
  const parts = [Uint8Array.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr), ...extra, chunk("IDAT", z.subarray(0, 10)), chunk("IDAT", z.subarray(10)), chunk("IEND", new Uint8Array(0))];
  return concatArrays(parts);
}

/** Rewrites IHDR byte `k` (0-based within its data) and fixes the CRC. */
function patchHeader(png: Uint8Array, k: number, value: number): Uint8Array {
  const out = png.slice();
  out[16 + k] = value;
  new DataView(out.buffer).setUint32(29, crc32(out, 12, 29));
  return out;
}

/** A file of the independent corpus (tests/fixtures/images, written by Pillow and pypng). */
const corpusFile = (name: string): Uint8Array => new Uint8Array(readFileSync(fileUrlToPath(new URL(`../fixtures/images/${name}`, import.meta.url))));

describe("png", () => {
  test("round trip: gray, gray+alpha, RGB, RGBA, odd sizes, noise and smooth content", () => {
    for (const [w, h] of [[1, 1], [7, 5], [64, 33], [3, 200]]) {
      for (const ch of [1, 2, 3, 4] as const) {
        for (const smooth of [false, true]) {
          const img = image(w, h, ch, w * 31 + h * 7 + ch, smooth);
          const back = decodePng(encodePng(img));
          expect([back.width, back.height, back.channels]).toEqual([w, h, ch]);
          expect(back.data).toEqual(img.data);
        }
      }
    }
  });

  test("smooth images compress (adaptive filters) and level 0 still decodes", () => {
    const img = image(256, 64, 3, 5, true);
    const png = encodePng(img);
    expect(png.length).toBeLessThan(img.data.length / 10);
    expect(decodePng(encodePng(img, { level: 0 })).data).toEqual(img.data);
  });

  test("decodes each of the five filter types, split IDAT chunks and ancillary chunks", () => {
    for (const ch of [1, 3, 4] as const) {
      const img = image(13, 10, ch, 40 + ch);
      for (const filters of [[0], [1], [2], [3], [4], [4, 3, 2, 1, 0]]) {
        const text = chunk("tEXt", new TextEncoder().encode("Comment\0hello"));
        const back = decodePng(handMade(img, { 1: 0, 3: 2, 4: 6 }[ch]!, filters, [text]));
        expect(back.data).toEqual(img.data);
      }
    }
  });

  test("palette images expand to RGB; toRgb matches PIL's convert('RGB')", () => {
    const idx = { width: 5, height: 3, channels: 1 as const, data: Uint8Array.from({ length: 15 }, (_, i) => i % 4) };
    const plte = Uint8Array.from([10, 20, 30, 40, 50, 60, 70, 80, 90, 200, 210, 220]);
    const img = decodePng(handMade(idx, 3, [1, 4], [chunk("PLTE", plte)]));
    expect(img.channels).toBe(3);
    expect(Array.from(img.data.subarray(0, 9))).toEqual([10, 20, 30, 40, 50, 60, 70, 80, 90]);
    expect(() => decodePng(handMade(idx, 3, [0], [chunk("PLTE", plte.subarray(0, 6))]), "p.png")).toThrow(/p\.png: palette index 2 outside the 2-entry PLTE/);
    const gray = { width: 2, height: 1, channels: 2 as const, data: Uint8Array.from([7, 255, 9, 0]) };
    expect(Array.from(toRgb(gray).data)).toEqual([7, 7, 7, 9, 9, 9]);
    const rgba = { width: 1, height: 1, channels: 4 as const, data: Uint8Array.from([1, 2, 3, 4]) };
    expect(Array.from(toRgb(rgba).data)).toEqual([1, 2, 3]);
  });

  test("bad input: one clear error naming the file", () => {
    // Damaged copies of a file Pillow wrote (19×13 RGB, IHDR then one IDAT at byte 33), never of our encoder's output.
    const png = corpusFile("pil_rgb8.png");
    expect(() => decodePng(new TextEncoder().encode("GIF89a......"), "a.png")).toThrow(/^a\.png: not a PNG file \(bad signature\)$/);
    expect(() => decodePng(new Uint8Array(0), "empty.png")).toThrow(/empty\.png: not a PNG/);
    const flipped = png.slice();
    flipped[45] ^= 0x10; // inside the IDAT data
    expect(() => decodePng(flipped, "b.png")).toThrow(/^b\.png: bad CRC in chunk IDAT at byte 33$/);
    expect(() => decodePng(png.subarray(0, 45), "c.png")).toThrow(/^c\.png: truncated: chunk IDAT at byte 33 needs \d+ bytes, 12 left$/);
    expect(() => decodePng(png.subarray(0, 40), "c.png")).toThrow(/^c\.png: truncated: chunk header at byte 33 cut off \(file ends at byte 40\)$/);
    expect(() => decodePng(png.subarray(0, png.length - 12), "d.png")).toThrow(/d\.png: truncated: no IEND chunk/);
    expect(() => decodePng(patchHeader(png, 8, 3), "e.png")).toThrow(/^e\.png: bit depth 3 is invalid for colour type 2$/);
    expect(() => decodePng(patchHeader(png, 12, 2), "f.png")).toThrow(/^f\.png: unknown interlace method 2$/);
    expect(() => decodePng(patchHeader(png, 9, 5), "g.png")).toThrow(/g\.png: invalid colour type 5/);
    // A valid CRC over garbage zlib data.
    const ihdr = png.subarray(8, 33);
    const junk = chunk("IDAT", Uint8Array.from([0x78, 0x9c, 1, 2, 3, 4, 5]));
    const bad = new Uint8Array([...png.subarray(0, 8), ...ihdr, ...junk, ...chunk("IEND", new Uint8Array(0))]);
    expect(() => decodePng(bad, "h.png")).toThrow(/^h\.png: corrupt image data/);
    // Too little pixel data for the declared size: the image data of pypng's 3×2 file under the 19×13 header.
    const small = corpusFile("pypng_rgb8_3x2_adam7.png");
    const lying = new Uint8Array([...png.subarray(0, 8), ...ihdr, ...small.subarray(33)]);
    expect(() => decodePng(lying, "i.png")).toThrow(/^i\.png: image data holds \d+ bytes, 19×13, 8-bit colour type 2 needs 754$/);
  });

  test("writePng goes through a temp name: the file reads back, no temp file stays, a failed write leaves nothing", async () => {
    const { mkdtemp, readdir, rm } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const dir = await mkdtemp(`${tmpdir()}/flux2ts-png-`);
    try {
      const img = image(7, 5, 3, 9);
      await writePng(`${dir}/a.png`, img);
      expect((await readPng(`${dir}/a.png`)).data).toEqual(img.data);
      await expect(writePng(`${dir}/b.png`, { ...img, width: 8 })).rejects.toThrow(/encodePng: 105 bytes is not 8×5×3/);
      expect(await readdir(dir)).toEqual(["a.png"]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("encode rejects inconsistent images", () => {
    expect(() => encodePng({ width: 2, height: 2, channels: 3, data: new Uint8Array(11) })).toThrow(/11 bytes is not 2×2×3/);
    expect(() => encodePng({ width: 0, height: 2, channels: 3, data: new Uint8Array(0) })).toThrow(/bad size 0×2/);
  });
});
