// Runners of the CLIP / PickScore reference cases:
// - `clip_pickscore`: ClipModel built from the case's config and weights; the case's uint8 image preprocessed with
//   both resize backends at the tiny and the real (224) size; image embeddings from our own torchvision
//   pixel_values (so preprocessing errors would show downstream too); text from the case's ids and mask; the
//   normalised embeddings, PickScore, its logit-scaled variant and every hidden state.
// - the end-to-end repos/expected/<n> cases: a stage of the flux2 runner (`addRepoStage`) that loads the case's
//   PickScore and processor repos, tokenizes the prompt (compared with clip_input_ids and its mask: a mismatch fails) and scores the
//   case's stored uint8 images (DiffSynth's truncated one for pickscore with both backends, diffusers' rounded one
//   for pickscore_on_uint8_round); the generated image itself is scored too and reported in a note.
import { type Device, joinPath, Tensor } from "../../core/index.ts";
import { CaseError, EXACT, type LoadedCase, registerCase } from "../../core/verify.ts";
import { addRepoStage, type RepoImage } from "../flux2/verify.ts";
import { Weights } from "../weights.ts";
import { type ClipConfig, ClipModel } from "./model.ts";
import { cosines, normalizeRows, PickScore, type ScoreImages } from "./pickscore.ts";
import { ClipPreprocessor, DIFFSYNTH_UINT8, parseImageConfig, type Quantize, ROUND_UINT8, type RgbImage } from "./preprocess.ts";

type Outputs = Map<string, Float32Array>;

async function read(t: Tensor): Promise<Float32Array> {
  try {
    return await t.toArray();
  } finally {
    t.dispose();
  }
}

async function runClipPickScore(c: LoadedCase, dev: Device): Promise<Outputs> {
  const cfg = c.json.config as ClipConfig | undefined;
  const pre = c.json.preprocessing as { image_mean?: number[]; image_std?: number[] } | undefined;
  if (!cfg?.vision_config || !cfg.text_config) throw new CaseError(`${c.dir}: case.json needs "config" with text_config and vision_config`);
  if (!pre) throw new CaseError(`${c.dir}: case.json has no "preprocessing"`);
  const out: Outputs = new Map();
  const [H, W] = c.shape("image_uint8");
  const image: RgbImage = { data: Uint8Array.from(await c.tensor("image_uint8")), width: W, height: H };
  const model = await ClipModel.load(dev, await Weights.open(dev, joinPath(c.dir, "weights.safetensors")), cfg);
  try {
    const S = model.imageSize;
    let pixels: Tensor | undefined;
    for (const [size, suffix] of [[S, ""], [224, "_224"]] as const) {
      const ic = parseImageConfig({ size, crop_size: size, image_mean: pre.image_mean, image_std: pre.image_std }, `${c.dir}/case.json preprocessing`);
      for (const backend of ["torchvision", "pil"] as const) {
        const px = new ClipPreprocessor(dev, ic, backend).fromImages([image]);
        if (size === S && backend === "torchvision") pixels = px;
        out.set(`pixel_values${suffix}${backend === "pil" ? "_pil_backend" : ""}`, await px.toArray());
        if (px !== pixels) px.dispose();
      }
    }
    const img = model.imageForward(pixels!, { hidden: true });
    pixels!.dispose();
    const [B] = c.shape("input_ids");
    const ids = Int32Array.from(await c.tensor("input_ids"));
    const mask = Int32Array.from(await c.tensor("attention_mask"));
    const txt = model.textForward(ids, mask, B, { hidden: true });
    for (const [tower, r] of [["vision", img], ["text", txt]] as const) {
      out.set(`${tower}_pooled`, await read(r.pooled));
      out.set(`${tower}_last_hidden_state`, await read(r.lastHidden!));
      for (const [k, h] of r.hidden!.entries()) if (h !== r.lastHidden) out.set(`${tower}_hidden_states_${k}`, await read(h));
    }
    out.set("vision_hidden_states_" + (img.hidden!.length - 1), out.get("vision_last_hidden_state")!);
    const P = model.projectionDim;
    const imageEmbeds = await read(img.embeds);
    const textEmbeds = await read(txt.embeds);
    out.set("image_embeds", imageEmbeds);
    out.set("text_embeds", textEmbeds);
    const inorm = normalizeRows(imageEmbeds, P);
    const tnorm = normalizeRows(textEmbeds, P);
    out.set("image_embeds_normalized", inorm);
    out.set("text_embeds_normalized", tnorm);
    const scores = Array.from({ length: B }, (_, b) => cosines(tnorm.subarray(b * P, (b + 1) * P), inorm)[0]);
    out.set("pickscore", Float32Array.from(scores));
    const scaled = Float32Array.from(scores, (s) => model.logitScale * s);
    out.set("pickscore_logit_scaled", scaled);
    out.set("clipmodel_logits_per_text", scaled);
  } finally {
    model.dispose();
  }
  return out;
}

/** The generated image as each PickScore output of the end-to-end cases sees it. */
export interface RepoScoreImages {
  /** What the tutorial scores: DiffSynth's truncated uint8 image. */
  trunc: ScoreImages;
  /** diffusers' rounded uint8 image. */
  round: ScoreImages;
  /** Conversions of tensor sources (defaults: DiffSynth on `trunc`, diffusers rounding on `round`). */
  quantize?: { trunc: Quantize; round: Quantize };
}

/** Loads the PickScore and processor repos an end-to-end case names (config.repos). */
export async function loadCasePickScore(c: LoadedCase, dev: Device): Promise<PickScore> {
  const repos = (c.json.config as { repos?: Record<string, string> } | undefined)?.repos;
  if (!repos?.pickscore || !repos.processor) throw new CaseError(`${c.dir}: config.repos needs "pickscore" and "processor"`);
  return PickScore.load(dev, { model: joinPath(c.dir, repos.pickscore), processor: joinPath(c.dir, repos.processor) });
}

/**
 * PickScore outputs of an end-to-end case (clip_input_ids, clip_attention_mask, clip_pixel_values[_pil_backend],
 * image_embeds, text_embeds, pickscore, pickscore_logit_scaled, pickscore_pil_backend, pickscore_on_uint8_round) for
 * a prompt and images.
 */
export async function repoPickScore(ps: PickScore, prompt: string, images: RepoScoreImages): Promise<Outputs> {
  const out: Outputs = new Map();
  const text = await ps.textEmbedding(prompt);
  const ids = Int32Array.from(ps.tokenizer.encode(prompt));
  const mask = new Int32Array(ids.length).fill(1);
  out.set("clip_input_ids", Float32Array.from(ids));
  out.set("clip_attention_mask", Float32Array.from(mask));
  out.set("text_embeds", await read(ps.model.textEmbeds(ids, mask, 1)));
  const q = images.quantize ?? { trunc: DIFFSYNTH_UINT8, round: ROUND_UINT8 };
  const pil = new ClipPreprocessor(ps.model.dev, ps.preprocessor.cfg, "pil");
  const runs = [
    ["", ps.preprocessor, images.trunc, q.trunc],
    ["_pil_backend", pil, images.trunc, q.trunc],
    ["_on_uint8_round", ps.preprocessor, images.round, q.round],
  ] as const;
  for (const [suffix, pre, src, quant] of runs) {
    const px = src instanceof Tensor ? pre.fromTensor(src, quant) : pre.fromImages(src);
    if (suffix !== "_on_uint8_round") out.set(`clip_pixel_values${suffix}`, await px.toArray());
    const embeds = await read(ps.model.imageEmbeds(px));
    px.dispose();
    if (suffix === "") out.set("image_embeds", embeds);
    const score = cosines(text, normalizeRows(embeds, ps.model.projectionDim))[0];
    out.set(`pickscore${suffix}`, Float32Array.of(score));
    if (suffix === "") out.set("pickscore_logit_scaled", Float32Array.of(ps.model.logitScale * score));
  }
  return out;
}

/**
 * The end-to-end cases' stage. The compared rows score the uint8 images the case stores (what the reference
 * scored), so they test CLIP exactly: our own float32 image may sit on the other side of a uint8 rounding boundary
 * at a few pixels (the case allows ±1 there), and on these random tiny models one such pixel can move PickScore by
 * more than its 5e-6 bound. Our own image is scored too and reported in the notes.
 */
async function repoStage(c: LoadedCase, dev: Device, img: RepoImage): Promise<Outputs> {
  const ps = await loadCasePickScore(c, dev);
  try {
    const own = await repoPickScore(ps, img.prompt, { trunc: img.decoded, round: img.image });
    if (!c.has("image_uint8_trunc") || !c.has("image_uint8_round")) return own;
    const [H, W] = c.shape("image_uint8_trunc");
    const stored = async (name: string): Promise<RgbImage[]> => [{ width: W, height: H, data: Uint8Array.from(await c.tensor(name)) }];
    const out = await repoPickScore(ps, img.prompt, { trunc: await stored("image_uint8_trunc"), round: await stored("image_uint8_round") });
    const steps = own.get("clip_pixel_values")!.filter((v, i) => Math.abs(v - out.get("clip_pixel_values")![i]) > 1e-3).length;
    const delta = (k: string) => `${k} ${own.get(k)![0].toFixed(7)} (Δ ${(own.get(k)![0] - out.get(k)![0]).toExponential(1)})`;
    c.notes.push(
      `PickScore rows use the case's stored uint8 images; our own image: ${steps} clip_pixel_values differ by a uint8 step, ` +
        ["pickscore", "pickscore_pil_backend", "pickscore_on_uint8_round"].map(delta).join(", "),
    );
    return out;
  } finally {
    ps.dispose();
  }
}

// The case gives no bound for pixel values: both resizes are reproduced exactly, so float rounding is the bound
// (one uint8 step of a differing resize would be ~0.015).
registerCase("clip_pickscore", runClipPickScore, { rules: { "pixel_values*": { atol: 1e-5, rule: "both resizes reproduced exactly: float rounding" } } });
addRepoStage(repoStage, {
  "pickscore_pil_backend,pickscore_on_uint8_round": { atol: 5e-6, rule: "the same cosine on other pixels: pickscore's bound" },
  "clip_input_ids,clip_attention_mask": { ...EXACT, rule: "token ids and mask: exact" },
});
