// `flux2ts score`: PickScore of PNG files for a prompt, one line per file (file, then score), as the DiffSynth
// tutorial computes it (cosine of normalised embeddings; --scaled multiplies by exp(logit_scale), the model card's
// scale). Files are decoded on the CPU (any sizes: each is resized and cropped) and scored on the GPU in batches.
import { Device } from "../core/index.ts";
import { readPng, toRgb } from "../core/png.ts";
import { PickScore } from "../models/clip/pickscore.ts";
import type { ResizeBackend, RgbImage } from "../models/clip/preprocess.ts";
import { intFlag, parseArgs, strFlag, UsageError } from "./args.ts";
import { env } from "./host.ts";

export const help = `flux2ts score --prompt "text" [options] image.png [more.png ...]

Scores each PNG (8-bit gray/RGB/RGBA/palette; alpha is dropped) against the prompt with PickScore: the cosine
similarity of the CLIP ViT-H/14 image and text embeddings (typically 0.2-0.25), one "file<TAB>score" line each.

  --prompt text      the prompt (required)
  --model dir        PickScore repo: config.json + model.safetensors
                     (default $FLUX2TS_PICKSCORE, else models/AI-ModelScope/PickScore_v1)
  --processor dir    processor repo: preprocessor_config.json + tokenizer files
                     (default $FLUX2TS_CLIP_PROCESSOR, else models/laion/CLIP-ViT-H-14-laion2B-s32B-b79K)
  --backend name     image resize as transformers' "torchvision" processor (default) or the "pil" one
  --batch n          images per GPU batch (default 8)
  --scaled           print exp(logit_scale) x cosine (the model card's PickScore, about 100x)`;

export async function run(args: string[]): Promise<number> {
  const p = parseArgs(args, ["prompt", "model", "processor", "backend", "batch"], ["scaled"]);
  const prompt = strFlag(p, "prompt");
  if (prompt === undefined) throw new UsageError("score needs --prompt", 'flux2ts score --prompt "a cat" image.png');
  if (!p.positionals.length) throw new UsageError("score needs at least one PNG file", 'flux2ts score --prompt "a cat" image.png');
  const backend = strFlag(p, "backend", "torchvision");
  if (backend !== "torchvision" && backend !== "pil") throw new UsageError(`--backend must be "torchvision" or "pil", got "${backend}"`);
  const maxBatch = intFlag(p, "batch", 8, 1, 256);
  const model = strFlag(p, "model") ?? env("FLUX2TS_PICKSCORE") ?? "models/AI-ModelScope/PickScore_v1";
  const processor = strFlag(p, "processor") ?? env("FLUX2TS_CLIP_PROCESSOR") ?? "models/laion/CLIP-ViT-H-14-laion2B-s32B-b79K";

  const images: RgbImage[] = [];
  for (const file of p.positionals) {
    try {
      images.push(toRgb(await readPng(file)));
    } catch (e) {
      throw new UsageError(String((e as Error).message).split("\n")[0]);
    }
  }
  let dev: Device | undefined;
  let ps: PickScore | undefined;
  try {
    dev = await Device.open();
    try {
      ps = await PickScore.load(dev, { model, processor, backend: backend as ResizeBackend, maxBatch });
    } catch (e) {
      throw new UsageError(`cannot load PickScore: ${String((e as Error).message).split("\n")[0]}`, "point --model and --processor at the repo folders");
    }
    const scores = p.flags.has("scaled") ? await ps.clipScore(images, prompt) : await ps.score(images, prompt);
    p.positionals.forEach((file, i) => console.log(`${file}\t${scores[i].toFixed(6)}`));
    return 0;
  } finally {
    ps?.dispose();
    dev?.destroy();
  }
}
