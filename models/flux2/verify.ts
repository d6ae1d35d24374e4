// Every FLUX.2 reference-case runner, one registry for the model family:
// - `flux2_transformer`, `flux2_transformer_guidance`: the model is built from the case's `config` and
//   weights.safetensors, fed the case inputs (ids of batch item 0: diffusers shares them across the batch), and
//   every debug tensor the forward pass reports is read back. RoPE tables are stored by the case as [L, head_dim]
//   with each pair's angle repeated (repeat_interleave(2)); ours are [L, head_dim/2] and get expanded.
// - `flux2_vae`: the VAE from the case's `config` and weights. Encode side: image → encoder (per-block debug,
//   moments) → posterior mean → patchify + BN normalisation; the normalised packed tokens are unpacked to
//   [B, 4C, h, w] for comparison. Decode side: packed_latents are placed on the grid their latent_ids give
//   (diffusers' _unpack_latents_with_ids scatters token i to row h_i, column w_i of a max(h)+1 × max(w)+1 grid,
//   zeros elsewhere), then de-normalised, unpatchified and decoded.
// - `scheduler`: the diffusers and DiffSynth schedules of every listed size/step count, and a short Euler loop on
//   the case's tensors.
// - `tiny_pipeline`, `tiny_pipeline_cfg`, `tiny_pipeline_edit`: Flux2Pipeline over the case's transformer and VAE
//   (weights.safetensors keys prefixed `transformer.` / `vae.`, configs from the case.json they point to) fed the
//   case's prompt embeddings and noise; the editing case's inputs ref_image_0, ref_image_1, ... ([H, W, 3] uint8)
//   are its reference images, in index order, encoded with `encodeReferences`.
// - the end-to-end folders repos/expected/<n> (their `case` is a number; claimed by a predicate): the repo named by
//   config.repos.flux is loaded with Flux2Pipeline.load and run from the prompt text; the token ids and mask are
//   compared with the case's (a mismatch fails). Further stages on the same image (PickScore) plug in with
//   `addRepoStage`; until one does, their outputs are MISSING.
// Every produced tensor is read back during the run (onStep / debug hooks hand out live tensors) and only names the
// case declares are returned. Tensors a case gives no bound for get a named rule here (core/verify.ts Rule).
import { concatArrays, type Device, joinPath, readText, Tensor } from "../../core/index.ts";
import type { Image8 } from "../../core/png.ts";
import { CaseError, type CaseJson, EXACT, type LoadedCase, registerCase, type Rule } from "../../core/verify.ts";
import { unpackLatents } from "../../kernels/layout.ts";
import { textIds } from "../qwen3/prompt.ts";
import { Weights } from "../weights.ts";
import { Flux2Pipeline, type GenerateOptions, latentIds, type ReferenceTokens } from "./pipeline.ts";
import { diffsynthFlux2Sigmas, type FlowMatchConfig, flowMatchSigmas } from "./scheduler.ts";
import { type Flux2TransformerConfig, Flux2Transformer } from "./transformer.ts";
import { type Flux2VaeConfig, Flux2Vae } from "./vae.ts";

type Outputs = Map<string, Float32Array>;

// ---- transformer ----------------------------------------------------------------------------------------------

/** Each value of a [rows, n] table twice in a row → [rows, 2n]. */
function repeatInterleave2(a: Float32Array): Float32Array {
  const out = new Float32Array(a.length * 2);
  a.forEach((v, i) => out.fill(v, 2 * i, 2 * i + 2));
  return out;
}

/** The first `rows` rows of ids stored as [rows, k] or [B, rows, k]. */
async function ids(c: LoadedCase, name: string): Promise<Int32Array> {
  const shape = c.shape(name);
  const [rows, k] = shape.slice(-2);
  if (shape.length < 2 || shape.length > 3) throw new CaseError(`${c.dir}: "${name}" must be [L, k] or [B, L, k], got [${shape}]`);
  return Int32Array.from((await c.tensor(name)).subarray(0, rows * k));
}

/** The case's `config` block. */
function configBlock<T>(c: LoadedCase): T {
  const cfg = c.json.config;
  if (!cfg || typeof cfg !== "object") throw new CaseError(`${c.dir}: case.json has no "config"`);
  return cfg as T;
}

/** The case's input before diffusers' _pack_latents: our transformer takes the packed tokens and never forms it. */
const LATENTS_4D = { latents_4d: "the input before _pack_latents; the transformer takes the packed hidden_states" };

async function runTransformer(c: LoadedCase, dev: Device): Promise<Map<string, Float32Array>> {
  const cfg = configBlock<Flux2TransformerConfig>(c);
  const model = await Flux2Transformer.load(dev, await Weights.open(dev, joinPath(c.dir, "weights.safetensors")), cfg);
  const out = new Map<string, Float32Array>();
  const pending: Promise<void>[] = [];
  const expected = new Set(Object.keys(c.json.debug ?? {}));
  const upload = async (name: string) => Tensor.fromArray(dev, await c.tensor(name), c.shape(name));
  const tensors: Tensor[] = [];
  try {
    const x = await upload("hidden_states");
    const context = await upload("encoder_hidden_states");
    tensors.push(x, context);
    const y = model.forward({
      x,
      context,
      timestep: Array.from(await c.tensor("timestep")),
      guidance: c.json.inputs.guidance ? Array.from(await c.tensor("guidance")) : undefined,
      imgIds: await ids(c, "img_ids"),
      txtIds: await ids(c, "txt_ids"),
      debug: (name, t) => {
        if (!expected.has(name) || !c.wants(name)) return;
        const rope = name === "rope_cos" || name === "rope_sin";
        pending.push(t.toArray().then((a) => void out.set(name, rope ? repeatInterleave2(a) : a)));
      },
    });
    tensors.push(y);
    out.set("output", await y.toArray());
    await Promise.all(pending);
  } finally {
    for (const t of tensors) t.dispose();
    model.dispose();
  }
  return out;
}

// ---- VAE --------------------------------------------------------------------------------------------------------

/** Tokens [B, L, C] in raster order of the grid their ids [B, L, 4] (t, h, w, l) name, with the grid size. */
async function tokensOnGrid(c: LoadedCase): Promise<{ data: Float32Array; B: number; h: number; w: number; C: number }> {
  const [B, L, C] = c.shape("packed_latents");
  const idShape = c.shape("latent_ids");
  if (idShape.length !== 3 || idShape[0] !== B || idShape[1] !== L || idShape[2] < 3) {
    throw new CaseError(`${c.dir}: latent_ids [${idShape}] must be [${B}, ${L}, 4] for packed_latents [${B}, ${L}, ${C}]`);
  }
  const k = idShape[2];
  const ids = await c.tensor("latent_ids");
  const src = await c.tensor("packed_latents");
  let h = 0, w = 0;
  for (let i = 0; i < B * L; i++) {
    h = Math.max(h, ids[i * k + 1] + 1);
    w = Math.max(w, ids[i * k + 2] + 1);
  }
  const data = new Float32Array(B * h * w * C);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < L; i++) {
      const at = b * L + i;
      const pos = ids[at * k + 1] * w + ids[at * k + 2];
      data.set(src.subarray(at * C, (at + 1) * C), (b * h * w + pos) * C);
    }
  }
  return { data, B, h, w, C };
}

async function runVae(c: LoadedCase, dev: Device): Promise<Map<string, Float32Array>> {
  const cfg = configBlock<Flux2VaeConfig>(c);
  const vae = await Flux2Vae.load(dev, await Weights.open(dev, joinPath(c.dir, "weights.safetensors")), cfg);
  const out = new Map<string, Float32Array>();
  const pending: Promise<void>[] = [];
  const expected = new Set([...Object.keys(c.json.outputs), ...Object.keys(c.json.debug ?? {})]);
  const debug = (name: string, t: Tensor) => {
    if (expected.has(name) && c.wants(name)) pending.push(t.toArray().then((a) => void out.set(name, a)));
  };
  const tensors: Tensor[] = [];
  const keep = (t: Tensor) => (tensors.push(t), t);
  try {
    const img = keep(Tensor.fromArray(dev, await c.tensor("image"), c.shape("image")));
    const mean = keep(vae.encode(img, debug));
    debug("enc_mean", mean);
    const tokens = keep(vae.normalizeToPacked(mean, debug));
    debug("enc_normalized", keep(unpackLatents(tokens, mean.shape[2] / 2, mean.shape[3] / 2)));

    const grid = await tokensOnGrid(c);
    const packed = keep(Tensor.fromArray(dev, grid.data, [grid.B, grid.h * grid.w, grid.C]));
    const z = keep(vae.denormalizePacked(packed, grid.h, grid.w, debug));
    debug("dec_unpatchified", z);
    debug("decoded", keep(vae.decode(z, debug)));
    await Promise.all(pending);
  } finally {
    for (const t of tensors) t.dispose();
    vae.dispose();
  }
  return out;
}

// ---- scheduler ----------------------------------------------------------------------------------------------

interface ScheduleSpec {
  height: number;
  width: number;
  image_seq_len: number;
  num_inference_steps: number;
}

async function runScheduler(c: LoadedCase, dev: Device): Promise<Outputs> {
  const cfg = c.json.config as FlowMatchConfig | undefined;
  const specs = c.json.schedules as ScheduleSpec[] | undefined;
  const loop = c.json.euler_loop as { num_inference_steps: number; image_seq_len: number } | undefined;
  if (!cfg || !Array.isArray(specs) || !loop) throw new CaseError(`${c.dir}: case.json needs "config", "schedules" and "euler_loop"`);
  const out: Outputs = new Map();
  for (const s of specs) {
    const tag = `${s.height}x${s.width}_n${s.num_inference_steps}`;
    const ours = flowMatchSigmas(s.num_inference_steps, s.image_seq_len, cfg);
    out.set(`sigmas_${tag}`, ours.sigmas);
    out.set(`timesteps_${tag}`, ours.timesteps);
    const ds = diffsynthFlux2Sigmas(s.num_inference_steps, s.image_seq_len);
    out.set(`diffsynth_sigmas_${tag}`, ds.sigmas.subarray(0, ds.steps));
    out.set(`diffsynth_timesteps_${tag}`, ds.timesteps);
  }
  const sched = flowMatchSigmas(loop.num_inference_steps, loop.image_seq_len, cfg);
  out.set("euler_sigmas", sched.sigmas);
  out.set("euler_timesteps", sched.timesteps);
  const vs = await c.tensor("euler_model_outputs");
  const shape = c.shape("euler_sample");
  let x = Tensor.fromArray(dev, await c.tensor("euler_sample"), shape);
  const steps: Promise<Float32Array>[] = [];
  for (let i = 0; i < sched.steps; i++) {
    const v = Tensor.fromArray(dev, vs.subarray(i * x.size, (i + 1) * x.size), shape);
    const next = sched.step(x, v, i);
    x.dispose();
    v.dispose();
    x = next;
    steps.push(x.toArray());
  }
  x.dispose();
  out.set("euler_latents_after_each_step", concatArrays(await Promise.all(steps)));
  return out;
}

// ---- one generation, recorded ---------------------------------------------------------------------------------

/** Tensors a stage after the image (PickScore) gets while they are alive. */
export interface RepoImage {
  /** [B, 3, H, W] raw decoder output. */
  decoded: Tensor;
  /** [B, 3, H, W] in [0, 1]. */
  image: Tensor;
  prompt: string;
}

export type RepoStage = (c: LoadedCase, dev: Device, img: RepoImage) => Promise<Outputs>;

const repoStages: RepoStage[] = [];

/** Adds outputs computed from the end-to-end cases' image (e.g. PickScore), run before the image is freed, with the rules that bound them. */
export function addRepoStage(stage: RepoStage, rules: Record<string, Rule> = {}): void {
  repoStages.push(stage);
  Object.assign(REPO_RULES, rules);
}

/**
 * Runs `pipe.generate(opts)` and records everything the flux2 cases store: schedule, per-step transformer inputs,
 * outputs (split into cond/uncond with guidance), guided velocities and latents, decoder input and output, the
 * [0, 1] image and its uint8 conversions. `after` sees the live image.
 */
async function recordGeneration(
  c: LoadedCase,
  pipe: Flux2Pipeline,
  opts: GenerateOptions & { steps: number; initialNoise: Tensor },
  after?: (img: RepoImage) => Promise<Outputs>,
): Promise<Outputs> {
  const want = new Set([...Object.keys(c.json.outputs), ...Object.keys(c.json.debug ?? {})].filter((n) => c.wants(n)));
  const pending = new Map<string, Promise<Float32Array>[]>();
  const push = (name: string, p: Promise<Float32Array>) => {
    if (want.has(name)) pending.set(name, [...(pending.get(name) ?? []), p]);
  };
  const read = (name: string, t: Tensor) => {
    if (want.has(name)) push(name, t.toArray());
  };
  const out: Outputs = new Map();
  const timesteps: number[] = [];
  const [, , h, w] = opts.initialNoise.shape;
  const schedule = pipe.schedule(opts.steps, h * w);
  out.set("sigmas", schedule.sigmas);
  out.set("timesteps", schedule.timesteps);

  const r = pipe.generate({
    ...opts,
    schedule,
    onStep: (i, latents, info) => {
      timesteps.push(info.timestep);
      if (i === 0 && info.joint) {
        read("transformer_hidden_states_step0", info.joint.input);
        read("transformer_output_full_step0", info.joint.output);
      }
      if (i === schedule.steps - 1) read("final_latents", latents);
      read("transformer_hidden_states_inputs", info.input);
      read("latents_after_each_step", latents);
      read("guided_velocity_each_step", info.velocity);
      if (info.prediction === info.velocity) {
        read("noise_pred_each_step", info.prediction);
      } else if (want.has("noise_pred_cond_each_step") || want.has("noise_pred_uncond_each_step")) {
        // [2B, L, C]: conditional rows first.
        const all = info.prediction.toArray();
        const n = info.prediction.size / 2;
        push("noise_pred_cond_each_step", all.then((a) => a.subarray(0, n)));
        push("noise_pred_uncond_each_step", all.then((a) => a.subarray(n)));
      }
    },
    vaeDebug: (name, t) => {
      if (name === "post_quant_conv") read("vae_decoder_input", t);
      if (name === "dec_unpatchified") read("decoder_latents", t);
    },
  });
  try {
    read("decoded_raw", r.decoded);
    read("image_float", r.image);
    for (const [name, rounding] of [["image_uint8", "round"], ["image_uint8_round", "round"], ["image_uint8_trunc", "trunc"]] as const) {
      if (want.has(name)) out.set(name, Float32Array.from(await pipe.imageBytes(r, rounding)));
    }
    if (after) for (const [k, v] of await after({ decoded: r.decoded, image: r.image, prompt: String(opts.prompt ?? "") })) out.set(k, v);
  } finally {
    r.image.dispose();
    r.decoded.dispose();
    r.latents.dispose();
  }
  for (const [name, list] of pending) out.set(name, concatArrays(await Promise.all(list)));
  out.set("transformer_timestep_inputs", Float32Array.from(timesteps));
  out.set("img_ids", Float32Array.from(latentIds(h, w)));
  out.set("latent_ids", Float32Array.from(latentIds(h, w)));
  const refs = opts.references;
  if (refs) {
    if (want.has("reference_tokens")) out.set("reference_tokens", await refs.tokens.toArray());
    out.set("reference_ids", Float32Array.from(refs.ids));
    out.set("transformer_img_ids", Float32Array.from([...latentIds(h, w), ...refs.ids]));
  }
  return out;
}

// ---- tiny pipelines ---------------------------------------------------------------------------------------------

/** A model config given inline or as "<relative path to a case.json> (remark)" whose `config` is used. */
async function caseConfig<T>(c: LoadedCase, field: unknown, what: string): Promise<T> {
  if (field && typeof field === "object") return field as T;
  if (typeof field !== "string") throw new CaseError(`${c.dir}: config.${what} must be a config or a path to a case.json`);
  const path = joinPath(c.dir, field.trim().split(/\s+/)[0]);
  let json: CaseJson;
  try {
    json = JSON.parse(await readText(path));
  } catch (e) {
    throw new CaseError(`${c.dir}: config.${what} → ${path}: ${(e as Error).message}`);
  }
  if (!json.config || typeof json.config !== "object") throw new CaseError(`${path}: no "config"`);
  return json.config as T;
}

interface TinyConfig {
  transformer: unknown;
  vae: unknown;
  scheduler?: FlowMatchConfig;
  height: number;
  width: number;
  num_inference_steps: number;
  guidance_scale?: number;
  is_distilled?: boolean;
}

/** The case's reference images: inputs ref_image_<i> ([H, W, 3] uint8) in index order. */
async function referenceImages(c: LoadedCase): Promise<{ names: string[]; images: Image8[] }> {
  const index = (n: string) => Number(/^ref_image_(\d+)$/.exec(n)?.[1] ?? NaN);
  const names = Object.keys(c.json.inputs).filter((n) => Number.isInteger(index(n))).sort((a, b) => index(a) - index(b));
  const images: Image8[] = [];
  for (const name of names) {
    const shape = c.shape(name);
    if (shape.length !== 3 || shape[2] !== 3) throw new CaseError(`${c.dir}: "${name}" [${shape}] must be [H, W, 3]`);
    images.push({ width: shape[1], height: shape[0], channels: 3, data: Uint8Array.from(await c.tensor(name)) });
  }
  return { names, images };
}

async function runTinyPipeline(c: LoadedCase, dev: Device): Promise<Outputs> {
  const cfg = configBlock<TinyConfig>(c);
  const tCfg = await caseConfig<Flux2TransformerConfig>(c, cfg.transformer, "transformer");
  const vCfg = await caseConfig<Flux2VaeConfig>(c, cfg.vae, "vae");
  const refImages = await referenceImages(c);
  const weights = await Weights.open(dev, joinPath(c.dir, "weights.safetensors"));
  const transformer = await Flux2Transformer.load(dev, weights.sub("transformer."), tCfg);
  let vae: Flux2Vae;
  try {
    vae = await Flux2Vae.load(dev, weights.sub("vae."), vCfg, { encoder: refImages.images.length > 0 });
  } catch (e) {
    transformer.dispose();
    throw e;
  }
  const pipe = Flux2Pipeline.create(dev, { transformer, vae, scheduler: cfg.scheduler, isDistilled: cfg.is_distilled ?? true });
  const inputs: Tensor[] = [];
  const upload = async (name: string) => {
    const t = Tensor.fromArray(dev, await c.tensor(name), c.shape(name));
    inputs.push(t);
    return t;
  };
  let references: ReferenceTokens | undefined;
  const refDebug: Promise<void>[] = [];
  const refOut: Outputs = new Map();
  try {
    if (refImages.images.length) {
      references = await pipe.encodeReferences(refImages.images, {
        names: refImages.names,
        debug: (name, t) => {
          if (c.wants(name)) refDebug.push(t.toArray().then((a) => void refOut.set(name, a)));
        },
      });
      inputs.push(references.tokens);
    }
    const promptEmbeds = await upload("prompt_embeds");
    const negativePromptEmbeds = c.has("negative_prompt_embeds") ? await upload("negative_prompt_embeds") : undefined;
    const guidanceScale = c.has("guidance_scale") ? (await c.tensor("guidance_scale"))[0] : cfg.guidance_scale;
    const out = await recordGeneration(c, pipe, {
      promptEmbeds,
      negativePromptEmbeds,
      guidanceScale,
      initialNoise: await upload("initial_noise"),
      width: cfg.width,
      height: cfg.height,
      steps: cfg.num_inference_steps,
      references,
    });
    await Promise.all(refDebug);
    for (const [k, v] of refOut) out.set(k, v);
    const ids = (t: Tensor) => Float32Array.from(textIds(t.shape[0], t.shape[1]));
    out.set("text_ids", ids(promptEmbeds));
    if (negativePromptEmbeds) out.set("negative_text_ids", ids(negativePromptEmbeds));
    return filterDeclared(c, out);
  } finally {
    for (const t of inputs) t.dispose();
    pipe.dispose();
  }
}

function filterDeclared(c: LoadedCase, out: Outputs): Outputs {
  const declared = new Set([...Object.keys(c.json.inputs), ...Object.keys(c.json.outputs), ...Object.keys(c.json.debug ?? {})]);
  for (const k of [...out.keys()]) if (!declared.has(k) || !c.wants(k)) out.delete(k);
  return out;
}

// ---- end-to-end repos -------------------------------------------------------------------------------------------

interface RepoConfig {
  height: number;
  width: number;
  num_inference_steps: number;
  guidance_scale?: number;
  max_sequence_length?: number;
  text_encoder_out_layers?: number[];
  repos: { flux: string; [k: string]: string };
}

async function runRepo(c: LoadedCase, dev: Device): Promise<Outputs> {
  const cfg = c.json.config as RepoConfig;
  const prompt = c.json.prompt;
  if (typeof prompt !== "string") throw new CaseError(`${c.dir}: case.json has no "prompt" text`);
  const pipe = await Flux2Pipeline.load(dev, {
    dir: joinPath(c.dir, cfg.repos.flux),
    maxSequenceLength: cfg.max_sequence_length,
    textLayers: cfg.text_encoder_out_layers,
  });
  const noise = Tensor.fromArray(dev, await c.tensor("initial_noise"), c.shape("initial_noise"));
  try {
    const enc = pipe.encodePrompt(prompt);
    const out = await recordGeneration(
      c,
      pipe,
      {
        prompt,
        guidanceScale: cfg.guidance_scale,
        initialNoise: noise,
        width: cfg.width,
        height: cfg.height,
        steps: cfg.num_inference_steps,
      },
      async (img) => {
        const extra: Outputs = new Map();
        for (const stage of repoStages) for (const [k, v] of await stage(c, dev, img)) extra.set(k, v);
        return extra;
      },
    );
    out.set("prompt_embeds", await enc.embeds.toArray());
    out.set("txt_ids", Float32Array.from(textIds(1, enc.embeds.shape[1])));
    out.set("qwen_input_ids", Float32Array.from(enc.ids));
    out.set("qwen_attention_mask", Float32Array.from(enc.mask));
    return filterDeclared(c, out);
  } finally {
    noise.dispose();
    pipe.dispose();
  }
}

// ---- rules for tensors the cases give no bound for --------------------------------------------------------------

const SIGMA: Rule = { atol: 1e-6, rule: "float32 schedule, as sigmas_*" };
const TIMESTEP: Rule = { atol: 1e-3, rule: "1000·sigma: 1000 × the sigma bound" };

/** The pipeline and end-to-end cases: schedule, per-step inputs, uint8 images and coordinates. */
const PIPELINE_RULES: Record<string, Rule> = {
  sigmas: SIGMA,
  timesteps: TIMESTEP,
  transformer_timestep_inputs: { atol: 1e-6, rule: "sigma fed to the model: the sigma bound" },
  transformer_hidden_states_inputs: { atol: 5e-5, rule: "the latents entering each step: the latents' bound" },
  transformer_hidden_states_step0: { atol: 5e-5, rule: "noise and reference tokens entering step 0: the reference tokens' bound" },
  "ref_*_preprocessed": { atol: 0, rule: "cropped uint8 pixels /255·2 − 1 in float32, as numpy: exact" },
  vae_decoder_input: { atol: 5e-5, rule: "the last latents de-normalised (BN scales ~1): the latents' bound" },
  "image_uint8*": { atol: 1, rule: "uint8 of image_float: one step at a rounding boundary" },
  "text_ids,negative_text_ids,txt_ids,img_ids,latent_ids,reference_ids,transformer_img_ids": EXACT,
  "qwen_input_ids,qwen_attention_mask": { ...EXACT, rule: "token ids and mask: exact" },
};

/** Rules of the end-to-end cases; stages (addRepoStage) add theirs. */
const REPO_RULES: Record<string, Rule> = { ...PIPELINE_RULES };

registerCase("flux2_transformer", runTransformer, { notProduced: LATENTS_4D });
registerCase("flux2_transformer_guidance", runTransformer, { notProduced: LATENTS_4D });
registerCase("flux2_vae", runVae);
registerCase("scheduler", runScheduler, {
  rules: { "diffsynth_sigmas_*": SIGMA, "diffsynth_timesteps_*": TIMESTEP },
});
registerCase("tiny_pipeline", runTinyPipeline, { rules: PIPELINE_RULES });
registerCase("tiny_pipeline_cfg", runTinyPipeline, { rules: PIPELINE_RULES });
registerCase("tiny_pipeline_edit", runTinyPipeline, { rules: PIPELINE_RULES });
registerCase("flux2_repo", runRepo, {
  rules: REPO_RULES,
  match: (json) => /^\d+$/.test(String(json.case)) && typeof (json.config as Partial<RepoConfig> | undefined)?.repos?.flux === "string",
});
