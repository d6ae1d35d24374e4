// CLIP / PickScore: the clip_pickscore fixture (every output and debug tensor, both preprocessing backends at two
// sizes), the PickScore outputs of the end-to-end cases from their uint8 images and from their float images,
// tokenizer vectors from an independent Python BPE, batch independence and chunking without leaks, the crop rule,
// the pooling rule, and load-time errors.
import { describe, expect, test } from "bun:test";
import { joinPath, Tensor } from "../../core/index.ts";
import { compare, judgingOf, loadCase } from "../../core/verify.ts";
import { ClipModel, eosPositions } from "../../models/clip/model.ts";
import { PickScore } from "../../models/clip/pickscore.ts";
import { ClipPreprocessor, DIFFSYNTH_UINT8, parseImageConfig, planImage, ROUND_UINT8, type RgbImage } from "../../models/clip/preprocess.ts";
import { ClipTokenizer } from "../../models/clip/tokenizer.ts";
import { loadCasePickScore, repoPickScore } from "../../models/clip/verify.ts";
import { Weights } from "../../models/weights.ts";
import { expectCasePasses, FIXTURES, maxAbsErr, rand, relErr, testDevice } from "../util.ts";

const CASE = joinPath(FIXTURES, "clip_pickscore");
const REPOS = joinPath(FIXTURES, "repos");
const MODEL = joinPath(REPOS, "AI-ModelScope/PickScore-tiny");
const PROCESSOR = joinPath(REPOS, "laion/CLIP-ViT-H-14-tiny-processor");

/** A deterministic RGB image. */
function image(width: number, height: number, seed: number): RgbImage {
  return { width, height, data: Uint8Array.from(rand(width * height * 3, seed, 0, 256), Math.floor) };
}

describe("clip", () => {
  test("fixture clip_pickscore: every tensor passes", async () => {
    const r = await expectCasePasses(CASE);
    expect(r.rows.length).toBe(21);
    // Both resize backends are reproduced to float rounding (a one-step uint8 difference would be ~0.015).
    for (const row of r.rows.filter((x) => x.name.startsWith("pixel_values"))) expect(row.maxAbsErr).toBeLessThan(1e-6);
  }, 120_000);

  test("end-to-end cases: PickScore outputs from the uint8 images and from the float images", async () => {
    const dev = await testDevice();
    for (const n of ["0", "1"]) {
      const c = await loadCase(joinPath(REPOS, "expected", n));
      const [H, W] = c.shape("image_uint8_trunc");
      const u8 = async (name: string): Promise<RgbImage[]> => [{ width: W, height: H, data: Uint8Array.from(await c.tensor(name)) }];
      const ps = await loadCasePickScore(c, dev);
      const prompt = String(c.json.prompt);
      const fromBytes = await repoPickScore(ps, prompt, { trunc: await u8("image_uint8_trunc"), round: await u8("image_uint8_round") });
      const decoded = Tensor.fromArray(dev, await c.tensor("decoded_raw"), c.shape("decoded_raw"));
      const unit = Tensor.fromArray(dev, await c.tensor("image_float"), c.shape("image_float"));
      const fromFloats = await repoPickScore(ps, prompt, { trunc: decoded, round: unit, quantize: { trunc: DIFFSYNTH_UINT8, round: ROUND_UINT8 } });
      decoded.dispose();
      unit.dispose();
      expect(ps.tokenizer.encode(prompt)).toEqual(Array.from(await c.tensor("clip_input_ids")));
      ps.dispose();
      for (const produced of [fromBytes, fromFloats]) {
        // Judged as the end-to-end runner is: the case's bounds, else its named rules (the PIL-backend and rounded
        // image scores get pickscore's, the CLIP ids and mask are exact).
        const rows = (await compare(c, produced, judgingOf("flux2_repo"))).filter((r) => produced.has(r.name));
        expect(rows.length).toBe(10);
        const bad = rows.filter((r) => r.status !== "PASS").map((r) => `${r.name} ${r.maxAbsErr.toExponential(2)} > ${r.atol}`);
        expect(bad).toEqual([]);
        for (const r of rows.filter((x) => x.name.startsWith("clip_pixel_values"))) expect(r.maxAbsErr).toBeLessThan(1e-6);
      }
    }
  }, 120_000);

  test("tokenizer: ids of an independent Python BPE, truncation, padding, special tokens from the files", async () => {
    const tok = await ClipTokenizer.load(PROCESSOR);
    // From a plain Python BPE over vocab.json/merges.txt (NFC, \s+ → " ", lower, the CLIP regex).
    const vectors: [string, number[]][] = [
      ["sketch, a cat", [49406, 5269, 267, 320, 2368, 49407]],
      ["A cozy cabin in the snowy mountains at dusk, warm light — 35mm photo", [49406, 320, 14873, 14178, 530, 518, 14191, 5873, 536, 19708, 267, 3616, 1395, 2005, 274, 276, 2848, 1125, 49407]],
      ["don't I'll we've they're", [49406, 847, 713, 328, 1342, 649, 1200, 889, 982, 49407]],
      ["naïve café 123 ÅB", [49406, 1097, 35689, 563, 15304, 272, 273, 274, 23176, 321, 49407]],
      ["  Hello   WORLD!! it's <|endoftext|> x", [49406, 3306, 1002, 748, 585, 568, 49407, 343, 49407]],
      ["\tTabs\nnew\r\nlines", [49406, 29163, 686, 3418, 49407]],
      ["", [49406, 49407]],
    ];
    for (const [text, ids] of vectors) expect(tok.encode(text)).toEqual(ids);
    const long = tok.encode("word ".repeat(100));
    expect(long.length).toBe(77);
    expect([long[0], long[76]]).toEqual([49406, 49407]);
    expect(tok.encode("word ".repeat(100), 10)).toEqual([49406, ...new Array(8).fill(2653), 49407]);
    const batch = tok.encodeBatch(["a cat", "sketch, a cat"]);
    expect([batch.batch, batch.length, batch.lengths]).toEqual([2, 6, [4, 6]]);
    expect(Array.from(batch.ids.subarray(0, 6))).toEqual([49406, 320, 2368, 49407, 49407, 49407]);
    expect(Array.from(batch.mask.subarray(0, 6))).toEqual([1, 1, 1, 1, 0, 0]);
    expect(tok.encodeBatch(["a"], { padding: "max_length" }).length).toBe(77);
    // Without tokenizer.json: the same tokenizer from vocab.json + merges.txt; a "!" pad token (id 0) is honoured.
    const files = async (name: string) => await (await import("node:fs/promises")).readFile(joinPath(PROCESSOR, name), "utf8");
    const fromTxt = ClipTokenizer.fromFiles({ vocab: JSON.parse(await files("vocab.json")), merges: await files("merges.txt"), config: { pad_token: "!", model_max_length: 77 } });
    for (const [text, ids] of vectors) expect(fromTxt.encode(text)).toEqual(ids);
    expect([fromTxt.padId, fromTxt.bosId, fromTxt.eosId]).toEqual([0, 49406, 49407]);
  });

  test("pooling rule: argmax for the legacy eos_token_id 2, else the first eos", () => {
    expect(Array.from(eosPositions(Int32Array.from([49406, 320, 49407, 49407]), 1, 2))).toEqual([2]);
    // Rows [998, 999, 999] and [0, 7, 0] (no eos: position 0, as argmax of an all-false match).
    expect(Array.from(eosPositions(Int32Array.from([998, 999, 999, 0, 7, 0]), 2, 999))).toEqual([1, 0]);
    // With eos_token_id 2 the largest id wins even when it is not the eos token.
    expect(Array.from(eosPositions(Int32Array.from([5, 9, 2, 9]), 1, 2))).toEqual([1]);
  });

  test("crop offsets are int((size − crop) / 2) and the resize keeps int(edge·long/short)", async () => {
    const cfg = parseImageConfig({ size: 224, crop_size: 224, image_mean: [0, 0, 0], image_std: [1, 1, 1], rescale_factor: 1 });
    expect(planImage(224, 339, cfg)).toEqual({ resizedHeight: 224, resizedWidth: 339, top: 0, left: 57, height: 224, width: 224 });
    expect(planImage(1024, 1000, cfg)).toEqual({ resizedHeight: 229, resizedWidth: 224, top: 2, left: 0, height: 224, width: 224 });
    // An image that needs no resize: the output is exactly its crop.
    const dev = await testDevice();
    const img = image(339, 224, 3);
    const ours = await new ClipPreprocessor(dev, cfg).fromImages([img]).toArray();
    const want = new Float32Array(3 * 224 * 224);
    for (let c = 0; c < 3; c++) for (let y = 0; y < 224; y++) for (let x = 0; x < 224; x++) want[(c * 224 + y) * 224 + x] = img.data[(y * 339 + x + 57) * 3 + c];
    expect(maxAbsErr(ours, want)).toBe(0);
  });

  test("batches: B images score as B single images, in chunks, images of several sizes, no leaked buffers", async () => {
    const dev = await testDevice();
    const ps = await PickScore.load(dev, { model: MODEL, processor: PROCESSOR, maxBatch: 2 });
    try {
      const imgs = [image(96, 64, 1), image(64, 64, 2), image(300, 240, 3)];
      const prompt = "a red bicycle";
      const single = [];
      for (const im of imgs) single.push(...(await ps.score([im], prompt)));
      const all = await ps.score(imgs, prompt);
      console.log(`scores ${all.map((s) => s.toFixed(5))}`);
      expect(maxAbsErr(all, single)).toBeLessThanOrEqual(1e-6);
      expect(Math.max(...single) - Math.min(...single)).toBeGreaterThan(1e-3);
      const scaled = await ps.clipScore(imgs, prompt);
      expect(maxAbsErr(scaled, all.map((s) => ps.model.logitScale * s))).toBeLessThanOrEqual(1e-9);
      expect(Math.abs(ps.model.logitScale - 100)).toBeLessThan(1e-2); // the tiny repo stores ln(100) as 4.6052
      // A float tensor [B, 3, H, W] holding the same pixels scores the same (rounding quantisation recovers them).
      const same = [image(96, 64, 7), image(96, 64, 8), image(96, 64, 9)];
      const floats = new Float32Array(3 * 3 * 64 * 96);
      same.forEach((im, b) => im.data.forEach((v, i) => (floats[((b * 3 + (i % 3)) * 64 + Math.floor(i / 3 / 96)) * 96 + (Math.floor(i / 3) % 96)] = v / 255)));
      const t = Tensor.fromArray(dev, floats, [3, 3, 64, 96]);
      const fromTensor = await ps.score(t, prompt, { quantize: ROUND_UINT8 });
      expect(maxAbsErr(fromTensor, await ps.score(same, prompt))).toBeLessThanOrEqual(1e-6);
      // Every intermediate goes back to the pool: with the pool emptied, the live bytes are the same after a call.
      dev.trimPool();
      const live = dev.allocatedBytes;
      await ps.score(t, prompt, { quantize: ROUND_UINT8 });
      await ps.score(imgs, prompt);
      dev.trimPool();
      expect(dev.allocatedBytes).toBe(live);
      t.dispose();
    } finally {
      ps.dispose();
    }
  }, 120_000);

  test("padding rows do not change a text embedding; the text pass keeps nothing", async () => {
    const dev = await testDevice();
    const ps = await PickScore.load(dev, { model: MODEL, processor: PROCESSOR });
    try {
      const b = ps.tokenizer.encodeBatch(["a cat", "a cozy cabin in the snowy mountains"]);
      const both = await ps.model.textEmbeds(b.ids, b.mask, 2).toArray();
      const alone = Int32Array.from(ps.tokenizer.encode("a cat"));
      dev.trimPool();
      const live = dev.allocatedBytes;
      const e = ps.model.textEmbeds(alone, new Int32Array(alone.length).fill(1), 1);
      const one = await e.toArray();
      e.dispose();
      dev.trimPool();
      expect(dev.allocatedBytes).toBe(live); // nothing but the result was kept
      // Different row counts take different matmul kernels: equal up to summation order.
      expect(relErr(both.subarray(0, one.length), one)).toBeLessThanOrEqual(1e-6);
    } finally {
      ps.dispose();
    }
  }, 60_000);

  test("load errors name the problem", async () => {
    const dev = await testDevice();
    const c = await loadCase(CASE);
    const cfg = c.json.config as { text_config: object; vision_config: object };
    const w = await Weights.open(dev, joinPath(CASE, "weights.safetensors"));
    await expect(ClipModel.load(dev, w, { ...cfg, vision_config: { ...cfg.vision_config, intermediate_size: 100 } })).rejects.toThrow(
      /"vision_model\.encoder\.layers\.0\.mlp\.fc1\.weight" is \[192,48\], config wants \[100,48\]/,
    );
    await expect(ClipModel.load(dev, w, { ...cfg, text_config: { ...cfg.text_config, hidden_act: "relu" } })).rejects.toThrow(/hidden_act "relu" is not supported/);
    w.dispose();
    expect(() => parseImageConfig({ size: 224, crop_size: 224, resample: 2 })).toThrow(/resample 2 is not supported/);
    await expect(PickScore.load(dev, { model: MODEL, processor: "/nonexistent" })).rejects.toThrow(/no CLIP tokenizer files/);
  });
});
