// Batch runs on BullMQ + Redis, each test against its own redis-server on a loopback port (tests/batch/
// redis_server.ts): CSV input rejected whole with the line named (queue left empty); two worker processes on the
// tiny fixture repos over 4 prompts × 2 seeds × {random, ses} at budget 4 with a Redis restart mid-run (appendonly),
// every job done exactly once and each PNG and log the bytes the generation layer gives in-process; a re-submit
// adding 0; a worker SIGKILLed mid-job whose job another worker finishes (shortened lock and stalled interval) with
// no partial files; a job that fails after its attempts with its message in status and report; the report's
// numbers recomputed from results.csv.
import { describe, expect, test } from "bun:test";
import { fileUrlToPath, joinPath, runtime } from "../../core/index.ts";
import { encodePng } from "../../core/png.ts";
import { batchStatus, bootstrapCi, jobId, jobsFromCsv, type JobSpec, median, parseCsv, parseSeeds, referencePaths, withReferenceHashes } from "../../batch/index.ts";

import { PickScore } from "../../models/clip/pickscore.ts";
import { Flux2Pipeline } from "../../models/flux2/pipeline.ts";
import { generateWithSearch, imageRgb8, loadReferences, referenceOutputSize, runLog } from "../../generate/index.ts";
import { FIXTURES, testDevice } from "../util.ts";
import { hasRedis, type RedisServer, startRedis } from "./redis_server.ts";

const REPOS = joinPath(FIXTURES, "repos");
const MODELS = {
  model: joinPath(REPOS, "black-forest-labs/FLUX.2-klein-tiny"),
  rewardModel: joinPath(REPOS, "AI-ModelScope/PickScore-tiny"),
  rewardProcessor: joinPath(REPOS, "laion/CLIP-ViT-H-14-tiny-processor"),
};
const MODEL_ARGS = ["--model", MODELS.model, "--reward-model", MODELS.rewardModel, "--reward-processor", MODELS.rewardProcessor];
const SMALL = ["--width", "32", "--height", "32", "--steps", "1"];
const CLI = new URL("../../cli/flux2ts.ts", import.meta.url).pathname;
const NO_REDIS = !hasRedis;

type Child = { pid: number; stdout: { on(e: string, f: (d: Uint8Array) => void): void }; stderr: { on(e: string, f: (d: Uint8Array) => void): void }; on(e: string, f: (c: number) => void): void };
const proc = (globalThis as unknown as { process: { execPath: string; env: Record<string, string>; kill(pid: number, sig: string): void } }).process;

/** `flux2ts …` as a child process; `done` resolves with its exit code and output. */
async function spawnCli(args: string[]): Promise<{ child: Child; out: () => string; done: Promise<{ code: number; stdout: string; stderr: string }> }> {
  const { spawn } = await import("node:child_process");
  const argv = runtime === "deno" ? ["run", "-A", "--unstable-webgpu", CLI, ...args] : [CLI, ...args];
  const child = spawn(proc.execPath, argv, { env: proc.env }) as unknown as Child;
  let stdout = "", stderr = "";
  child.stdout.on("data", (d) => (stdout += new TextDecoder().decode(d)));
  child.stderr.on("data", (d) => (stderr += new TextDecoder().decode(d)));
  running.add(child);
  const done = new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    child.on("close", (code) => {
      running.delete(child);
      resolve({ code, stdout, stderr });
    })
  );
  return { child, out: () => stdout, done };
}

/** Children still running; a failed test kills them, so no worker outlives it. */
const running = new Set<Child>();
const killChildren = () => running.forEach((c) => proc.kill(c.pid, "SIGKILL"));

const cli = async (args: string[]) => (await spawnCli(args)).done;

async function tempDir(): Promise<string> {
  const { mkdtemp } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  return mkdtemp(joinPath(tmpdir(), "flux2ts-batch-"));
}

/** Runs `fn` against a fresh redis-server and temp folder; afterwards no worker of it runs and the server is gone. */
async function withRedis(opts: { appendonly?: boolean }, fn: (redis: RedisServer, dir: string) => Promise<void>): Promise<void> {
  const redis = await startRedis(opts);
  try {
    await fn(redis, await tempDir());
  } finally {
    killChildren();
    await redis.close();
  }
}

async function write(path: string, text: string): Promise<string> {
  const { writeFile } = await import("node:fs/promises");
  await writeFile(path, text);
  return path;
}

const read = async (p: string) => new Uint8Array(await (await import("node:fs/promises")).readFile(p));
const listDir = async (p: string) => (await import("node:fs/promises")).readdir(p);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: () => string, f: () => Promise<T | undefined> | T | undefined, ms = 120_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what()}`);
    await sleep(100);
  }
}

/** results.csv → objects (our CSV parser is tested on its own below). */
function csvObjects(text: string): Record<string, string>[] {
  const [head, ...rows] = parseCsv(text, "results.csv").map((r) => r.cells);
  return rows.map((r) => Object.fromEntries(head.map((h, i) => [h, r[i]])));
}

describe("batch input", () => {
  test("CSV cells: quotes, doubled quotes, newlines inside quotes, CRLF, the line a row starts on", () => {
    const rows = parseCsv('prompt,seed\r\n"a ""red"" fox, at night",3\n"two\nlines",\n\nplain,1', "f.csv");
    expect(rows.map((r) => r.line)).toEqual([1, 2, 3, 6]);
    expect(rows[1].cells).toEqual(['a "red" fox, at night', "3"]);
    expect(rows[2].cells).toEqual(["two\nlines", ""]);
    expect(parseSeeds("0-2,7")).toEqual([0, 1, 2, 7]);
  });

  test("job ids hash the settings and models, not the order they were given in", () => {
    const a: JobSpec = { settings: { prompt: "x", width: 32, height: 32, seed: 1, search: "ses", budget: 4, verifier: "pickscore", batch: 1 }, models: MODELS };
    const b: JobSpec = { models: { ...MODELS }, settings: { batch: 1, verifier: "pickscore", budget: 4, search: "ses", seed: 1, height: 32, width: 32, prompt: "x" } };
    expect(jobId(a)).toBe(jobId(b));
    expect(jobId(a)).toMatch(/^ses-[0-9a-f]{20}$/);
    expect(jobId({ ...a, settings: { ...a.settings, seed: 2 } })).not.toBe(jobId(a));
    expect(jobId({ ...a, models: { ...MODELS, model: "klein-4b" } })).not.toBe(jobId(a));
  });

  test("a refs column: paths split on \";\", sides from the first reference unless given, hashes in the job id", () => {
    const d = { seeds: [0], searches: ["random" as const], width: 1024, height: 1024, verifier: "pickscore" as const, batch: 1, refs: ["flag.png"], sizeGiven: { width: false, height: true } };
    const [a, b] = jobsFromCsv("prompt,refs,width\na cat, a.png ; b.png ,\na dog,,64\n", "f.csv", d, MODELS);
    expect(a.references).toEqual([{ file: "a.png", sha256: "" }, { file: "b.png", sha256: "" }]);
    expect(a.fromReference).toEqual(["width"]);
    expect(b.references).toEqual([{ file: "flag.png", sha256: "" }]);
    expect(b.fromReference).toBeUndefined();
    expect(referencePaths([a, b])).toEqual(["a.png", "b.png", "flag.png"]);
    const hashed = (h: string) => withReferenceHashes([a], new Map([["a.png", h], ["b.png", "1".repeat(64)]]))[0];
    expect(hashed("0".repeat(64)).references![0].sha256).toBe("0".repeat(64));
    expect(jobId(hashed("0".repeat(64)))).not.toBe(jobId(hashed("2".repeat(64))));
    expect(() => jobsFromCsv("prompt,refs\na cat,a.png;;b.png\n", "f.csv", d, MODELS)).toThrow(/f\.csv:2: refs "a\.png;;b\.png" has an empty entry/);
  });

  test("report statistics: median and a bootstrap interval around the mean", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
    const [lo, hi] = bootstrapCi([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(lo < 4.5 && 4.5 < hi && lo >= 1 && hi <= 8).toBe(true);
    expect(bootstrapCi([2, 2, 2])).toEqual([2, 2]);
  });

  test.skipIf(NO_REDIS)("bad CSVs are rejected whole, naming the line, and nothing is enqueued; an unreachable Redis is one line (needs redis-server)", async () => {
    await withRedis({}, async (redis, dir) => {
      const good = "prompt,budget\na cat,4\n";
      const cases: [string, RegExp][] = [
        [`${good}"",4\n`, /:3: the prompt is empty/],
        [`${good}a dog,0\n`, /:3: budget must be an integer in \[1, 1000000\], got "0"/],
        [`${good}a dog,-2\n`, /:3: budget must be/],
        ["prompt,search\na cat,random\na dog,beam\n", /:3: unknown search "beam"/],
        ["prompt,width\na cat,32\n\na dog,100\n", /:4: width must be a multiple of 16, got 100/],
        [`${good}"a dog,4\n`, /:3: unterminated quoted cell/],
        [`${good}a dog,4,5\n`, /:3: 3 cells, the header has 2/],
        ["text,seed\na cat,1\n", /:1: unknown column "text"/],
        [`${good}a "dog",4\n`, /:3: a quote inside an unquoted cell/],
      ];
      for (const [i, [text, re]] of cases.entries()) {
        const file = await write(joinPath(dir, `bad${i}.csv`), text);
        const r = await cli(["batch", "submit", "--queue", redis.url, "--name", "bad", "--csv", file, "--search", "random", ...SMALL]);
        expect(r.code).toBe(2);
        expect(r.stderr).toMatch(new RegExp(`^flux2ts: ${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
        expect(r.stderr).toMatch(re);
        expect(r.stderr).not.toMatch(/\n\s+at /);
      }
      const s = await batchStatus({ queue: redis.url, name: "bad" });
      expect([s.waiting, s.active, s.done, s.failed]).toEqual([0, 0, 0, 0]);
      const gone = await cli(["batch", "status", "--queue", "redis://127.0.0.1:1", "--name", "bad"]);
      expect(gone.code).toBe(2);
      expect(gone.stderr).toMatch(/^flux2ts: cannot reach Redis at --queue redis:\/\/127\.0\.0\.1:1: /);
    });
  }, 120_000);
});

describe("batch runs", () => {
  test.skipIf(NO_REDIS)("two workers, 4 prompts × 2 seeds × {random, ses}, Redis restarted mid-run: every job once, PNGs and logs as generation gives them (4 jobs checked); re-submit adds 0; report recomputes (needs redis-server)", async () => {
    await withRedis({ appendonly: true }, async (redis, dir) => {
      const prompts = ["a cat", "a red fox, in snow", 'a "quoted" word', "a tree"];
      const csv = await write(joinPath(dir, "set.csv"), "prompt,search\n" + prompts.map((p) => `"${p.replace(/"/g, '""')}",`).join("\n") + "\n");
      const submit = ["batch", "submit", "--queue", redis.url, "--name", "set", "--csv", csv, "--seeds", "0-1", "--search", "random,ses", "--budget", "4", ...SMALL, ...MODEL_ARGS];
      const first = await cli(submit);
      expect(first.stdout).toBe("submitted 16 jobs (0 already there)\n");
      const out = joinPath(dir, "out");
      const workers = await Promise.all([0, 1].map(() => spawnCli(["worker", "--queue", redis.url, "--name", "set", "--out", out, "--once"])));
      // Restart Redis after the first job is done: both workers must reconnect and carry on.
      await until(() => "a first job", () => workers.some((w) => /^done /m.test(w.out())));
      await redis.stop();
      await sleep(1000);
      await redis.restart();
      const again = await cli(submit);
      expect(again.stdout).toBe("submitted 0 jobs (16 already there)\n");
      const results = await Promise.all(workers.map((w) => w.done));
      for (const r of results) {
        if (r.code !== 0) console.log(r.stdout, r.stderr);
        expect(r.code).toBe(0);
      }
      const done = results.flatMap((r) => [...r.stdout.matchAll(/^done set\/(\S+)/gm)].map((m) => m[1]));
      expect(done.length).toBe(16);
      expect(new Set(done).size).toBe(16);
      expect(results.every((r) => /^done /m.test(r.stdout))).toBe(true); // both took part

      const status = await cli(["batch", "status", "--queue", redis.url, "--name", "set"]);
      expect(status.stdout).toMatch(/set: 0 waiting, 0 active, 16 done, 0 failed/);
      const rep = joinPath(dir, "report");
      expect((await cli(["batch", "report", "--queue", redis.url, "--name", "set", "--out", rep])).code).toBe(0);

      // Each job's PNG and log: what the generation layer gives in-process (on a NaN-poisoning device) for its settings.
      const rows = csvObjects(new TextDecoder().decode(await read(joinPath(rep, "results.csv"))));
      expect(rows.length).toBe(16);
      const dev = await testDevice();
      const pipe = await Flux2Pipeline.load(dev, { dir: MODELS.model });
      const scorer = await PickScore.load(dev, { model: MODELS.rewardModel, processor: MODELS.rewardProcessor });
      try {
        // Every prompt, both seeds and both searches among them (all 16 would double the test's time).
        const picks = [["0", "random"], ["1", "ses"], ["0", "ses"], ["1", "random"]];
        const checked = prompts.map((p, i) => rows.find((r) => r.prompt === p && r.seed === picks[i][0] && r.search === picks[i][1])!);
        for (const row of rows) expect(row.job).toBe(jobId({ settings: { prompt: row.prompt, width: 32, height: 32, steps: 1, seed: Number(row.seed), search: row.search as "ses", budget: 4, verifier: "pickscore", batch: 1 }, models: MODELS }));
        for (const row of checked) {
          const settings = { prompt: row.prompt, width: 32, height: 32, steps: 1, seed: Number(row.seed), search: row.search as "random" | "ses", budget: 4, verifier: "pickscore" as const, batch: 1 };
          const { image, log } = await generateWithSearch({ pipe, scorer }, settings);
          const png = encodePng(await imageRgb8(image));
          image.dispose();
          expect(row.image).toBe(joinPath(out, "set", `${row.job}.png`));
          const file = await read(row.image);
          expect(file.length === png.length && file.every((v, i) => v === png[i])).toBe(true);
          const logged = JSON.parse(new TextDecoder().decode(await read(joinPath(out, "set", `${row.job}.json`))));
          expect({ ...logged, seconds: 0 }).toEqual({ ...runLog(log, MODELS, row.image), seconds: 0 });
          expect(Number(row.bestScore)).toBe(log.bestScore);
        }
      } finally {
        scorer.dispose();
        pipe.dispose(); // (the test device is the process's: other files use it after this one)
      }
      expect((await listDir(joinPath(out, "set"))).length).toBe(32); // 16 PNGs + 16 logs, no temp files

      // summary.md: one row per method, numbers recomputed here from results.csv.
      const md = new TextDecoder().decode(await read(joinPath(rep, "summary.md")));
      const table = md.split("\n").filter((l) => /^\| (random|ses) \|/.test(l)).map((l) => l.split("|").slice(1, -1).map((c) => c.trim()));
      expect(table.map((t) => t[0])).toEqual(["random", "ses"]);
      const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
      const score = (search: string, prompt: string, seed: string) => Number(rows.find((r) => r.search === search && r.prompt === prompt && r.seed === seed)!.bestScore);
      for (const t of table) {
        const mine = rows.filter((r) => r.search === t[0]);
        const scores = mine.map((r) => Number(r.bestScore));
        expect(t.slice(1, 5)).toEqual(["4", "8", "0", mean(scores).toFixed(4)]);
        expect(t[5]).toBe(`[${bootstrapCi(scores).map((v) => v.toFixed(4)).join(", ")}]`);
        expect(t[6]).toBe(median(scores).toFixed(4));
        if (t[0] === "ses") {
          const wins = mine.map((r) => Math.sign(Number(r.bestScore) - score("random", r.prompt, r.seed)) / 2 + 0.5);
          expect(t[7]).toBe(`${(100 * mean(wins)).toFixed(1)}% (8)`);
        } else expect(t[7]).toBe("–");
        expect(t.slice(8)).toEqual([mean(mine.map((r) => Number(r.evals))).toFixed(1), mean(mine.map((r) => Number(r.nfe))).toFixed(1), mean(mine.map((r) => Number(r.seconds))).toFixed(2)]);
      }
      const svg = new TextDecoder().decode(await read(joinPath(rep, "summary.svg")));
      expect(svg.match(/<circle [^>]*r="3.5"/g)?.length).toBe(16);
      const html = new TextDecoder().decode(await read(joinPath(rep, "index.html")));
      expect(html.match(/<h2>/g)?.length).toBe(4);
      expect(html.match(/<img src="\.\.\/out\/set\/[^"]+\.png"/g)?.length).toBe(16);
    });
  }, 900_000);

  test.skipIf(NO_REDIS)("a worker SIGKILLed mid-job: another finishes its job, no partial files; a failing job ends failed with its message in status and report (needs redis-server)", async () => {
    await withRedis({}, async (redis, dir) => {
      const base = ["batch", "submit", "--queue", redis.url, "--name", "k", "--search", "random", "--budget", "2", ...SMALL, "--attempts", "2", "--backoff", "100"];
      // The first job is long (budget 24), so the kill lands mid-job.
      const ok = await cli([...base, "--csv", await write(joinPath(dir, "p.csv"), "prompt,budget\na cat,24\na dog,\n"), ...MODEL_ARGS]);
      expect(ok.stdout).toBe("submitted 2 jobs (0 already there)\n");
      const missing = joinPath(dir, "no-such-model");
      const bad = await cli([...base, "--prompts", await write(joinPath(dir, "q.txt"), "a bird\n"), ...MODEL_ARGS.slice(2), "--model", missing]);
      expect(bad.stdout).toBe("submitted 1 jobs (0 already there)\n");
      const out = joinPath(dir, "out");
      // Loading and shader compilation stall the event loop for seconds on a busy CPU: a lock shorter than that lapses.
      const lock = ["--lock-duration", "15000", "--stalled-interval", "1000"];
      const a = await spawnCli(["worker", "--queue", redis.url, "--name", "k", "--out", out, ...lock]);
      const victim = await until(() => `a job in progress; the worker's output:\n${a.out()}`, async () => {
        const s = await batchStatus({ queue: redis.url, name: "k" });
        return s.running.find((r) => (r.progress as { evals?: number })?.evals! >= 2)?.job;
      }, 400_000);
      proc.kill(a.child.pid, "SIGKILL");
      await a.done;
      const partial = await listDir(joinPath(out, "k")).catch(() => []);
      expect(partial.filter((f) => f.startsWith(victim))).toEqual([]);
      const b = await spawnCli(["worker", "--queue", redis.url, "--name", "k", "--out", out, "--once", ...lock]);
      const r = await b.done;
      if (r.code !== 0) console.log(r.stdout, r.stderr);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^done k/${victim} `, "m"));
      expect(r.stdout).toMatch(/worker done: 2 jobs completed, 1 failed/);
      const files = await listDir(joinPath(out, "k"));
      expect(files.length).toBe(4);
      expect(files.every((f) => /^random-[0-9a-f]{20}\.(png|json)$/.test(f))).toBe(true);

      const status = await cli(["batch", "status", "--queue", redis.url, "--name", "k"]);
      expect(status.stdout).toMatch(/k: 0 waiting, 0 active, 2 done, 1 failed/);
      expect(status.stdout).toMatch(/failed random-[0-9a-f]+: .*no-such-model/);
      const rep = joinPath(dir, "report");
      await cli(["batch", "report", "--queue", redis.url, "--name", "k", "--out", rep]);
      const rows = csvObjects(new TextDecoder().decode(await read(joinPath(rep, "results.csv"))));
      const failed = rows.filter((x) => x.state === "failed");
      expect(failed.length).toBe(1);
      expect(failed[0].prompt).toBe("a bird");
      expect(failed[0].error).toMatch(/no-such-model/);
      const md = new TextDecoder().decode(await read(joinPath(rep, "summary.md")));
      expect(md).toMatch(/^\| random \| 2 \| 2 \| 1 \|/m);
      expect(md).toMatch(/^\| random \| 24 \| 1 \| 0 \|/m);
      expect(md).toMatch(/## Failed jobs\n\n- random-[0-9a-f]+ \(random, seed 0, "a bird"\): .*no-such-model/);
    });
  }, 600_000);
  test.skipIf(NO_REDIS)("editing jobs: a refs column's files are hashed at submit, the PNG is what generation gives with them, a changed file fails its job; a worker without --name serves every batch (needs redis-server)", async () => {
    await withRedis({}, async (redis, dir) => {
      const { copyFile, writeFile } = await import("node:fs/promises");
      const data = fileUrlToPath(new URL("../cli/data/", import.meta.url));
      const refA = joinPath(dir, "ref_a.png"), refB = joinPath(dir, "ref_b.png");
      await copyFile(joinPath(data, "ref_a.png"), refA);
      await copyFile(joinPath(data, "ref_b.png"), refB);
      const csv = await write(joinPath(dir, "edit.csv"), `prompt,refs\nmake it blue,${refA};${refB}\nmake it red,${refB}\n`);
      const submit = ["batch", "submit", "--queue", redis.url, "--name", "edit", "--csv", csv, "--search", "random", "--budget", "2", "--steps", "1", ...MODEL_ARGS];
      expect((await cli(submit)).stdout).toBe("submitted 2 jobs (0 already there)\n");
      // The second row's file changes before any worker runs: its job must fail, naming the file.
      await writeFile(refB, await read(joinPath(data, "ref_a.png")));
      const out = joinPath(dir, "out");
      const r = await cli(["worker", "--queue", redis.url, "--name", "edit", "--out", out, "--once"]);
      if (r.code !== 0) console.log(r.stdout, r.stderr);
      expect(r.stdout).toMatch(/worker done: 0 jobs completed, 2 failed/);
      const status = await cli(["batch", "status", "--queue", redis.url, "--name", "edit"]);
      expect(status.stdout).toMatch(/failed random-[0-9a-f]+: reference .*ref_b\.png has SHA-256 [0-9a-f]{64}, but the batch was submitted with [0-9a-f]{64}: the file changed since/);

      // With the files as submitted, a fresh batch runs; its first job's PNG is what generation gives in-process.
      await copyFile(joinPath(data, "ref_b.png"), refB);
      expect((await cli([...submit.slice(0, 5), "edit2", ...submit.slice(6)])).stdout).toBe("submitted 2 jobs (0 already there)\n");
      // A worker without --name serves every batch submitted to this Redis (here "edit", all failed, and "edit2").
      const ok = await cli(["worker", "--queue", redis.url, "--out", out, "--once"]);
      expect(ok.stdout).toMatch(/serving every batch/);
      expect(ok.stdout).toMatch(/^serving batch edit$/m);
      expect(ok.stdout).toMatch(/^serving batch edit2$/m);
      expect(ok.stdout).toMatch(/worker done: 2 jobs completed, 0 failed/);
      const job = /^done edit2\/(\S+)/m.exec(ok.stdout)![1];
      const logged = JSON.parse(new TextDecoder().decode(await read(joinPath(out, "edit2", `${job}.json`))));
      const files = logged.settings.references.map((x: { file: string }) => x.file);
      const dev = await testDevice();
      const pipe = await Flux2Pipeline.load(dev, { dir: MODELS.model, vaeEncoder: true });
      const scorer = await PickScore.load(dev, { model: MODELS.rewardModel, processor: MODELS.rewardProcessor });
      try {
        const references = await loadReferences(await Promise.all(files.map(async (f: string) => ({ name: f, bytes: await read(f) }))));
        const size = referenceOutputSize(pipe, references[0]);
        expect([logged.settings.width, logged.settings.height]).toEqual([size.width, size.height]);
        const settings = { prompt: logged.settings.prompt, ...size, steps: 1, seed: 0, search: "random" as const, budget: 2, verifier: "pickscore" as const, batch: 1, references };
        const { image } = await generateWithSearch({ pipe, scorer }, settings);
        const png = encodePng(await imageRgb8(image));
        image.dispose();
        expect(Array.from(await read(joinPath(out, "edit2", `${job}.png`)))).toEqual(Array.from(png));
      } finally {
        pipe.dispose();
        scorer.dispose();
      }
    });
  }, 600_000);
});
