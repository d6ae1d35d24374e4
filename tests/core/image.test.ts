// Image decoding against Pillow on tests/fixtures/images, written by make_corpus.py with pypng and Pillow (never by
// our encoder): all 57 PNGs pixel-exact to Pillow's convert("RGB") (16-bit gray: Pillow's samples >> 8, see
// core/png.ts), JPEGs within the bound measured against Pillow's libjpeg-turbo, every hostile file one error line
// that names the file; and our encoder's PNGs read back by Pillow itself, when /usr/bin/python3 has it.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { decodeImage, readImage } from "../../core/image.ts";
import { encodePng, type Image8, toRgb } from "../../core/png.ts";

const DIR = fileURLToPath(new URL("../fixtures/images/", import.meta.url));
type Entry = { file: string; form: string; width: number; height: number; rgb: string };
const corpus = JSON.parse(readFileSync(join(DIR, "corpus.json"), "utf8")) as { valid: Entry[]; jpeg: Entry[]; hostile: { file: string }[] };
const b64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

/** jpeg-js 0.4.4 vs Pillow 9.4 (libjpeg-turbo) per file, as measured: [max |difference|, mean |difference|].
 * 4:4:4, gray and CMYK differ by IDCT rounding only; 4:2:0 and 4:2:2 also by chroma upsampling (replicated vs
 * interpolated), which is most of the mean. */
const JPEG_BOUND: Record<string, [number, number]> = {
  "pil_444.jpg": [3, 0.54],
  "pil_444_optimized.jpg": [3, 0.55],
  "pil_gray.jpg": [1, 0.07],
  "pil_cmyk.jpg": [1, 0.07],
  "pil_420.jpg": [12, 3.63],
  "pil_progressive.jpg": [12, 3.62],
  "pil_422_odd.jpg": [10, 2.26],
};

/** The one-line error each hostile file must give, after "<path>: ". */
const HOSTILE: Record<string, RegExp> = {
  "bad_crc_idat.png": /^bad CRC in chunk IDAT at byte 33$/,
  "bad_crc_ihdr.png": /^bad CRC in chunk IHDR at byte 8$/,
  "corrupt_deflate.png": /^corrupt image data \(.+\)$/,
  "truncated_idat.png": /^truncated: chunk IDAT at byte 33 needs 777 bytes, 44 left$/,
  "truncated_no_iend.png": /^truncated: no IEND chunk \(file ends at byte 810\)$/,
  "short_image_data.png": /^image data holds 290 bytes, 19×13, 8-bit colour type 2 needs 754$/,
  "bad_filter.png": /^invalid filter type 5 in row 3$/,
  "missing_plte.png": /^palette image without a PLTE chunk before IDAT$/,
  "palette_index_out_of_range.png": /^palette index 2 outside the 2-entry PLTE$/,
  "bomb_179mp.png": /^13400×13400 is 179,560,000 pixels, over the limit of 178,956,970 \(Pillow's decompression-bomb limit\); refused before decoding$/,
  "dims_2e31.png": /^invalid size 2147483648×2147483648 \(PNG allows 1 to 2³¹−1\)$/,
  "claims_100mp_carries_1kb.png": /^image data holds 900030 bytes, 10000×10000, 8-bit colour type 2 needs 300010000$/,
  "zero_width.png": /^invalid size 0×13 /,
  "bad_depth_for_colour.png": /^bit depth 4 is invalid for colour type 2$/,
  "unknown_interlace.png": /^unknown interlace method 2$/,
  "not_png.png": /^not a PNG or JPEG file \(starts with 47 49 46 38\)$/,
  "idat_before_ihdr.png": /^first chunk is IDAT, not IHDR$/,
  "truncated.jpg": /^corrupt or truncated JPEG \(.+\)$/,
  "bomb_60000.jpg": /^60000×60000 is 3,600,000,000 pixels, over the limit of 178,956,970 /,
  "two_sof.jpg": /^20000×20000 is 400,000,000 pixels, over the limit of 178,956,970 /,
  "not_jpeg.jpg": /^corrupt JPEG: no marker at byte 4$/,
};

async function rgbOf(file: string): Promise<Image8> {
  return toRgb(await readImage(join(DIR, file)));
}

describe("image corpus", () => {
  test("every PNG form decodes to Pillow's pixels exactly", async () => {
    expect(corpus.valid.length).toBe(57);
    for (const e of corpus.valid) {
      const img = await rgbOf(e.file);
      const want = b64(e.rgb);
      const at = img.data.findIndex((v, i) => v !== want[i]);
      expect(`${e.file} (${e.form}): ${img.width}×${img.height}, first difference at ${at}`).toBe(`${e.file} (${e.form}): ${e.width}×${e.height}, first difference at -1`);
      expect(img.data.length).toBe(want.length);
    }
  });

  test("JPEG (4:4:4, 4:2:0, 4:2:2 odd size, gray, progressive, optimized Huffman, CMYK) within the measured bound of Pillow's", async () => {
    expect(corpus.jpeg.map((e) => e.file).sort()).toEqual(Object.keys(JPEG_BOUND).sort());
    for (const e of corpus.jpeg) {
      const img = await rgbOf(e.file);
      const want = b64(e.rgb);
      expect([e.file, img.width, img.height, img.data.length]).toEqual([e.file, e.width, e.height, want.length]);
      let max = 0, sum = 0;
      for (let i = 0; i < want.length; i++) {
        const d = Math.abs(img.data[i] - want[i]);
        max = Math.max(max, d);
        sum += d;
      }
      const [maxBound, meanBound] = JPEG_BOUND[e.file];
      expect({ file: e.file, maxOk: max <= maxBound, meanOk: sum / want.length <= meanBound }).toEqual({ file: e.file, maxOk: true, meanOk: true });
    }
  });

  test("hostile files: one line naming the file", async () => {
    expect(corpus.hostile.map((h) => h.file).sort()).toEqual(Object.keys(HOSTILE).sort());
    for (const [file, why] of Object.entries(HOSTILE)) {
      const path = join(DIR, file);
      const msg = await readImage(path).then(() => "decoded", (e: Error) => e.message);
      expect(msg.startsWith(`${path}: `) && !msg.includes("\n") ? msg.slice(path.length + 2) : msg).toMatch(why);
    }
  });

  test("files claiming more pixels than they carry are refused without allocating the claimed size", () => {
    // Every byte array the decoder makes goes through the global Uint8Array (fflate inflates into ours): a
    // counting subclass stands in for it while each file is refused.
    const Real = globalThis.Uint8Array;
    const g = globalThis as { Uint8Array: unknown };
    // Claimed: 300 MB of RGB rows, 22 MB of 1-bit rows (and 539 MB as RGB), 10.8 GB and 1.2 GB of RGB.
    for (const file of ["claims_100mp_carries_1kb.png", "bomb_179mp.png", "bomb_60000.jpg", "two_sof.jpg"]) {
      const bytes = readFileSync(join(DIR, file));
      let largest = 0;
      g.Uint8Array = class extends Real {
        constructor(...args: ConstructorParameters<typeof Uint8Array>) {
          super(...args);
          largest = Math.max(largest, this.length);
        }
      };
      try {
        expect(() => decodeImage(bytes, file)).toThrow(new RegExp(`^${file}: `));
      } finally {
        g.Uint8Array = Real;
      }
      expect({ file, largestOk: largest < 2 ** 20 }).toEqual({ file, largestOk: true });
    }
  });

  test("decodeImage tells PNG from JPEG by content and names an unknown format", () => {
    const jpg = readFileSync(join(DIR, "pil_gray.jpg"));
    expect(decodeImage(jpg, "renamed.png").width).toBe(48);
    expect(() => decodeImage(new Uint8Array(0), "e.bin")).toThrow(/^e\.bin: not a PNG or JPEG file \(starts with nothing\)$/);
  });
});

const PYTHON = "/usr/bin/python3";
const hasPillow = spawnSync(PYTHON, ["-c", "import PIL"]).status === 0;

// Pillow reads each of our PNGs back and re-saves the same pixels at its own level 6, for the size comparison.
const PILLOW_CHECK = `
import io, json, os, sys
from PIL import Image
out = []
for f in sys.argv[1:]:
    im = Image.open(f)
    b = io.BytesIO()
    im.save(b, format="PNG", compress_level=6)
    out.append({"same": im.tobytes() == open(f + ".raw", "rb").read(), "ours": os.path.getsize(f), "pillow": len(b.getvalue())})
print(json.dumps(out))
`;

describe("encoder", () => {
  test.skipIf(!hasPillow)("Pillow decodes our PNGs to the same pixels; sizes within 10% of Pillow's at level 6 (skipped without /usr/bin/python3 + Pillow)", async () => {
    const w = 256, h = 192;
    const smooth = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let k = 0; k < 3; k++) smooth[(y * w + x) * 3 + k] = 128 + 100 * Math.sin(x / (9 + k) + y / 17) + ((x * 7 + y * 13 + k) % 5);
    const images: Image8[] = [{ width: w, height: h, channels: 3, data: smooth }];
    for (const f of ["pil_rgb8.png", "pypng_rgba8_many_idat.png", "pil_la8.png", "pil_l8_text.png"]) images.push(await readImage(join(DIR, f)));
    const tmp = mkdtempSync(join(tmpdir(), "flux2ts-png-"));
    try {
      const files = images.map((img, i) => {
        const f = join(tmp, `${i}.png`);
        writeFileSync(f, encodePng(img));
        writeFileSync(`${f}.raw`, img.data);
        return f;
      });
      const r = spawnSync(PYTHON, ["-c", PILLOW_CHECK, ...files], { encoding: "utf8" });
      expect(r.stderr).toBe("");
      const res = JSON.parse(r.stdout) as { same: boolean; ours: number; pillow: number }[];
      // Measured: ours / Pillow's = 1.085 on the smooth 256×192 (fflate's deflate, not the filters: our filtered
      // rows through zlib level 6 are 64,468 bytes vs Pillow's 62,770), 0.98–1.01 on the corpus images.
      for (const x of res) expect({ ...x, ratioOk: x.ours <= 1.1 * x.pillow }).toEqual({ ...x, same: true, ratioOk: true });
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
