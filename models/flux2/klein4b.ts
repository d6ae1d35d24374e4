// FLUX.2-klein-4B as published: the config.json values of its transformer, VAE, text encoder (Qwen3-4B) and
// scheduler (shared/spec/flux2-klein.md (a)), in one place for `flux2ts plan` and bench/models.ts, and the
// name → shape list of every checkpoint tensor derived from a config's fields, so random weights can stand in for
// a download (`randomWeights`). The derivations take any config of these classes: on the tiny fixture repo they
// reproduce its files' names and shapes exactly (tests/models/plan.test.ts), and the loaders check every shape
// again on load.
// Inits keep activations finite, nothing more: Linear and conv weights N(0, 1/fan_in), norm weights 1, biases 0,
// BN running mean 0 and variance 1, embeddings N(0, 1).
import type { Device } from "../../core/index.ts";
import type { Qwen3Config } from "../qwen3/encoder.ts";
import type { RandomSpec } from "../random_weights.ts";
import { Weights } from "../weights.ts";
import { FLUX2_SCHEDULER, type FlowMatchConfig } from "./scheduler.ts";
import type { Flux2TransformerConfig } from "./transformer.ts";
import type { Flux2VaeConfig } from "./vae.ts";

export interface KleinConfigs {
  transformer: Flux2TransformerConfig;
  vae: Flux2VaeConfig;
  textEncoder: Qwen3Config;
  scheduler: FlowMatchConfig;
  isDistilled: boolean;
}

/** The real black-forest-labs/FLUX.2-klein-4B configs. */
export const KLEIN_4B: KleinConfigs = {
  transformer: {
    patch_size: 1,
    in_channels: 128,
    out_channels: null,
    num_layers: 5,
    num_single_layers: 20,
    attention_head_dim: 128,
    num_attention_heads: 24,
    joint_attention_dim: 7680,
    timestep_guidance_channels: 256,
    mlp_ratio: 3.0,
    axes_dims_rope: [32, 32, 32, 32],
    rope_theta: 2000,
    eps: 1e-6,
    guidance_embeds: false,
  },
  vae: {
    in_channels: 3,
    out_channels: 3,
    down_block_types: Array(4).fill("DownEncoderBlock2D"),
    up_block_types: Array(4).fill("UpDecoderBlock2D"),
    block_out_channels: [128, 256, 512, 512],
    layers_per_block: 2,
    act_fn: "silu",
    latent_channels: 32,
    norm_num_groups: 32,
    mid_block_add_attention: true,
    use_quant_conv: true,
    use_post_quant_conv: true,
    batch_norm_eps: 1e-4,
    patch_size: [2, 2],
  },
  textEncoder: {
    hidden_size: 2560,
    num_hidden_layers: 36,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    head_dim: 128,
    intermediate_size: 9728,
    rms_norm_eps: 1e-6,
    rope_theta: 1_000_000,
    vocab_size: 151936,
    hidden_act: "silu",
    attention_bias: false,
    use_sliding_window: false,
  },
  scheduler: FLUX2_SCHEDULER,
  isDistilled: true,
};

type Specs = Map<string, RandomSpec>;

const linear = (out: number, fanIn: number): RandomSpec => ({ shape: [out, fanIn], std: 1 / Math.sqrt(fanIn) });
const ones = (n: number): RandomSpec => ({ shape: [n], std: 0, mean: 1 });
const zeros = (n: number): RandomSpec => ({ shape: [n], std: 0 });

/** Every tensor of diffusers' Flux2Transformer2DModel state dict for this config. */
export function transformerSpecs(cfg: Flux2TransformerConfig): Specs {
  const Dh = cfg.attention_head_dim;
  const D = cfg.num_attention_heads * Dh;
  const F = Math.floor(D * cfg.mlp_ratio);
  const C = cfg.timestep_guidance_channels;
  const patch = cfg.patch_size ?? 1;
  const s: Specs = new Map();
  const embedder = (p: string) => {
    s.set(`${p}.linear_1.weight`, linear(D, C));
    s.set(`${p}.linear_2.weight`, linear(D, D));
  };
  embedder("time_guidance_embed.timestep_embedder");
  if (cfg.guidance_embeds) embedder("time_guidance_embed.guidance_embedder");
  s.set("double_stream_modulation_img.linear.weight", linear(6 * D, D));
  s.set("double_stream_modulation_txt.linear.weight", linear(6 * D, D));
  s.set("single_stream_modulation.linear.weight", linear(3 * D, D));
  s.set("x_embedder.weight", linear(D, cfg.in_channels));
  s.set("context_embedder.weight", linear(D, cfg.joint_attention_dim));
  for (let i = 0; i < cfg.num_layers; i++) {
    const p = `transformer_blocks.${i}.`;
    for (const n of ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]) s.set(`${p}attn.${n}.weight`, linear(D, D));
    for (const n of ["norm_q", "norm_k", "norm_added_q", "norm_added_k"]) s.set(`${p}attn.${n}.weight`, ones(Dh));
    for (const ff of ["ff", "ff_context"]) {
      s.set(`${p}${ff}.linear_in.weight`, linear(2 * F, D));
      s.set(`${p}${ff}.linear_out.weight`, linear(D, F));
    }
  }
  for (let i = 0; i < cfg.num_single_layers; i++) {
    const p = `single_transformer_blocks.${i}.attn.`;
    s.set(`${p}to_qkv_mlp_proj.weight`, linear(3 * D + 2 * F, D));
    s.set(`${p}norm_q.weight`, ones(Dh));
    s.set(`${p}norm_k.weight`, ones(Dh));
    s.set(`${p}to_out.weight`, linear(D, D + F));
  }
  s.set("norm_out.linear.weight", linear(2 * D, D));
  s.set("proj_out.weight", linear(patch * patch * (cfg.out_channels ?? cfg.in_channels), D));
  return s;
}

/** Every float tensor of diffusers' AutoencoderKLFlux2 state dict (encoder included) for this config. */
export function vaeSpecs(cfg: Flux2VaeConfig): Specs {
  const ch = cfg.block_out_channels;
  const top = ch[ch.length - 1];
  const latent = cfg.latent_channels;
  const s: Specs = new Map();
  const conv = (p: string, cout: number, cin: number, k: number) => {
    s.set(`${p}.weight`, { shape: [cout, cin, k, k], std: 1 / Math.sqrt(cin * k * k) });
    s.set(`${p}.bias`, zeros(cout));
  };
  const norm = (p: string, c: number) => {
    s.set(`${p}.weight`, ones(c));
    s.set(`${p}.bias`, zeros(c));
  };
  const resnet = (p: string, cin: number, cout: number) => {
    norm(`${p}.norm1`, cin);
    conv(`${p}.conv1`, cout, cin, 3);
    norm(`${p}.norm2`, cout);
    conv(`${p}.conv2`, cout, cout, 3);
    if (cin !== cout) conv(`${p}.conv_shortcut`, cout, cin, 1);
  };
  const mid = (p: string) => {
    resnet(`${p}.resnets.0`, top, top);
    if (cfg.mid_block_add_attention ?? true) {
      norm(`${p}.attentions.0.group_norm`, top);
      for (const n of ["to_q", "to_k", "to_v", "to_out.0"]) {
        s.set(`${p}.attentions.0.${n}.weight`, linear(top, top));
        s.set(`${p}.attentions.0.${n}.bias`, zeros(top));
      }
    }
    resnet(`${p}.resnets.1`, top, top);
  };
  conv("encoder.conv_in", ch[0], cfg.in_channels, 3);
  ch.forEach((cout, i) => {
    for (let j = 0; j < cfg.layers_per_block; j++) resnet(`encoder.down_blocks.${i}.resnets.${j}`, j ? cout : ch[Math.max(0, i - 1)], cout);
    if (i < ch.length - 1) conv(`encoder.down_blocks.${i}.downsamplers.0.conv`, cout, cout, 3);
  });
  mid("encoder.mid_block");
  norm("encoder.conv_norm_out", top);
  conv("encoder.conv_out", 2 * latent, top, 3);
  if (cfg.use_quant_conv ?? true) conv("quant_conv", 2 * latent, 2 * latent, 1);
  if (cfg.use_post_quant_conv ?? true) conv("post_quant_conv", latent, latent, 1);
  conv("decoder.conv_in", top, latent, 3);
  mid("decoder.mid_block");
  const rev = [...ch].reverse();
  rev.forEach((cout, i) => {
    for (let j = 0; j <= cfg.layers_per_block; j++) resnet(`decoder.up_blocks.${i}.resnets.${j}`, j ? cout : rev[Math.max(0, i - 1)], cout);
    if (i < rev.length - 1) conv(`decoder.up_blocks.${i}.upsamplers.0.conv`, cout, cout, 3);
  });
  norm("decoder.conv_norm_out", ch[0]);
  conv("decoder.conv_out", cfg.out_channels, ch[0], 3);
  s.set("bn.running_mean", zeros(4 * latent));
  s.set("bn.running_var", ones(4 * latent));
  return s;
}

/** Every tensor of a Qwen3ForCausalLM checkpoint without lm_head (tied), `model.` names as HF writes them. */
export function qwen3Specs(cfg: Qwen3Config): Specs {
  const H = cfg.hidden_size;
  const Hq = cfg.num_attention_heads;
  const Hkv = cfg.num_key_value_heads ?? Hq;
  const Dh = cfg.head_dim ?? H / Hq;
  const F = cfg.intermediate_size;
  if (cfg.vocab_size === undefined) throw new Error("qwen3Specs: the config has no vocab_size");
  const s: Specs = new Map([["model.embed_tokens.weight", { shape: [cfg.vocab_size, H], std: 1 }]]);
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    const p = `model.layers.${i}.`;
    s.set(`${p}input_layernorm.weight`, ones(H));
    s.set(`${p}self_attn.q_proj.weight`, linear(Hq * Dh, H));
    s.set(`${p}self_attn.k_proj.weight`, linear(Hkv * Dh, H));
    s.set(`${p}self_attn.v_proj.weight`, linear(Hkv * Dh, H));
    s.set(`${p}self_attn.o_proj.weight`, linear(H, Hq * Dh));
    if (cfg.attention_bias) {
      for (const [n, c] of [["q", Hq * Dh], ["k", Hkv * Dh], ["v", Hkv * Dh], ["o", H]] as const) s.set(`${p}self_attn.${n}_proj.bias`, zeros(c));
    }
    s.set(`${p}self_attn.q_norm.weight`, ones(Dh));
    s.set(`${p}self_attn.k_norm.weight`, ones(Dh));
    s.set(`${p}post_attention_layernorm.weight`, ones(H));
    s.set(`${p}mlp.gate_proj.weight`, linear(F, H));
    s.set(`${p}mlp.up_proj.weight`, linear(F, H));
    s.set(`${p}mlp.down_proj.weight`, linear(H, F));
  }
  s.set("model.norm.weight", ones(H));
  return s;
}

/** Random weights for each model of a klein pipeline (nothing is generated until a loader asks for a tensor). */
export function randomWeights(dev: Device, cfg: KleinConfigs = KLEIN_4B, seed = 0): { textEncoder: Weights; transformer: Weights; vae: Weights } {
  return {
    textEncoder: Weights.random(dev, qwen3Specs(cfg.textEncoder), { seed, path: "random text_encoder" }),
    transformer: Weights.random(dev, transformerSpecs(cfg.transformer), { seed, path: "random transformer" }),
    vae: Weights.random(dev, vaeSpecs(cfg.vae), { seed, path: "random vae" }),
  };
}
