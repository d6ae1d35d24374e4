// FLUX.2 VAE: the flux2_vae fixture through verify (every output and debug tensor must PASS), batch independence
// (B = 2 encode/decode against two B = 1 runs), and the pixel conversion against a CPU reference and against the
// tiny_pipeline fixture's image_float / image_uint8.
import { describe, expect, test } from "bun:test";
import { joinPath, Tensor } from "../../core/index.ts";
import { loadCase } from "../../core/verify.ts";
import { concat } from "../../kernels/layout.ts";
import { Weights } from "../../models/weights.ts";
import "../../models/flux2/verify.ts";
import { type Flux2VaeConfig, Flux2Vae, imageBytes, toImageFloat } from "../../models/flux2/vae.ts";
import { expectCasePasses, FIXTURES, maxAbsErr, rand, testDevice } from "../util.ts";

const VAE_CASE = joinPath(FIXTURES, "flux2_vae");

/** CPU reference of the pixel conversion with torch's float32 roundings. */
function pixelsRef(x: Float32Array, B: number, H: number, W: number, rounding: "round" | "trunc") {
  const f = Math.fround;
  const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));
  const roundEven = (v: number) => {
    const r = Math.round(v);
    return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
  };
  const float = x.map((v) => clamp(f(f(v / 2) + 0.5), 0, 1));
  const bytes = new Uint8Array(B * H * W * 3);
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < H * W; p++) {
      for (let c = 0; c < 3; c++) {
        const i = (b * 3 + c) * H * W + p;
        const v = rounding === "round" ? roundEven(f(float[i] * 255)) : Math.trunc(clamp(f(f(x[i] + 1) * 127.5), 0, 255));
        bytes[(b * H * W + p) * 3 + c] = v;
      }
    }
  }
  return { float, bytes };
}

describe("flux2 vae", () => {
  test("flux2_vae fixture: every output and debug tensor passes", async () => {
    expect((await expectCasePasses(VAE_CASE)).rows.length).toBe(22);
  }, 120_000);

  test("B = 2 encode and decode match two B = 1 runs", async () => {
    const dev = await testDevice();
    const c = await loadCase(VAE_CASE);
    const vae = await Flux2Vae.load(dev, await Weights.open(dev, joinPath(VAE_CASE, "weights.safetensors")), c.json.config as Flux2VaeConfig);
    const [, L, P] = c.shape("packed_latents");
    const [, , H, W] = c.shape("image");
    const h = H / 16, w = W / 16;
    /** Decode of the tokens and encode of the images, batched as given. */
    const run = async (tokens: Tensor, img: Tensor) => {
      const z = vae.denormalizePacked(tokens, h, w);
      const dec = vae.decode(z);
      const mean = vae.encode(img);
      const enc = vae.normalizeToPacked(mean);
      const out = { dec: await dec.toArray(), enc: await enc.toArray() };
      for (const t of [z, dec, mean, enc]) t.dispose();
      return out;
    };
    const tokens = [
      Tensor.fromArray(dev, await c.tensor("packed_latents"), [1, L, P]),
      Tensor.fromArray(dev, rand(L * P, 7, -2, 2), [1, L, P]),
    ];
    const imgs = [Tensor.fromArray(dev, await c.tensor("image"), [1, 3, H, W]), Tensor.fromArray(dev, rand(3 * H * W, 8), [1, 3, H, W])];
    const tokens2 = concat(tokens, 0), imgs2 = concat(imgs, 0);
    const both = await run(tokens2, imgs2);
    for (let b = 0; b < 2; b++) {
      const one = await run(tokens[b], imgs[b]);
      const nd = one.dec.length, ne = one.enc.length;
      const errDec = maxAbsErr(both.dec.subarray(b * nd, (b + 1) * nd), one.dec);
      const errEnc = maxAbsErr(both.enc.subarray(b * ne, (b + 1) * ne), one.enc);
      expect(errDec).toBeLessThanOrEqual(1e-6);
      expect(errEnc).toBeLessThanOrEqual(1e-6);
    }
    // The two items really differ (the batch is not one image twice).
    const nd = both.dec.length / 2;
    expect(maxAbsErr(both.dec.subarray(0, nd), both.dec.subarray(nd))).toBeGreaterThan(1e-2);
    // A batch too big for the activation budget runs item by item, with the same result.
    vae.maxActivationBytes = 1;
    const sliced = await run(tokens2, imgs2);
    expect(maxAbsErr(sliced.dec, both.dec)).toBeLessThanOrEqual(1e-6);
    expect(maxAbsErr(sliced.enc, both.enc)).toBeLessThanOrEqual(1e-6);
    for (const t of [...tokens, ...imgs, tokens2, imgs2]) t.dispose();
    vae.dispose();
  }, 60_000);

  test("pixel conversion: float image and HWC bytes (rounded, truncated) match the CPU reference", async () => {
    const dev = await testDevice();
    // Odd sizes: the byte count is not a multiple of 4, so the last word is partial. Values past ±1 test the clamp.
    const B = 2, H = 3, W = 5;
    const data = rand(B * 3 * H * W, 11, -1.3, 1.3);
    data.set([-1, 1, 0, -0.5, 0.5, 1 / 255, -1e-9, 2, -2]);
    const x = Tensor.fromArray(dev, data, [B, 3, H, W]);
    for (const rounding of ["round", "trunc"] as const) {
      const ref = pixelsRef(data, B, H, W, rounding);
      expect(Array.from(await imageBytes(x, rounding))).toEqual(Array.from(ref.bytes));
    }
    const f = toImageFloat(x);
    expect(maxAbsErr(await f.toArray(), pixelsRef(data, B, H, W, "round").float)).toBe(0);
    f.dispose();
    x.dispose();
  }, 30_000);

  test("pixel conversion reproduces tiny_pipeline's image_float and image_uint8", async () => {
    const dev = await testDevice();
    const c = await loadCase(joinPath(FIXTURES, "tiny_pipeline"));
    const x = Tensor.fromArray(dev, await c.tensor("decoded_raw"), c.shape("decoded_raw"));
    const f = toImageFloat(x);
    expect(maxAbsErr(await f.toArray(), await c.tensor("image_float"))).toBeLessThanOrEqual(1e-7);
    const bytes = await imageBytes(x, "round");
    const want = await c.tensor("image_uint8");
    expect(maxAbsErr(bytes, want)).toBe(0);
    f.dispose();
    x.dispose();
  }, 30_000);
});
