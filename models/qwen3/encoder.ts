// Qwen3 decoder stack used as a text encoder (transformers Qwen3Model with output_hidden_states): returns the
// residual stream after chosen layers, as Flux2KleinPipeline stacks hidden_states[9, 18, 27].
// Design:
// - Built from the HF config.json fields; every weight's shape is checked against it at load and uploaded in its
//   stored dtype (bf16 stays bf16; the 778 MB real embedding table is split into row chunks by Tensor.load and
//   gathered chunk by chunk). Only the layers below the deepest hidden state wanted are uploaded.
// - hidden_states[0] is the embedding output, hidden_states[k] the output of layer k−1; hidden_states[num_layers]
//   alone has the final RMSNorm applied (transformers convention), so the norm is loaded only when that index is
//   reachable.
// - Layer: RMSNorm → q/k/v projections → per-head q/k RMSNorm → rotate-half RoPE → causal flash attention with
//   the key padding mask, GQA → o_proj with the residual fused in the matmul epilogue; RMSNorm → silu(gate)·up →
//   down_proj with the residual fused.
// - RoPE tables are built here rather than by kernels' ropeTables because the reference's inv_freq buffer may be
//   held in bf16 (see Qwen3LoadOptions.ropeFreqDType); every other step is float32 as transformers computes it.
//   Positions are 0..S−1, pads included; the tables are cached per length.
// - encode is eager and synchronous (nothing is read back); every intermediate is disposed once its last reader is
//   queued. Batch B ≥ 1 rows are independent (attention never mixes batch items).
import { type Device, type DType, joinPath, readText, roundTo, Tensor } from "../../core/index.ts";
import { flashAttention } from "../../kernels/attention.ts";
import { mul } from "../../kernels/elementwise.ts";
import { concat, embedding } from "../../kernels/layout.ts";
import { matmul } from "../../kernels/matmul.ts";
import { rmsNorm } from "../../kernels/norm.ts";
import { rope } from "../../kernels/rope.ts";
import { Weights } from "../weights.ts";
import { free, reshaped, positiveInt } from "../util.ts";

/** The fields of a HF Qwen3 config.json this model reads (transformers 4.5x and 5.x spellings of RoPE). */
export interface Qwen3Config {
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads?: number;
  /** Defaults to hidden_size / num_attention_heads; Qwen3-4B has 128 (q_proj wider than hidden). */
  head_dim?: number;
  intermediate_size: number;
  rms_norm_eps: number;
  vocab_size?: number;
  rope_theta?: number;
  rope_parameters?: { rope_theta?: number; rope_type?: string } | null;
  rope_scaling?: { rope_type?: string; type?: string } | null;
  hidden_act?: string;
  attention_bias?: boolean;
  use_sliding_window?: boolean;
  layer_types?: string[];
}

export interface Qwen3LoadOptions {
  /** The deepest hidden_states index encode will be asked for (default num_hidden_layers): deeper layers are not uploaded. */
  maxHiddenState?: number;
  /**
   * The dtype RoPE's inverse frequencies are held in (default f32, as from_pretrained leaves the buffer). A model
   * cast with .to(bf16), even if cast back to f32, holds them rounded to bf16 (the reference fixtures do); at 512
   * positions that moves angles by up to ~1 rad, so it must match the reference.
   */
  ropeFreqDType?: DType;
}

export interface Qwen3EncodeOptions {
  /** Also return hidden_states[0..hiddenUpTo] (runs at least that many layers). */
  hiddenUpTo?: number;
}

export interface Qwen3Encoding {
  /** [B, S, layers.length·hidden]: channel block j holds hidden_states[layers[j]]. */
  stacked: Tensor;
  /** hidden_states[0..hiddenUpTo], each [B, S, hidden], when asked for. */
  hidden?: Tensor[];
}

interface Layer {
  inNorm: Tensor; q: Tensor; k: Tensor; v: Tensor; o: Tensor; qNorm: Tensor; kNorm: Tensor;
  qBias?: Tensor; kBias?: Tensor; vBias?: Tensor; oBias?: Tensor;
  postNorm: Tensor; gate: Tensor; up: Tensor; down: Tensor;
}


const configInt = (v: unknown, key: string) => positiveInt(v, `Qwen3Encoder config: ${key}`);

/** RoPE θ: transformers 5 keeps it in rope_parameters, 4.x at the top level; 10000 is transformers' default. */
function ropeTheta(cfg: Qwen3Config): number {
  const type = cfg.rope_parameters?.rope_type ?? cfg.rope_scaling?.rope_type ?? cfg.rope_scaling?.type ?? "default";
  if (type !== "default") throw new Error(`Qwen3Encoder: rope type "${type}" is not supported (only "default")`);
  const theta = cfg.rope_parameters?.rope_theta ?? cfg.rope_theta ?? 10000;
  if (!(theta > 0)) throw new Error(`Qwen3Encoder config: rope_theta ${theta} must be positive`);
  return theta;
}

/**
 * RoPE tables cos/sin [S, Dh/2] for positions 0..S−1 exactly as transformers' Qwen3RotaryEmbedding computes them:
 * inv_freq_j = 1 / θ^(2j/Dh) in float32, held in `freqDType` (a PyTorch model cast with .to(bf16) rounds this
 * buffer to bf16, and keeps it so when cast back to float32), angle = pos · inv_freq in float32, cos/sin in f32.
 */
export function qwen3RopeTables(S: number, Dh: number, theta: number, freqDType: DType): { cos: Float32Array; sin: Float32Array } {
  const f = Math.fround;
  const inv = roundTo(Float32Array.from({ length: Dh / 2 }, (_, j) => f(1 / f(Math.pow(theta, f((2 * j) / Dh))))), freqDType);
  const cos = new Float32Array((S * Dh) / 2);
  const sin = new Float32Array((S * Dh) / 2);
  for (let p = 0; p < S; p++) {
    inv.forEach((w, j) => {
      const angle = f(p * w);
      cos[(p * Dh) / 2 + j] = Math.cos(angle);
      sin[(p * Dh) / 2 + j] = Math.sin(angle);
    });
  }
  return { cos, sin };
}

export class Qwen3Encoder {
  readonly hidden: number;
  readonly numLayers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly eps: number;
  readonly theta: number;
  readonly ropeFreqDType: DType;
  private ropeCache: { length: number; cos: Tensor; sin: Tensor } | null = null;

  private constructor(
    readonly dev: Device,
    readonly weights: Weights,
    cfg: Qwen3Config,
    private readonly embed: Tensor,
    private readonly layers: Layer[],
    private readonly finalNorm: Tensor | null,
    opts: Qwen3LoadOptions,
  ) {
    this.ropeFreqDType = opts.ropeFreqDType ?? "f32";
    this.hidden = cfg.hidden_size;
    this.numLayers = cfg.num_hidden_layers;
    this.heads = cfg.num_attention_heads;
    this.kvHeads = cfg.num_key_value_heads ?? cfg.num_attention_heads;
    this.headDim = cfg.head_dim ?? cfg.hidden_size / cfg.num_attention_heads;
    this.eps = cfg.rms_norm_eps;
    this.theta = ropeTheta(cfg);
  }

  /**
   * Uploads the weights (HF Qwen3ForCausalLM names with or without the `model.` prefix, relative to `weights`'
   * prefix) after checking their shapes against `cfg`.
   */
  static async load(dev: Device, weights: Weights, cfg: Qwen3Config, opts: Qwen3LoadOptions = {}): Promise<Qwen3Encoder> {
    const H = configInt(cfg.hidden_size, "hidden_size");
    const nLayers = configInt(cfg.num_hidden_layers, "num_hidden_layers");
    const Hq = configInt(cfg.num_attention_heads, "num_attention_heads");
    const Hkv = configInt(cfg.num_key_value_heads ?? Hq, "num_key_value_heads");
    const Dh = configInt(cfg.head_dim ?? H / Hq, "head_dim");
    const F = configInt(cfg.intermediate_size, "intermediate_size");
    if (Hq % Hkv) throw new Error(`Qwen3Encoder config: num_attention_heads ${Hq} must be a multiple of num_key_value_heads ${Hkv}`);
    if (Dh % 2) throw new Error(`Qwen3Encoder config: head_dim ${Dh} must be even (RoPE)`);
    if (!(cfg.rms_norm_eps > 0)) throw new Error(`Qwen3Encoder config: rms_norm_eps ${cfg.rms_norm_eps} must be positive`);
    if ((cfg.hidden_act ?? "silu") !== "silu") throw new Error(`Qwen3Encoder: hidden_act "${cfg.hidden_act}" is not supported (only silu)`);
    if (cfg.use_sliding_window || cfg.layer_types?.some((t) => t !== "full_attention")) {
      throw new Error("Qwen3Encoder: sliding-window attention layers are not supported");
    }
    ropeTheta(cfg);
    const top = opts.maxHiddenState ?? nLayers;
    if (!Number.isInteger(top) || top < 0 || top > nLayers) throw new Error(`Qwen3Encoder: maxHiddenState ${top} must be in 0..${nLayers}`);

    const prefix = weights.has("model.embed_tokens.weight") ? "model." : "";
    const get = async (name: string, shape: number[]) => {
      const full = prefix + name;
      if (!weights.has(full)) throw new Error(`Qwen3Encoder: checkpoint has no "${full}"`);
      const got = weights.shape(full);
      if (got.join() !== shape.join()) throw new Error(`Qwen3Encoder: "${full}" is [${got}], config wants [${shape}]`);
      return weights.get(full);
    };
    const bias = (name: string, n: number) => (cfg.attention_bias ? get(name, [n]) : Promise.resolve(undefined));

    const V = cfg.vocab_size ?? weights.shape(prefix + "embed_tokens.weight")[0];
    const embed = await get("embed_tokens.weight", [V, H]);
    const layers: Layer[] = [];
    for (let i = 0; i < top; i++) {
      const p = `layers.${i}.`;
      const w = (n: string, s: number[]) => get(p + n, s);
      layers.push({
        inNorm: await w("input_layernorm.weight", [H]),
        q: await w("self_attn.q_proj.weight", [Hq * Dh, H]),
        k: await w("self_attn.k_proj.weight", [Hkv * Dh, H]),
        v: await w("self_attn.v_proj.weight", [Hkv * Dh, H]),
        o: await w("self_attn.o_proj.weight", [H, Hq * Dh]),
        qBias: await bias(p + "self_attn.q_proj.bias", Hq * Dh),
        kBias: await bias(p + "self_attn.k_proj.bias", Hkv * Dh),
        vBias: await bias(p + "self_attn.v_proj.bias", Hkv * Dh),
        oBias: await bias(p + "self_attn.o_proj.bias", H),
        qNorm: await w("self_attn.q_norm.weight", [Dh]),
        kNorm: await w("self_attn.k_norm.weight", [Dh]),
        postNorm: await w("post_attention_layernorm.weight", [H]),
        gate: await w("mlp.gate_proj.weight", [F, H]),
        up: await w("mlp.up_proj.weight", [F, H]),
        down: await w("mlp.down_proj.weight", [H, F]),
      });
    }
    const finalNorm = top === nLayers ? await get("norm.weight", [H]) : null;
    return new Qwen3Encoder(dev, weights, cfg, embed, layers, finalNorm, opts);
  }

  /** Loads a `text_encoder/` folder: config.json plus a single file or sharded safetensors with their index. */
  static async fromFolder(dev: Device, dir: string, opts: Qwen3LoadOptions = {}): Promise<Qwen3Encoder> {
    const cfg = JSON.parse(await readText(joinPath(dir, "config.json"))) as Qwen3Config;
    const weights = await Weights.open(dev, dir);
    try {
      return await Qwen3Encoder.load(dev, weights, cfg, opts);
    } catch (e) {
      weights.dispose(); // what a load that failed midway uploaded
      throw e;
    }
  }

  /** The deepest hidden_states index this instance can produce. */
  get maxHiddenState(): number {
    return this.layers.length;
  }

  /**
   * Runs ids/mask [B, S] (row-major, `batch` rows; mask 1 = token, 0 = padding) through the layers up to
   * max(layers, hiddenUpTo) and stacks hidden_states[k] for k in `layers` along channels.
   */
  encode(ids: Int32Array, mask: Int32Array, batch: number, layers: readonly number[], opts: Qwen3EncodeOptions = {}): Qwen3Encoding {
    const B = batch;
    const S = ids.length / B;
    if (!Number.isInteger(B) || B < 1 || !Number.isInteger(S) || S < 1) throw new Error(`Qwen3Encoder: ${ids.length} ids are not ${B} rows`);
    if (mask.length !== ids.length) throw new Error(`Qwen3Encoder: mask has ${mask.length} values for ${ids.length} ids`);
    if (!layers.length) throw new Error("Qwen3Encoder: no hidden-state layers asked for");
    const upTo = opts.hiddenUpTo ?? -1;
    const top = Math.max(upTo, ...layers);
    for (const k of [...layers, ...(opts.hiddenUpTo === undefined ? [] : [upTo])]) {
      if (!Number.isInteger(k) || k < 0 || k > this.maxHiddenState) {
        throw new Error(`Qwen3Encoder: hidden state ${k} outside 0..${this.maxHiddenState} (loaded layers)`);
      }
    }
    const want = (k: number) => k <= upTo || layers.includes(k);
    const rope = this.rope(S);
    const idsT = Tensor.fromArray(this.dev, ids, [B, S]);
    const maskT = Tensor.fromArray(this.dev, mask, [B, S]);
    const states: (Tensor | null)[] = [];
    let x = embedding(this.embed, idsT);
    for (let k = 0; ; k++) {
      if (k === this.numLayers) {
        // hidden_states[num_layers] is the final norm's output (the last layer's raw output is never exposed).
        const normed = rmsNorm(x, this.finalNorm, { eps: this.eps });
        x.dispose();
        x = normed;
      }
      states.push(want(k) ? x : null);
      if (k === top) break;
      const next = this.layer(this.layers[k], x, maskT, rope);
      if (!want(k)) x.dispose();
      x = next;
    }
    free(idsT, maskT);
    const stacked = concat(layers.map((k) => states[k]!), 2);
    const hidden = opts.hiddenUpTo === undefined ? undefined : (states.slice(0, upTo + 1) as Tensor[]);
    states.forEach((t, k) => t && k > upTo && t.dispose());
    return hidden ? { stacked, hidden } : { stacked };
  }

  /** Frees the cached RoPE tables and every weight of the `Weights` this model was loaded from. */
  dispose(): void {
    if (this.ropeCache) free(this.ropeCache.cos, this.ropeCache.sin);
    this.ropeCache = null;
    this.weights.dispose();
  }

  // ---- pieces ---------------------------------------------------------------------------------------------

  private rope(S: number): { cos: Tensor; sin: Tensor } {
    if (this.ropeCache?.length !== S) {
      if (this.ropeCache) free(this.ropeCache.cos, this.ropeCache.sin);
      const t = qwen3RopeTables(S, this.headDim, this.theta, this.ropeFreqDType);
      const up = (a: Float32Array) => Tensor.fromArray(this.dev, a, [S, this.headDim / 2]).keep();
      this.ropeCache = { length: S, cos: up(t.cos), sin: up(t.sin) };
    }
    return this.ropeCache;
  }

  /** One decoder layer on x [B, S, H] → new tensor (x is left alive). */
  private layer(l: Layer, x: Tensor, mask: Tensor, r: { cos: Tensor; sin: Tensor }): Tensor {
    const [B, S] = x.shape;
    const { eps, headDim: Dh } = this;
    const h = rmsNorm(x, l.inNorm, { eps });
    const heads = (w: Tensor, b: Tensor | undefined, n: number, norm: Tensor | null) => {
      const p = reshaped(matmul(h, w, { bias: b }), [B, S, n, Dh]);
      if (!norm) return p;
      const pn = rmsNorm(p, norm, { eps });
      const out = rope(pn, r.cos, r.sin, { layout: "halves" });
      free(p, pn);
      return out;
    };
    const q = heads(l.q, l.qBias, this.heads, l.qNorm);
    const k = heads(l.k, l.kBias, this.kvHeads, l.kNorm);
    const v = heads(l.v, l.vBias, this.kvHeads, null);
    h.dispose();
    const a = reshaped(flashAttention(q, k, v, { causal: true, keyMask: mask }), [B, S, this.heads * Dh]);
    free(q, k, v);
    const x1 = matmul(a, l.o, { bias: l.oBias, residual: x });
    a.dispose();
    const h2 = rmsNorm(x1, l.postNorm, { eps });
    const g = matmul(h2, l.gate, { activation: "silu" });
    const u = matmul(h2, l.up);
    const m = mul(g, u);
    free(h2, g, u);
    const out = matmul(m, l.down, { residual: x1 });
    free(m, x1);
    return out;
  }
}
