// The table the papers print, made from a batch's BullMQ jobs (their return values hold the run logs, so no image
// files are needed): results.csv (one row per job), summary.md (per search method and budget: mean and median best
// score with a 95% bootstrap interval, win rate against random on the same prompt and seed at equal budget, mean
// evals, NFE and seconds, jobs failed), summary.svg (best score against NFE) and index.html (per prompt, each
// method's best image side by side). Every file is written to a temp name and renamed.
// Design: summary.md's numbers are computed from the same rows results.csv holds (`summarize`), so they recompute
// from the CSV; the bootstrap uses a fixed-seed generator, so a report is reproducible.
import { joinPath, nodeFs } from "../core/platform.ts";
import { openQueue, queueUrl } from "./queue.ts";
import type { JobSpec } from "./spec.ts";
import type { JobResult } from "./worker.ts";

/** One results.csv row. Failed and unfinished jobs have an empty score and a `state` saying why. */
export interface ResultRow {
  job: string;
  state: string;
  prompt: string;
  seed: number;
  search: string;
  budget: number;
  verifier: string;
  bestScore: number | null;
  evals: number | null;
  nfe: number | null;
  seconds: number | null;
  image: string;
  error: string;
}

export const RESULT_COLUMNS: (keyof ResultRow)[] = ["job", "state", "prompt", "seed", "search", "budget", "verifier", "bestScore", "evals", "nfe", "seconds", "image", "error"];

export interface MethodSummary {
  search: string;
  budget: number;
  jobs: number;
  failed: number;
  meanScore: number;
  ci95: [number, number];
  medianScore: number;
  /** Wins (ties half) against random on the same prompt and seed at this budget; null for random or no pairs. */
  winRate: number | null;
  pairs: number;
  meanEvals: number;
  meanNfe: number;
  meanSeconds: number;
}

const mean = (v: number[]) => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN);

export function median(v: number[]): number {
  if (!v.length) return NaN;
  const s = [...v].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/** 95% percentile bootstrap interval of the mean: 2000 resamples from a fixed-seed generator (mulberry32). */
export function bootstrapCi(v: number[], resamples = 2000, seed = 1): [number, number] {
  if (!v.length) return [NaN, NaN];
  let t = seed >>> 0;
  const rand = () => {
    t = (t + 0x6d2b79f5) >>> 0;
    let x = Math.imul(t ^ (t >>> 15), 1 | t);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
  const means: number[] = [];
  for (let r = 0; r < resamples; r++) {
    let s = 0;
    for (let i = 0; i < v.length; i++) s += v[Math.floor(rand() * v.length)];
    means.push(s / v.length);
  }
  means.sort((a, b) => a - b);
  return [means[Math.floor(0.025 * (resamples - 1))], means[Math.ceil(0.975 * (resamples - 1))]];
}

/** Per (search, budget): the summary.md numbers, from result rows alone. */
export function summarize(rows: ResultRow[]): MethodSummary[] {
  const done = rows.filter((r) => r.bestScore !== null);
  const randomScore = new Map(done.filter((r) => r.search === "random").map((r) => [`${r.prompt}\n${r.seed}\n${r.budget}`, r.bestScore!]));
  const groups = new Map<string, ResultRow[]>();
  for (const r of rows) {
    const k = `${r.search}\n${r.budget}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  return [...groups.values()].map((g) => {
    const ok = g.filter((r) => r.bestScore !== null);
    const scores = ok.map((r) => r.bestScore!);
    let wins = 0, pairs = 0;
    for (const r of ok) {
      const base = randomScore.get(`${r.prompt}\n${r.seed}\n${r.budget}`);
      if (base === undefined || r.search === "random") continue;
      pairs++;
      wins += r.bestScore! > base ? 1 : r.bestScore! === base ? 0.5 : 0;
    }
    return {
      search: g[0].search,
      budget: g[0].budget,
      jobs: g.length,
      failed: g.filter((r) => r.state === "failed").length,
      meanScore: mean(scores),
      ci95: bootstrapCi(scores),
      medianScore: median(scores),
      winRate: pairs ? wins / pairs : null,
      pairs,
      meanEvals: mean(ok.map((r) => r.evals!)),
      meanNfe: mean(ok.map((r) => r.nfe!)),
      meanSeconds: mean(ok.map((r) => r.seconds!)),
    };
  }).sort((a, b) => a.search.localeCompare(b.search) || a.budget - b.budget);
}

const csvCell = (v: unknown) => {
  const s = v === null || v === undefined ? "" : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};

export function resultsCsv(rows: ResultRow[]): string {
  return [RESULT_COLUMNS.join(","), ...rows.map((r) => RESULT_COLUMNS.map((c) => csvCell(r[c])).join(","))].join("\n") + "\n";
}

const f = (v: number, d = 4) => (Number.isFinite(v) ? v.toFixed(d) : "–");

export function summaryMd(name: string, s: MethodSummary[], rows: ResultRow[]): string {
  const lines = [
    `# Batch ${name}`,
    "",
    `${rows.length} jobs: ${rows.filter((r) => r.state === "completed").length} completed, ${rows.filter((r) => r.state === "failed").length} failed. Best score per job; 95% CI: percentile bootstrap of the mean (2000 resamples). Win rate: against random on the same prompt and seed at equal budget (ties count half).`,
    "",
    "| search | budget | jobs | failed | mean best | 95% CI | median best | win rate vs random | mean evals | mean NFE | mean seconds |",
    "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ...s.map((m) =>
      `| ${m.search} | ${m.budget} | ${m.jobs} | ${m.failed} | ${f(m.meanScore)} | [${f(m.ci95[0])}, ${f(m.ci95[1])}] | ${f(m.medianScore)} | ` +
      `${m.winRate === null ? "–" : `${(100 * m.winRate).toFixed(1)}% (${m.pairs})`} | ${f(m.meanEvals, 1)} | ${f(m.meanNfe, 1)} | ${f(m.meanSeconds, 2)} |`
    ),
  ];
  const failed = rows.filter((r) => r.state === "failed");
  if (failed.length) lines.push("", "## Failed jobs", "", ...failed.map((r) => `- ${r.job} (${r.search}, seed ${r.seed}, "${r.prompt}"): ${r.error}`));
  return lines.join("\n") + "\n";
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"];
const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** Best score against NFE, one colour per search method, a legend on the right. */
export function summarySvg(rows: ResultRow[]): string {
  const pts = rows.filter((r) => r.bestScore !== null && r.nfe !== null);
  const methods = [...new Set(pts.map((r) => r.search))].sort();
  const W = 640, H = 400, L = 64, R = 140, T = 20, B = 48;
  const xs = pts.map((r) => r.nfe!), ys = pts.map((r) => r.bestScore!);
  const [x0, x1] = [0, Math.max(1, ...xs) * 1.05];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (!(y1 > y0)) [y0, y1] = [(y0 || 0) - 0.5, (y1 || 0) + 0.5];
  const pad = (y1 - y0) * 0.05;
  [y0, y1] = [y0 - pad, y1 + pad];
  const X = (v: number) => L + ((v - x0) / (x1 - x0)) * (W - L - R), Y = (v: number) => H - B - ((v - y0) / (y1 - y0)) * (H - T - B);
  const ticks = (a: number, b: number) => Array.from({ length: 5 }, (_, i) => a + ((b - a) * i) / 4);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
    ...ticks(x0, x1).map((v) => `<text x="${X(v).toFixed(1)}" y="${H - B + 16}" text-anchor="middle">${Math.round(v)}</text>`),
    ...ticks(y0, y1).map((v) => `<text x="${L - 6}" y="${(Y(v) + 4).toFixed(1)}" text-anchor="end">${v.toFixed(3)}</text>`),
    `<text x="${(L + W - R) / 2}" y="${H - 10}" text-anchor="middle">NFE (transformer evaluations)</text>`,
    `<text transform="translate(14 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">best score</text>`,
  ];
  methods.forEach((m, i) => {
    const c = COLORS[i % COLORS.length];
    for (const r of pts.filter((p) => p.search === m)) out.push(`<circle cx="${X(r.nfe!).toFixed(1)}" cy="${Y(r.bestScore!).toFixed(1)}" r="3.5" fill="${c}" fill-opacity="0.7"><title>${esc(`${m} seed ${r.seed}: ${r.bestScore}`)}</title></circle>`);
    out.push(`<circle cx="${W - R + 16}" cy="${T + 10 + 18 * i}" r="5" fill="${c}"/><text x="${W - R + 26}" y="${T + 14 + 18 * i}">${esc(m)}</text>`);
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

/** Per prompt a table: a row per seed, a column per method, each cell its best image and score. */
export function indexHtml(name: string, rows: ResultRow[], imageHref: (r: ResultRow) => string): string {
  const methods = [...new Set(rows.map((r) => `${r.search} @${r.budget}`))].sort();
  const prompts = [...new Set(rows.map((r) => r.prompt))];
  const body = prompts.map((p) => {
    const mine = rows.filter((r) => r.prompt === p);
    const seeds = [...new Set(mine.map((r) => r.seed))].sort((a, b) => a - b);
    const cell = (r?: ResultRow) =>
      !r ? "<td></td>" : r.bestScore === null ? `<td class="f">${esc(r.state)}${r.error ? `: ${esc(r.error)}` : ""}</td>`
      : `<td><img src="${esc(imageHref(r))}" alt="${esc(r.job)}"><br>${r.bestScore.toFixed(4)}</td>`;
    return `<h2>${esc(p)}</h2>\n<table><tr><th>seed</th>${methods.map((m) => `<th>${esc(m)}</th>`).join("")}</tr>\n` +
      seeds.map((s) => `<tr><th>${s}</th>${methods.map((m) => cell(mine.find((r) => r.seed === s && `${r.search} @${r.budget}` === m))).join("")}</tr>`).join("\n") + "</table>";
  });
  return `<!doctype html>\n<html><head><meta charset="utf-8"><title>${esc(name)}</title><style>body{font-family:sans-serif}td,th{padding:4px;text-align:center;vertical-align:top}` +
    `img{width:192px;image-rendering:pixelated}.f{color:#b00;max-width:192px}</style></head><body>\n<h1>Batch ${esc(name)}</h1>\n<p><img src="summary.svg" style="width:640px"></p>\n${body.join("\n")}\n</body></html>\n`;
}

/** Rows of every job in the batch, in job-id order. */
export async function batchRows(o: { queue?: string; name: string }): Promise<ResultRow[]> {
  const queue = openQueue(queueUrl(o.queue), o.name);
  try {
    const jobs = (await queue.getJobs(["completed", "failed", "active", "waiting", "prioritized", "delayed", "waiting-children"])).filter(Boolean);
    const rows = await Promise.all(jobs.map(async (j) => {
      const s = (j.data as JobSpec).settings;
      const state = await j.getState();
      const done = state === "completed" ? (j.returnvalue as JobResult) : undefined;
      return {
        job: j.id!,
        state,
        prompt: s.prompt,
        seed: s.seed,
        search: s.search,
        budget: s.budget,
        verifier: s.verifier,
        bestScore: done?.log.bestScore ?? null,
        evals: done?.log.evals ?? null,
        nfe: done?.log.nfe ?? null,
        seconds: done?.log.seconds ?? null,
        image: done?.image ?? "",
        error: state === "failed" ? (j.failedReason ?? "").split("\n")[0] : "",
      };
    }));
    return rows.sort((a, b) => (a.job < b.job ? -1 : a.job > b.job ? 1 : 0));
  } finally {
    await queue.close();
  }
}

/** Writes results.csv, summary.md, summary.svg and index.html into `out`; returns the summary rows. */
export async function batchReport(o: { queue?: string; name: string; out: string }): Promise<{ rows: ResultRow[]; summary: MethodSummary[] }> {
  const rows = await batchRows(o);
  const summary = summarize(rows);
  const fs = await nodeFs();
  const { relative, isAbsolute, resolve } = await import("node:path");
  await fs.mkdir(o.out, { recursive: true });
  const href = (r: ResultRow) => (isAbsolute(r.image) ? relative(resolve(o.out), r.image) : relative(o.out, r.image)).split("\\").join("/");
  const files: [string, string][] = [
    ["results.csv", resultsCsv(rows)],
    ["summary.md", summaryMd(o.name, summary, rows)],
    ["summary.svg", summarySvg(rows)],
    ["index.html", indexHtml(o.name, rows, href)],
  ];
  for (const [file, text] of files) {
    const path = joinPath(o.out, file);
    await fs.writeFile(`${path}.tmp`, text);
    await fs.rename(`${path}.tmp`, path);
  }
  return { rows, summary };
}
