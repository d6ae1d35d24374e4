// The generation flags `generate` and `batch submit` share (batch takes them as the defaults of empty CSV cells):
// one parser per flag with generate's messages, and the model flags every model-running command takes.
import { nodeFs } from "../core/platform.ts";
import { type LoadedReference, loadReferences, type ModelNames, VERIFIER_NAMES, type VerifierName } from "../generate/index.ts";
import { intFlag, type Parsed, strFlag, UsageError } from "./args.ts";

/** Valued flags of the image settings and the models; `offline` is the one boolean. */
export const SETTING_FLAGS = ["negative-prompt", "guidance", "width", "height", "steps", "verifier", "batch", "budget"];
export const MODEL_FLAGS = ["model", "reward-model", "reward-processor"];

export function sizeFlag(p: Parsed, name: string): number {
  const v = intFlag(p, name, 1024, 16, 16384);
  if (v % 16) throw new UsageError(`--${name} must be a multiple of 16, got ${v}`, `e.g. --${name} ${Math.max(16, Math.round(v / 16) * 16)}`);
  return v;
}

export function choice<T extends string>(p: Parsed, name: string, names: readonly T[], def: T): T {
  const v = strFlag(p, name, def)!;
  if (!(names as readonly string[]).includes(v)) throw new UsageError(`unknown --${name} "${v}"`, `one of: ${names.join(", ")}`);
  return v as T;
}

function guidanceFlag(p: Parsed): number | undefined {
  const v = strFlag(p, "guidance");
  if (v === undefined) return undefined;
  const g = Number(v);
  if (!(Number.isFinite(g) && g >= 0)) throw new UsageError(`--guidance must be a number ≥ 0, got "${v}"`);
  return g;
}

/** The settings every prompt shares, from flags (unset ones stay undefined: the pipeline's defaults). */
export function imageSettings(p: Parsed) {
  return {
    negativePrompt: strFlag(p, "negative-prompt"),
    guidance: guidanceFlag(p),
    width: sizeFlag(p, "width"),
    height: sizeFlag(p, "height"),
    steps: p.flags.has("steps") ? intFlag(p, "steps", 4, 1, 1000) : undefined,
    verifier: choice<VerifierName>(p, "verifier", VERIFIER_NAMES, "pickscore"),
    batch: intFlag(p, "batch", 1, 1, 1024),
  };
}

/** --budget, or generate's default for the search (none: 1, else 50). */
export const budgetFlag = (p: Parsed, search: string) => intFlag(p, "budget", search === "none" ? 1 : 50, 1, 1_000_000);

export function modelNames(p: Parsed, defaults: ModelNames = { model: "klein-4b", rewardModel: "pickscore", rewardProcessor: "clip-h14-processor" }): ModelNames {
  return {
    model: strFlag(p, "model", defaults.model)!,
    rewardModel: strFlag(p, "reward-model", defaults.rewardModel)!,
    rewardProcessor: strFlag(p, "reward-processor", defaults.rewardProcessor)!,
  };
}

export const hubFlags = (p: Parsed) => ({ endpoint: strFlag(p, "endpoint"), offline: p.flags.has("offline") });

/** Reads, decodes, checks and hashes reference files; any problem is a UsageError naming the file. */
export async function readReferences(paths: readonly string[]): Promise<LoadedReference[]> {
  const fs = await nodeFs();
  const files: { name: string; bytes: Uint8Array }[] = [];
  for (const name of paths) {
    try {
      files.push({ name, bytes: new Uint8Array(await fs.readFile(name)) });
    } catch (e) {
      throw new UsageError(`cannot read --ref ${name}: ${String((e as Error).message).split("\n")[0]}`);
    }
  }
  try {
    return await loadReferences(files);
  } catch (e) {
    throw new UsageError(`--ref ${String((e as Error).message).split("\n")[0]}`, "a PNG or JPEG image with both sides ≥ 64 px and an aspect ratio ≤ 8");
  }
}
