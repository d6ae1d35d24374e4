// A batch worker: one per GPU. BullMQ Workers (one per batch name, concurrency 1, one job at a time across them)
// hand it jobs; each job runs what `flux2ts generate` runs (generate/ with the same settings) and writes
// OUT/<batch>/<jobId>.png and .json through temp names and renames, and returns the run log, so a report needs no
// files. Retries, backoff, stalled-job recovery and progress are BullMQ's.
// Design:
// - The processor runs in-process, not sandboxed (the models must stay loaded between jobs): a job mostly awaits
//   the GPU, so the event loop is free to renew the lock. Measured here: model loading and the first job's shader
//   compilation stall it for seconds on a busy CPU (a 2 s lock lapsed; Deno's wgpu outlasted the 30 s default
//   once), so a run checks it still holds the job before its long part and before writing files.
// - Models load on the first job and stay while the next jobs name the same ones; the text encoder is kept (prompts
//   differ per job) and prompt encodings are dropped after each job, so memory does not grow with the prompt set.
// - A job whose settings cannot run (resolveSettings rejects them), or whose reference file is missing, bad or no
//   longer has the submitted SHA-256, fails at once (UnrecoverableError): retrying cannot help. Anything else (a
//   model that does not load, out of memory) is retried with backoff.
import { type Job, type Queue, UnrecoverableError, Worker } from "bullmq";
import { Device } from "../core/index.ts";
import { joinPath, nodeFs } from "../core/platform.ts";
import { encodePng } from "../core/png.ts";

import { type HubOptions, resolveModel } from "../hub/index.ts";
import { PickScore } from "../models/clip/pickscore.ts";
import { Flux2Pipeline } from "../models/flux2/pipeline.ts";
import {
  type GenerationModels, type GenerationSettings, generateWithSearch, imageRgb8, loadReferences, type ModelNames, referenceOutputSize, resolveSettings,
  type RunLog, runLog,
} from "../generate/index.ts";
import { batchNames, checkBatchName, connection, openQueue, openRegistry, queueUrl } from "./queue.ts";
import { jobId, type JobSpec } from "./spec.ts";

/**
 * The job's settings with its reference images read from their paths, checked against the submitted SHA-256, and
 * the sides it takes from the first reference filled in. Throws one line naming the job and the file.
 */
async function withReferences(spec: JobSpec, m: GenerationModels, fs: Awaited<ReturnType<typeof nodeFs>>): Promise<GenerationSettings> {
  if (!spec.references?.length) return spec.settings;
  const files: { name: string; bytes: Uint8Array }[] = [];
  for (const r of spec.references) {
    const bytes = await fs.readFile(r.file).catch((e: Error) => {
      throw new Error(`reference ${r.file}: ${String(e.message).split("\n")[0]}`);
    });
    files.push({ name: r.file, bytes: new Uint8Array(bytes) });
  }
  const references = await loadReferences(files);
  for (const [i, r] of references.entries()) {
    const want = spec.references[i].sha256;
    if (r.sha256 !== want) throw new Error(`reference ${r.file} has SHA-256 ${r.sha256}, but the batch was submitted with ${want}: the file changed since`);
  }
  const settings: GenerationSettings = { ...spec.settings, references };
  if (spec.fromReference?.length) {
    const size = referenceOutputSize(m.pipe, references[0]);
    for (const side of spec.fromReference) settings[side] = size[side];
  }
  return settings;
}

/** A job's return value: the run log, where the files went, which worker ran it, and when (ms since the epoch). */
export interface JobResult {
  log: RunLog;
  image: string;
  json: string;
  worker: string;
  /** The processor's start and return: the gaps between one job's return and the next one's start are the queue's. */
  startedAt: number;
  returnedAt: number;
}

/** Evals and NFE so far, reported on the job after each scored candidate. */
export interface JobProgress {
  evals: number;
  budget: number;
  nfe: number;
}

export interface WorkerOptions {
  /** Redis URL (default: queueUrl()). */
  queue?: string;
  /** Batches to serve; empty: every batch submitted to this Redis, including those submitted while it runs. */
  names: string[];
  /** Files go to out/<name>/<jobId>.png and .json. */
  out: string;
  /** Return once the batches have nothing waiting, delayed or active. */
  once?: boolean;
  /** Return after the current job once aborted (SIGINT/SIGTERM). */
  signal?: AbortSignal;
  hub?: Pick<HubOptions, "endpoint" | "offline" | "cacheDir">;
  /** BullMQ's job lock and stalled-job check (defaults 30 s each; tests shorten them). */
  lockDurationMs?: number;
  stalledIntervalMs?: number;
  /** Worker name stored on its jobs (default host:pid). */
  workerName?: string;
  /** One line per event (job started, done, failed). */
  onLog?: (line: string) => void;
  /** The GPU (default Device.open()); opened on the first job. */
  openDevice?: () => Promise<Device>;
}

/** Keeps one set of models loaded and reloads only when a job names different ones. */
class LoadedModels {
  private key = "";
  private encoder = false;
  private models?: GenerationModels;
  private dev?: Device;

  constructor(private readonly open: () => Promise<Device>, private readonly hub: WorkerOptions["hub"]) {}

  /** Opens the GPU (at start: a machine without one should fail here, not burn the jobs' attempts). */
  async device(): Promise<Device> {
    return (this.dev ??= await this.open());
  }

  /** The models `names` names; `editing` needs the VAE encoder too (loaded with it once, kept for later jobs). */
  async get(names: ModelNames, editing: boolean): Promise<GenerationModels> {
    const key = JSON.stringify([names.model, names.rewardModel, names.rewardProcessor]);
    if (this.models && key === this.key && (this.encoder || !editing)) return this.models;
    this.release();
    const dev = await this.device();
    const hub = this.hub ?? {};
    const model = await resolveModel(names.model, hub);
    const reward = await resolveModel(names.rewardModel, hub);
    const processor = await resolveModel(names.rewardProcessor, hub);
    const pipe = await Flux2Pipeline.load(dev, { dir: model, vaeEncoder: editing });
    try {
      const scorer = await PickScore.load(dev, { model: reward, processor });
      this.models = { pipe, scorer };
      this.key = key;
      this.encoder = editing;
      return this.models;
    } catch (e) {
      pipe.dispose();
      throw e;
    }
  }

  release(): void {
    this.models?.scorer.dispose();
    this.models?.pipe.dispose();
    this.models = undefined;
    this.key = "";
  }

  close(): void {
    this.release();
    this.dev?.destroy();
    this.dev = undefined;
  }
}

async function writeAtomically(path: string, bytes: Uint8Array | string): Promise<void> {
  const fs = await nodeFs();
  const tmp = `${path}.${(globalThis as { process?: { pid: number } }).process?.pid ?? 0}.tmp`;
  await fs.writeFile(tmp, bytes);
  await fs.rename(tmp, path);
}

/** Serves the batches until aborted (or, with `once`, until they are drained); returns the jobs done and failed. */
export async function runWorker(o: WorkerOptions): Promise<{ completed: number; failed: number }> {
  o.names.forEach(checkBatchName);
  const url = queueUrl(o.queue);
  const say = o.onLog ?? (() => {});
  const proc = (globalThis as { process?: { pid: number } }).process;
  const name = o.workerName ?? `${(await import("node:os")).hostname()}:${proc?.pid ?? 0}`;
  const models = new LoadedModels(o.openDevice ?? (() => Device.open()), o.hub);
  await models.device();
  const fs = await nodeFs();
  const out = (await import("node:path")).resolve(o.out); // job results name files wherever a report is made
  let gpu: Promise<unknown> = Promise.resolve(); // one job at a time across the batches' Workers
  let busy = 0;
  const counts = { completed: 0, failed: 0 };

  // A long event-loop stall (model loading, shader compilation on a busy CPU) can outlast the lock, and BullMQ's
  // stalled check then hands the job to a worker again: before the long part and before writing files, this run
  // makes sure the job is still its own (extending the lock fails otherwise), so no lapsed run writes files.
  const lockMs = o.lockDurationMs ?? 30_000;
  const ensureLock = async (job: Job, token: string | undefined) => {
    if (token && !(await job.extendLock(token, lockMs))) throw new Error(`job ${job.id}: its lock lapsed (the event loop stalled longer than the ${lockMs} ms lock; raise --lock-duration); BullMQ has handed it on`);
  };

  const run = async (batch: string, job: Job<JobSpec, JobResult>, token: string | undefined): Promise<JobResult> => {
    const startedAt = Date.now();
    const spec = job.data;
    if (jobId(spec) !== job.id) throw new UnrecoverableError(`job ${job.id}: its data does not hash to its id (submitted by another flux2ts version?)`);
    const m = await models.get(spec.models, !!spec.references?.length);
    await ensureLock(job, token);
    let settings: GenerationSettings;
    try {
      settings = await withReferences(spec, m, fs);
      resolveSettings(m.pipe, settings);
    } catch (e) {
      throw new UnrecoverableError((e as Error).message);
    }
    say(`start ${batch}/${job.id} (attempt ${job.attemptsMade + 1})`);
    const dir = joinPath(out, batch);
    await fs.mkdir(dir, { recursive: true });
    const png = joinPath(dir, `${job.id}.png`);
    try {
      const { image, log } = await generateWithSearch(m, settings, {
        onEvent: async (e) => {
          if (e.kind === "candidate") await job.updateProgress({ evals: e.evals, budget: e.budget, nfe: e.nfe } satisfies JobProgress);
        },
      });
      let bytes: Uint8Array;
      try {
        bytes = encodePng(await imageRgb8(image));
      } finally {
        image.dispose();
      }
      const full = runLog(log, spec.models, png);
      await ensureLock(job, token);
      const json = `${png.slice(0, -4)}.json`;
      await writeAtomically(png, bytes);
      await writeAtomically(json, JSON.stringify(full, null, 1) + "\n");
      return { log: full, image: png, json, worker: name, startedAt, returnedAt: Date.now() };
    } finally {
      m.pipe.clearPrompts();
    }
  };

  const workers: Worker<JobSpec, JobResult>[] = [];
  const queues: Queue<JobSpec, JobResult>[] = []; // with `once`: the served batches' counts end the run
  const served = new Set<string>();
  const serve = (batch: string) => {
    if (served.has(batch)) return;
    served.add(batch);
    const w = new Worker<JobSpec, JobResult>(
      batch,
      (job, token) => {
        busy++;
        const next = gpu.then(() => run(batch, job, token));
        gpu = next.catch(() => {});
        return next.finally(() => busy--);
      },
      {
        connection: connection(url, true),
        concurrency: 1,
        name,
        autorun: false,
        ...(o.lockDurationMs ? { lockDuration: o.lockDurationMs } : {}),
        ...(o.stalledIntervalMs ? { stalledInterval: o.stalledIntervalMs } : {}),
      },
    );
    w.on("completed", (job) => {
      counts.completed++;
      say(`done ${batch}/${job.id} score ${job.returnvalue.log.bestScore.toFixed(6)} nfe ${job.returnvalue.log.nfe} ${job.returnvalue.log.seconds.toFixed(1)} s`);
    });
    w.on("failed", (job, err) => {
      if (!job) return;
      const final = job.attemptsMade >= (job.opts.attempts ?? 1) || err instanceof UnrecoverableError;
      if (final) counts.failed++;
      say(`${final ? "failed" : "retry"} ${batch}/${job.id} (attempt ${job.attemptsMade}): ${err.message.split("\n")[0]}`);
    });
    w.on("error", (err) => say(`worker error: ${String(err.message).split("\n")[0]}`)); // e.g. Redis away, a lapsed lock
    workers.push(w);
    if (o.once) queues.push(openQueue(url, batch, true));
    if (!o.names.length) say(`serving batch ${batch}`);
    void w.run();
  };
  o.names.forEach(serve);
  // Without names: every batch submitted to this Redis, as the registry lists them (new ones join while running).
  const registry = o.names.length ? undefined : openRegistry(url, true);

  const stop = new Promise<void>((resolve) => {
    if (o.signal?.aborted) return resolve();
    o.signal?.addEventListener("abort", () => resolve(), { once: true });
    const poll = async () => {
      try {
        if (registry) (await batchNames(registry)).forEach(serve);
        if (o.once) {
          let left = busy;
          for (const q of queues) {
            const c = await q.getJobCounts("waiting", "prioritized", "delayed", "waiting-children", "active");
            left += Object.values(c).reduce((a, b) => a + b, 0);
          }
          if (!left) return resolve();
        }
      } catch {
        // Redis is away (a restart): ask again on the next tick.
      }
      if (!o.signal?.aborted) setTimeout(poll, o.once ? 500 : 2000);
    };
    if (o.once || registry) void poll();
  });

  try {
    await stop;
  } finally {
    await Promise.all(workers.map((w) => w.close())); // waits for the job in hand
    await Promise.all(queues.map((q) => q.close()));
    await registry?.close();
    models.close();
  }
  return counts;
}
