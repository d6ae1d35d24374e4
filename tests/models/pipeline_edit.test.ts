// FLUX.2-klein editing mode (reference images): the tiny_pipeline_edit fixture through `verify` and through the
// public API (encodeReferences + generate: final latents and uint8 image against the case's outputs; a guided batch
// equals its rows run alone), the
// preprocessing rules (upstream's size/aspect checks, center-crop box, the size diffusers resizes large references
// to) and the Lanczos resize against what Debian's Pillow computes (data from pil_lanczos_expected.py).
import { describe, expect, test } from "bun:test";
import { type Device, joinPath, openSafetensors, readText, Tensor } from "../../core/index.ts";
import { packLatents } from "../../kernels/layout.ts";
import { resizeBicubic } from "../../kernels/resample.ts";
import { Flux2Pipeline } from "../../models/flux2/pipeline.ts";
import "../../models/flux2/verify.ts";
import { checkReference, referenceCrop, referenceIds, referenceResizeTo, referenceSize } from "../../models/flux2/reference.ts";
import { Flux2Transformer } from "../../models/flux2/transformer.ts";
import { Flux2Vae } from "../../models/flux2/vae.ts";
import { Weights } from "../../models/weights.ts";
import { expectCasePasses, FIXTURES, maxAbsErr, testDevice } from "../util.ts";

const CASE = joinPath(FIXTURES, "tiny_pipeline_edit");

/** The case's models (configs from the cases its config points to), with the VAE encoder. */
async function editPipeline(dev: Device): Promise<{ pipe: Flux2Pipeline; json: { config: Record<string, unknown> } }> {
  const json = JSON.parse(await readText(joinPath(CASE, "case.json")));
  const config = async (field: string) => JSON.parse(await readText(joinPath(CASE, field.split(/\s+/)[0]))).config;
  const w = await Weights.open(dev, joinPath(CASE, "weights.safetensors"));
  const transformer = await Flux2Transformer.load(dev, w.sub("transformer."), await config(json.config.transformer));
  const vae = await Flux2Vae.load(dev, w.sub("vae."), await config(json.config.vae));
  return { pipe: Flux2Pipeline.create(dev, { transformer, vae, scheduler: json.config.scheduler, isDistilled: true }), json };
}

/** The integer test pattern of pil_lanczos_expected.py, as [1, 3, h, w] planes. */
function pattern(w: number, h: number): Float32Array {
  const out = new Float32Array(3 * w * h);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const noise = ((x * 1973) ^ (y * 3001) ^ (c * 7919)) & 63;
        const checker = (Math.floor(x / 7) + Math.floor(y / 5)) % 2 === 1 ? 128 : 0;
        out[(c * h + y) * w + x] = (Math.floor((x * 255) / w) + Math.floor((y * 127) / h) + noise + checker) % 256;
      }
    }
  }
  return out;
}

/** Planes [3, h, w] → interleaved RGB bytes (PIL's layout). */
function interleave(planes: Float32Array, w: number, h: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(3 * w * h);
  for (let i = 0; i < w * h; i++) for (let c = 0; c < 3; c++) out[i * 3 + c] = planes[c * w * h + i];
  return out;
}

const b64 = (s: string) => Uint8Array.from(atob(s), (ch) => ch.charCodeAt(0));
const hex = (b: ArrayBuffer) => [...new Uint8Array(b)].map((v) => v.toString(16).padStart(2, "0")).join("");

describe("flux2 editing with reference images", () => {
  test("tiny_pipeline_edit: every output and debug tensor passes verify", async () => {
    const r = await expectCasePasses(CASE);
    expect(r.rows.filter((row) => row.status === "PASS").length).toBe(24);
  }, 300_000);

  test("encodeReferences + generate reproduce the case's final latents and uint8 image", async () => {
    const dev = await testDevice();
    const { pipe, json } = await editPipeline(dev);
    const io = await openSafetensors(joinPath(CASE, "io.safetensors"));
    const images = [];
    for (let i = 0; io.has(`ref_image_${i}`); i++) {
      const [height, width] = io.get(`ref_image_${i}`).shape;
      images.push({ width, height, channels: 3 as const, data: Uint8Array.from(await io.readFloat32(`ref_image_${i}`)) });
    }
    expect(images.length).toBe(2);
    const refs = await pipe.encodeReferences(images);
    expect(refs.sizes).toEqual([{ width: 80, height: 64 }, { width: 64, height: 96 }]);
    expect([...refs.ids]).toEqual([...(await io.readFloat32("reference_ids"))]);
    const noise = Tensor.fromArray(dev, await io.readFloat32("initial_noise"), io.get("initial_noise").shape);
    const cfg = json.config as { width: number; height: number; num_inference_steps: number };
    const r = pipe.generate({ promptEmbeds: Tensor.fromArray(dev, await io.readFloat32("prompt_embeds"), io.get("prompt_embeds").shape), initialNoise: noise, width: cfg.width, height: cfg.height, steps: cfg.num_inference_steps, references: refs });
    const finalErr = maxAbsErr(await packLatents(r.latents).toArray(), await io.readFloat32("final_latents"));
    const ours = await pipe.imageBytes(r);
    const want = await io.readFloat32("image_uint8");
    const diff = ours.reduce((m, v, i) => Math.max(m, Math.abs(v - want[i])), 0);
    const off = ours.filter((v, i) => v !== want[i]).length;
    console.log(`  final latents max abs err ${finalErr.toExponential(2)}; uint8: ${off} of ${ours.length} values off by ${diff}`);
    expect(finalErr).toBeLessThanOrEqual(1e-4);
    expect(diff).toBeLessThanOrEqual(1);
    expect(off / ours.length).toBeLessThan(0.01);
    // Without a size, the output takes the first reference's cropped size; mu counts target tokens only.
    const own = pipe.generate({ promptEmbeds: Tensor.fromArray(dev, await io.readFloat32("prompt_embeds"), io.get("prompt_embeds").shape), seed: 3, steps: 1, references: refs });
    expect(own.image.shape).toEqual([1, 3, 64, 80]);
    // A batch of 2 under classifier-free guidance (both calls see the references) equals its rows run alone.
    const [cond, uncond] = [11, 12].map((seed) => Tensor.randn(dev, [1, 16, pipe.transformer.jointDim], { seed }).keep());
    const run = (noise: Tensor) =>
      pipe.generate({ promptEmbeds: cond, negativePromptEmbeds: uncond, guidanceScale: 3, initialNoise: noise, steps: 2, references: refs });
    const both = await run(pipe.generateNoise({ width: 48, height: 32, seed: 5, batch: 2 })).latents.toArray();
    for (const first of [0, 1]) {
      const alone = await run(pipe.generateNoise({ width: 48, height: 32, seed: 5, first })).latents.toArray();
      expect(maxAbsErr(both.subarray(first * alone.length, (first + 1) * alone.length), alone)).toBeLessThanOrEqual(1e-5);
    }
    refs.tokens.dispose();
    pipe.dispose();
  }, 300_000);

  test("upstream's checks: sides under 64 px and aspect ratios over 8 are refused with its message", () => {
    expect(() => checkReference(40, 40, "a.png")).toThrow(/^a\.png: Image too small: 40×40\. Both dimensions must be at least 64px$/);
    expect(() => checkReference(1000, 100, "b.png")).toThrow(/^b\.png: Aspect ratio too extreme: 1000×100 \(ratio: 10\.0:1\)\. Maximum allowed ratio is 8:1$/);
    expect(() => checkReference(64, 63, "c")).toThrow(/too small/);
    expect(() => checkReference(512, 64, "d")).not.toThrow(); // exactly 8:1 passes
    expect(() => checkReference(513, 64, "e")).toThrow(/8\.0:1/);
  });

  test("crop box, resize-to-area size and position ids follow diffusers", () => {
    expect(referenceCrop(89, 72, 16)).toEqual({ left: 4, top: 4, width: 80, height: 64 });
    expect(referenceCrop(70, 101, 16)).toEqual({ left: 3, top: 2, width: 64, height: 96 });
    expect(referenceResizeTo(1024, 1024)).toEqual({ width: 1024, height: 1024 });
    expect(referenceResizeTo(1100, 1000)).toEqual({ width: 1073, height: 976 });
    expect(referenceSize(4000, 3000, 16, "x")).toEqual({ width: 1168, height: 880 });
    expect([...referenceIds([{ h: 1, w: 2 }, { h: 2, w: 1 }])]).toEqual([10, 0, 0, 0, 10, 0, 1, 0, 20, 0, 0, 0, 20, 1, 0, 0]);
  });

  test("Lanczos resize equals Pillow's Image.resize(LANCZOS) (python3-pil data)", async () => {
    const dev = await testDevice();
    const data = JSON.parse(await readText(new URL("data/pil_lanczos_expected.json", import.meta.url).pathname));
    const resize = async (w: number, h: number, ow: number, oh: number) => {
      const x = Tensor.fromArray(dev, pattern(w, h), [1, 3, h, w]);
      const y = resizeBicubic(x, oh, ow, { antialias: true, uint8: "pil", filter: "lanczos" });
      return interleave(await y.toArray(), ow, oh);
    };
    for (const c of data.small) {
      const got = await resize(c.in[0], c.in[1], c.out[0], c.out[1]);
      const want = b64(c.rgb_base64);
      expect(`${c.in} → ${c.out}: ${got.filter((v, i) => v !== want[i]).length} bytes differ`).toBe(`${c.in} → ${c.out}: 0 bytes differ`);
    }
    for (const c of data.target_area) {
      expect(referenceResizeTo(c.in[0], c.in[1])).toEqual({ width: c.out[0], height: c.out[1] });
      const got = await resize(c.in[0], c.in[1], c.out[0], c.out[1]);
      const row = b64(c.first_row_base64);
      expect(got.subarray(0, row.length).filter((v, i) => v !== row[i]).length).toBe(0);
      expect(hex(await crypto.subtle.digest("SHA-256", got))).toBe(c.sha256);
    }
    expect(() => resizeBicubic(Tensor.zeros(dev, [1, 1, 4, 4]), 2, 2, { antialias: true, filter: "lanczos" })).toThrow(/Pillow/);
  }, 300_000);
});
