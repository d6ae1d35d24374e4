// `flux2ts worker`: serves batches from BullMQ on Redis, one process per GPU (batch/worker.ts). Prints one line per
// job started, done, retried or failed; SIGINT or SIGTERM finishes the job in hand and exits 0, a second one exits
// at once (the job goes back to the queue when its lock lapses).
import { queueUrl, runWorker } from "../batch/index.ts";
import { intFlag, parseArgs, strFlag, UsageError } from "./args.ts";
import { hubFlags } from "./generation_flags.ts";
import { exit } from "./host.ts";
import { openDevice } from "./resolve.ts";

export const help = `flux2ts worker --out DIR [--name NAME[,NAME…]] [options]

Runs the jobs of batches submitted with \`flux2ts batch submit\`, one at a time (run one worker per GPU). Each job
runs what \`flux2ts generate\` runs and writes DIR/<name>/<jobId>.png and .json. Models load on the first job and
stay while the next jobs use the same ones.

  --queue url              Redis (default $FLUX2TS_QUEUE, else redis://127.0.0.1:6379)
  --name a,b               the batches to serve (default: every batch submitted to this Redis, including
                           those submitted while the worker runs)
  --out dir                where images and logs go
  --once                   exit when the batches have nothing waiting, delayed or active
  --endpoint url           hub endpoint for model ids (default $MODELSCOPE_ENDPOINT or modelscope.cn)
  --offline                use the local model cache only
  --lock-duration ms       BullMQ job lock (default 30000); a killed worker's job moves on after it lapses
  --stalled-interval ms    how often stalled jobs are looked for (default 30000)`;

type Proc = { on(sig: string, fn: () => void): unknown; pid: number };

export async function run(args: string[]): Promise<number> {
  const p = parseArgs(args, ["queue", "name", "out", "endpoint", "lock-duration", "stalled-interval"], ["once", "offline"]);
  if (p.positionals.length) throw new UsageError(`unexpected argument "${p.positionals[0]}"`);
  const names = (strFlag(p, "name") ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  const out = strFlag(p, "out");
  if (!out) throw new UsageError("worker needs --out DIR");
  const stop = new AbortController();
  const proc = (globalThis as { process?: Proc }).process;
  for (const sig of ["SIGINT", "SIGTERM"]) {
    proc?.on(sig, () => {
      if (stop.signal.aborted) {
        // A second signal (or Redis away, so the job cannot be finished): leave now; BullMQ hands the job on.
        console.log(`${sig} again: exiting now; the job in hand goes back to the queue when its lock lapses`);
        exit(0);
      }
      console.log(`${sig}: finishing the job in hand, then exiting (signal again to leave at once)`);
      stop.abort();
    });
  }
  const queue = queueUrl(strFlag(p, "queue"));
  console.log(`worker ${proc?.pid ?? ""} serving ${names.length ? names.join(", ") : "every batch"} from ${queue.replace(/\/\/[^@/]*@/, "//…@")}`);
  let counts;
  try {
    counts = await runWorker({
      queue,
      names,
      out,
      once: p.flags.has("once"),
      signal: stop.signal,
      hub: hubFlags(p),
      lockDurationMs: p.flags.has("lock-duration") ? intFlag(p, "lock-duration", 30_000, 100, 3_600_000) : undefined,
      stalledIntervalMs: p.flags.has("stalled-interval") ? intFlag(p, "stalled-interval", 30_000, 100, 3_600_000) : undefined,
      onLog: (line) => console.log(line),
      openDevice,
    });
  } catch (e) {
    throw new UsageError(String((e as Error).message).split("\n")[0]);
  }
  console.log(`worker done: ${counts.completed} jobs completed, ${counts.failed} failed`);
  return 0;
}
