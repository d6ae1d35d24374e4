// `flux2ts score` as a child process on the tiny PickScore fixture, with the image corpus (tests/fixtures/images):
// a 16-bit PNG scores exactly as its 8-bit twin (the same pixels, written by Pillow), a JPEG close to the PNG of
// Pillow's decode of it, other forms (Adam7 palette with tRNS, 1-bit) score; a hostile file stops the command with
// exit 2 and one line naming it, before any model loads.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { joinPath, runtime } from "../../core/index.ts";
import { FIXTURES } from "../util.ts";

const CLI = fileURLToPath(new URL("../../cli/flux2ts.ts", import.meta.url));
const IMAGES = fileURLToPath(new URL("../fixtures/images/", import.meta.url));
const MODELS = ["--model", joinPath(FIXTURES, "repos/AI-ModelScope/PickScore-tiny"), "--processor", joinPath(FIXTURES, "repos/laion/CLIP-ViT-H-14-tiny-processor")];
const proc = (globalThis as { process?: { execPath: string } }).process!;

function score(files: string[]): { code: number | null; stdout: string; stderr: string } {
  const args = ["score", "--prompt", "a cat", ...MODELS, ...files.map((f) => join(IMAGES, f))];
  const r = spawnSync(proc.execPath, runtime === "deno" ? ["run", "-A", "--unstable-webgpu", CLI, ...args] : [CLI, ...args], { encoding: "utf8" });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("score CLI", () => {
  test("16-bit PNG = its 8-bit twin, JPEG ≈ Pillow's decode of it, Adam7 palette and 1-bit score", () => {
    const files = ["pypng_rgb16_plain.png", "twin_rgb16_plain_as_rgb8.png", "pil_444.jpg", "twin_444_as_png.png", "pypng_palette2_trns_adam7.png", "pil_1bit.png"];
    const r = score(files);
    expect({ code: r.code, stderr: r.code === 0 ? "" : r.stderr }).toEqual({ code: 0, stderr: "" }); // Dawn may warn on stderr
    const lines = r.stdout.trim().split("\n").map((l) => l.split("\t"));
    expect(lines.map((l) => l[0])).toEqual(files.map((f) => join(IMAGES, f)));
    const s = lines.map((l) => Number(l[1]));
    expect(s.every(Number.isFinite)).toBe(true);
    expect(lines[0][1]).toBe(lines[1][1]);
    // pil_444.jpg's pixels differ from Pillow's by at most 3 (mean 0.54); measured |Δscore| 0.002299 (-0.016542 vs
    // -0.014243), while these six images spread over 0.32.
    expect(Math.abs(s[2] - s[3])).toBeLessThanOrEqual(0.0024);
  }, 120_000);

  test("hostile or missing files: exit 2, one line naming the file, no stack trace", () => {
    for (const [file, why] of [["bomb_179mp.png", /over the limit of 178,956,970/], ["truncated.jpg", /corrupt or truncated JPEG/], ["dims_2e31.png", /invalid size/], ["missing_plte.png", /without a PLTE/], ["no_such_file.png", /cannot read \(ENOENT/]] as const) {
      const r = score(["pil_rgb8.png", file]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      const lines = r.stderr.trim().split("\n");
      expect(lines.length).toBe(1);
      expect(lines[0].startsWith(`flux2ts: ${join(IMAGES, file)}: `)).toBe(true);
      expect(lines[0]).toMatch(why);
    }
  }, 120_000);
});
