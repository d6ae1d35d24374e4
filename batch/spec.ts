// What a batch is before it reaches Redis: rows of a prompt set (CSV with a header, or one prompt per line) plus
// the command's defaults, expanded into one job per (prompt, seed, search, settings). Pure functions, no I/O, so a
// bad file is rejected whole before anything is enqueued.
// Design:
// - Every row is checked in full and errors name the file's line (1-based, as an editor shows it; a quoted cell
//   may span lines, so a row's line is where it starts).
// - A job's id is a hash of everything that decides its image (settings with defaults filled in, the models, and
//   each reference image's path and SHA-256), so submitting the same rows again maps to the same ids and BullMQ adds
//   nothing, while an edited reference file makes a new job.
// - References (editing): a `refs` cell lists paths separated by ";" (empty: the --ref flags). Parsing leaves their
//   hashes empty; the submitter reads, checks and hashes each file (`withReferenceHashes`) before enqueueing, and
//   the worker refuses a file whose hash has changed since. A side given neither by a cell nor by a flag is taken
//   from the first reference after its resize and crop (`fromReference`), as `generate --ref` does.
import { createHash } from "node:crypto";
import { type GenerationSettings, SEARCH_NAMES, type SearchName, VERIFIER_NAMES, type VerifierName } from "../generate/index.ts";

/** The models a batch's workers load: alias, owner/name or a path (as on the worker's machine). */
export interface BatchModels {
  model: string;
  rewardModel: string;
  rewardProcessor: string;
}

/** A reference image of a job: its path (as on the workers) and the SHA-256 of the file submitted. */
export interface JobReference {
  file: string;
  sha256: string;
}

/** What one job carries: its generation settings and the models to run them with. */
export interface JobSpec {
  settings: GenerationSettings;
  models: BatchModels;
  /** Editing: reference images, in order. */
  references?: JobReference[];
  /** Sides the worker takes from the first reference (neither a cell nor a flag gave them). */
  fromReference?: ("width" | "height")[];
}

/** Row values that empty cells fall back to (the command's flags); seeds and searches expand. */
export interface BatchDefaults extends Omit<GenerationSettings, "prompt" | "seed" | "search" | "budget"> {
  seeds: number[];
  searches: SearchName[];
  /** undefined: generate's default (1 for none, else 50). */
  budget?: number;
  /** Reference images of rows with an empty `refs` cell (the --ref flags). */
  refs?: string[];
  /** Whether --width / --height were given; a side that was not comes from the first reference when there is one. */
  sizeGiven?: { width: boolean; height: boolean };
}

export const CSV_COLUMNS = ["prompt", "seed", "search", "budget", "verifier", "width", "height", "steps", "guidance", "negative_prompt", "refs"] as const;

/** A rejected file: `message` names the file and line. */
export class BatchInputError extends Error {}

/** RFC 4180 rows with the line each starts on; throws on an unterminated quote or text after a closing quote. */
export function parseCsv(text: string, file: string): { line: number; cells: string[] }[] {
  const rows: { line: number; cells: string[] }[] = [];
  let line = 1;
  let i = 0;
  if (text.charCodeAt(0) === 0xfeff) i = 1;
  while (i < text.length) {
    const start = line;
    const cells: string[] = [];
    for (;;) {
      let cell = "";
      if (text[i] === '"') {
        const open = line;
        i++;
        for (;;) {
          if (i >= text.length) throw new BatchInputError(`${file}:${open}: unterminated quoted cell`);
          const c = text[i++];
          if (c === '"') {
            if (text[i] === '"') {
              cell += '"';
              i++;
            } else break;
          } else {
            if (c === "\n") line++;
            cell += c;
          }
        }
        if (i < text.length && text[i] !== "," && text[i] !== "\n" && text[i] !== "\r") throw new BatchInputError(`${file}:${line}: text after a closing quote`);
      } else {
        while (i < text.length && text[i] !== "," && text[i] !== "\n" && text[i] !== "\r") {
          if (text[i] === '"') throw new BatchInputError(`${file}:${line}: a quote inside an unquoted cell`);
          cell += text[i++];
        }
      }
      cells.push(cell);
      if (text[i] === ",") {
        i++;
        continue;
      }
      if (text[i] === "\r") i++;
      if (text[i] === "\n") i++;
      line++;
      break;
    }
    if (!(cells.length === 1 && cells[0] === "")) rows.push({ line: start, cells }); // blank lines are skipped
  }
  return rows;
}

/** "0-9", "1,5,7" or "0-3,10" → seeds; each 0 ≤ s < 2^32. Throws a message without a location. */
export function parseSeeds(v: string): number[] {
  const out: number[] = [];
  for (const part of v.split(",")) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw new Error(`seeds must be a number, a range a-b or a list, got "${v}"`);
    const a = Number(m[1]), b = m[2] === undefined ? a : Number(m[2]);
    if (b < a || b >= 2 ** 32 || b - a >= 1e6) throw new Error(`seed range "${part.trim()}" must be a-b with a ≤ b < 2^32`);
    for (let s = a; s <= b; s++) out.push(s);
  }
  return out;
}

export function parseSearches(v: string): SearchName[] {
  return v.split(",").map((s) => searchName(s.trim()));
}

function searchName(s: string): SearchName {
  if (!(SEARCH_NAMES as readonly string[]).includes(s)) throw new Error(`unknown search "${s}" (${SEARCH_NAMES.join(", ")})`);
  return s as SearchName;
}

function int(name: string, v: string, min: number, max: number): number {
  const n = Number(v);
  if (!v.trim() || !Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer in [${min}, ${max}], got "${v}"`);
  return n;
}

/** Cell parsers, shared with the command's flags so both check a value the same way. */
export const parseField = {
  seed: (v: string) => int("seed", v, 0, 2 ** 32 - 1),
  budget: (v: string) => int("budget", v, 1, 1_000_000),
  steps: (v: string) => int("steps", v, 1, 1000),
  size(name: string, v: string): number {
    const n = int(name, v, 16, 16384);
    if (n % 16) throw new Error(`${name} must be a multiple of 16, got ${n}`);
    return n;
  },
  guidance(v: string): number {
    const g = Number(v);
    if (!v.trim() || !(Number.isFinite(g) && g >= 0)) throw new Error(`guidance must be a number ≥ 0, got "${v}"`);
    return g;
  },
  verifier(v: string): VerifierName {
    if (!(VERIFIER_NAMES as readonly string[]).includes(v)) throw new Error(`unknown verifier "${v}" (${VERIFIER_NAMES.join(", ")})`);
    return v as VerifierName;
  },
};

function expand(prompt: Record<string, string>, d: BatchDefaults, models: BatchModels): JobSpec[] {
  const cell = (k: (typeof CSV_COLUMNS)[number]) => (prompt[k] ?? "").trim() || undefined;
  const text = prompt.prompt?.trim();
  if (!text) throw new Error("the prompt is empty");
  const seeds = cell("seed") !== undefined ? [parseField.seed(cell("seed")!)] : d.seeds;
  const searches = cell("search") !== undefined ? parseSearches(cell("search")!) : d.searches;
  const negative = prompt.negative_prompt ?? "";
  const common = {
    prompt: text,
    negativePrompt: negative ? negative : d.negativePrompt,
    guidance: cell("guidance") !== undefined ? parseField.guidance(cell("guidance")!) : d.guidance,
    width: cell("width") !== undefined ? parseField.size("width", cell("width")!) : d.width,
    height: cell("height") !== undefined ? parseField.size("height", cell("height")!) : d.height,
    steps: cell("steps") !== undefined ? parseField.steps(cell("steps")!) : d.steps,
    verifier: cell("verifier") !== undefined ? parseField.verifier(cell("verifier")!) : d.verifier,
    batch: d.batch,
  };
  const budget = cell("budget") !== undefined ? parseField.budget(cell("budget")!) : d.budget;
  const refs = cell("refs") !== undefined ? parseRefs(cell("refs")!) : (d.refs ?? []);
  const fromReference = refs.length ? (["width", "height"] as const).filter((k) => cell(k) === undefined && !d.sizeGiven?.[k]) : [];
  const jobs: JobSpec[] = [];
  for (const seed of seeds) {
    for (const search of searches) {
      const settings: GenerationSettings = { ...common, seed, search, budget: budget ?? (search === "none" ? 1 : 50) };
      for (const k of Object.keys(settings) as (keyof GenerationSettings)[]) if (settings[k] === undefined) delete settings[k];
      const job: JobSpec = { settings, models };
      if (refs.length) job.references = refs.map((file) => ({ file, sha256: "" }));
      if (fromReference.length) job.fromReference = fromReference;
      jobs.push(job);
    }
  }
  return jobs;
}

/** "a.png; b.png" → ["a.png", "b.png"]; an empty entry is an error. */
function parseRefs(v: string): string[] {
  const refs = v.split(";").map((r) => r.trim());
  if (refs.some((r) => !r)) throw new Error(`refs "${v}" has an empty entry (paths separated by ";")`);
  return refs;
}

/**
 * Fills each job's reference hashes from `hashes` (path → SHA-256, from reading the files once); every path must
 * be there. The ids change with them, so call this before `jobId`.
 */
export function withReferenceHashes(jobs: readonly JobSpec[], hashes: ReadonlyMap<string, string>): JobSpec[] {
  return jobs.map((j) => (j.references ? { ...j, references: j.references.map((r) => ({ file: r.file, sha256: hashes.get(r.file)! })) } : j));
}

/** Every reference path the jobs name, once each, in first-seen order. */
export const referencePaths = (jobs: readonly JobSpec[]): string[] => [...new Set(jobs.flatMap((j) => j.references?.map((r) => r.file) ?? []))];

/** A prompt-set CSV (header with `prompt`, optional CSV_COLUMNS) → jobs; throws BatchInputError naming the line. */
export function jobsFromCsv(text: string, file: string, d: BatchDefaults, models: BatchModels): JobSpec[] {
  const rows = parseCsv(text, file);
  if (!rows.length) throw new BatchInputError(`${file}: empty, expected a header line with a "prompt" column`);
  const header = rows[0].cells.map((h) => h.trim().toLowerCase());
  const unknown = header.find((h) => !(CSV_COLUMNS as readonly string[]).includes(h));
  if (unknown !== undefined) throw new BatchInputError(`${file}:${rows[0].line}: unknown column "${unknown}" (columns: ${CSV_COLUMNS.join(", ")})`);
  if (!header.includes("prompt")) throw new BatchInputError(`${file}:${rows[0].line}: the header has no "prompt" column`);
  if (new Set(header).size !== header.length) throw new BatchInputError(`${file}:${rows[0].line}: a column appears twice`);
  if (rows.length === 1) throw new BatchInputError(`${file}: no rows after the header`);
  return rows.slice(1).flatMap(({ line, cells }) => {
    if (cells.length !== header.length) throw new BatchInputError(`${file}:${line}: ${cells.length} cells, the header has ${header.length}`);
    try {
      return expand(Object.fromEntries(header.map((h, i) => [h, cells[i]])), d, models);
    } catch (e) {
      throw new BatchInputError(`${file}:${line}: ${(e as Error).message}`);
    }
  });
}

/** One prompt per non-blank line → jobs. */
export function jobsFromPromptLines(text: string, file: string, d: BatchDefaults, models: BatchModels): JobSpec[] {
  const jobs = text.split(/\r?\n/).flatMap((p) => (p.trim() ? expand({ prompt: p }, d, models) : []));
  if (!jobs.length) throw new BatchInputError(`${file}: no prompts`);
  return jobs;
}

/** Stable JSON: keys sorted at every level, so a hash does not depend on the order fields were set in. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

/** `<search>-<20 hex digits of sha256(settings, models)>`: the same job always gets the same id. */
export function jobId(spec: JobSpec): string {
  return `${spec.settings.search}-${createHash("sha256").update(canonical(spec)).digest("hex").slice(0, 20)}`;
}
