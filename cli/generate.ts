// `flux2ts generate`: flags → models (hub) → generate/generation.ts → PNG + JSON log (+ contact sheet). Thin on
// purpose: the search orchestration is shared with the browser app. A run's log makes every candidate
// reproducible: `--replay log.json --candidate K` re-runs the search on the logged scores (no transformer calls
// for noise searches) and renders only candidate K, bit-identical to the original. Progress goes to stderr,
// results to stdout; user mistakes are UsageErrors (one line plus a hint). Reference images (--ref, editing) are
// read, decoded, checked and hashed before any model loads, so a bad one costs nothing and writes nothing.
import type { Device } from "../core/index.ts";
import { nodeFs, readText } from "../core/platform.ts";
import { type Image8, writePng } from "../core/png.ts";
import { PickScore } from "../models/clip/pickscore.ts";
import { Flux2Pipeline } from "../models/flux2/pipeline.ts";
import {
  type GenerationEvent,
  type GenerationModels,
  type GenerationSettings,
  generateWithSearch,
  imageRgb8,
  referenceOutputSize,
  replayGeneration,
  resolveSettings,
} from "../generate/generation.ts";
import { formatSeconds } from "../generate/run_search.ts";
import { type ModelNames, type RunLog, runLog, stem } from "../generate/index.ts";
import { SEARCH_NAMES } from "../search/by_name.ts";
import { intFlag, type Parsed, parseArgs, strFlag, UsageError } from "./args.ts";
import { contactSheet } from "./contact_sheet.ts";
import { budgetFlag, choice, hubFlags, imageSettings, MODEL_FLAGS, modelNames, readReferences, SETTING_FLAGS } from "./generation_flags.ts";
import { ProgressLine } from "./progress.ts";
import { locateModel, openDevice } from "./resolve.ts";

export const help = `flux2ts generate --prompt "text" [options]

Text to image with FLUX.2-klein, optionally searching the initial noise for the best reward (PickScore);
with --ref, editing: the prompt applies to the reference images.

  --prompt text / --prompt-file f  the prompt (file: UTF-8 text, surrounding whitespace dropped)
  --negative-prompt text   turns classifier-free guidance on (distilled models); non-distilled models use ""
  --guidance x             CFG scale, or the embedded guidance of models that have one (default 4)
  --ref file               a reference PNG or JPEG (repeat for several, in order): sides ≥ 64 px, aspect ≤ 8, over
                           1024² px resized to about 1024² px; each one's name, size and SHA-256 are logged
  --width n --height n     image size, multiples of 16 (default 1024 × 1024; with --ref, the first
                           reference's size cropped to multiples of 16)
  --steps n                sampler steps (default: 4 for distilled models, else 50)
  --seed n                 base noise seed, 0 ≤ n < 2^32 (default 0); the search draws from its own stream
  --search name            none (default) | random | zero-order | paths | ses
  --budget n               noises to score (default 50; none: 1; paths: rounds × paths × 4 ≤ n)
  --verifier name          pickscore (default) | clipscore | self | ensemble
  --batch n                candidates per transformer call (default 1; results are identical for any n,
                           except ensemble, which ranks the candidates of one call)
  --out file.png           the best image (default out.png); the run's log goes to file.json
  --save-all               also write file-all.png: every candidate with its index and score
  --model m                FLUX.2 pipeline: local folder, alias or owner/name (default klein-4b)
  --reward-model m         PickScore weights (default pickscore)
  --reward-processor m     CLIP processor files (default clip-h14-processor)
  --endpoint url           hub endpoint (default $MODELSCOPE_ENDPOINT or modelscope.cn)
  --offline                use the local cache only
  --replay log.json --candidate k
                           re-render candidate k of a logged run (settings from the log; writes --out,
                           default <log>-<k>.png); its reference files are read from the logged names
                           (or the --ref given) and must have the logged SHA-256`;

const VALUED = ["prompt", "prompt-file", "seed", "search", "out", "replay", "candidate", "ref", "endpoint", ...SETTING_FLAGS, ...MODEL_FLAGS];
const REPLAY_FLAGS = new Set(["replay", "candidate", "out", "model", "reward-model", "reward-processor", "endpoint", "offline", "ref"]);

async function promptOf(p: Parsed): Promise<string> {
  const text = strFlag(p, "prompt");
  const file = strFlag(p, "prompt-file");
  if (text !== undefined && file !== undefined) throw new UsageError("give --prompt or --prompt-file, not both");
  if (file !== undefined) {
    let s: string;
    try {
      s = await readText(file);
    } catch (e) {
      throw new UsageError(`cannot read --prompt-file ${file}: ${String((e as Error).message).split("\n")[0]}`, "give a UTF-8 text file holding the prompt");
    }
    if (!s.trim()) throw new UsageError(`--prompt-file ${file} is empty`);
    return s.trim();
  }
  if (text === undefined) throw new UsageError("generate needs --prompt (or --prompt-file)", 'flux2ts generate --prompt "a red fox in snow" --out fox.png');
  if (!text.trim()) throw new UsageError("--prompt is empty");
  return text;
}

/**
 * Opens the GPU, loads the pipeline (encoding the prompts first, then freeing the text encoder) and PickScore, runs
 * `fn` with them and frees everything.
 */
async function withModels<T>(
  names: ModelNames,
  hub: { endpoint?: string; offline: boolean },
  prompts: string[],
  vaeEncoder: boolean,
  fn: (m: GenerationModels) => Promise<T>,
): Promise<T> {
  const dirs = {
    model: await locateModel("--model", names.model, hub),
    reward: await locateModel("--reward-model", names.rewardModel, hub),
    processor: await locateModel("--reward-processor", names.rewardProcessor, hub),
  };
  const dev = await openDevice();
  let models: GenerationModels | undefined;
  try {
    models = await loadModels(dev, dirs, names, prompts, vaeEncoder);
    return await fn(models);
  } finally {
    if (models) {
      models.scorer.dispose();
      models.pipe.dispose();
    }
    dev.destroy();
  }
}

async function loadModels(
  dev: Device,
  dirs: { model: string; reward: string; processor: string },
  names: ModelNames,
  prompts: string[],
  vaeEncoder: boolean,
): Promise<GenerationModels> {
  const line = new ProgressLine();
  line.update(`loading ${names.model}`);
  let pipe: Flux2Pipeline;
  try {
    // memoryBudget 0: every prompt is known now, so the text encoder never shares the GPU with the transformer.
    pipe = await Flux2Pipeline.load(dev, { dir: dirs.model, prompts, memoryBudget: 0, vaeEncoder });
  } catch (e) {
    line.end();
    throw new UsageError(`cannot load --model ${names.model}: ${String((e as Error).message).split("\n")[0]}`, "a FLUX.2 repo in the diffusers layout (model_index.json, transformer/, vae/, text_encoder/, tokenizer/)");
  }
  line.update(`loading ${names.rewardModel}`);
  try {
    const scorer = await PickScore.load(dev, { model: dirs.reward, processor: dirs.processor });
    return { pipe, scorer };
  } catch (e) {
    pipe.dispose();
    throw new UsageError(`cannot load the reward model: ${String((e as Error).message).split("\n")[0]}`, "--reward-model: config.json + model.safetensors; --reward-processor: preprocessor_config.json + tokenizer files");
  } finally {
    line.end();
  }
}

async function readLog(path: string): Promise<RunLog> {
  let log: RunLog;
  try {
    log = JSON.parse(await readText(path));
  } catch (e) {
    throw new UsageError(`cannot read --replay ${path}: ${String((e as Error).message).split("\n")[0]}`, "give the .json log that generate wrote next to its PNG");
  }
  if (!log?.settings || !Array.isArray(log.candidates) || !log.models) throw new UsageError(`--replay ${path} is not a flux2ts generate log`);
  return log;
}

export async function run(args: string[]): Promise<number> {
  const p = parseArgs(args, VALUED, ["save-all", "offline"]);
  if (p.positionals.length) throw new UsageError(`unexpected argument "${p.positionals[0]}"`, 'quote the prompt: --prompt "a red fox"');
  const hub = hubFlags(p);
  if (p.flags.has("replay")) return replay(p, hub);
  if (p.flags.has("candidate")) throw new UsageError("--candidate needs --replay log.json");

  const prompt = await promptOf(p);
  const references = await readReferences(p.lists.get("ref") ?? []);
  const search = choice(p, "search", SEARCH_NAMES, "none");
  const settings: GenerationSettings = { prompt, ...imageSettings(p), seed: intFlag(p, "seed", 0, 0, 2 ** 32 - 1), search, budget: budgetFlag(p, search), references };
  const out = strFlag(p, "out", "out.png")!;
  if (!/\.png$/i.test(out)) throw new UsageError(`--out ${out} must name a .png file`);
  const names = modelNames(p);

  return withModels(names, hub, [prompt, settings.negativePrompt ?? ""], references.length > 0, async (models) => {
    if (references.length) {
      // Upstream's default: each side not given is the first reference's (resized and cropped).
      const size = referenceOutputSize(models.pipe, references[0]);
      if (!p.flags.has("width")) settings.width = size.width;
      if (!p.flags.has("height")) settings.height = size.height;
    }
    try {
      resolveSettings(models.pipe, settings);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const saveAll = p.flags.has("save-all");
    const cells: { image: Image8; label: string; index: number }[] = [];
    const line = new ProgressLine();
    let status = "";
    const onEvent = async (e: GenerationEvent) => {
      if (e.kind === "progress") {
        // A terminal also shows the sampler's steps after the last candidate's line; a log only gets candidates.
        if (line.tty) line.update(`${status}${status ? "  |  " : ""}${e.stage} ×${e.candidates}: step ${e.step}/${e.steps}`);
        return;
      }
      const width = String(e.budget).length;
      status = `[${search}] candidate ${String(e.index + 1).padStart(width)}/${e.budget}  score ${e.score.toFixed(6)}  best ${e.best.toFixed(6)}` +
        `  gen ${e.generation}  nfe ${e.nfe}  ETA ${formatSeconds(e.etaSeconds)}`;
      line.update(status);
      if (saveAll) cells.push({ image: await imageRgb8(e.image), label: `#${e.index} ${e.score.toFixed(4)}`, index: e.index });
    };
    const { image, log } = await generateWithSearch(models, settings, { onEvent }).finally(() => line.end());
    let rgb: Image8;
    try {
      rgb = await imageRgb8(image);
    } finally {
      image.dispose();
    }
    const jsonPath = `${stem(out)}.json`;
    const full = runLog(log, names, out);
    await writePng(out, rgb);
    await writeText(jsonPath, JSON.stringify(full, null, 1) + "\n");
    let extra = "";
    if (saveAll) {
      const sheet = `${stem(out)}-all.png`;
      await writePng(sheet, contactSheet(cells.map((c) => ({ image: c.image, label: c.label, highlight: c.index === log.bestIndex }))));
      extra = `, ${sheet}`;
    }
    console.log(
      `wrote ${out} (candidate ${log.bestIndex}, score ${log.bestScore.toFixed(6)}), ${jsonPath}${extra}: ` +
        `${log.evals} evaluation${log.evals > 1 ? "s" : ""}, ${log.nfe} NFE, ${log.seconds.toFixed(1)} s`,
    );
    return 0;
  });
}

async function replay(p: Parsed, hub: { endpoint?: string; offline: boolean }): Promise<number> {
  const extra = [...p.flags.keys()].filter((k) => !REPLAY_FLAGS.has(k));
  if (extra.length) throw new UsageError(`--replay takes the run's settings from its log; drop --${extra[0]}`, "allowed with --replay: " + [...REPLAY_FLAGS].map((f) => "--" + f).join(" "));
  const logPath = strFlag(p, "replay")!;
  if (!p.flags.has("candidate")) throw new UsageError("--replay needs --candidate K", `flux2ts generate --replay ${logPath} --candidate 0`);
  const log = await readLog(logPath);
  const k = intFlag(p, "candidate", 0, 0, log.candidates.length - 1);
  const out = strFlag(p, "out", `${stem(logPath)}-${k}.png`)!;
  const names = modelNames(p, log.models);
  const { prompt, negativePrompt } = log.settings;
  const references = await readReferences(p.lists.get("ref") ?? (log.settings.references ?? []).map((r) => r.file));
  for (const [i, r] of references.entries()) {
    const want = log.settings.references?.[i];
    if (want && r.sha256 !== want.sha256) {
      throw new UsageError(`--replay: reference ${r.file} has SHA-256 ${r.sha256}, but the run used ${want.file} with SHA-256 ${want.sha256}`, "replay with the reference files the run used");
    }
  }
  return withModels(names, hub, [prompt, negativePrompt ?? ""], references.length > 0, async (models) => {
    let image;
    try {
      image = await replayGeneration(models, log, k, { references });
    } catch (e) {
      const msg = String((e as Error).message);
      if (/^replay/.test(msg)) throw new UsageError(msg.split("\n")[0], "replay with the models and flux2ts version that wrote the log");
      throw e;
    }
    try {
      await writePng(out, await imageRgb8(image));
    } finally {
      image.dispose();
    }
    const c = log.candidates.find((x) => x.index === k)!;
    console.log(`wrote ${out} (candidate ${k} of ${logPath}, logged score ${c.score.toFixed(6)})`);
    return 0;
  });
}

async function writeText(path: string, text: string): Promise<void> {
  await (await nodeFs()).writeFile(path, text);
}
