// Batch throughput on BullMQ + Redis: `bun run bench:batch` submits the same jobs (tiny fixture repos, 32×32, one
// step, random search at budget 2) to a private redis-server twice and serves them with 1, then 2 `flux2ts worker`
// processes. From BullMQ's own job timestamps it reports jobs per minute (first job started → last finished, so
// model loading and shader compilation are not counted) and the queue's overhead per job: on one worker, the time
// from a job's return to the next job's start (goal < 50 ms; the workers stamp both in the job's return value), and
// a job's time beyond its search.
// Writes bench/batch.json (or `--out FILE`); `--quick` runs 2 prompts instead of 6 (4 jobs per run).
// On a machine whose cores are shared (2 here), two workers compete for the same CPU (lavapipe runs the GPU work on
// it), so the 2-worker ratio says what the queue adds, not what a second GPU would.
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Queue } from "bullmq";
import type { JobResult } from "../batch/index.ts";
import { startRedis } from "../tests/batch/redis_server.ts";
import { FIXTURES } from "../tests/util.ts";

const FIXTURE_REPOS = join(FIXTURES, "repos");
const CLI = new URL("../cli/flux2ts.ts", import.meta.url).pathname;
const argv = process.argv.slice(2);
const PROMPTS = ["a cat", "a dog", "a red fox in snow", "a tree", "a house", "a boat"].slice(0, argv.includes("--quick") ? 2 : 6);
const SEEDS = "0-1";

function run(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Uint8Array) => (out += new TextDecoder().decode(d)));
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`flux2ts ${args[0]} exited with ${code}: ${out}`))));
  });
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[v.length >> 1];

async function measure(url: string, dir: string, workers: number) {
  const name = `bench${workers}`;
  const m = (r: string) => join(FIXTURE_REPOS, r);
  await run([
    "batch", "submit", "--queue", url, "--name", name, "--prompts", join(dir, "prompts.txt"), "--seeds", SEEDS, "--search", "random", "--budget", "2",
    "--width", "32", "--height", "32", "--steps", "1", "--model", m("black-forest-labs/FLUX.2-klein-tiny"),
    "--reward-model", m("AI-ModelScope/PickScore-tiny"), "--reward-processor", m("laion/CLIP-ViT-H-14-tiny-processor"),
  ]);
  const t0 = performance.now();
  await Promise.all(Array.from({ length: workers }, () => run(["worker", "--queue", url, "--name", name, "--out", join(dir, "out"), "--once"])));
  const wall = (performance.now() - t0) / 1000;
  const queue = new Queue(name, { connection: { url } });
  const jobs = (await queue.getCompleted()).filter(Boolean);
  await queue.close();
  const start = Math.min(...jobs.map((j) => j.processedOn!)), end = Math.max(...jobs.map((j) => j.finishedOn!));
  // A job's return to the same worker's next start: BullMQ's completion round trip, the next fetch and dispatch.
  const gaps: number[] = [];
  for (const w of new Set(jobs.map((j) => j.processedBy))) {
    const mine = jobs.filter((j) => j.processedBy === w).map((j) => j.returnvalue as JobResult).sort((a, b) => a.startedAt - b.startedAt);
    for (let i = 1; i < mine.length; i++) gaps.push(mine[i].startedAt - mine[i - 1].returnedAt);
  }
  const perJob = jobs.map((j) => (j.finishedOn! - j.processedOn!) / 1000);
  // What a job costs beyond its search (the prompt's encoding, lock checks, PNG encoding, file writes).
  const outside = jobs.map((j) => {
    const r = j.returnvalue as JobResult;
    return r.returnedAt - r.startedAt - 1000 * r.log.seconds;
  });
  return {
    workers,
    jobs: jobs.length,
    jobsPerMinute: (jobs.length / (end - start)) * 60_000,
    wallSecondsWithLoading: wall,
    medianJobSeconds: median(perJob),
    queueOverheadMs: { median: median(gaps), max: Math.max(...gaps), samples: gaps.length },
    outsideGenerationMs: { median: median(outside), max: Math.max(...outside) },
  };
}

const redis = await startRedis();
const dir = await mkdtemp(join(tmpdir(), "flux2ts-bench-batch-"));
try {
  await writeFile(join(dir, "prompts.txt"), PROMPTS.join("\n") + "\n");
  const one = await measure(redis.url, dir, 1);
  const two = await measure(redis.url, dir, 2);
  const result = {
    date: new Date().toISOString(),
    runtime: `bun ${process.versions.bun ?? "?"}`,
    cpus: cpus().length,
    jobSettings: { size: "32×32", steps: 1, search: "random", budget: 2, prompts: PROMPTS.length, seeds: SEEDS },
    runs: [one, two],
    speedup2vs1: two.jobsPerMinute / one.jobsPerMinute,
  };
  for (const r of result.runs) {
    console.log(`${r.workers} worker(s): ${r.jobs} jobs, ${r.jobsPerMinute.toFixed(1)} jobs/min (median job ${r.medianJobSeconds.toFixed(2)} s), ` +
      `queue overhead (a job's return → the next one's start) ${r.queueOverheadMs.median} ms median (${r.queueOverheadMs.max} max), ` +
      `beyond the search ${r.outsideGenerationMs.median.toFixed(0)} ms median (prompt encoding, PNG, files); ${r.wallSecondsWithLoading.toFixed(1)} s in all`);
  }
  console.log(`2 workers / 1 worker: ×${result.speedup2vs1.toFixed(2)} jobs/min (${result.cpus} CPU cores shared by both)`);
  const out = argv.includes("--out") ? argv[argv.indexOf("--out") + 1] : fileURLToPath(new URL("batch.json", import.meta.url));
  await writeFile(out, JSON.stringify(result, null, 1) + "\n");
  console.log(`wrote ${out}`);
} finally {
  await redis.close();
  await rm(dir, { recursive: true, force: true });
}
