// The batch's BullMQ side: one BullMQ queue per batch name, jobs added with ids that hash their settings (so a
// re-submit adds nothing), BullMQ's retries with exponential backoff, and status from BullMQ's own counts, job
// timestamps and `processedBy`. Nothing here touches Redis except through BullMQ: the batch names a worker without
// --name serves are the ids of jobs in one more BullMQ queue (REGISTRY), added by each submit and never processed.
import { type ConnectionOptions, type Job, Queue } from "bullmq";
import { env } from "../core/platform.ts";
import { jobId, type JobSpec } from "./spec.ts";
import type { JobResult } from "./worker.ts";

export const DEFAULT_QUEUE = "redis://127.0.0.1:6379";

/** --queue's value: the argument, else $FLUX2TS_QUEUE, else Redis on this machine's default port. */
export function queueUrl(arg?: string): string {
  return arg ?? (env("FLUX2TS_QUEUE") || DEFAULT_QUEUE);
}

/** BullMQ's queue names may not hold ":"; keep names usable as folder names too. */
export function checkBatchName(name: string): string {
  if (!/^[A-Za-z0-9][\w.-]{0,99}$/.test(name)) throw new Error(`batch name "${name}" must be letters, digits, ".", "_" or "-" (at most 100)`);
  if (name === REGISTRY) throw new Error(`batch name "${name}" is the registry of batch names`);
  return name;
}

/**
 * Connection options. A worker's commands wait through a Redis restart instead of failing (BullMQ asks this); a
 * command line's (submit, status, report) fail after about a second, so an unreachable Redis is one clear error.
 */
export function connection(url: string, worker = false): ConnectionOptions {
  return worker ? { url, maxRetriesPerRequest: null } : { url, maxRetriesPerRequest: 1, retryStrategy: (n: number) => (n > 3 ? null : 250) };
}

export function openQueue(url: string, name: string, worker = false): Queue<JobSpec, JobResult> {
  const queue = new Queue<JobSpec, JobResult>(checkBatchName(name), { connection: connection(url, worker) });
  queue.on("error", () => {}); // connection errors also reject the commands, which report them
  return queue;
}

/** The queue whose job ids are the submitted batches' names (its jobs are never run). */
export const REGISTRY = "flux2ts-batches";

export function openRegistry(url: string, worker = false): Queue {
  const queue = new Queue(REGISTRY, { connection: connection(url, worker) });
  queue.on("error", () => {});
  return queue;
}

/** The names of the batches submitted to this Redis, oldest first. */
export async function batchNames(registry: Queue): Promise<string[]> {
  const jobs = await registry.getJobs(["waiting"], 0, -1, true);
  return jobs.filter(Boolean).map((j) => String(j.id));
}

export interface SubmitOptions {
  /** Redis URL (default: queueUrl()). */
  queue?: string;
  name: string;
  jobs: JobSpec[];
  /** Tries per job before it is marked failed (default 3). */
  attempts?: number;
  /** First retry delay; each next one doubles (default 10 s). */
  backoffMs?: number;
}

/** Enqueues the jobs not already in the batch; returns how many were added and how many were there before. */
export async function submitBatch(o: SubmitOptions): Promise<{ submitted: number; existing: number }> {
  const unhashed = o.jobs.find((j) => j.references?.some((r) => !/^[0-9a-f]{64}$/.test(r.sha256)));
  if (unhashed) throw new Error(`submitBatch: reference ${unhashed.references!.find((r) => !/^[0-9a-f]{64}$/.test(r.sha256))!.file} has no SHA-256 (fill them with withReferenceHashes)`);
  const queue = openQueue(queueUrl(o.queue), o.name);
  try {
    const byId = new Map(o.jobs.map((j) => [jobId(j), j]));
    const fresh: { name: string; data: JobSpec; opts: { jobId: string; attempts: number; backoff: { type: "exponential"; delay: number } } }[] = [];
    for (const [id, data] of byId) {
      if (await queue.getJob(id)) continue;
      fresh.push({ name: data.settings.search, data, opts: { jobId: id, attempts: o.attempts ?? 3, backoff: { type: "exponential", delay: o.backoffMs ?? 10_000 } } });
    }
    for (let i = 0; i < fresh.length; i += 500) await queue.addBulk(fresh.slice(i, i + 500));
    const registry = openRegistry(queueUrl(o.queue));
    try {
      await registry.add("batch", { name: o.name }, { jobId: o.name });
    } finally {
      await registry.close();
    }
    return { submitted: fresh.length, existing: byId.size - fresh.length };
  } finally {
    await queue.close();
  }
}

export interface BatchStatus {
  waiting: number;
  active: number;
  done: number;
  failed: number;
  /** The active jobs: worker name, job id, and its progress (evals, nfe). */
  running: { worker: string; job: string; progress: unknown }[];
  /** Failed jobs and their messages. */
  failures: { job: string; reason: string }[];
  /** Seconds until the waiting and active jobs are done at the rate observed so far (undefined: no rate yet). */
  etaSeconds?: number;
}

/** Counts, who runs what, failures and an ETA from the completed jobs' timestamps. */
export async function batchStatus(o: { queue?: string; name: string }): Promise<BatchStatus> {
  const queue = openQueue(queueUrl(o.queue), o.name);
  try {
    const c = await queue.getJobCounts("waiting", "prioritized", "delayed", "waiting-children", "active", "completed", "failed");
    const active = (await queue.getActive()).filter(Boolean);
    const failed = (await queue.getFailed()).filter(Boolean);
    const waiting = c.waiting + c.prioritized + c.delayed + c["waiting-children"];
    const completed = (await queue.getCompleted()).filter(Boolean);
    return {
      waiting,
      active: c.active,
      done: c.completed,
      failed: c.failed,
      running: active.map((j) => ({ worker: j.processedBy ?? "?", job: j.id!, progress: j.progress })),
      failures: failed.map((j) => ({ job: j.id!, reason: j.failedReason })),
      etaSeconds: eta(completed, waiting + c.active),
    };
  } finally {
    await queue.close();
  }
}

/** Jobs done per second between the first start and the last finish, applied to what is left. */
function eta(done: Job[], left: number): number | undefined {
  const starts = done.map((j) => j.processedOn ?? Infinity), ends = done.map((j) => j.finishedOn ?? 0);
  const span = (Math.max(...ends) - Math.min(...starts)) / 1000;
  if (!done.length || !(span > 0)) return left ? undefined : 0;
  return left / (done.length / span);
}
