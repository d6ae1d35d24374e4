// Model benchmark for the real FLUX.2-klein-4B configuration with random bf16 weights (models/flux2/klein4b.ts):
// FLOP counts from the config, measured times and GFLOP/s, and per-forward / per-decode times extrapolated by FLOP
// count. `bun run bench:models [--full] [--out file]` prints the table and writes bench/models.json (or the file).
// Design:
// - FLOPs count 2·M·N·K per matmul (every Linear), 4·L²·D per attention (QK and PV over all heads), and
//   2·C_out·C_in·k²·H·W per convolution; norms, activations, RoPE and copies are left out (a few % of the time).
// - Transformer blocks are timed inside real forwards at 768 tokens (a 256² image: 256 image + 512 text tokens),
//   B = 1: forwards of the config cut to 0 blocks (embedders, modulation, output: the "rest"), 1 double and 0
//   single, 0 double and 1 single; a block's time is its forward's minus the rest's. The three models share one
//   set of weights, so only block 0 of each kind is generated.
// - The VAE is timed on up block 2 of the decoder (512 → 256 channels, 3 resnets and the ×2 upsampler: the most
//   expensive of the 1024² decoder's four), at real width and a reduced 64×64 input (the 1024² decode runs it at
//   256×256). Extrapolation scales every stage of a decode by its FLOPs at that block's rate.
// - Every model first runs once at a small size so shader compilation is not timed. On lavapipe each timed model
//   runs once (minutes per run); on a real GPU (--full, or any adapter that finishes a run in under 2 s) runs repeat
//   and the median counts. --full also times whole forwards and decodes at 512² and 1024².
import { Device, Tensor } from "../core/index.ts";
import { latentIds } from "../models/flux2/pipeline.ts";
import { KLEIN_4B, transformerSpecs, vaeSpecs } from "../models/flux2/klein4b.ts";
import { Flux2Transformer, type Flux2TransformerConfig } from "../models/flux2/transformer.ts";
import { Flux2Vae, type Flux2VaeConfig } from "../models/flux2/vae.ts";
import { textIds } from "../models/qwen3/prompt.ts";
import { Weights } from "../models/weights.ts";

const TXT = 512;

// ---- FLOP counts --------------------------------------------------------------------------------------------

export interface TransformerFlops {
  double: number;
  single: number;
  rest: number;
  total: number;
}

/** FLOPs of one transformer forward with `Li` image and `Lt` text tokens per item. */
export function transformerFlops(cfg: Flux2TransformerConfig, Li: number, Lt: number, B = 1): TransformerFlops {
  const D = cfg.num_attention_heads * cfg.attention_head_dim;
  const F = Math.floor(D * cfg.mlp_ratio);
  const L = Li + Lt;
  const C = cfg.timestep_guidance_channels;
  const out = (cfg.patch_size ?? 1) ** 2 * (cfg.out_channels ?? cfg.in_channels);
  const attention = 4 * L * L * D;
  const double = 8 * L * D * D + 6 * L * D * F + attention; // q, k, v, out of both streams; ff and ff_context
  const single = 2 * L * D * (3 * D + 2 * F) + 2 * L * (D + F) * D + attention;
  const rest = 2 * Li * cfg.in_channels * D + 2 * Lt * cfg.joint_attention_dim * D + 2 * Li * D * out + 2 * (C * D + D * D) + 2 * D * (6 * D + 6 * D + 3 * D + 2 * D);
  return {
    double: B * double,
    single: B * single,
    rest: B * rest,
    total: B * (cfg.num_layers * double + cfg.num_single_layers * single + rest),
  };
}

/** FLOPs of each decoder stage for an image of `height`×`width` pixels: conv_in + mid, up blocks 0..n−1, output. */
export function vaeDecodeFlops(cfg: Flux2VaeConfig, height: number, width: number): { stages: number[]; upBlocks: number[]; total: number } {
  const ch = [...cfg.block_out_channels].reverse();
  const levels = ch.length;
  const layers = cfg.layers_per_block;
  let h = height / 2 ** (levels - 1), w = width / 2 ** (levels - 1);
  const conv = (cout: number, cin: number, k: number) => 2 * cout * cin * k * k * h * w;
  const resnet = (cin: number, cout: number) => conv(cout, cin, 3) + conv(cout, cout, 3) + (cin !== cout ? conv(cout, cin, 1) : 0);
  const latent = cfg.latent_channels;
  const top = ch[0];
  const L = h * w;
  const midAttention = (cfg.mid_block_add_attention ?? true) ? 4 * 2 * L * top * top + 4 * L * L * top : 0;
  const first = (cfg.use_post_quant_conv ?? true ? conv(latent, latent, 1) : 0) + conv(top, latent, 3) + 2 * resnet(top, top) + midAttention;
  const upBlocks = ch.map((cout, i) => {
    const cin = ch[Math.max(0, i - 1)];
    let f = resnet(cin, cout);
    for (let j = 1; j <= layers; j++) f += resnet(cout, cout);
    if (i < levels - 1) {
      h *= 2;
      w *= 2;
      f += conv(cout, cout, 3);
    }
    return f;
  });
  const last = conv(cfg.out_channels, ch[levels - 1], 3);
  const stages = [first, ...upBlocks, last];
  return { stages, upBlocks, total: stages.reduce((a, b) => a + b, 0) };
}

// ---- timing -------------------------------------------------------------------------------------------------

/** Median seconds of `fn` (tensors it returns are disposed); one run when a run takes longer than `slow` s. */
async function time(dev: Device, fn: () => Tensor, repeat: number, slow = 2): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < repeat; i++) {
    const t0 = performance.now();
    fn().dispose();
    await dev.sync();
    times.push((performance.now() - t0) / 1000);
    if (times[0] > slow) break;
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

interface Row {
  what: string;
  gflop: number;
  seconds: number;
  gflops: number;
  measured: boolean;
}

const row = (what: string, flops: number, seconds: number, measured: boolean): Row => ({ what, gflop: flops / 1e9, seconds, gflops: flops / 1e9 / seconds, measured });

/** Image and text tokens of the transformer at a pixel size (16 pixels per token per axis). */
const imageTokens = (px: number) => (px / 16) ** 2;

/** Runs the benchmark; `onRow` sees each row as soon as it is known (lavapipe takes minutes). */
export async function benchModels(dev: Device, opts: { full: boolean; repeat: number; onRow?: (r: Row) => void }): Promise<{ adapter: string; rows: Row[] }> {
  const cfg = KLEIN_4B.transformer;
  const rows: Row[] = [];
  const add = (r: Row) => {
    rows.push(r);
    opts.onRow?.(r);
  };
  const tw = Weights.random(dev, transformerSpecs(cfg), { path: "random transformer" });
  const variant = (num_layers: number, num_single_layers: number) => Flux2Transformer.load(dev, tw, { ...cfg, num_layers, num_single_layers });
  const models = { rest: await variant(0, 0), double: await variant(1, 0), single: await variant(0, 1) };
  const forward = (m: Flux2Transformer, px: number, Lt: number) => {
    const g = px / 16;
    const x = Tensor.randn(dev, [1, g * g, cfg.in_channels], { seed: 1 });
    const context = Tensor.randn(dev, [1, Lt, cfg.joint_attention_dim], { seed: 2 });
    const y = m.forward({ x, context, timestep: [0.5], imgIds: latentIds(g, g), txtIds: textIds(1, Lt) });
    x.dispose();
    context.dispose();
    return y;
  };
  // 768 tokens: a 256² image and the 512 text tokens.
  const px = 256;
  const flops = transformerFlops(cfg, imageTokens(px), TXT);
  const t: Record<keyof typeof models, number> = { rest: 0, double: 0, single: 0 };
  for (const [k, m] of Object.entries(models) as [keyof typeof models, Flux2Transformer][]) {
    forward(m, 128, 64).dispose(); // compile (64 + 64 tokens: the same kernels as at full size)
    await dev.sync();
    t[k] = await time(dev, () => forward(m, px, TXT), opts.repeat);
  }
  add(row(`transformer rest (embedders, modulation, output), ${imageTokens(px)}+${TXT} tokens`, flops.rest, t.rest, true));
  add(row(`double-stream block, ${imageTokens(px)}+${TXT} tokens`, flops.double, t.double - t.rest, true));
  add(row(`single-stream block, ${imageTokens(px)}+${TXT} tokens`, flops.single, t.single - t.rest, true));
  const rate = { double: flops.double / (t.double - t.rest), single: flops.single / (t.single - t.rest), rest: flops.rest / t.rest };
  for (const size of [512, 1024]) {
    const f = transformerFlops(cfg, imageTokens(size), TXT);
    const s = (cfg.num_layers * f.double) / rate.double + (cfg.num_single_layers * f.single) / rate.single + f.rest / rate.rest;
    add(row(`transformer forward ${size}² (extrapolated)`, f.total, s, false));
  }
  for (const m of Object.values(models)) m.dispose();

  const vcfg = KLEIN_4B.vae;
  const vae = await Flux2Vae.load(dev, Weights.random(dev, vaeSpecs(vcfg), { path: "random vae" }), vcfg, { encoder: false });
  const up = 2;
  const cin = vcfg.block_out_channels[vcfg.block_out_channels.length - up];
  const side = 64;
  const x = Tensor.randn(dev, [1, cin, side, side], { seed: 3 });
  const small = Tensor.randn(dev, [1, cin, 8, 8], { seed: 3 });
  vae.upBlock(up, small).dispose();
  small.dispose();
  await dev.sync();
  const upSeconds = await time(dev, () => vae.upBlock(up, x), opts.repeat);
  x.dispose();
  // Up block i takes the latent (image / 2^(levels−1)) upsampled i times: this input belongs to a smaller image.
  const levels = vcfg.block_out_channels.length;
  const imagePx = side * 2 ** (levels - 1 - up);
  const upFlops = vaeDecodeFlops(vcfg, imagePx, imagePx).upBlocks[up];
  add(row(`VAE up block ${up} (${cin}→${vcfg.block_out_channels[levels - 1 - up]} ch), ${side}×${side} input`, upFlops, upSeconds, true));
  const vaeRate = upFlops / upSeconds;
  for (const size of [512, 1024]) {
    const f = vaeDecodeFlops(vcfg, size, size).total;
    add(row(`VAE decode ${size}² (extrapolated)`, f, f / vaeRate, false));
  }

  if (opts.full) {
    const full = await Flux2Transformer.load(dev, tw, cfg);
    for (const size of [512, 1024]) {
      forward(full, size, TXT).dispose();
      await dev.sync();
      add(row(`transformer forward ${size}²`, transformerFlops(cfg, imageTokens(size), TXT).total, await time(dev, () => forward(full, size, TXT), opts.repeat, 600), true));
      const g = size / 8;
      const z = Tensor.randn(dev, [1, vcfg.latent_channels, g, g], { seed: 4 });
      vae.decode(z).dispose();
      await dev.sync();
      add(row(`VAE decode ${size}²`, vaeDecodeFlops(vcfg, size, size).total, await time(dev, () => vae.decode(z), opts.repeat, 600), true));
      z.dispose();
    }
    full.dispose();
  }
  vae.dispose();
  tw.dispose();
  return { adapter: dev.describe(), rows };
}

if (import.meta.main) {
  const argv = (globalThis as { Deno?: { args: string[] } }).Deno?.args ?? (globalThis as { process?: { argv: string[] } }).process!.argv.slice(2);
  const full = argv.includes("--full");
  const dev = await Device.open();
  const { loadavg } = await import("node:os");
  const load = loadavg();
  const t0 = performance.now();
  const w = 58;
  console.log(`FLUX.2-klein-4B, random bf16 weights, on ${dev.describe()} (load average ${load.map((l) => l.toFixed(2)).join(" ")})`);
  console.log(`${"".padEnd(w)}  ${"GFLOP".padStart(9)}  ${"seconds".padStart(9)}  ${"GFLOP/s".padStart(8)}`);
  const print = (x: Row) => console.log(`${x.what.padEnd(w)}  ${x.gflop.toFixed(1).padStart(9)}  ${x.seconds.toFixed(3).padStart(9)}  ${x.gflops.toFixed(1).padStart(8)}${x.measured ? "" : "  (extrapolated by FLOPs)"}`);
  const r = await benchModels(dev, { full, repeat: 5, onRow: print });
  const { writeFile } = await import("node:fs/promises");
  const out = { adapter: r.adapter, loadAverage: load, date: new Date().toISOString(), seconds: (performance.now() - t0) / 1000, rows: r.rows };
  await writeFile(argv.includes("--out") ? argv[argv.indexOf("--out") + 1] : new URL("./models.json", import.meta.url), JSON.stringify(out, null, 2) + "\n");
  dev.destroy();
}
