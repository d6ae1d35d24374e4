// The run log as `flux2ts generate` writes it next to its PNG and as a batch worker stores it (file and job
// result): the generation log, the model names it ran with, and per candidate the command that re-renders it. One
// builder, so a batch job's log is the same document as generate's.
import type { GenerationLog } from "./generation.ts";

export interface ModelNames {
  model: string;
  rewardModel: string;
  rewardProcessor: string;
}

export interface RunLog extends GenerationLog {
  models: ModelNames;
  candidates: (GenerationLog["candidates"][number] & { replay: string })[];
}

const quote = (s: string) => (/^[\w./:@+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/** `path` without its .png or .json ending. */
export const stem = (path: string): string => path.replace(/\.(png|json)$/i, "");

/** The log of a run whose best image is `png` and whose log goes to stem(png).json. */
export function runLog(log: GenerationLog, models: ModelNames, png: string): RunLog {
  const json = `${stem(png)}.json`;
  return {
    models,
    ...log,
    candidates: log.candidates.map((c) => ({ ...c, replay: `flux2ts generate --replay ${quote(json)} --candidate ${c.index} --out ${quote(`${stem(png)}-${c.index}.png`)}` })),
  };
}
