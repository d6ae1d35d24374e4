// `flux2ts score`: PickScore of PNG or JPEG files for a prompt, one line per file (file, then score), as the DiffSynth
// tutorial computes it (cosine of normalised embeddings; --scaled multiplies by exp(logit_scale), the model card's
// scale). Files are decoded on the CPU (core/image.ts: every standard PNG, and JPEG; any sizes: each is resized
// and cropped) before any model loads, so a bad file costs one line and exit 2, and scored on the GPU in batches.
// Models are located like generate's (cli/resolve.ts): local folder, registry alias or owner/name via the hub.
import type { Device } from "../core/index.ts";
import { readImage } from "../core/image.ts";
import { env } from "../core/platform.ts";
import { toRgb } from "../core/png.ts";
import { PickScore } from "../models/clip/pickscore.ts";
import type { ResizeBackend, RgbImage } from "../models/clip/preprocess.ts";
import { intFlag, parseArgs, strFlag, UsageError } from "./args.ts";
import { locateModel, openDevice } from "./resolve.ts";

export const help = `flux2ts score --prompt "text" [options] image.png [more.png|.jpg ...]

Scores each image against the prompt with PickScore: the cosine similarity of the CLIP ViT-H/14 image and text
embeddings (typically 0.2-0.25), one "file<TAB>score" line each.
Images: PNG (any bit depth and colour type, interlaced or not; 16-bit samples by their high byte; alpha and
transparency are dropped, as PIL's convert("RGB") does) or JPEG, told apart by content; at most 178,956,970 pixels.

  --prompt text      the prompt (required)
  --model m          PickScore repo (config.json + model.safetensors): a local folder, an alias or a ModelScope
                     id owner/name (default $FLUX2TS_PICKSCORE, else the alias pickscore)
  --processor m      processor repo (preprocessor_config.json + tokenizer files), the same ways
                     (default $FLUX2TS_CLIP_PROCESSOR, else the alias clip-h14-processor)
  --endpoint url     hub endpoint for downloads (default $MODELSCOPE_ENDPOINT or modelscope.cn)
  --offline          use the local model cache only
  --backend name     image resize as transformers' "torchvision" processor (default) or the "pil" one
  --batch n          images per GPU batch (default 8)
  --scaled           print exp(logit_scale) x cosine (the model card's PickScore, about 100x)`;

export async function run(args: string[]): Promise<number> {
  const p = parseArgs(args, ["prompt", "model", "processor", "backend", "batch", "endpoint"], ["scaled", "offline"]);
  const prompt = strFlag(p, "prompt");
  if (prompt === undefined) throw new UsageError("score needs --prompt", 'flux2ts score --prompt "a cat" image.png');
  if (!p.positionals.length) throw new UsageError("score needs at least one image file", 'flux2ts score --prompt "a cat" image.png');
  const backend = strFlag(p, "backend", "torchvision");
  if (backend !== "torchvision" && backend !== "pil") throw new UsageError(`--backend must be "torchvision" or "pil", got "${backend}"`);
  const maxBatch = intFlag(p, "batch", 8, 1, 256);
  const modelName = strFlag(p, "model") ?? env("FLUX2TS_PICKSCORE") ?? "pickscore";
  const processorName = strFlag(p, "processor") ?? env("FLUX2TS_CLIP_PROCESSOR") ?? "clip-h14-processor";

  const images: RgbImage[] = [];
  for (const file of p.positionals) {
    try {
      images.push(toRgb(await readImage(file)));
    } catch (e) {
      throw new UsageError(String((e as Error).message).split("\n")[0]);
    }
  }
  const hub = { endpoint: strFlag(p, "endpoint"), offline: p.flags.has("offline") };
  const model = await locateModel("--model", modelName, hub);
  const processor = await locateModel("--processor", processorName, hub);
  let dev: Device | undefined;
  let ps: PickScore | undefined;
  try {
    dev = await openDevice();
    try {
      ps = await PickScore.load(dev, { model, processor, backend: backend as ResizeBackend, maxBatch });
    } catch (e) {
      throw new UsageError(`cannot load PickScore: ${String((e as Error).message).split("\n")[0]}`, "--model: config.json + model.safetensors; --processor: preprocessor_config.json + tokenizer files");
    }
    const scores = p.flags.has("scaled") ? await ps.clipScore(images, prompt) : await ps.score(images, prompt);
    p.positionals.forEach((file, i) => console.log(`${file}\t${scores[i].toFixed(6)}`));
    return 0;
  } finally {
    ps?.dispose();
    dev?.destroy();
  }
}
