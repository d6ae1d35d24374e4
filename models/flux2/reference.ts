// Reference images of FLUX.2-klein's editing mode, prepared as diffusers' Flux2KleinPipeline and
// Flux2ImageProcessor do before the VAE encodes them:
// - the image is taken as RGB (alpha dropped, gray replicated: PIL's convert("RGB"), what diffusers' load_image
//   hands the pipeline);
// - check_image_input: a side under 64 px or an aspect ratio over 8 is rejected, with upstream's message;
// - over 1024² px it is first resized to about 1024² px (_resize_to_target_area: int(side·sqrt(1024²/area))) with
//   Pillow's LANCZOS, reproduced bit for bit by the uint8 resize kernel (fixed-point taps, rounded per pass);
// - then CENTER-CROPPED, without resampling, to multiples of 16 px (left = (w − w16)//2, top = (h − h16)//2);
// - /255 and ·2 − 1 in f32 on the CPU (numpy's order), so the pixels are exact.
// Reference i's tokens get RoPE position ids (T, h, w, 0) with T = 10 + 10·i (_prepare_image_ids).
import { type Device, Tensor } from "../../core/index.ts";
import { type Image8, toRgb } from "../../core/png.ts";
import { resizeBicubic } from "../../kernels/resample.ts";

const MIN_SIDE = 64;
const MAX_ASPECT = 8;
const TARGET_AREA = 1024 * 1024;

/** A reference ready for the VAE encoder. */
export interface PreparedReference {
  /** [1, 3, h, w] in [-1, 1], h and w multiples of the crop unit. */
  pixels: Tensor;
  width: number;
  height: number;
}

/** Upstream's check_image_input: throws its message (prefixed with `name`) for a too small or too long image. */
export function checkReference(width: number, height: number, name: string): void {
  if (width < MIN_SIDE || height < MIN_SIDE) {
    throw new Error(`${name}: Image too small: ${width}×${height}. Both dimensions must be at least ${MIN_SIDE}px`);
  }
  const aspect = Math.max(width / height, height / width);
  if (aspect > MAX_ASPECT) {
    throw new Error(`${name}: Aspect ratio too extreme: ${width}×${height} (ratio: ${aspect.toFixed(1)}:1). Maximum allowed ratio is ${MAX_ASPECT}:1`);
  }
}

/** The size a reference is resized to before cropping (diffusers' _resize_to_target_area), or itself when ≤ 1024² px. */
export function referenceResizeTo(width: number, height: number): { width: number; height: number } {
  if (width * height <= TARGET_AREA) return { width, height };
  const scale = Math.sqrt(TARGET_AREA / (width * height));
  return { width: Math.trunc(width * scale), height: Math.trunc(height * scale) };
}

/** The center-crop box of a (resized) reference: sides floored to multiples of `unit`. */
export function referenceCrop(width: number, height: number, unit: number): { left: number; top: number; width: number; height: number } {
  const w = Math.floor(width / unit) * unit, h = Math.floor(height / unit) * unit;
  return { left: Math.floor((width - w) / 2), top: Math.floor((height - h) / 2), width: w, height: h };
}

/** The size a reference has after checking, resizing and cropping (what the encoder sees). */
export function referenceSize(width: number, height: number, unit: number, name: string): { width: number; height: number } {
  checkReference(width, height, name);
  const r = referenceResizeTo(width, height);
  const { width: w, height: h } = referenceCrop(r.width, r.height, unit);
  return { width: w, height: h };
}

/** Checks, resizes (LANCZOS, over 1024² px), center-crops to multiples of `unit` and scales a reference to [-1, 1]. */
export async function prepareReference(dev: Device, image: Image8, unit: number, name: string): Promise<PreparedReference> {
  const img = toRgb(image);
  checkReference(img.width, img.height, name);
  let W = img.width, H = img.height;
  // Planar [3, H, W] pixel values.
  let planes: Float32Array = new Float32Array(3 * W * H);
  for (let i = 0; i < W * H; i++) for (let c = 0; c < 3; c++) planes[c * W * H + i] = img.data[i * 3 + c];
  const to = referenceResizeTo(W, H);
  if (to.width !== W || to.height !== H) {
    const x = Tensor.fromArray(dev, planes, [1, 3, H, W]);
    const y = resizeBicubic(x, to.height, to.width, { antialias: true, uint8: "pil", filter: "lanczos" });
    x.dispose();
    planes = await y.toArray();
    y.dispose();
    ({ width: W, height: H } = to);
  }
  const box = referenceCrop(W, H, unit);
  const out = new Float32Array(3 * box.width * box.height);
  const f = Math.fround;
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < box.height; y++) {
      const src = (c * H + box.top + y) * W + box.left;
      const dst = (c * box.height + y) * box.width;
      for (let x = 0; x < box.width; x++) out[dst + x] = f(f(planes[src + x] / 255) * 2 - 1);
    }
  }
  return { pixels: Tensor.fromArray(dev, out, [1, 3, box.height, box.width]), width: box.width, height: box.height };
}

/** RoPE ids [Σ h_i·w_i, 4] of the references' token grids: (10 + 10·i, r, c, 0), row-major per grid, in order. */
export function referenceIds(grids: readonly { h: number; w: number }[]): Int32Array {
  const ids = new Int32Array(grids.reduce((n, g) => n + g.h * g.w, 0) * 4);
  let at = 0;
  for (const [i, { h, w }] of grids.entries()) {
    for (let r = 0; r < h; r++) {
      for (let c = 0; c < w; c++, at += 4) {
        ids[at] = 10 + 10 * i;
        ids[at + 1] = r;
        ids[at + 2] = c;
      }
    }
  }
  return ids;
}
