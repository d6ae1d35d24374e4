// FLUX.2 VAE (diffusers AutoencoderKLFlux2): Encoder / Decoder of DownEncoderBlock2D / UpDecoderBlock2D, plus the
// pipeline glue around it (BatchNorm-statistics (de)normalisation of the packed latents, 2×2 (un)patchify) and the
// conversion of the decoder output to pixels.
// Design:
// - Built from the diffusers vae/config.json fields; every weight shape is checked against the config at load and
//   uploaded once in its stored dtype (bf16 stays bf16: the kernels decode it). The BN running statistics are read
//   on the CPU and uploaded as f32 per-channel vectors (std = sqrt(var + eps) rounded as torch rounds it in f32).
// - decode / encode are synchronous and eager: every kernel is queued, nothing is read back. Each activation is
//   disposed as soon as its last reader is queued (at 1024² a 128-channel activation is 512 MB in f32), so a step
//   holds at most its input, its output and one or two temporaries. A batch whose largest activation would exceed
//   `maxActivationBytes` (1 GiB: one 1024² image) or a storage binding runs in slices of items and is concatenated;
//   every op is per item, so results do not depend on the slicing.
// - A decode whose largest activation reaches `trimPoolBytes` (256 MiB: from about 512² on) empties the device's
//   pool of free buffers first and after each up block: every stage's buffers are 4× the previous stage's, so
//   freed ones are never reused, and the transformer's freed buffers (2.5 GB at 1024²) would otherwise stay
//   allocated under the decoder's 2.7 GB (measured by `flux2ts plan`).
// - ResNet: GroupNorm+SiLU → conv3×3 → GroupNorm+SiLU → conv3×3 whose epilogue adds the shortcut (x or the 1×1
//   conv_shortcut of x); dropout is inference-off and output_scale_factor 1, so nothing else. Each GroupNorm+SiLU
//   (and conv_norm_out) is only its statistics (groupNormStats) plus conv2d's inputNorm prologue, and the upsampler's
//   nearest ×2 is conv2d's upsample2x: neither normalised nor upsampled activation is ever materialised (at 1024²
//   they were 0.5-1 GiB each, the decode's memory peak).
// - Mid-block attention is single-head over all H·W pixels with head dim C: GroupNorm, [B, C, HW] → [B, HW, C],
//   q/k/v Linear (with bias), flashAttention with one head of width C, to_out Linear, back to NCHW, + x.
// - The latent (de)normalisation is per channel of the 4·latent patchified channels, which is the innermost axis of
//   the packed token layout [B, h·w, 4C]: there it is a broadcast mul/add, done before unpacking (decode side) or
//   after packing (encode side), with torch's operation order (x·std + mean; (x − mean)·(1/std)).
// - Pixels: the decoder output [B, 3, H, W] becomes the clamped [0, 1] float image (diffusers output_type "pt"),
//   or HWC uint8 through kernels/pixels.ts (rounded like diffusers' numpy_to_pil, half to even, or truncated like
//   DiffSynth's vae_output_to_image).
import { type Device, Tensor } from "../../core/index.ts";
import { flashAttention } from "../../kernels/attention.ts";
import { conv2d } from "../../kernels/conv2d.ts";
import { add, mul, scale } from "../../kernels/elementwise.ts";
import { concat, packLatents, patchify2x2, slice, transpose, unpackLatents, unpatchify2x2 } from "../../kernels/layout.ts";
import { matmul } from "../../kernels/matmul.ts";
import { groupNorm, groupNormStats } from "../../kernels/norm.ts";
import { packRgbBytes, type PixelRounding } from "../../kernels/pixels.ts";
import type { Weights } from "../weights.ts";
import { reshaped, positiveInt } from "../util.ts";

/** The fields of diffusers' vae/config.json this model reads (booleans and eps default as in diffusers). */
export interface Flux2VaeConfig {
  in_channels: number;
  out_channels: number;
  down_block_types?: string[];
  up_block_types?: string[];
  block_out_channels: number[];
  layers_per_block: number;
  act_fn?: string;
  latent_channels: number;
  norm_num_groups: number;
  mid_block_add_attention?: boolean;
  use_quant_conv?: boolean;
  use_post_quant_conv?: boolean;
  batch_norm_eps?: number;
  patch_size?: number[];
}

/** Receives named intermediates; a tensor is valid only during the call, so start its read (toArray) there. */
export type VaeDebug = (name: string, t: Tensor) => void;

/** How `imageBytes` maps [-1, 1] to 0..255: diffusers rounds (x/2 + 0.5)·255, DiffSynth truncates (x + 1)·127.5. */
export type { PixelRounding };

/** GroupNorm eps of every ResNet, attention and output norm (diffusers resnet_eps). */
const GN_EPS = 1e-6;

/** A conv or Linear layer: weight and bias. */
interface Layer {
  w: Tensor;
  b: Tensor;
}

interface Norm {
  w: Tensor;
  b: Tensor;
}

interface Resnet {
  norm1: Norm;
  conv1: Layer;
  norm2: Norm;
  conv2: Layer;
  shortcut: Layer | null;
}

interface Attention {
  norm: Norm;
  q: Layer;
  k: Layer;
  v: Layer;
  out: Layer;
}

interface Mid {
  res0: Resnet;
  attn: Attention | null;
  res1: Resnet;
}

interface Encoder {
  convIn: Layer;
  down: { resnets: Resnet[]; downsample: Layer | null }[];
  mid: Mid;
  normOut: Norm;
  convOut: Layer;
  quant: Layer | null;
}

interface Decoder {
  postQuant: Layer | null;
  convIn: Layer;
  mid: Mid;
  up: { resnets: Resnet[]; upsample: Layer | null }[];
  normOut: Norm;
  convOut: Layer;
}

/** Per-channel vectors [4·latent] of the BN statistics, in the forms each direction uses. */
interface BnStats {
  std: Tensor;
  mean: Tensor;
  invStd: Tensor;
  negMean: Tensor;
}

const configInt = (v: unknown, key: string) => positiveInt(v, `Flux2Vae config: ${key}`);

/** Checks the parts of a config this implementation relies on; returns the normalised values. */
function checkConfig(cfg: Flux2VaeConfig) {
  const channels = cfg.block_out_channels;
  if (!Array.isArray(channels) || !channels.length) throw new Error(`Flux2Vae config: block_out_channels [${channels}] must be a non-empty list`);
  channels.forEach((c, i) => configInt(c, `block_out_channels[${i}]`));
  const groups = configInt(cfg.norm_num_groups, "norm_num_groups");
  const bad = channels.find((c) => c % groups);
  if (bad !== undefined) throw new Error(`Flux2Vae config: norm_num_groups ${groups} does not divide block channels ${bad}`);
  for (const [key, want] of [["down_block_types", "DownEncoderBlock2D"], ["up_block_types", "UpDecoderBlock2D"]] as const) {
    const types = cfg[key];
    if (types === undefined) continue;
    if (types.length !== channels.length || types.some((t) => t !== want)) {
      throw new Error(`Flux2Vae config: ${key} [${types}] must be ${channels.length} × ${want}`);
    }
  }
  if ((cfg.act_fn ?? "silu") !== "silu") throw new Error(`Flux2Vae config: act_fn "${cfg.act_fn}" is not supported (silu only)`);
  const patch = cfg.patch_size ?? [2, 2];
  if (patch.length !== 2 || patch[0] !== 2 || patch[1] !== 2) throw new Error(`Flux2Vae config: patch_size [${patch}] is not supported (2×2 only)`);
  const eps = cfg.batch_norm_eps ?? 1e-4;
  if (!(eps >= 0)) throw new Error(`Flux2Vae config: batch_norm_eps ${eps} must be ≥ 0`);
  return {
    channels,
    groups,
    layers: configInt(cfg.layers_per_block, "layers_per_block"),
    latent: configInt(cfg.latent_channels, "latent_channels"),
    inCh: configInt(cfg.in_channels, "in_channels"),
    outCh: configInt(cfg.out_channels, "out_channels"),
    attention: cfg.mid_block_add_attention ?? true,
    quant: cfg.use_quant_conv ?? true,
    postQuant: cfg.use_post_quant_conv ?? true,
    eps,
  };
}


// ---- pixels ---------------------------------------------------------------------------------------------------

function expectRgb(x: Tensor, what: string): void {
  if (x.shape.length !== 4 || x.shape[1] !== 3 || x.dtype !== "f32") throw new Error(`${what}: expected f32 [B, 3, H, W], got ${x.dtype} [${x.shape}]`);
}

/** The decoder output [B, 3, H, W] as the clamped [0, 1] image (diffusers output_type "pt"), on the GPU. */
export function toImageFloat(x: Tensor): Tensor {
  expectRgb(x, "toImageFloat");
  return scale(x, 0.5, 0.5, [0, 1]); // x/2 + 0.5 exactly: halving is exact in f32
}

/** The decoder output [B, 3, H, W] as uint8 [B, H, W, 3] (HWC RGB), converted on the GPU and read back. */
export async function imageBytes(x: Tensor, rounding: PixelRounding = "round"): Promise<Uint8Array> {
  expectRgb(x, "imageBytes");
  const packed = packRgbBytes(x, rounding);
  try {
    return (await packed.readBytes()).subarray(0, x.size);
  } finally {
    packed.dispose();
  }
}

// ---- the model ------------------------------------------------------------------------------------------------

export class Flux2Vae {
  /** Latent channels of the VAE (before 2×2 patchify). */
  readonly latentChannels: number;
  /** Pixels per VAE latent pixel along each axis: 2^(blocks − 1). */
  readonly scaleFactor: number;
  readonly groups: number;
  /**
   * Largest activation a decode/encode call may hold as one tensor; bigger batches run in slices. At 1024² one
   * image's largest decoder activation (256 channels at full resolution) is 1 GiB, so that size runs item by item.
   */
  maxActivationBytes = 2 ** 30;
  /** Decodes whose largest activation reaches this many bytes trim the pool (see the file header). */
  trimPoolBytes = 2 ** 28;

  private constructor(
    readonly dev: Device,
    readonly weights: Weights,
    cfg: ReturnType<typeof checkConfig>,
    private readonly encoder: Encoder | null,
    private readonly decoder: Decoder | null,
    private readonly bn: BnStats,
  ) {
    this.latentChannels = cfg.latent;
    this.scaleFactor = 2 ** (cfg.channels.length - 1);
    this.groups = cfg.groups;
  }

  /**
   * Uploads the weights (diffusers names, relative to `weights`' prefix) after checking their shapes against `cfg`.
   * `parts` leaves out the encoder (text-to-image never encodes) or the decoder.
   */
  static async load(dev: Device, weights: Weights, config: Flux2VaeConfig, parts: { encoder?: boolean; decoder?: boolean } = {}): Promise<Flux2Vae> {
    const cfg = checkConfig(config);
    const { channels, layers, latent } = cfg;
    const get = async (name: string, shape: number[]) => {
      if (!weights.has(name)) throw new Error(`Flux2Vae: checkpoint has no "${name}"`);
      const got = weights.shape(name);
      if (got.join() !== shape.join()) throw new Error(`Flux2Vae: "${name}" is [${got}], config wants [${shape}]`);
      return weights.get(name);
    };
    const conv = async (p: string, cout: number, cin: number, k: number): Promise<Layer> => ({
      w: await get(`${p}.weight`, [cout, cin, k, k]),
      b: await get(`${p}.bias`, [cout]),
    });
    const linear = async (p: string, c: number): Promise<Layer> => ({ w: await get(`${p}.weight`, [c, c]), b: await get(`${p}.bias`, [c]) });
    const norm = async (p: string, c: number): Promise<Norm> => ({ w: await get(`${p}.weight`, [c]), b: await get(`${p}.bias`, [c]) });
    const resnet = async (p: string, cin: number, cout: number): Promise<Resnet> => ({
      norm1: await norm(`${p}.norm1`, cin),
      conv1: await conv(`${p}.conv1`, cout, cin, 3),
      norm2: await norm(`${p}.norm2`, cout),
      conv2: await conv(`${p}.conv2`, cout, cout, 3),
      shortcut: cin !== cout ? await conv(`${p}.conv_shortcut`, cout, cin, 1) : null,
    });
    const top = channels[channels.length - 1];
    const mid = async (p: string): Promise<Mid> => ({
      res0: await resnet(`${p}.resnets.0`, top, top),
      attn: cfg.attention
        ? {
            norm: await norm(`${p}.attentions.0.group_norm`, top),
            q: await linear(`${p}.attentions.0.to_q`, top),
            k: await linear(`${p}.attentions.0.to_k`, top),
            v: await linear(`${p}.attentions.0.to_v`, top),
            out: await linear(`${p}.attentions.0.to_out.0`, top),
          }
        : null,
      res1: await resnet(`${p}.resnets.1`, top, top),
    });

    let encoder: Encoder | null = null;
    if (parts.encoder ?? true) {
      const down: Encoder["down"] = [];
      let cin = channels[0];
      for (const [i, cout] of channels.entries()) {
        const resnets: Resnet[] = [];
        for (let j = 0; j < layers; j++) resnets.push(await resnet(`encoder.down_blocks.${i}.resnets.${j}`, j ? cout : cin, cout));
        const last = i === channels.length - 1;
        down.push({ resnets, downsample: last ? null : await conv(`encoder.down_blocks.${i}.downsamplers.0.conv`, cout, cout, 3) });
        cin = cout;
      }
      encoder = {
        convIn: await conv("encoder.conv_in", channels[0], cfg.inCh, 3),
        down,
        mid: await mid("encoder.mid_block"),
        normOut: await norm("encoder.conv_norm_out", top),
        convOut: await conv("encoder.conv_out", 2 * latent, top, 3),
        quant: cfg.quant ? await conv("quant_conv", 2 * latent, 2 * latent, 1) : null,
      };
    }

    let decoder: Decoder | null = null;
    if (parts.decoder ?? true) {
      const rev = [...channels].reverse();
      const up: Decoder["up"] = [];
      let cin = rev[0];
      for (const [i, cout] of rev.entries()) {
        const resnets: Resnet[] = [];
        for (let j = 0; j <= layers; j++) resnets.push(await resnet(`decoder.up_blocks.${i}.resnets.${j}`, j ? cout : cin, cout));
        const last = i === rev.length - 1;
        up.push({ resnets, upsample: last ? null : await conv(`decoder.up_blocks.${i}.upsamplers.0.conv`, cout, cout, 3) });
        cin = cout;
      }
      decoder = {
        postQuant: cfg.postQuant ? await conv("post_quant_conv", latent, latent, 1) : null,
        convIn: await conv("decoder.conv_in", top, latent, 3),
        mid: await mid("decoder.mid_block"),
        up,
        normOut: await norm("decoder.conv_norm_out", channels[0]),
        convOut: await conv("decoder.conv_out", cfg.outCh, channels[0], 3),
      };
    }

    // BN statistics in f32 as torch computes them: std = sqrt(var + eps) with one f32 rounding per operation.
    const P = 4 * latent;
    for (const n of ["bn.running_mean", "bn.running_var"]) {
      if (!weights.has(n) || weights.shape(n).join() !== String(P)) throw new Error(`Flux2Vae: "${n}" must be [${P}] (4 × latent_channels)`);
    }
    const mean = await weights.cpu("bn.running_mean");
    const variance = await weights.cpu("bn.running_var");
    const f = Math.fround;
    const std = variance.map((v) => f(Math.sqrt(f(v + f(cfg.eps)))));
    const up = (a: Float32Array) => Tensor.fromArray(dev, a, [P]).keep();
    const bn: BnStats = { std: up(std), mean: up(mean), invStd: up(std.map((s) => 1 / s)), negMean: up(mean.map((m) => -m)) };
    return new Flux2Vae(dev, weights, cfg, encoder, decoder, bn);
  }

  /** Frees the BN vectors and every weight of the `Weights` this model was loaded from. */
  dispose(): void {
    for (const t of Object.values(this.bn)) t.dispose();
    this.weights.dispose();
  }

  // ---- pipeline glue ------------------------------------------------------------------------------------------

  /**
   * Packed latent tokens [B, h·w, 4·latent] (token r·w + c) → VAE latents [B, latent, 2h, 2w]: BN de-normalisation
   * x·sqrt(var + eps) + mean per channel, unpack, 2×2 unpatchify (channel c·4 + dy·2 + dx). Debug: dec_unpacked
   * (the raw tokens as [B, 4·latent, h, w]), dec_denormalized.
   */
  denormalizePacked(tokens: Tensor, h: number, w: number, debug?: VaeDebug): Tensor {
    const P = 4 * this.latentChannels;
    if (tokens.shape.length !== 3 || tokens.shape[2] !== P || tokens.shape[1] !== h * w) {
      throw new Error(`Flux2Vae.denormalizePacked: tokens [${tokens.shape}] must be [B, ${h}·${w}, ${P}]`);
    }
    if (debug) {
      const raw = unpackLatents(tokens, h, w);
      debug("dec_unpacked", raw);
      raw.dispose();
    }
    const scaled = mul(tokens, this.bn.std);
    const shifted = add(scaled, this.bn.mean);
    scaled.dispose();
    const grid = unpackLatents(shifted, h, w);
    shifted.dispose();
    debug?.("dec_denormalized", grid);
    const out = unpatchify2x2(grid);
    grid.dispose();
    return out;
  }

  /**
   * Encoder posterior mean [B, latent, H, W] → normalised packed tokens [B, (H/2)·(W/2), 4·latent]: 2×2 patchify,
   * (x − mean)/sqrt(var + eps) per channel, packed as the transformer takes them. Debug: enc_patchified.
   */
  normalizeToPacked(latents: Tensor, debug?: VaeDebug): Tensor {
    if (latents.shape.length !== 4 || latents.shape[1] !== this.latentChannels) {
      throw new Error(`Flux2Vae.normalizeToPacked: latents [${latents.shape}] must be [B, ${this.latentChannels}, H, W]`);
    }
    const patches = patchify2x2(latents);
    debug?.("enc_patchified", patches);
    const tokens = packLatents(patches);
    patches.dispose();
    const centred = add(tokens, this.bn.negMean);
    tokens.dispose();
    const out = mul(centred, this.bn.invStd);
    centred.dispose();
    return out;
  }

  // ---- decoder / encoder --------------------------------------------------------------------------------------

  /**
   * VAE latents z [B, latent, h, w] → decoder output [B, out_channels, 8h, 8w] (roughly [-1, 1]). Debug:
   * post_quant_conv, dec_conv_in, dec_mid_block, dec_up_block_{i}, dec_conv_out (once per batch slice when the
   * batch is too big to run at once, see `batched`).
   */
  decode(z: Tensor, debug?: VaeDebug): Tensor {
    const d = this.decoder;
    if (!d) throw new Error("Flux2Vae.decode: loaded without the decoder");
    if (z.shape.length !== 4 || z.shape[1] !== this.latentChannels || z.dtype !== "f32") {
      throw new Error(`Flux2Vae.decode: z ${z.dtype} [${z.shape}] must be f32 [B, ${this.latentChannels}, h, w]`);
    }
    // The biggest activation of one item: up block i runs at 4^i times the latent area, its upsampler writes 4× that.
    const area = z.shape[2] * z.shape[3];
    const peak = Math.max(...d.up.map((b, i) => {
      const [cin, cout] = [b.resnets[0].norm1.w.shape[0], b.resnets[0].conv1.w.shape[0]];
      return Math.max(cin, cout, b.upsample ? 4 * cout : 0) * area * 4 ** i;
    }));
    const trim = 4 * peak * z.shape[0] >= this.trimPoolBytes;
    return this.batched(z, 4 * peak, (part) => this.decodeItems(d, part, debug ?? (() => {}), trim));
  }

  private decodeItems(d: Decoder, z: Tensor, emit: VaeDebug, trim: boolean): Tensor {
    if (trim) this.dev.trimPool();
    let x = z;
    const step = (y: Tensor) => {
      if (x !== z) x.dispose();
      x = y;
    };
    if (d.postQuant) {
      step(conv2d(x, d.postQuant.w, d.postQuant.b));
      emit("post_quant_conv", x);
    }
    step(conv2d(x, d.convIn.w, d.convIn.b, { padding: 1 }));
    emit("dec_conv_in", x);
    step(this.midBlock(d.mid, x));
    emit("dec_mid_block", x);
    for (const [i, blk] of d.up.entries()) {
      x = this.runUpBlock(blk, x, x !== z);
      emit(`dec_up_block_${i}`, x);
      if (trim) this.dev.trimPool();
    }
    step(this.normConv(x, d.normOut, d.convOut));
    emit("dec_conv_out", x);
    return x;
  }

  /** Decoder up block i alone (its resnets, then the upsampler) on x [B, C_in, h, w]; x stays alive (benchmarks). */
  upBlock(i: number, x: Tensor): Tensor {
    const blk = this.decoder?.up[i];
    if (!blk) throw new Error(`Flux2Vae.upBlock: no decoder up block ${i}`);
    const cin = blk.resnets[0].norm1.w.shape[0];
    if (x.shape.length !== 4 || x.shape[1] !== cin || x.dtype !== "f32") throw new Error(`Flux2Vae.upBlock: x ${x.dtype} [${x.shape}] must be f32 [B, ${cin}, h, w]`);
    return this.runUpBlock(blk, x, false);
  }

  /** Resnets then upsampler; each intermediate is freed once consumed, and x too when `consume`. */
  private runUpBlock(blk: Decoder["up"][number], x0: Tensor, consume: boolean): Tensor {
    let x = x0;
    const step = (y: Tensor) => {
      if (x !== x0 || consume) x.dispose();
      x = y;
    };
    for (const r of blk.resnets) step(this.resnet(r, x));
    if (blk.upsample) step(conv2d(x, blk.upsample.w, blk.upsample.b, { padding: 1, upsample2x: true }));
    return x;
  }

  /**
   * Image [B, in_channels, H, W] in [-1, 1] (H, W multiples of 8) → the posterior mean [B, latent, H/8, W/8]
   * (DiagonalGaussianDistribution.mode()). Debug: enc_conv_in, enc_down_block_{i}, enc_mid_block, enc_conv_out,
   * enc_moments (quant_conv output: mean and logvar along channels); once per batch slice, as in `decode`.
   */
  encode(img: Tensor, debug?: VaeDebug): Tensor {
    const e = this.encoder;
    if (!e) throw new Error("Flux2Vae.encode: loaded without the encoder");
    const f = this.scaleFactor;
    if (img.shape.length !== 4 || img.shape[1] !== e.convIn.w.shape[1] || img.shape[2] % f || img.shape[3] % f || img.dtype !== "f32") {
      throw new Error(`Flux2Vae.encode: image ${img.dtype} [${img.shape}] must be f32 [B, ${e.convIn.w.shape[1]}, H, W] with H, W multiples of ${f}`);
    }
    // The biggest activation of one item: down block i runs at 1/4^i of the image area.
    const area = img.shape[2] * img.shape[3];
    const peak = Math.max(...e.down.map((b, i) => Math.max(b.resnets[0].norm1.w.shape[0], b.resnets[0].conv1.w.shape[0]) * area / 4 ** i));
    return this.batched(img, 4 * peak, (part) => this.encodeItems(e, part, debug ?? (() => {})));
  }

  private encodeItems(e: Encoder, img: Tensor, emit: VaeDebug): Tensor {
    let x = img;
    const step = (y: Tensor) => {
      if (x !== img) x.dispose();
      x = y;
    };
    step(conv2d(x, e.convIn.w, e.convIn.b, { padding: 1 }));
    emit("enc_conv_in", x);
    for (const [i, blk] of e.down.entries()) {
      for (const r of blk.resnets) step(this.resnet(r, x));
      // diffusers Downsample2D with padding 0: pad right and bottom by one, then a stride-2 3×3 conv.
      if (blk.downsample) step(conv2d(x, blk.downsample.w, blk.downsample.b, { stride: 2, padding: [0, 1, 0, 1] }));
      emit(`enc_down_block_${i}`, x);
    }
    step(this.midBlock(e.mid, x));
    emit("enc_mid_block", x);
    step(this.normConv(x, e.normOut, e.convOut));
    emit("enc_conv_out", x);
    if (e.quant) step(conv2d(x, e.quant.w, e.quant.b));
    emit("enc_moments", x);
    // The posterior mean is the first `latent` channels of the moments.
    step(slice(x, 1, 0, this.latentChannels));
    return x;
  }

  /**
   * Runs `run` on the whole batch, or on consecutive slices of it when an activation of the whole batch
   * (`itemBytes` per item) would exceed maxActivationBytes or one storage binding; results are concatenated.
   */
  private batched(x: Tensor, itemBytes: number, run: (part: Tensor) => Tensor): Tensor {
    const B = x.shape[0];
    const per = Math.max(1, Math.floor(Math.min(this.maxActivationBytes, this.dev.limits.maxStorageBufferBindingSize) / itemBytes));
    if (per >= B) return run(x);
    const outs: Tensor[] = [];
    for (let s = 0; s < B; s += per) {
      const part = slice(x, 0, s, Math.min(B, s + per));
      outs.push(run(part));
      part.dispose();
    }
    const out = concat(outs, 0);
    for (const o of outs) o.dispose();
    return out;
  }

  // ---- blocks -------------------------------------------------------------------------------------------------

  private resnet(r: Resnet, x: Tensor): Tensor {
    const h1 = this.normConv(x, r.norm1, r.conv1);
    const shortcut = r.shortcut ? conv2d(x, r.shortcut.w, r.shortcut.b) : x;
    const out = this.normConv(h1, r.norm2, r.conv2, shortcut);
    h1.dispose();
    if (shortcut !== x) shortcut.dispose();
    return out;
  }

  /** conv3×3(SiLU(GroupNorm(x))) (+ residual), normalising x while the convolution loads it. */
  private normConv(x: Tensor, n: Norm, c: Layer, residual?: Tensor): Tensor {
    const stats = groupNormStats(x, this.groups, { eps: GN_EPS });
    const inputNorm = { stats, groups: this.groups, weight: n.w, bias: n.b, silu: true };
    const out = conv2d(x, c.w, c.b, { padding: 1, residual, inputNorm });
    stats.dispose();
    return out;
  }

  private attention(a: Attention, x: Tensor): Tensor {
    const [B, C, H, W] = x.shape;
    const L = H * W;
    const n = groupNorm(x, this.groups, a.norm.w, a.norm.b, { eps: GN_EPS });
    const flat = reshaped(n, [B, C, L]);
    const tokens = transpose(flat, [0, 2, 1]);
    flat.dispose();
    const heads = [a.q, a.k, a.v].map((p) => reshaped(matmul(tokens, p.w, { bias: p.b }), [B, L, 1, C]));
    tokens.dispose();
    const o = flashAttention(heads[0], heads[1], heads[2], { scale: 1 / Math.sqrt(C) });
    for (const t of heads) t.dispose();
    const rows = reshaped(o, [B, L, C]);
    const proj = matmul(rows, a.out.w, { bias: a.out.b });
    rows.dispose();
    const back = transpose(proj, [0, 2, 1]);
    proj.dispose();
    const y = reshaped(back, [B, C, H, W]);
    const out = add(y, x);
    y.dispose();
    return out;
  }

  private midBlock(m: Mid, x: Tensor): Tensor {
    let h = this.resnet(m.res0, x);
    if (m.attn) {
      const a = this.attention(m.attn, h);
      h.dispose();
      h = a;
    }
    const out = this.resnet(m.res1, h);
    h.dispose();
    return out;
  }
}
