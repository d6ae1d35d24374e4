// Noise-search benchmark on the synthetic problems of search/synthetic.ts (a smooth low-frequency objective like
// PickScore of a 4-step render, its noisy variant, and a spectral flow denoiser for pathSearch).
// `bun run bench:search [--seeds N] [--out dir]` runs every algorithm over many seeds and budgets, prints mean ± std of the best score per
// budget, and writes search.json and search.svg (score vs budget per algorithm, ±1 std bars)
// into bench/ (or the folder).
// - Budgets: random, SES and zero-order runs are prefixes of longer runs (same draws in the same order, tested in
//   tests/search), so one run at the largest budget gives the budget-b result as history[b − 1].best; pathSearch
//   sizes its population from the budget and runs once per budget.
import { Device, fileUrlToPath, type Shape, Tensor } from "../core/index.ts";
import { pathSearch, randomSearch, type SearchResult, sesSearch, zeroOrderSearch } from "../search/index.ts";
import { lowFrequencyObjective, SpectralFlowDenoiser, SYNTHETIC_SIGMAS } from "../search/synthetic.ts";

type Algo = "random" | "ses" | "zeroOrder" | "paths";
const ALGOS: Algo[] = ["random", "ses", "zeroOrder", "paths"];
const COLORS: Record<Algo, string> = { random: "#888888", ses: "#d62728", zeroOrder: "#1f77b4", paths: "#2ca02c" };

interface Cell {
  mean: number;
  std: number;
  nfe: number;
  scores: number[];
}

const meanStd = (xs: number[]) => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  const v = xs.length > 1 ? xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1) : 0;
  return { mean: m, std: Math.sqrt(v) };
};

async function benchObjective(dev: Device, shape: Shape, noise: number, budgets: number[], seeds: number): Promise<Record<Algo, Record<number, Cell>>> {
  const objective = lowFrequencyObjective({ shape, noise });
  const maxB = Math.max(...budgets);
  const raw: Record<Algo, Record<number, { scores: number[]; nfe: number }>> = { random: {}, ses: {}, zeroOrder: {}, paths: {} };
  for (const a of ALGOS) for (const b of budgets) raw[a][b] = { scores: [], nfe: 0 };
  for (let s = 0; s < seeds; s++) {
    const baseNoise = Tensor.randn(dev, shape, { seed: 1000 + s });
    const common = { baseNoise, objective, seed: s, batch: 10 };
    const prefixRuns: [Algo, SearchResult][] = [
      ["random", await randomSearch({ ...common, budget: maxB })],
      ["ses", await sesSearch({ ...common, budget: maxB })],
      ["zeroOrder", await zeroOrderSearch({ ...common, budget: maxB })],
    ];
    for (const [a, r] of prefixRuns) {
      for (const b of budgets) {
        raw[a][b].scores.push(r.history[b - 1].best);
        raw[a][b].nfe = b * (objective.nfePerEval ?? 4);
      }
      r.bestNoise.dispose();
    }
    for (const b of budgets) {
      const denoiser = new SpectralFlowDenoiser(SYNTHETIC_SIGMAS);
      const r = await pathSearch({ ...common, budget: b, denoiser });
      raw.paths[b].scores.push(r.bestScore);
      raw.paths[b].nfe = r.nfe;
      r.bestNoise.dispose();
    }
    baseNoise.dispose();
  }
  const out = {} as Record<Algo, Record<number, Cell>>;
  for (const a of ALGOS) {
    out[a] = {};
    for (const b of budgets) out[a][b] = { ...meanStd(raw[a][b].scores), nfe: raw[a][b].nfe, scores: raw[a][b].scores };
  }
  return out;
}

function table(title: string, res: Record<Algo, Record<number, Cell>>, budgets: number[]): string {
  const head = ["budget", ...ALGOS.map((a) => a.padStart(17))].join(" ");
  const rows = budgets.map((b) => [String(b).padStart(6), ...ALGOS.map((a) => `${res[a][b].mean.toFixed(3)} ± ${res[a][b].std.toFixed(3)}`.padStart(17))].join(" "));
  const nfe = ["   nfe", ...ALGOS.map((a) => budgets.map((b) => res[a][b].nfe).join("/").padStart(17))].join(" ");
  return [`${title}: best score, mean ± std over seeds`, head, ...rows, nfe].join("\n");
}

/** A hand-written SVG: one panel per objective, score vs budget (log x) per algorithm with ±1 std bars. */
function svg(panels: { title: string; res: Record<Algo, Record<number, Cell>> }[], budgets: number[], seeds: number): string {
  const PW = 420, PH = 300, M = { l: 55, r: 15, t: 30, b: 45 };
  const W = panels.length * PW, H = PH + 40;
  const lo = Math.log(budgets[0]), hi = Math.log(budgets[budgets.length - 1]);
  const parts: string[] = [];
  for (const [p, { title, res }] of panels.entries()) {
    const vals = ALGOS.flatMap((a) => budgets.flatMap((b) => [res[a][b].mean - res[a][b].std, res[a][b].mean + res[a][b].std]));
    const span = Math.max(...vals) - Math.min(...vals);
    const step = [0.02, 0.05, 0.1, 0.2, 0.5, 1].find((s) => span / s <= 8) ?? 1;
    const ymin = Math.floor(Math.min(...vals) / step) * step, ymax = Math.ceil(Math.max(...vals) / step) * step;
    const x0 = p * PW + M.l, x1 = (p + 1) * PW - M.r, y0 = PH - M.b, y1 = M.t;
    const X = (b: number) => x0 + 12 + ((Math.log(b) - lo) / (hi - lo || 1)) * (x1 - x0 - 24);
    const Y = (v: number) => y0 - ((v - ymin) / (ymax - ymin || 1)) * (y0 - y1);
    parts.push(`<text x="${(x0 + x1) / 2}" y="18" text-anchor="middle" font-size="14">${title}</text>`);
    parts.push(`<rect x="${x0}" y="${y1}" width="${x1 - x0}" height="${y0 - y1}" fill="none" stroke="#000"/>`);
    for (const b of budgets) {
      parts.push(`<line x1="${X(b)}" y1="${y0}" x2="${X(b)}" y2="${y0 + 4}" stroke="#000"/>`);
      parts.push(`<text x="${X(b)}" y="${y0 + 17}" text-anchor="middle" font-size="11">${b}</text>`);
    }
    for (let k = 0; k <= Math.round((ymax - ymin) / step); k++) {
      const v = ymin + k * step;
      parts.push(`<line x1="${x0 - 4}" y1="${Y(v)}" x2="${x1}" y2="${Y(v)}" stroke="#ddd"/>`);
      parts.push(`<text x="${x0 - 7}" y="${Y(v) + 4}" text-anchor="end" font-size="11">${v.toFixed(2)}</text>`);
    }
    parts.push(`<text x="${(x0 + x1) / 2}" y="${y0 + 35}" text-anchor="middle" font-size="12">budget (objective evaluations, log scale)</text>`);
    parts.push(`<text x="${x0 - 42}" y="${(y0 + y1) / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 ${x0 - 42} ${(y0 + y1) / 2})">best score</text>`);
    for (const [i, a] of ALGOS.entries()) {
      const dx = (i - 1.5) * 3; // spread the error bars apart
      const pts = budgets.map((b) => `${(X(b) + dx).toFixed(1)},${Y(res[a][b].mean).toFixed(1)}`).join(" ");
      parts.push(`<polyline points="${pts}" fill="none" stroke="${COLORS[a]}" stroke-width="2"/>`);
      for (const b of budgets) {
        const c = res[a][b], x = X(b) + dx;
        parts.push(`<line x1="${x.toFixed(1)}" y1="${Y(c.mean - c.std).toFixed(1)}" x2="${x.toFixed(1)}" y2="${Y(c.mean + c.std).toFixed(1)}" stroke="${COLORS[a]}"/>`);
        parts.push(`<circle cx="${x.toFixed(1)}" cy="${Y(c.mean).toFixed(1)}" r="2.5" fill="${COLORS[a]}"/>`);
      }
    }
  }
  for (const [i, a] of ALGOS.entries()) {
    const x = 20 + i * 140;
    parts.push(`<line x1="${x}" y1="${H - 12}" x2="${x + 20}" y2="${H - 12}" stroke="${COLORS[a]}" stroke-width="2"/>`);
    parts.push(`<text x="${x + 25}" y="${H - 8}" font-size="12">${a}</text>`);
  }
  parts.push(`<text x="${W - 10}" y="${H - 8}" text-anchor="end" font-size="11" fill="#555">mean over ${seeds} seeds, bars ±1 std</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="#fff"/>\n${parts.join("\n")}\n</svg>\n`;
}

if (import.meta.main) {
  const argv = (globalThis as { process?: { argv: string[] } }).process?.argv ?? [];
  const arg = (name: string, def: number) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? Number(argv[i + 1]) : def;
  };
  const seeds = arg("seeds", 12);
  const shape = [1, 16, 32, 32];
  const budgets = [10, 20, 50, 100, 200];
  const dev = await Device.open();
  const t0 = performance.now();
  console.log(`search bench on ${dev.describe()}: noise [${shape}], ${seeds} seeds, budgets ${budgets.join(", ")}`);
  const panels: { title: string; noise: number; res: Record<Algo, Record<number, Cell>> }[] = [];
  for (const [title, noise] of [["smooth low-frequency objective", 0], ["noisy variant (+0.05·N(0,1))", 0.05]] as const) {
    const res = await benchObjective(dev, shape, noise, budgets, seeds);
    panels.push({ title, noise, res });
    console.log(`\n${table(title, res, budgets)}`);
  }
  const seconds = (performance.now() - t0) / 1000;
  console.log(`\n${seconds.toFixed(1)} s`);
  const { writeFileSync } = await import("node:fs");
  const dir = argv.includes("--out") ? `${argv[argv.indexOf("--out") + 1]}/` : fileUrlToPath(new URL(".", import.meta.url));
  writeFileSync(`${dir}search.json`, JSON.stringify({ device: dev.describe(), shape, seeds, budgets, seconds, sigmas: SYNTHETIC_SIGMAS, panels }, null, 1));
  writeFileSync(`${dir}search.svg`, svg(panels, budgets, seeds));
  console.log(`wrote ${dir}search.json and ${dir}search.svg`);
  dev.destroy();
}
