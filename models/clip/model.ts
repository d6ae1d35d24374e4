// CLIP dual encoder as transformers' CLIPModel (the layout PickScore_v1 / laion ViT-H-14 ship): text and vision
// towers of pre-LN transformer blocks, each pooled and projected into the shared embedding space.
// Design:
// - Built from config.json's text_config / vision_config (transformers' defaults fill absent keys); every weight's
//   shape is checked against the config at load and kept in its stored dtype (fp32 for PickScore), except the
//   small position tables, which are added to f32 activations and so are uploaded as f32.
// - Block: x += out_proj(attn(LN1(x))) with q/k/v/out biases, q·k scaled by head_dim^−½ (flash attention);
//   x += fc2(act(fc1(LN2(x)))), activation from hidden_act (gelu = exact erf, quick_gelu, gelu_new) fused in the
//   fc1 epilogue and both residual adds fused in the projections' epilogues.
// - Text: token + position embeddings; causal attention with the key padding mask; final_layer_norm; pooled row
//   per sequence chosen on the CPU from the ids exactly as transformers does: eos_token_id == 2 (legacy configs,
//   PickScore's) → argmax(ids), the first 49407; else the first position holding eos_token_id; then
//   text_projection.
// - Vision: patch conv (kernel = stride = patch, no bias) → tokens; the class token is a zero row plus a position
//   table whose row 0 already holds class_embedding + position 0 (the same single f32 add transformers does);
//   pre_layrnorm; blocks without mask; post_layernorm on the CLS row; visual_projection.
// - Eager and synchronous: nothing is read back; every intermediate is disposed once queued work no longer needs
//   it. Batch rows never mix. Hidden states are returned only when asked for (verification).
import { type Device, joinPath, readText, Tensor } from "../../core/index.ts";
import { flashAttention } from "../../kernels/attention.ts";
import { conv2d } from "../../kernels/conv2d.ts";
import { add } from "../../kernels/elementwise.ts";
import { concat, embedding, slice, transpose } from "../../kernels/layout.ts";
import { type Activation, matmul } from "../../kernels/matmul.ts";
import { layerNorm } from "../../kernels/norm.ts";
import { Weights } from "../weights.ts";
import { free, reshaped, positiveInt } from "../util.ts";

/** Keys of a HF CLIP tower config this model reads; absent ones take transformers' defaults. */
export interface ClipTowerConfig {
  hidden_size?: number;
  intermediate_size?: number;
  num_hidden_layers?: number;
  num_attention_heads?: number;
  hidden_act?: string;
  layer_norm_eps?: number;
}

export interface ClipTextConfig extends ClipTowerConfig {
  vocab_size?: number;
  max_position_embeddings?: number;
  eos_token_id?: number;
}

export interface ClipVisionConfig extends ClipTowerConfig {
  image_size?: number;
  patch_size?: number;
  num_channels?: number;
}

export interface ClipConfig {
  text_config?: ClipTextConfig;
  vision_config?: ClipVisionConfig;
  projection_dim?: number;
}

const TEXT_DEFAULTS = { hidden_size: 512, intermediate_size: 2048, num_hidden_layers: 12, num_attention_heads: 8, vocab_size: 49408, max_position_embeddings: 77, eos_token_id: 49407 };
const VISION_DEFAULTS = { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, image_size: 224, patch_size: 32, num_channels: 3 };

const ACTIVATIONS: Record<string, Activation> = { gelu: "gelu", quick_gelu: "quickGelu", gelu_new: "geluTanh", gelu_pytorch_tanh: "geluTanh" };

interface Block {
  ln1w: Tensor; ln1b: Tensor; ln2w: Tensor; ln2b: Tensor;
  q: Tensor; qb: Tensor; k: Tensor; kb: Tensor; v: Tensor; vb: Tensor; o: Tensor; ob: Tensor;
  fc1: Tensor; fc1b: Tensor; fc2: Tensor; fc2b: Tensor;
}

/** A tower's block stack and sizes. */
interface Tower {
  D: number;
  heads: number;
  eps: number;
  act: Activation;
  blocks: Block[];
}

/** Outputs of one tower pass; `hidden` (hidden_states[0..layers], transformers' convention) only when asked for. */
export interface TowerOutput {
  /** Projected embeddings [B, projection_dim]. */
  embeds: Tensor;
  /** Pooled features before the projection [B, hidden]. */
  pooled: Tensor;
  /** Text: final_layer_norm output; vision: the last block's output (post_layernorm is applied to CLS only). */
  lastHidden?: Tensor;
  hidden?: Tensor[];
}


const configInt = (v: unknown, key: string) => positiveInt(v, `ClipModel config: ${key}`);

/** Position of the pooled token of each row, as transformers' CLIPTextTransformer picks it. */
export function eosPositions(ids: Int32Array, batch: number, eosTokenId: number): Int32Array {
  const L = ids.length / batch;
  return Int32Array.from({ length: batch }, (_, b) => {
    const row = ids.subarray(b * L, (b + 1) * L);
    if (eosTokenId === 2) return row.indexOf(Math.max(...row)); // legacy rule: argmax, first maximum
    const at = row.indexOf(eosTokenId);
    return at < 0 ? 0 : at; // argmax of an all-zero match vector
  });
}

export class ClipModel {
  readonly projectionDim: number;
  readonly eosTokenId: number;
  readonly maxPositions: number;
  readonly imageSize: number;
  readonly patchSize: number;

  private constructor(
    readonly dev: Device,
    readonly weights: Weights,
    cfg: { projectionDim: number; eosTokenId: number; maxPositions: number; imageSize: number; patchSize: number },
    private readonly text: Tower,
    private readonly vision: Tower,
    private readonly t: { tokens: Tensor; positions: Tensor; finalLnW: Tensor; finalLnB: Tensor; proj: Tensor },
    private readonly v: { patch: Tensor; positions: Tensor; preLnW: Tensor; preLnB: Tensor; postLnW: Tensor; postLnB: Tensor; proj: Tensor },
    /** exp(logit_scale): the CLIP logit multiplier (≈100 for PickScore). */
    readonly logitScale: number,
  ) {
    this.projectionDim = cfg.projectionDim;
    this.eosTokenId = cfg.eosTokenId;
    this.maxPositions = cfg.maxPositions;
    this.imageSize = cfg.imageSize;
    this.patchSize = cfg.patchSize;
  }

  /** Uploads transformers CLIPModel weights (names relative to `weights`' prefix) after checking them against `cfg`. */
  static async load(dev: Device, weights: Weights, cfg: ClipConfig): Promise<ClipModel> {
    const tc = { ...TEXT_DEFAULTS, hidden_act: "quick_gelu", layer_norm_eps: 1e-5, ...cfg.text_config };
    const vc = { ...VISION_DEFAULTS, hidden_act: "quick_gelu", layer_norm_eps: 1e-5, ...cfg.vision_config };
    const P = configInt(cfg.projection_dim ?? 512, "projection_dim");
    const get = async (name: string, shape: number[]) => {
      if (!weights.has(name)) throw new Error(`ClipModel: checkpoint has no "${name}"`);
      const got = weights.shape(name);
      if (got.join() !== shape.join()) throw new Error(`ClipModel: "${name}" is [${got}], config wants [${shape}]`);
      return weights.get(name);
    };
    // Position tables are added to f32 activations: kept as f32 copies whatever the stored dtype.
    const f32Table = async (name: string, shape: number[]) => {
      const got = weights.has(name) ? weights.shape(name) : null;
      if (got?.join() !== shape.join()) throw new Error(`ClipModel: "${name}" is ${got ? `[${got}]` : "missing"}, config wants [${shape}]`);
      return weights.cpu(name);
    };
    const tower = async (prefix: string, c: ClipTowerConfig, what: string): Promise<Tower> => {
      const D = configInt(c.hidden_size, `${what}.hidden_size`);
      const F = configInt(c.intermediate_size, `${what}.intermediate_size`);
      const heads = configInt(c.num_attention_heads, `${what}.num_attention_heads`);
      const layers = configInt(c.num_hidden_layers, `${what}.num_hidden_layers`);
      if (D % heads) throw new Error(`ClipModel config: ${what}.hidden_size ${D} is not a multiple of num_attention_heads ${heads}`);
      const act = ACTIVATIONS[c.hidden_act ?? ""];
      if (!act) throw new Error(`ClipModel: ${what}.hidden_act "${c.hidden_act}" is not supported (${Object.keys(ACTIVATIONS).join(", ")})`);
      const eps = c.layer_norm_eps ?? 1e-5;
      if (!(eps > 0)) throw new Error(`ClipModel config: ${what}.layer_norm_eps ${eps} must be positive`);
      const blocks: Block[] = [];
      for (let i = 0; i < layers; i++) {
        const w = (n: string, s: number[]) => get(`${prefix}encoder.layers.${i}.${n}`, s);
        blocks.push({
          ln1w: await w("layer_norm1.weight", [D]), ln1b: await w("layer_norm1.bias", [D]),
          q: await w("self_attn.q_proj.weight", [D, D]), qb: await w("self_attn.q_proj.bias", [D]),
          k: await w("self_attn.k_proj.weight", [D, D]), kb: await w("self_attn.k_proj.bias", [D]),
          v: await w("self_attn.v_proj.weight", [D, D]), vb: await w("self_attn.v_proj.bias", [D]),
          o: await w("self_attn.out_proj.weight", [D, D]), ob: await w("self_attn.out_proj.bias", [D]),
          ln2w: await w("layer_norm2.weight", [D]), ln2b: await w("layer_norm2.bias", [D]),
          fc1: await w("mlp.fc1.weight", [F, D]), fc1b: await w("mlp.fc1.bias", [F]),
          fc2: await w("mlp.fc2.weight", [D, F]), fc2b: await w("mlp.fc2.bias", [D]),
        });
      }
      return { D, heads, eps, act, blocks };
    };

    const text = await tower("text_model.", tc, "text_config");
    const V = configInt(tc.vocab_size, "text_config.vocab_size");
    const maxPositions = configInt(tc.max_position_embeddings, "text_config.max_position_embeddings");
    const tw = {
      tokens: await get("text_model.embeddings.token_embedding.weight", [V, text.D]),
      positions: Tensor.fromArray(dev, await f32Table("text_model.embeddings.position_embedding.weight", [maxPositions, text.D]), [maxPositions, text.D]).keep(),
      finalLnW: await get("text_model.final_layer_norm.weight", [text.D]),
      finalLnB: await get("text_model.final_layer_norm.bias", [text.D]),
      proj: await get("text_projection.weight", [P, text.D]),
    };

    const vision = await tower("vision_model.", vc, "vision_config");
    const S = configInt(vc.image_size, "vision_config.image_size");
    const p = configInt(vc.patch_size, "vision_config.patch_size");
    const C = configInt(vc.num_channels, "vision_config.num_channels");
    if (S % p) throw new Error(`ClipModel config: vision_config.image_size ${S} is not a multiple of patch_size ${p}`);
    const N = (S / p) ** 2 + 1;
    const D = vision.D;
    const table = await f32Table("vision_model.embeddings.position_embedding.weight", [N, D]);
    const cls = await f32Table("vision_model.embeddings.class_embedding", [D]);
    for (let d = 0; d < D; d++) table[d] += cls[d]; // Float32Array store rounds like the f32 add
    const vw = {
      patch: await get("vision_model.embeddings.patch_embedding.weight", [D, C, p, p]),
      positions: Tensor.fromArray(dev, table, [N, D]).keep(),
      preLnW: await get("vision_model.pre_layrnorm.weight", [D]),
      preLnB: await get("vision_model.pre_layrnorm.bias", [D]),
      postLnW: await get("vision_model.post_layernorm.weight", [D]),
      postLnB: await get("vision_model.post_layernorm.bias", [D]),
      proj: await get("visual_projection.weight", [P, D]),
    };
    const logit = weights.has("logit_scale") ? (await weights.cpu("logit_scale"))[0] : Math.log(1 / 0.07);
    const eos = tc.eos_token_id;
    if (!Number.isInteger(eos)) throw new Error(`ClipModel config: text_config.eos_token_id ${eos} must be an integer`);
    const sizes = { projectionDim: P, eosTokenId: eos, maxPositions, imageSize: S, patchSize: p };
    return new ClipModel(dev, weights, sizes, text, vision, tw, vw, Math.fround(Math.exp(logit)));
  }

  /** Loads a model folder: config.json and model.safetensors (or a shard index). */
  static async fromFolder(dev: Device, dir: string): Promise<ClipModel> {
    const cfg = JSON.parse(await readText(joinPath(dir, "config.json"))) as ClipConfig;
    return ClipModel.load(dev, await Weights.open(dev, dir), cfg);
  }

  // ---- towers ---------------------------------------------------------------------------------------------

  private block(t: Tower, b: Block, x: Tensor, opts: { causal: boolean; keyMask?: Tensor }): Tensor {
    const [B, L] = x.shape;
    const heads = [B, L, t.heads, t.D / t.heads];
    const h = layerNorm(x, b.ln1w, b.ln1b, { eps: t.eps });
    const q = reshaped(matmul(h, b.q, { bias: b.qb }), heads);
    const k = reshaped(matmul(h, b.k, { bias: b.kb }), heads);
    const v = reshaped(matmul(h, b.v, { bias: b.vb }), heads);
    h.dispose();
    const att = reshaped(flashAttention(q, k, v, opts), [B, L, t.D]);
    free(q, k, v);
    const y = matmul(att, b.o, { bias: b.ob, residual: x });
    att.dispose();
    const h2 = layerNorm(y, b.ln2w, b.ln2b, { eps: t.eps });
    const f = matmul(h2, b.fc1, { bias: b.fc1b, activation: t.act });
    h2.dispose();
    const out = matmul(f, b.fc2, { bias: b.fc2b, residual: y });
    free(f, y);
    return out;
  }

  /** Runs the blocks over x (taken over); returns the last state and, when `keep`, every hidden state. */
  private encoder(t: Tower, x: Tensor, keep: boolean, opts: { causal: boolean; keyMask?: Tensor }): { last: Tensor; hidden?: Tensor[] } {
    const hidden = keep ? [x] : undefined;
    for (const b of t.blocks) {
      const next = this.block(t, b, x, opts);
      if (!keep) x.dispose();
      x = next;
      hidden?.push(x);
    }
    return { last: x, hidden };
  }

  /**
   * Text tower on ids/mask [B, L] (row-major; mask 1 = token, 0 = padding). `hidden` also returns
   * hidden_states[0..layers] and the final-norm output.
   */
  textForward(ids: Int32Array, mask: Int32Array, batch: number, opts: { hidden?: boolean } = {}): TowerOutput {
    const B = batch, L = ids.length / B;
    if (!Number.isInteger(B) || B < 1 || !Number.isInteger(L) || L < 1) throw new Error(`ClipModel.textForward: ${ids.length} ids are not ${B} rows`);
    if (mask.length !== ids.length) throw new Error(`ClipModel.textForward: mask has ${mask.length} values for ${ids.length} ids`);
    if (L > this.maxPositions) throw new Error(`ClipModel.textForward: ${L} tokens exceed the ${this.maxPositions} text positions`);
    const dev = this.dev;
    const idsT = Tensor.fromArray(dev, ids, [B, L]);
    const maskT = Tensor.fromArray(dev, mask, [B, L]);
    const tok = embedding(this.t.tokens, idsT);
    const pos = slice(this.t.positions, 0, 0, L);
    const x = add(tok, pos);
    free(idsT, tok, pos);
    const { last, hidden } = this.encoder(this.text, x, !!opts.hidden, { causal: true, keyMask: maskT });
    maskT.dispose();
    const normed = layerNorm(last, this.t.finalLnW, this.t.finalLnB, { eps: this.text.eps });
    if (!hidden) last.dispose();
    const rows = Int32Array.from(eosPositions(ids, B, this.eosTokenId), (p, b) => b * L + p);
    const rowsT = Tensor.fromArray(dev, rows, [B]);
    const flat = normed.reshape([B * L, this.text.D]);
    const pooled = embedding(flat, rowsT);
    free(rowsT, flat);
    const embeds = matmul(pooled, this.t.proj);
    if (!hidden) {
      normed.dispose();
      return { embeds, pooled };
    }
    return { embeds, pooled, lastHidden: normed, hidden };
  }

  /** Vision tower on pixel_values [B, C, S, S] (f32). `hidden` also returns hidden_states[0..layers]. */
  imageForward(pixels: Tensor, opts: { hidden?: boolean } = {}): TowerOutput {
    const [B, C, H, W] = pixels.shape;
    const S = this.imageSize;
    if (pixels.shape.length !== 4 || H !== S || W !== S || C !== this.v.patch.shape[1]) {
      throw new Error(`ClipModel.imageForward: pixel_values [${pixels.shape}] must be [B, ${this.v.patch.shape[1]}, ${S}, ${S}]`);
    }
    const D = this.vision.D, N = (S / this.patchSize) ** 2;
    const grid = reshaped(conv2d(pixels, this.v.patch, null, { stride: this.patchSize }), [B, D, N]);
    const patches = transpose(grid, [0, 2, 1]);
    grid.dispose();
    const zero = Tensor.zeros(this.dev, [B, 1, D]);
    const tokens = concat([zero, patches], 1);
    free(zero, patches);
    const x = add(tokens, this.v.positions);
    tokens.dispose();
    const pre = layerNorm(x, this.v.preLnW, this.v.preLnB, { eps: this.vision.eps });
    x.dispose();
    const { last, hidden } = this.encoder(this.vision, pre, !!opts.hidden, { causal: false });
    const cls = slice(last, 1, 0, 1);
    const pooled = reshaped(layerNorm(cls, this.v.postLnW, this.v.postLnB, { eps: this.vision.eps }), [B, D]);
    cls.dispose();
    const embeds = matmul(pooled, this.v.proj);
    if (!hidden) {
      last.dispose();
      return { embeds, pooled };
    }
    return { embeds, pooled, lastHidden: last, hidden };
  }

  /** Projected text embeddings [B, projection_dim] (not normalised). */
  textEmbeds(ids: Int32Array, mask: Int32Array, batch: number): Tensor {
    const r = this.textForward(ids, mask, batch);
    r.pooled.dispose();
    return r.embeds;
  }

  /** Projected image embeddings [B, projection_dim] of pixel_values [B, 3, S, S] (not normalised). */
  imageEmbeds(pixels: Tensor): Tensor {
    const r = this.imageForward(pixels);
    r.pooled.dispose();
    return r.embeds;
  }

  /** Frees the derived tables and every weight of the `Weights` this model was loaded from. */
  dispose(): void {
    free(this.t.positions, this.v.positions);
    this.weights.dispose();
  }
}
