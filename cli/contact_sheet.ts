// `generate --save-all`: every scored candidate on one PNG, in evaluation order, each thumbnail over a caption
// "#index score" drawn with a 3×5 bitmap font (no font files or canvas needed); the result's cell is framed.
// Thumbnails are box-filtered down by an integer factor so the longer side is at most `thumb` pixels.
import type { Image8 } from "../core/png.ts";

export interface SheetCell {
  image: Image8;
  label: string;
  highlight?: boolean;
}

// 3×5 glyphs, one row per string, "#" = ink.
const GLYPHS: Record<string, string[]> = {
  "0": ["###", "#.#", "#.#", "#.#", "###"],
  "1": [".#.", "##.", ".#.", ".#.", "###"],
  "2": ["###", "..#", "###", "#..", "###"],
  "3": ["###", "..#", "###", "..#", "###"],
  "4": ["#.#", "#.#", "###", "..#", "..#"],
  "5": ["###", "#..", "###", "..#", "###"],
  "6": ["###", "#..", "###", "#.#", "###"],
  "7": ["###", "..#", "..#", "..#", "..#"],
  "8": ["###", "#.#", "###", "#.#", "###"],
  "9": ["###", "#.#", "###", "..#", "###"],
  ".": ["...", "...", "...", "...", ".#."],
  "-": ["...", "...", "###", "...", "..."],
  "+": ["...", ".#.", "###", ".#.", "..."],
  "#": ["#.#", "###", "#.#", "###", "#.#"],
  "e": ["...", "###", "###", "#..", "###"],
  " ": ["...", "...", "...", "...", "..."],
};
const GLYPH_W = 3, GLYPH_H = 5, SCALE = 2, PAD = 4;
const BACKGROUND = 24, INK = 235, FRAME: [number, number, number] = [255, 200, 0];

/** The image shrunk by the smallest integer factor that fits `max` (box filter, rounded means). */
export function shrink(img: Image8, max: number): Image8 {
  const f = Math.max(1, Math.ceil(Math.max(img.width, img.height) / max));
  if (f === 1 && img.channels === 3) return img;
  const W = Math.floor(img.width / f) || 1, H = Math.floor(img.height / f) || 1, C = img.channels;
  const out = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      for (let c = 0; c < 3; c++) {
        let s = 0, n = 0;
        for (let dy = 0; dy < f && y * f + dy < img.height; dy++) {
          for (let dx = 0; dx < f && x * f + dx < img.width; dx++) {
            s += img.data[((y * f + dy) * img.width + x * f + dx) * C + Math.min(c, C - 1)];
            n++;
          }
        }
        out[(y * W + x) * 3 + c] = Math.round(s / n);
      }
    }
  }
  return { width: W, height: H, channels: 3, data: out };
}

/** A grid of the cells (about square), each thumbnail over its caption. */
export function contactSheet(cells: readonly SheetCell[], thumb = 192): Image8 {
  if (!cells.length) throw new Error("contactSheet: no candidates");
  const thumbs = cells.map((c) => shrink(c.image, thumb));
  const captionH = GLYPH_H * SCALE + 2 * PAD;
  const textW = Math.max(...cells.map((c) => c.label.length)) * (GLYPH_W + 1) * SCALE;
  const cellW = Math.max(textW, ...thumbs.map((t) => t.width)) + 2 * PAD;
  const cellH = Math.max(...thumbs.map((t) => t.height)) + captionH + PAD;
  const cols = Math.ceil(Math.sqrt(cells.length));
  const rows = Math.ceil(cells.length / cols);
  const W = cols * cellW, H = rows * cellH;
  const data = new Uint8Array(W * H * 3).fill(BACKGROUND);
  const put = (x: number, y: number, rgb: readonly number[]) => data.set(rgb, (y * W + x) * 3);
  cells.forEach((cell, i) => {
    const x0 = (i % cols) * cellW, y0 = Math.floor(i / cols) * cellH;
    const t = thumbs[i];
    for (let y = 0; y < t.height; y++) data.set(t.data.subarray(y * t.width * 3, (y + 1) * t.width * 3), ((y0 + PAD + y) * W + x0 + PAD) * 3);
    if (cell.highlight) {
      for (let x = x0; x < x0 + cellW; x++) for (const y of [y0, y0 + 1, y0 + cellH - 2, y0 + cellH - 1]) put(x, y, FRAME);
      for (let y = y0; y < y0 + cellH; y++) for (const x of [x0, x0 + 1, x0 + cellW - 2, x0 + cellW - 1]) put(x, y, FRAME);
    }
    [...cell.label].forEach((ch, k) => {
      const g = GLYPHS[ch] ?? GLYPHS[" "];
      for (let gy = 0; gy < GLYPH_H; gy++) {
        for (let gx = 0; gx < GLYPH_W; gx++) {
          if (g[gy][gx] !== "#") continue;
          for (let s = 0; s < SCALE * SCALE; s++) {
            put(x0 + PAD + (k * (GLYPH_W + 1) + gx) * SCALE + (s % SCALE), y0 + PAD + t.height + PAD + gy * SCALE + Math.floor(s / SCALE), [INK, INK, INK]);
          }
        }
      }
    });
  });
  return { width: W, height: H, channels: 3, data };
}
