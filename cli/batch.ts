// `flux2ts batch submit|status|report`: thin front end over batch/ (BullMQ on Redis). submit reads a prompt set and
// takes generate's flags as the defaults of empty cells; status and report read the batch back from the queue.
import { readText } from "../core/platform.ts";
import {
  batchReport, batchStatus, BatchInputError, type BatchDefaults, jobsFromCsv, jobsFromPromptLines, parseSeeds, queueUrl, referencePaths, submitBatch,
  withReferenceHashes,
} from "../batch/index.ts";
import { checkBatchName } from "../batch/queue.ts";
import { parseSearches } from "../batch/spec.ts";
import { intFlag, type Parsed, parseArgs, strFlag, UsageError } from "./args.ts";
import { imageSettings, MODEL_FLAGS, modelNames, readReferences, SETTING_FLAGS } from "./generation_flags.ts";
import { formatSeconds } from "../generate/index.ts";

export const help = `flux2ts batch submit --name NAME (--csv FILE | --prompts FILE) [generate's flags as defaults]
flux2ts batch status --name NAME
flux2ts batch report --name NAME --out DIR

Prompt-set runs on BullMQ + Redis: one job per (prompt, seed, search, settings), served by \`flux2ts worker\`.

  --queue url          Redis (default $FLUX2TS_QUEUE, else redis://127.0.0.1:6379)
  --name name          the batch (letters, digits, . _ -)
submit:
  --csv file           header + rows; column prompt, optional seed, search, budget, verifier, width, height,
                       steps, guidance, negative_prompt, refs (empty cells take the flags)
  --ref file           reference image of rows with an empty refs cell (repeat for several; a refs cell lists
                       paths separated by ";"): editing, as generate --ref; each file's SHA-256 goes into the job
                       id, and workers read the same paths and refuse a file that has changed
  --prompts file       one prompt per line instead
  --seeds 0-9          seeds of rows without one: a range, a list or both (default 0)
  --search ses,random  searches of rows without one (default none); each expands into its own job
  --budget, --verifier, --width, --height, --steps, --guidance, --negative-prompt, --batch: as in generate
  --model, --reward-model, --reward-processor: as in generate; they travel with the batch, so every worker
                       loads the same ones (paths must exist on the workers)
  --attempts n         tries per job before it is marked failed (default 3)
  --backoff ms         first retry delay, doubling after (default 10000)
Submitting the same rows again adds nothing (a job's id hashes its settings and models).
report: writes DIR/results.csv, summary.md, summary.svg, index.html`;

async function submit(p: Parsed, name: string): Promise<number> {
  const csv = strFlag(p, "csv"), prompts = strFlag(p, "prompts");
  if ((csv === undefined) === (prompts === undefined)) throw new UsageError("batch submit needs --csv FILE or --prompts FILE (one of them)");
  const file = (csv ?? prompts)!;
  const parse = <T>(flag: string, f: (v: string) => T, def: string): T => {
    try {
      return f(strFlag(p, flag, def)!);
    } catch (e) {
      throw new UsageError(`--${flag}: ${(e as Error).message}`);
    }
  };
  const budget = p.flags.has("budget") ? intFlag(p, "budget", 1, 1, 1_000_000) : undefined;
  const defaults: BatchDefaults = {
    ...imageSettings(p), seeds: parse("seeds", parseSeeds, "0"), searches: parse("search", parseSearches, "none"), budget,
    refs: p.lists.get("ref"), sizeGiven: { width: p.flags.has("width"), height: p.flags.has("height") },
  };
  let text: string;
  try {
    text = await readText(file);
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${String((e as Error).message).split("\n")[0]}`);
  }
  let jobs;
  try {
    jobs = csv !== undefined ? jobsFromCsv(text, file, defaults, modelNames(p)) : jobsFromPromptLines(text, file, defaults, modelNames(p));
  } catch (e) {
    if (e instanceof BatchInputError) throw new UsageError(e.message, "nothing was submitted; fix the line and submit again");
    throw e;
  }
  // Each reference file is read, checked (as generate --ref does) and hashed once; the hashes go into the job ids.
  const refs = await readReferences(referencePaths(jobs));
  jobs = withReferenceHashes(jobs, new Map(refs.map((r) => [r.file, r.sha256])));
  const r = await submitBatch({ queue: queueUrl(strFlag(p, "queue")), name, jobs, attempts: intFlag(p, "attempts", 3, 1, 100), backoffMs: intFlag(p, "backoff", 10_000, 0, 86_400_000) });
  console.log(`submitted ${r.submitted} jobs (${r.existing} already there)`);
  return 0;
}

async function status(p: Parsed, name: string): Promise<number> {
  const s = await batchStatus({ queue: strFlag(p, "queue"), name });
  console.log(`${name}: ${s.waiting} waiting, ${s.active} active, ${s.done} done, ${s.failed} failed; ETA ${s.etaSeconds === undefined ? "?" : formatSeconds(s.etaSeconds)}`);
  for (const r of s.running) {
    const pr = r.progress as { evals?: number; budget?: number; nfe?: number };
    console.log(`  ${r.worker}: ${r.job}${pr && typeof pr === "object" && pr.evals !== undefined ? ` (evals ${pr.evals}/${pr.budget}, nfe ${pr.nfe})` : ""}`);
  }
  for (const f of s.failures) console.log(`  failed ${f.job}: ${f.reason.split("\n")[0]}`);
  return 0;
}

async function report(p: Parsed, name: string): Promise<number> {
  const out = strFlag(p, "out");
  if (!out) throw new UsageError("batch report needs --out DIR");
  const { rows, summary } = await batchReport({ queue: strFlag(p, "queue"), name, out });
  console.log(`wrote ${out}/results.csv (${rows.length} jobs), summary.md (${summary.length} methods), summary.svg, index.html`);
  return 0;
}

export async function run(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const subs: Record<string, (p: Parsed, name: string) => Promise<number>> = { submit, status, report };
  if (!sub || !subs[sub]) throw new UsageError(`batch needs a subcommand: submit, status or report${sub ? `, got "${sub}"` : ""}`, "flux2ts batch --help");
  const p = parseArgs(rest, ["queue", "name", "csv", "prompts", "seeds", "search", "out", "attempts", "backoff", "ref", ...SETTING_FLAGS, ...MODEL_FLAGS]);
  if (p.positionals.length) throw new UsageError(`unexpected argument "${p.positionals[0]}"`);
  const name = strFlag(p, "name");
  if (!name) throw new UsageError(`batch ${sub} needs --name NAME`);
  try {
    checkBatchName(name);
  } catch (e) {
    throw new UsageError(`--name: ${(e as Error).message}`);
  }
  try {
    return await subs[sub](p, name);
  } catch (e) {
    const msg = String((e as Error).message).split("\n")[0];
    if (e instanceof UsageError || !/ECONNREFUSED|ENOTFOUND|EAI_AGAIN|Connection is closed|connect|NOAUTH|WRONGPASS/i.test(msg)) throw e;
    throw new UsageError(`cannot reach Redis at --queue ${queueUrl(strFlag(p, "queue"))}: ${msg}`, "start redis-server, or give --queue redis://host:port (or set $FLUX2TS_QUEUE)");
  }
}
