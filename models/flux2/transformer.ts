// FLUX.2 DiT (diffusers Flux2Transformer2DModel): double-stream blocks on separate image/text streams with joint
// attention, then single-stream "parallel" blocks on [txt ; img], then AdaLN-continuous and proj_out.
// Design:
// - Built from the diffusers config.json fields; every weight shape is checked against it at load, and all weights
//   are uploaded once, in their stored dtype (bf16 stays bf16: the kernels decode it).
// - forward is synchronous and eager: every kernel is queued, nothing is read back. Intermediates are disposed as
//   soon as their last reader is queued (the pool may hand the buffer to a later kernel of the same batch safely).
// - Shared modulation: temb → SiLU once, then one matmul per modulation (img, txt, single, norm_out) per forward;
//   the [B, k·D] outputs are sliced into [B, D] vectors reused by every block.
// - Residual branches end in the matmul's fused epilogue y = residual + gate ⊙ (a·Wᵀ), so no separate gate or add
//   launch; the timestep MLP fuses its SiLU into linear_1.
// - RoPE tables cover the joint sequence [txt ; img] (text first), computed in float64 on the CPU like diffusers and
//   cached for the last (txtIds, imgIds) pair, since a denoising loop reuses them every step.
// - Batch B ≥ 1: activations are [B, L, ·], per-batch vectors [B, D]; ids are shared by the batch (as diffusers).
import { type Device, Tensor } from "../../core/index.ts";
import { flashAttention } from "../../kernels/attention.ts";
import { add, modulate, silu, swiglu } from "../../kernels/elementwise.ts";
import { concat, slice } from "../../kernels/layout.ts";
import { matmul } from "../../kernels/matmul.ts";
import { layerNorm, rmsNorm } from "../../kernels/norm.ts";
import { rope, ropeTables } from "../../kernels/rope.ts";
import type { Weights } from "../weights.ts";
import { timestepSinusoid } from "./timestep.ts";
import { free, reshaped, positiveInt } from "../util.ts";

/** The fields of diffusers' transformer/config.json this model reads. */
export interface Flux2TransformerConfig {
  patch_size?: number;
  in_channels: number;
  out_channels?: number | null;
  num_layers: number;
  num_single_layers: number;
  attention_head_dim: number;
  num_attention_heads: number;
  joint_attention_dim: number;
  timestep_guidance_channels: number;
  mlp_ratio: number;
  axes_dims_rope: number[];
  rope_theta: number;
  eps: number;
  /** Absent in older configs: then the checkpoint decides (a guidance_embedder is present or not). */
  guidance_embeds?: boolean;
}

export interface Flux2ForwardInputs {
  /** [B, L_img, in_channels] packed latent tokens. */
  x: Tensor;
  /** [B, L_txt, joint_attention_dim] text embeddings. */
  context: Tensor;
  /** Per batch item: sigma in [0, 1] (the model multiplies by 1000). */
  timestep: readonly number[];
  /** Per batch item: the guidance scale as pipelines pass it (×1000 inside); used only with guidance_embeds. */
  guidance?: readonly number[];
  /** [L_img, nAxes] position ids (t, h, w, l), row-major. */
  imgIds: Int32Array;
  /** [L_txt, nAxes] position ids. */
  txtIds: Int32Array;
  /**
   * Receives named intermediates (temb, mod_*, x_embedder_out, double_block_{i}_{txt,img}, single_block_{i},
   * norm_out_out, rope_cos/rope_sin [L, head_dim/2], timestep_proj, guidance_proj, temb_timestep, temb_guidance).
   * A tensor is valid only during the call: start its read (toArray) there.
   */
  debug?: (name: string, t: Tensor) => void;
}

interface DoubleBlock {
  toQ: Tensor; toK: Tensor; toV: Tensor; normQ: Tensor; normK: Tensor; toOut: Tensor;
  addQ: Tensor; addK: Tensor; addV: Tensor; normAddQ: Tensor; normAddK: Tensor; toAddOut: Tensor;
  ffIn: Tensor; ffOut: Tensor; ffCtxIn: Tensor; ffCtxOut: Tensor;
}

interface SingleBlock {
  qkvMlp: Tensor; normQ: Tensor; normK: Tensor; toOut: Tensor;
}

/** An MLP linear_1 → SiLU → linear_2 (diffusers TimestepEmbedding without biases). */
interface Embedder {
  lin1: Tensor;
  lin2: Tensor;
}

/** shift, scale, gate vectors [B, D] of one modulated sub-block. */
interface Mod extends Affine {
  gate: Tensor;
}

/** Every weight tensor of the model, grouped as the forward pass uses them. */
interface Parts {
  time: Embedder;
  guidance: Embedder | null;
  modImg: Tensor;
  modTxt: Tensor;
  modSingle: Tensor;
  normOut: Tensor;
  xEmbedder: Tensor;
  ctxEmbedder: Tensor;
  doubles: DoubleBlock[];
  singles: SingleBlock[];
  projOut: Tensor;
}

interface Rope {
  cos: Tensor;
  sin: Tensor;
}

/** AdaLN parameters: x·(1 + scale) + shift. */
interface Affine {
  shift: Tensor;
  scale: Tensor;
}


const configInt = (cfg: Flux2TransformerConfig, key: keyof Flux2TransformerConfig) => positiveInt(cfg[key], `Flux2Transformer config: ${key}`);

export class Flux2Transformer {
  readonly D: number;
  readonly heads: number;
  readonly headDim: number;
  readonly mlpHidden: number;
  readonly inChannels: number;
  readonly outChannels: number;
  readonly jointDim: number;
  readonly timeChannels: number;
  readonly axesDims: readonly number[];
  readonly theta: number;
  readonly eps: number;
  private ropeCache: { txt: Int32Array; img: Int32Array; tables: Rope } | null = null;

  private constructor(readonly dev: Device, readonly weights: Weights, cfg: Flux2TransformerConfig, private readonly w: Parts) {
    this.heads = cfg.num_attention_heads;
    this.headDim = cfg.attention_head_dim;
    this.D = this.heads * this.headDim;
    this.mlpHidden = Math.floor(this.D * cfg.mlp_ratio);
    this.inChannels = cfg.in_channels;
    this.outChannels = w.projOut.shape[0];
    this.jointDim = cfg.joint_attention_dim;
    this.timeChannels = cfg.timestep_guidance_channels;
    this.axesDims = [...cfg.axes_dims_rope];
    this.theta = cfg.rope_theta;
    this.eps = cfg.eps;
  }

  /** Uploads every weight (diffusers names, relative to `weights`' prefix) after checking its shape against `cfg`. */
  static async load(dev: Device, weights: Weights, cfg: Flux2TransformerConfig): Promise<Flux2Transformer> {
    for (const k of ["in_channels", "num_attention_heads", "attention_head_dim", "joint_attention_dim", "timestep_guidance_channels"] as const) configInt(cfg, k);
    for (const k of ["num_layers", "num_single_layers"] as const) {
      if (!Number.isInteger(cfg[k]) || cfg[k] < 0) throw new Error(`Flux2Transformer config: ${k} = ${cfg[k]} must be an integer ≥ 0`);
    }
    const Dh = cfg.attention_head_dim;
    const D = cfg.num_attention_heads * Dh;
    const F = Math.floor(D * cfg.mlp_ratio);
    const axes = cfg.axes_dims_rope;
    if (!Array.isArray(axes) || !axes.length || axes.reduce((a, b) => a + b, 0) !== Dh) {
      throw new Error(`Flux2Transformer config: axes_dims_rope [${axes}] must sum to attention_head_dim ${Dh}`);
    }
    if (!(F > 0) || !(cfg.eps > 0) || !(cfg.rope_theta > 0)) {
      throw new Error(`Flux2Transformer config: mlp_ratio ${cfg.mlp_ratio}, eps ${cfg.eps}, rope_theta ${cfg.rope_theta} must be positive`);
    }
    const patch = cfg.patch_size ?? 1;
    const outCh = patch * patch * (cfg.out_channels ?? cfg.in_channels);
    const C = cfg.timestep_guidance_channels;

    const get = async (name: string, shape: number[]) => {
      if (!weights.has(name)) throw new Error(`Flux2Transformer: checkpoint has no "${name}"`);
      const got = weights.shape(name);
      if (got.join() !== shape.join()) throw new Error(`Flux2Transformer: "${name}" is [${got}], config wants [${shape}]`);
      return weights.get(name);
    };
    const embedder = async (p: string): Promise<Embedder> => ({ lin1: await get(`${p}.linear_1.weight`, [D, C]), lin2: await get(`${p}.linear_2.weight`, [D, D]) });
    const gName = "time_guidance_embed.guidance_embedder";
    const withGuidance = cfg.guidance_embeds ?? weights.has(`${gName}.linear_1.weight`);

    const doubles: DoubleBlock[] = [];
    for (let i = 0; i < cfg.num_layers; i++) {
      const p = `transformer_blocks.${i}.`;
      const w = (n: string, s: number[]) => get(p + n, s);
      doubles.push({
        toQ: await w("attn.to_q.weight", [D, D]),
        toK: await w("attn.to_k.weight", [D, D]),
        toV: await w("attn.to_v.weight", [D, D]),
        normQ: await w("attn.norm_q.weight", [Dh]),
        normK: await w("attn.norm_k.weight", [Dh]),
        toOut: await w("attn.to_out.0.weight", [D, D]),
        addQ: await w("attn.add_q_proj.weight", [D, D]),
        addK: await w("attn.add_k_proj.weight", [D, D]),
        addV: await w("attn.add_v_proj.weight", [D, D]),
        normAddQ: await w("attn.norm_added_q.weight", [Dh]),
        normAddK: await w("attn.norm_added_k.weight", [Dh]),
        toAddOut: await w("attn.to_add_out.weight", [D, D]),
        ffIn: await w("ff.linear_in.weight", [2 * F, D]),
        ffOut: await w("ff.linear_out.weight", [D, F]),
        ffCtxIn: await w("ff_context.linear_in.weight", [2 * F, D]),
        ffCtxOut: await w("ff_context.linear_out.weight", [D, F]),
      });
    }
    const singles: SingleBlock[] = [];
    for (let i = 0; i < cfg.num_single_layers; i++) {
      const p = `single_transformer_blocks.${i}.attn.`;
      singles.push({
        qkvMlp: await get(`${p}to_qkv_mlp_proj.weight`, [3 * D + 2 * F, D]),
        normQ: await get(`${p}norm_q.weight`, [Dh]),
        normK: await get(`${p}norm_k.weight`, [Dh]),
        toOut: await get(`${p}to_out.weight`, [D, D + F]),
      });
    }
    return new Flux2Transformer(dev, weights, cfg, {
      time: await embedder("time_guidance_embed.timestep_embedder"),
      guidance: withGuidance ? await embedder(gName) : null,
      modImg: await get("double_stream_modulation_img.linear.weight", [6 * D, D]),
      modTxt: await get("double_stream_modulation_txt.linear.weight", [6 * D, D]),
      modSingle: await get("single_stream_modulation.linear.weight", [3 * D, D]),
      normOut: await get("norm_out.linear.weight", [2 * D, D]),
      xEmbedder: await get("x_embedder.weight", [D, cfg.in_channels]),
      ctxEmbedder: await get("context_embedder.weight", [D, cfg.joint_attention_dim]),
      doubles,
      singles,
      projOut: await get("proj_out.weight", [outCh, D]),
    });
  }

  /** Whether this checkpoint embeds a guidance value (FLUX.2 [dev]); klein does not. */
  get guidanceEmbeds(): boolean {
    return this.w.guidance !== null;
  }

  /** The velocity prediction [B, L_img, out_channels]. */
  forward(inp: Flux2ForwardInputs): Tensor {
    const { x, context, timestep, imgIds, txtIds } = inp;
    const emit = inp.debug ?? (() => {});
    const [B, Li, Cin] = x.shape;
    const Lt = context.shape[1];
    if (x.shape.length !== 3 || Cin !== this.inChannels) throw new Error(`Flux2Transformer: x [${x.shape}] must be [B, L_img, ${this.inChannels}]`);
    if (context.shape.length !== 3 || context.shape[0] !== B || context.shape[2] !== this.jointDim) {
      throw new Error(`Flux2Transformer: context [${context.shape}] must be [${B}, L_txt, ${this.jointDim}]`);
    }
    if (timestep.length !== B) throw new Error(`Flux2Transformer: ${timestep.length} timesteps for batch ${B}`);
    const nAxes = this.axesDims.length;
    for (const [name, ids, L] of [["imgIds", imgIds, Li], ["txtIds", txtIds, Lt]] as const) {
      if (ids.length !== L * nAxes) throw new Error(`Flux2Transformer: ${name} has ${ids.length} values, want [${L}, ${nAxes}]`);
    }
    const guidance = this.w.guidance ? inp.guidance : undefined;
    if (guidance && guidance.length !== B) throw new Error(`Flux2Transformer: ${guidance.length} guidance values for batch ${B}`);

    const temb = this.timeEmbedding(timestep, guidance, emit);
    const mods = this.modulations(temb, emit);
    const tables = this.ropeTables(txtIds, imgIds);
    emit("rope_cos", tables.cos);
    emit("rope_sin", tables.sin);

    let img = matmul(x, this.w.xEmbedder);
    let txt = matmul(context, this.w.ctxEmbedder);
    emit("x_embedder_out", img);
    emit("context_embedder_out", txt);
    for (const [i, blk] of this.w.doubles.entries()) {
      [img, txt] = this.doubleBlock(blk, img, txt, mods, tables);
      emit(`double_block_${i}_txt`, txt);
      emit(`double_block_${i}_img`, img);
    }
    let s = concat([txt, img], 1);
    free(img, txt);
    for (const [i, blk] of this.w.singles.entries()) {
      s = this.singleBlock(blk, s, mods.single, tables);
      emit(`single_block_${i}`, s);
    }
    const imgOut = slice(s, 1, Lt, Lt + Li);
    const y = this.adaNorm(imgOut, mods.out);
    emit("norm_out_out", y);
    const out = matmul(y, this.w.projOut);
    free(s, imgOut, y, mods.out.shift, mods.out.scale);
    for (const m of [...mods.img, ...mods.txt, mods.single]) free(m.shift, m.scale, m.gate);
    return out;
  }

  /** Frees the cached RoPE tables and every weight of the `Weights` this model was loaded from. */
  dispose(): void {
    if (this.ropeCache) free(this.ropeCache.tables.cos, this.ropeCache.tables.sin);
    this.ropeCache = null;
    this.weights.dispose();
  }

  // ---- pieces ---------------------------------------------------------------------------------------------

  /** temb [B, D] = timestep MLP(sinusoid(t·1000)) (+ guidance MLP(sinusoid(g·1000))). */
  private timeEmbedding(timestep: readonly number[], guidance: readonly number[] | undefined, emit: (n: string, t: Tensor) => void): Tensor {
    const B = timestep.length;
    const C = this.timeChannels;
    const mlp = (proj: Tensor, e: Embedder) => {
      const h = matmul(proj, e.lin1, { activation: "silu" });
      const out = matmul(h, e.lin2);
      free(h, proj);
      return out;
    };
    const tProj = Tensor.fromArray(this.dev, timestepSinusoid(timestep, C), [B, C]);
    emit("timestep_proj", tProj);
    const tEmb = mlp(tProj, this.w.time);
    if (!guidance || !this.w.guidance) return tEmb;
    const gProj = Tensor.fromArray(this.dev, timestepSinusoid(guidance, C), [B, C]);
    emit("guidance_proj", gProj);
    const gEmb = mlp(gProj, this.w.guidance);
    emit("temb_timestep", tEmb);
    emit("temb_guidance", gEmb);
    const temb = add(tEmb, gEmb);
    free(tEmb, gEmb);
    return temb;
  }

  /** The shared modulation vectors of every block, from one SiLU(temb). Frees temb. */
  private modulations(temb: Tensor, emit: (n: string, t: Tensor) => void) {
    emit("temb", temb);
    const D = this.D;
    const st = silu(temb);
    const split = (w: Tensor, name: string): Mod[] => {
      const m = matmul(st, w);
      emit(name, m);
      const mods: Mod[] = [];
      for (let k = 0; k < m.shape[1] / D; k += 3) {
        const part = (j: number) => slice(m, 1, (k + j) * D, (k + j + 1) * D);
        mods.push({ shift: part(0), scale: part(1), gate: part(2) });
      }
      m.dispose();
      return mods;
    };
    const img = split(this.w.modImg, "mod_double_img");
    const txt = split(this.w.modTxt, "mod_double_txt");
    const [single] = split(this.w.modSingle, "mod_single");
    // norm_out (AdaLayerNormContinuous) chunks are (scale, shift), no gate.
    const no = matmul(st, this.w.normOut);
    const out: Affine = { scale: slice(no, 1, 0, D), shift: slice(no, 1, D, 2 * D) };
    free(temb, st, no);
    return { img, txt, single, out };
  }

  /** cos/sin [L_txt + L_img, head_dim/2] over [txt ; img], reused while the ids repeat. */
  private ropeTables(txtIds: Int32Array, imgIds: Int32Array): Rope {
    const same = (a: Int32Array, b: Int32Array) => a.length === b.length && a.every((v, i) => v === b[i]);
    const c = this.ropeCache;
    if (c && same(c.txt, txtIds) && same(c.img, imgIds)) return c.tables;
    const pos = new Int32Array(txtIds.length + imgIds.length);
    pos.set(txtIds);
    pos.set(imgIds, txtIds.length);
    const t = ropeTables(this.dev, pos, this.axesDims, this.theta, { precision: "f64" });
    const tables = { cos: t.cos.keep(), sin: t.sin.keep() };
    if (c) free(c.tables.cos, c.tables.sin);
    this.ropeCache = { txt: txtIds.slice(), img: imgIds.slice(), tables };
    return tables;
  }

  /** LayerNorm without affine, then x·(1 + scale) + shift. */
  private adaNorm(x: Tensor, m: Affine): Tensor {
    const n = layerNorm(x, null, null, { eps: this.eps });
    const y = modulate(n, m.scale, m.shift);
    n.dispose();
    return y;
  }

  /** A [B, L, D] activation as [B, L, heads, head_dim], RMS-normalised per head when `norm` is given. Frees x. */
  private toHeads(x: Tensor, norm: Tensor | null): Tensor {
    const [B, L] = x.shape;
    const h = reshaped(x, [B, L, this.heads, this.headDim]);
    if (!norm) return h;
    const n = rmsNorm(h, norm, { eps: this.eps });
    h.dispose();
    return n;
  }

  /** RoPE on q and k, then unmasked attention over the joint sequence → [B, L, D]. Frees q, k, v. */
  private attend(q: Tensor, k: Tensor, v: Tensor, r: Rope): Tensor {
    const [B, L] = q.shape;
    const qr = rope(q, r.cos, r.sin, { layout: "interleaved" });
    const kr = rope(k, r.cos, r.sin, { layout: "interleaved" });
    const o = flashAttention(qr, kr, v);
    free(q, k, v, qr, kr);
    return reshaped(o, [B, L, this.D]);
  }

  /** x + gate·ff(adaNorm(x)) with ff = linear_out(swiglu(linear_in(·))). x stays alive. */
  private feedForward(x: Tensor, m: Mod, wIn: Tensor, wOut: Tensor): Tensor {
    const h = this.adaNorm(x, m);
    const a = matmul(h, wIn);
    const g = swiglu(a);
    const y = matmul(g, wOut, { gate: m.gate, residual: x });
    free(h, a, g);
    return y;
  }

  private doubleBlock(blk: DoubleBlock, img: Tensor, txt: Tensor, mods: { img: Mod[]; txt: Mod[] }, r: Rope): [Tensor, Tensor] {
    const [mi1, mi2] = mods.img;
    const [mt1, mt2] = mods.txt;
    const Lt = txt.shape[1];
    const L = Lt + img.shape[1];
    const xn = this.adaNorm(img, mi1);
    const cn = this.adaNorm(txt, mt1);
    const joint = (wTxt: Tensor, wImg: Tensor, nTxt: Tensor | null, nImg: Tensor | null) => {
      const t = this.toHeads(matmul(cn, wTxt), nTxt);
      const i = this.toHeads(matmul(xn, wImg), nImg);
      const j = concat([t, i], 1);
      free(t, i);
      return j;
    };
    const q = joint(blk.addQ, blk.toQ, blk.normAddQ, blk.normQ);
    const k = joint(blk.addK, blk.toK, blk.normAddK, blk.normK);
    const v = joint(blk.addV, blk.toV, null, null);
    free(xn, cn);
    const o = this.attend(q, k, v, r);
    const oTxt = slice(o, 1, 0, Lt);
    const oImg = slice(o, 1, Lt, L);
    o.dispose();
    const img1 = matmul(oImg, blk.toOut, { gate: mi1.gate, residual: img });
    const txt1 = matmul(oTxt, blk.toAddOut, { gate: mt1.gate, residual: txt });
    free(oTxt, oImg, img, txt);
    const img2 = this.feedForward(img1, mi2, blk.ffIn, blk.ffOut);
    const txt2 = this.feedForward(txt1, mt2, blk.ffCtxIn, blk.ffCtxOut);
    free(img1, txt1);
    return [img2, txt2];
  }

  private singleBlock(blk: SingleBlock, s: Tensor, m: Mod, r: Rope): Tensor {
    const D = this.D;
    const h = this.adaNorm(s, m);
    const p = matmul(h, blk.qkvMlp);
    h.dispose();
    const q = this.toHeads(slice(p, 2, 0, D), blk.normQ);
    const k = this.toHeads(slice(p, 2, D, 2 * D), blk.normK);
    const v = this.toHeads(slice(p, 2, 2 * D, 3 * D), null);
    const mlp = swiglu(p, 3 * D); // reads the MLP columns in place: no [L, 2F] copy next to p
    p.dispose();
    const o = this.attend(q, k, v, r);
    const cat = concat([o, mlp], 2);
    free(o, mlp);
    const out = matmul(cat, blk.toOut, { gate: m.gate, residual: s });
    free(cat, s);
    return out;
  }
}
