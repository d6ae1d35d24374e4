// CLIP image preprocessing on the GPU, bit-exact with transformers' CLIPImageProcessor: resize the shorter side to
// `shortest_edge` (bicubic, antialiased), center crop, rescale by 1/255 and normalise per channel → [B, 3, ch, cw].
// Design:
// - Both processor backends resize the uint8 image with fixed-point integer arithmetic, which a float bicubic only
//   approximates (one uint8 step is ~0.015 after normalisation). kernels/resample.ts reproduces both exactly:
//   "torchvision" (transformers 5's default CLIPImageProcessor: torch's CPU uint8 antialiased kernel) and "pil"
//   (CLIPImageProcessorPil: Pillow's Image.resize(BICUBIC)). Both match the fixtures to float rounding.
// - So every source is first turned into the exact uint8 image the processor would see, held as integer-valued
//   f32 NCHW (kernels/pixels.ts): RGB bytes (HWC, packed 4 per u32 word) are unpacked; a float image from the VAE
//   is quantised exactly as the pipeline that produced the uint8 image does (DiffSynth: trunc(clip((x + 1)·127.5)) on the raw decoder
//   output; diffusers: round-half-even(x·255) on the [0, 1] image).
// - Center crop offsets are int((size − crop) / 2) as transformers' own center_crop computes them (not
//   torchvision's round(), which differs when the margin is odd), cut with two slices.
// - Rescale and normalise are one fused pass, (v − mean/rescale) / (std/rescale) in f32, as transformers' fast
//   processor computes it.
import { type Device, joinPath, readText, Tensor } from "../../core/index.ts";
import { concat, slice } from "../../kernels/layout.ts";
import { quantizePixels, type Quantize, unpackRgbBytes } from "../../kernels/pixels.ts";
import { normalizeChannels, resizeBicubic } from "../../kernels/resample.ts";

export type ResizeBackend = "torchvision" | "pil";

/** The fields of a preprocessor_config.json this code uses, normalised. */
export interface ClipImageConfig {
  doResize: boolean;
  shortestEdge: number;
  doCenterCrop: boolean;
  cropHeight: number;
  cropWidth: number;
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  mean: [number, number, number];
  std: [number, number, number];
}

/** An RGB image, HWC uint8. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** How a float image becomes the uint8 image the processor sees: q(clamp((x + offset)·scale, 0, 255)). */
export type { Quantize };

/** DiffSynth's `vae_output_to_image` on the raw decoder output in [−1, 1] (what the PickScore tutorial scores). */
export const DIFFSYNTH_UINT8: Quantize = { offset: 1, scale: 127.5, rounding: "trunc" };
/** The same truncation on the [0, 1] image (differs from DIFFSYNTH_UINT8 only where f32 rounding straddles an integer). */
export const TRUNC_UINT8: Quantize = { offset: 0, scale: 255, rounding: "trunc" };
/** diffusers' `numpy_to_pil` on the [0, 1] image (round half to even). */
export const ROUND_UINT8: Quantize = { offset: 0, scale: 255, rounding: "round" };

type SizeField = number | { shortest_edge?: number; height?: number; width?: number } | undefined;

/** Parses preprocessor_config.json (old `"size": 224` and new `{"shortest_edge": 224}` spellings). */
export function parseImageConfig(json: Record<string, unknown>, where = "preprocessor_config.json"): ClipImageConfig {
  const bad = (msg: string) => new Error(`${where}: ${msg}`);
  const size = json.size as SizeField;
  const crop = json.crop_size as SizeField;
  const shortestEdge = typeof size === "number" ? size : size?.shortest_edge;
  const cropHeight = typeof crop === "number" ? crop : crop?.height;
  const cropWidth = typeof crop === "number" ? crop : crop?.width;
  const doResize = json.do_resize !== false;
  const doCenterCrop = json.do_center_crop !== false;
  const posInt = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v > 0;
  if (doResize && !posInt(shortestEdge)) throw bad(`size ${JSON.stringify(size)} has no positive shortest edge`);
  if (doCenterCrop && !(posInt(cropHeight) && posInt(cropWidth))) throw bad(`crop_size ${JSON.stringify(crop)} needs a positive height and width`);
  const resample = json.resample ?? 3;
  if (doResize && resample !== 3) throw bad(`resample ${resample} is not supported (only 3 = bicubic)`);
  const triple = (v: unknown, name: string, def: number[]): [number, number, number] => {
    const a = (v ?? def) as number[];
    if (!Array.isArray(a) || a.length !== 3 || !a.every((x) => typeof x === "number" && Number.isFinite(x))) throw bad(`${name} must be 3 numbers`);
    return [a[0], a[1], a[2]];
  };
  const rescaleFactor = (json.rescale_factor ?? 1 / 255) as number;
  if (!(rescaleFactor > 0)) throw bad(`rescale_factor ${rescaleFactor} must be positive`);
  const std = triple(json.image_std, "image_std", [0.26862954, 0.26130258, 0.27577711]);
  if (std.some((s) => !(s > 0))) throw bad(`image_std [${std}] must be positive`);
  return {
    doResize,
    shortestEdge: shortestEdge ?? 0,
    doCenterCrop,
    cropHeight: cropHeight ?? 0,
    cropWidth: cropWidth ?? 0,
    doRescale: json.do_rescale !== false,
    rescaleFactor,
    doNormalize: json.do_normalize !== false,
    mean: triple(json.image_mean, "image_mean", [0.48145466, 0.4578275, 0.40821073]),
    std,
  };
}

/** Reads `<dir>/preprocessor_config.json`. */
export async function loadImageConfig(dir: string): Promise<ClipImageConfig> {
  const path = joinPath(dir, "preprocessor_config.json");
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await readText(path));
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
  return parseImageConfig(json, path);
}

/** Resize target and crop window for an H×W image. */
export interface Plan {
  resizedHeight: number;
  resizedWidth: number;
  top: number;
  left: number;
  height: number;
  width: number;
}

export function planImage(H: number, W: number, cfg: ClipImageConfig): Plan {
  let [rh, rw] = [H, W];
  if (cfg.doResize) {
    // transformers get_resize_output_image_size(default_to_square=False): the long side is int(edge·long/short).
    const e = cfg.shortestEdge;
    [rh, rw] = H <= W ? [e, Math.trunc((e * W) / H)] : [Math.trunc((e * H) / W), e];
  }
  const [ch, cw] = cfg.doCenterCrop ? [cfg.cropHeight, cfg.cropWidth] : [rh, rw];
  if (ch > rh || cw > rw) throw new Error(`CLIP preprocessing: crop ${ch}×${cw} is larger than the ${H}×${W} image resized to ${rh}×${rw}`);
  return { resizedHeight: rh, resizedWidth: rw, top: Math.trunc((rh - ch) / 2), left: Math.trunc((rw - cw) / 2), height: ch, width: cw };
}

/** The GPU preprocessing of one processor config and resize backend. */
export class ClipPreprocessor {
  constructor(readonly dev: Device, readonly cfg: ClipImageConfig, readonly backend: ResizeBackend = "torchvision") {}

  /** The output size [ch, cw] for an H×W input. */
  outputSize(H: number, W: number): [number, number] {
    const p = planImage(H, W, this.cfg);
    return [p.height, p.width];
  }

  /** Resize + crop of integer-valued pixels [B, 3, H, W] (taken over) → [B, 3, ch, cw], still integer-valued. */
  private resizeCrop(x: Tensor): Tensor {
    const [, , H, W] = x.shape;
    const p = planImage(H, W, this.cfg);
    let y = x;
    if (p.resizedHeight !== H || p.resizedWidth !== W) {
      y = resizeBicubic(x, p.resizedHeight, p.resizedWidth, { antialias: true, uint8: this.backend === "pil" ? "pil" : "torch" });
      x.dispose();
    }
    for (const [axis, at, len, size] of [[2, p.top, p.height, p.resizedHeight], [3, p.left, p.width, p.resizedWidth]] as const) {
      if (len === size) continue;
      const cut = slice(y, axis, at, at + len);
      y.dispose();
      y = cut;
    }
    return y;
  }

  /** Rescale + normalise of integer-valued pixels (taken over). */
  private normalize(x: Tensor): Tensor {
    const { doNormalize, doRescale } = this.cfg;
    const out = normalizeChannels(x, doNormalize ? this.cfg.mean : [0, 0, 0], doNormalize ? this.cfg.std : [1, 1, 1], doRescale ? this.cfg.rescaleFactor : 1);
    x.dispose();
    return out;
  }

  /** RGB uint8 images (sizes may differ if they crop to the same size) → pixel_values [B, 3, ch, cw]. */
  fromImages(images: readonly RgbImage[]): Tensor {
    if (!images.length) throw new Error("ClipPreprocessor.fromImages: no images");
    const sizes = images.map((im, b) => {
      if (!(im.width > 0 && im.height > 0) || im.data.length !== im.width * im.height * 3) {
        throw new Error(`ClipPreprocessor.fromImages: image ${b} has ${im.data.length} bytes, not a ${im.width}×${im.height} RGB image`);
      }
      return this.outputSize(im.height, im.width).join("×");
    });
    if (new Set(sizes).size > 1) throw new Error(`ClipPreprocessor.fromImages: images crop to different sizes (${sizes.join(", ")})`);
    // Runs of consecutive equal-size images go through together.
    const parts: Tensor[] = [];
    for (let b = 0; b < images.length; ) {
      const { width: W, height: H } = images[b];
      let e = b + 1;
      while (e < images.length && images[e].width === W && images[e].height === H) e++;
      const bytes = new Uint8Array(Math.ceil(((e - b) * H * W * 3) / 4) * 4);
      for (let k = b; k < e; k++) bytes.set(images[k].data, (k - b) * H * W * 3);
      const src = Tensor.fromBytes(this.dev, bytes, [bytes.length / 4], "u32");
      parts.push(this.resizeCrop(unpackRgbBytes(src, [e - b, 3, H, W])));
      src.dispose();
      b = e;
    }
    const all = parts.length === 1 ? parts[0] : concat(parts, 0);
    if (parts.length > 1) parts.forEach((t) => t.dispose());
    return this.normalize(all);
  }

  /** A float image batch [B, 3, H, W] (e.g. from the VAE), quantised to uint8 by `q` first → [B, 3, ch, cw]. */
  fromTensor(x: Tensor, q: Quantize): Tensor {
    if (x.shape.length !== 4 || x.shape[1] !== 3 || x.dtype !== "f32") throw new Error(`ClipPreprocessor.fromTensor: want f32 [B, 3, H, W], got ${x.dtype} [${x.shape}]`);
    return this.normalize(this.resizeCrop(quantizePixels(x, q)));
  }
}
