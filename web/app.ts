// The browser app served by `flux2ts serve`: the whole run happens in this tab on its own WebGPU device; the server
// only serves files. Design:
// - One orchestration: generate/generation.ts (the CLI's `generate` runs the same), fed from the form. Its events
//   drive the page: every scored candidate becomes a gallery card (thumbnail, score, generation/round) and a point
//   of the plot (best score against evaluations, NFE on the top axis); sampler steps move the progress bar.
// - Settings live in the form, whose field names are `generate`'s flags; the query string fills the form, and a run
//   writes its settings back into the address bar, so a link reproduces a run (autorun=1 starts it on load).
// - Models: a registry alias, owner/name (served from the CLI's cache at /models/<owner>/<name>) or a URL. With
//   "keep model files" on, file reads go through the OPFS block cache (core/platform.ts), so a reload does not
//   fetch the weights again. Loaded models stay in memory while the names and prompts stay the same.
// - References (editing): picked or dropped PNG/JPEG files, decoded, checked and hashed as `generate --ref` does,
//   shown as thumbnails and kept in the page only. A link records how many a run used (refs=N) and the page then
//   says they must be added again (autorun waits for them). The first reference sets width and height to its
//   cropped size, upstream's default.
// - Results: #best shows the best image with its score in data-score; the PNG is exactly what `generate` writes
//   (imageRgb8), the JSON log is `generate`'s (it replays with `flux2ts generate --replay`). body.dataset.state is
//   idle → running → done | error (the message shown in #error), for people and for automated checks.
import { Device, DeviceLostError } from "../core/index.ts";
import { encodePng } from "../core/png.ts";
import { clearOpfsCache, disableOpfsCache, enableOpfsCache, opfsCacheBytes, opfsStats } from "../core/platform.ts";
import { REGISTRY, registryEntry } from "../hub/registry.ts";
import { PickScore } from "../models/clip/pickscore.ts";
import { Flux2Pipeline } from "../models/flux2/pipeline.ts";
import { referenceSize } from "../models/flux2/reference.ts";
import {
  type GenerationEvent,
  type GenerationModels,
  type GenerationSettings,
  generateWithSearch,
  imageRgb8,
  type LoadedReference,
  loadReferences,
  VERIFIER_NAMES,
  type VerifierName,
} from "../generate/generation.ts";
import { isSearchName } from "../search/by_name.ts";
import { type CandidateEvent, formatSeconds } from "../generate/run_search.ts";

/** Form fields that are `generate` flags (and query parameters). */
const FLAGS = ["prompt", "negative-prompt", "guidance", "width", "height", "steps", "seed", "search", "budget", "verifier", "batch", "model", "reward-model", "reward-processor"] as const;
type Flag = (typeof FLAGS)[number];
const MODEL_DEFAULTS = { model: "klein-4b", "reward-model": "pickscore", "reward-processor": "clip-h14-processor" } as const;

const $ = <T extends HTMLElement>(sel: string) => document.querySelector(sel) as T;
const form = $<HTMLFormElement>("#settings");
const field = (name: Flag | "opfs") => form.elements.namedItem(name) as HTMLInputElement;
const ui = {
  adapter: $("#adapter"),
  status: $("#status"),
  error: $("#error"),
  progress: $<HTMLProgressElement>("#progress"),
  eta: $("#eta"),
  best: $("#best"),
  bestImg: $<HTMLImageElement>("#best img"),
  bestCaption: $("#best figcaption"),
  png: $<HTMLAnchorElement>("#download-png"),
  json: $<HTMLAnchorElement>("#download-json"),
  plot: $("#plot") as unknown as SVGSVGElement,
  gallery: $("#gallery"),
  count: $("#count"),
  generate: $<HTMLButtonElement>("#generate"),
  cacheInfo: $("#cache-info"),
  refFiles: $<HTMLInputElement>("#ref-files"),
  refThumbs: $("#ref-thumbs"),
  refNote: $("#ref-note"),
  clearRefs: $<HTMLButtonElement>("#clear-refs"),
};

/** The reference images of the next run (editing mode), in order; never put in the address bar. */
let references: LoadedReference[] = [];
/** References the link's run used (refs=N) that are not added yet. */
let refsWanted = 0;

// ---- settings <-> form <-> query string ----------------------------------------------------------------------

function fillForm(q: URLSearchParams): void {
  for (const f of FLAGS) {
    const v = q.get(f);
    if (v !== null) field(f).value = v;
  }
}

function readForm(): { settings: GenerationSettings; names: Record<keyof typeof MODEL_DEFAULTS, string> } {
  const num = (f: Flag, def?: number) => {
    const raw = field(f).value.trim();
    if (raw === "") {
      if (def === undefined) throw new Error(`${f} is required`);
      return def;
    }
    const n = Number(raw);
    if (!Number.isFinite(n)) throw new Error(`${f} must be a number, got "${raw}"`);
    return n;
  };
  const search = field("search").value;
  if (!isSearchName(search)) throw new Error(`unknown search "${search}"`);
  const verifier = field("verifier").value as VerifierName;
  const steps = field("steps").value.trim();
  const guidance = field("guidance").value.trim();
  const negative = field("negative-prompt").value;
  const settings: GenerationSettings = {
    prompt: field("prompt").value,
    negativePrompt: negative === "" ? undefined : negative,
    guidance: guidance === "" ? undefined : num("guidance"),
    width: num("width", 1024),
    height: num("height", 1024),
    steps: steps === "" ? undefined : num("steps"),
    seed: num("seed", 0),
    search,
    budget: num("budget", search === "none" ? 1 : 50),
    verifier,
    batch: num("batch", 1),
    references,
  };
  const name = (f: keyof typeof MODEL_DEFAULTS) => field(f).value.trim() || MODEL_DEFAULTS[f];
  return { settings, names: { model: name("model"), "reward-model": name("reward-model"), "reward-processor": name("reward-processor") } };
}

/** The address bar mirrors the settings of the current run (without autorun, so reloading does not restart it). */
function writeQuery(): void {
  const q = new URLSearchParams();
  for (const f of FLAGS) if (field(f).value.trim() !== "") q.set(f, field(f).value);
  if (references.length) q.set("refs", String(references.length));
  history.replaceState(null, "", `${location.pathname}?${q}`);
}

/** A model name as a URL: registry alias or owner/name → the server's cache route; URLs and paths as given. */
function modelUrl(flag: string, v: string): string {
  if (/^(https?:\/\/|\/|\.\.?\/)/.test(v)) return v;
  const repo = registryEntry(v)?.repos.modelscope ?? v;
  if (!/^[\w.-]+\/[\w.-]+$/.test(repo)) {
    throw new Error(`${flag} "${v}" is not an alias (${REGISTRY.map((r) => r.name).join(", ")}), an owner/name repo id or a URL`);
  }
  return `/models/${repo}`;
}

// ---- models -----------------------------------------------------------------------------------------------------

let device: Promise<Device> | undefined;
let loaded: { key: string; models: GenerationModels } | undefined;
/** Why the device was lost (e.g. the browser's GPU process crashed): the reason a run failed, and a new device next. */
let lost: string | undefined;

function openDevice(): Promise<Device> {
  return (device ??= Device.open().then((dev) => {
    lost = undefined;
    void dev.lost.then((line) => {
      lost = line;
      device = undefined;
      loaded = undefined;
      // Said on the page at once, not only when a run fails (the loss may come while idle).
      ui.error.textContent = `${line}; the next run opens a new device`;
      ui.error.hidden = false;
      if (!running) document.body.dataset.state = "error";
    });
    return dev;
  }));
}

async function loadModels(dev: Device, names: ReturnType<typeof readForm>["names"], prompts: string[], vaeEncoder: boolean): Promise<GenerationModels> {
  const key = JSON.stringify([names, prompts, vaeEncoder]);
  if (loaded?.key === key) return loaded.models;
  if (loaded) {
    loaded.models.scorer.dispose();
    loaded.models.pipe.dispose();
    loaded = undefined;
  }
  const dir = modelUrl("model", names.model);
  status(`loading ${names.model} from ${dir}`);
  // memoryBudget 0, as the CLI: the prompts are known, so the text encoder is freed before the transformer loads.
  const pipe = await Flux2Pipeline.load(dev, { dir, prompts, memoryBudget: 0, vaeEncoder }).catch((e) => {
    throw new Error(`cannot load model ${names.model} (${dir}): ${(e as Error).message}`);
  });
  status(`loading ${names["reward-model"]}`);
  try {
    const scorer = await PickScore.load(dev, { model: modelUrl("reward-model", names["reward-model"]), processor: modelUrl("reward-processor", names["reward-processor"]) });
    loaded = { key, models: { pipe, scorer } };
    return loaded.models;
  } catch (e) {
    pipe.dispose();
    throw new Error(`cannot load the reward model: ${(e as Error).message}`);
  }
}

// ---- gallery, best, plot ----------------------------------------------------------------------------------------

interface Point {
  evals: number;
  nfe: number;
  score: number;
  best: number;
}
let points: Point[] = [];
let cards = new Map<number, HTMLElement>();
let bestShown: { index: number; score: number } | undefined;
let runStart = 0;

function status(text: string): void {
  ui.status.textContent = text;
}

function rgbaCanvas(img: { width: number; height: number; data: Uint8Array }): HTMLCanvasElement {
  const c = document.createElement("canvas");
  c.width = img.width;
  c.height = img.height;
  const rgba = new ImageData(img.width, img.height);
  for (let p = 0; p < img.width * img.height; p++) {
    rgba.data.set(img.data.subarray(p * 3, p * 3 + 3), p * 4);
    rgba.data[p * 4 + 3] = 255;
  }
  c.getContext("2d")!.putImageData(rgba, 0, 0);
  return c;
}

function markBest(index: number, score: number, dataUrl?: string): void {
  cards.get(bestShown?.index ?? -1)?.classList.remove("best");
  cards.get(index)?.classList.add("best");
  bestShown = { index, score };
  if (dataUrl) ui.bestImg.src = dataUrl;
  ui.best.dataset.score = String(score);
  ui.best.dataset.index = String(index);
}

async function addCandidate(e: CandidateEvent): Promise<void> {
  const rgb = await imageRgb8(e.image);
  const canvas = rgbaCanvas(rgb);
  const card = document.createElement("figure");
  card.className = "card";
  card.dataset.index = String(e.index);
  card.dataset.score = String(e.score);
  card.dataset.generation = String(e.generation);
  card.dataset.seconds = ((performance.now() - runStart) / 1000).toFixed(3); // since Generate: steady-state timing
  const img = document.createElement("img");
  img.src = canvas.toDataURL();
  img.alt = `candidate ${e.index}`;
  const cap = document.createElement("figcaption");
  cap.innerHTML = `<span class="score">${e.score.toFixed(5)}</span><br>#${e.index} · gen ${e.generation}`;
  card.append(img, cap);
  ui.gallery.append(card);
  cards.set(e.index, card);
  ui.count.textContent = `${e.evals} / ${e.budget}`;
  // A new best: this candidate's score is the running best and beats (or, in a new paths round, replaces) the shown one.
  if (e.score === e.best && (!bestShown || e.best !== bestShown.score)) {
    markBest(e.index, e.score, img.src);
    ui.bestCaption.textContent = `candidate ${e.index} · score ${e.score.toFixed(6)} · gen ${e.generation}`;
  }
  points.push({ evals: e.evals, nfe: e.nfe, score: e.score, best: e.best });
  drawPlot();
  ui.progress.value = e.evals / e.budget;
  ui.eta.textContent = `${e.evals}/${e.budget} scored · ${e.nfe} NFE · ETA ${formatSeconds(e.etaSeconds)}`;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function drawPlot(): void {
  const W = 480, H = 260, L = 52, R = 12, T = 26, B = 30;
  const plot = ui.plot;
  plot.replaceChildren();
  if (!points.length) return;
  const maxE = Math.max(1, ...points.map((p) => p.evals));
  let lo = Math.min(...points.map((p) => p.score)), hi = Math.max(...points.map((p) => p.score));
  if (hi - lo < 1e-9) (lo -= 0.5e-3), (hi += 0.5e-3);
  const x = (e: number) => L + ((W - L - R) * e) / maxE;
  const y = (s: number) => T + (H - T - B) * (1 - (s - lo) / (hi - lo));
  plot.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }), svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  const ticks = Math.min(maxE, 6);
  for (let i = 0; i <= ticks; i++) {
    const e = Math.round((maxE * i) / ticks);
    const nfe = e === 0 ? 0 : (points.find((p) => p.evals >= e) ?? points[points.length - 1]).nfe;
    plot.append(svg("text", { x: x(e), y: H - B + 14, "text-anchor": "middle" }, String(e)), svg("text", { x: x(e), y: T - 8, "text-anchor": "middle" }, String(nfe)));
  }
  for (const s of [lo, (lo + hi) / 2, hi]) plot.append(svg("text", { x: L - 4, y: y(s) + 3, "text-anchor": "end" }, s.toFixed(4)));
  plot.append(svg("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, "evaluations"), svg("text", { x: L - 40, y: T - 8 }, "NFE"));
  for (const p of points) plot.append(svg("circle", { class: "all", cx: x(p.evals), cy: y(p.score), r: 2.5 }));
  const path = points.map((p, i) => `${i ? "L" : "M"}${x(p.evals).toFixed(1)},${y(p.best).toFixed(1)}`).join("");
  plot.append(svg("path", { class: "best", d: path }));
}

function resetResults(): void {
  points = [];
  cards = new Map();
  bestShown = undefined;
  ui.gallery.replaceChildren();
  ui.plot.replaceChildren();
  ui.count.textContent = "";
  ui.bestImg.removeAttribute("src");
  ui.bestCaption.textContent = "";
  ui.best.dataset.score = "";
  for (const a of [ui.png, ui.json]) {
    if (a.href) URL.revokeObjectURL(a.href);
    a.removeAttribute("href");
    a.setAttribute("aria-disabled", "true");
  }
  ui.progress.value = 0;
  ui.eta.textContent = "";
  ui.error.hidden = true;
}

function offer(a: HTMLAnchorElement, blob: Blob, name: string): void {
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.setAttribute("aria-disabled", "false");
}

async function showCacheInfo(): Promise<void> {
  const bytes = await opfsCacheBytes();
  ui.cacheInfo.textContent = bytes ? `${(bytes / 2 ** 20).toFixed(1)} MiB kept in this browser` : "";
}

// ---- a run ------------------------------------------------------------------------------------------------------

let running = false;

async function run(): Promise<void> {
  if (running) return;
  running = true;
  ui.generate.disabled = true;
  resetResults();
  runStart = performance.now();
  document.body.dataset.state = "running";
  try {
    const { settings, names } = readForm();
    writeQuery();
    if (field("opfs").checked) await enableOpfsCache();
    else disableOpfsCache();
    const dev = await openDevice();
    ui.adapter.textContent = dev.describe();
    const fetched0 = opfsStats.fetchedBytes;
    if (refsWanted > references.length) throw new Error(`this link's run used ${refsWanted} reference image(s): add them again (references are not part of links)`);
    const models = await loadModels(dev, names, [settings.prompt, settings.negativePrompt ?? ""], references.length > 0);
    status(`running ${settings.search} with ${settings.verifier}`);
    const onEvent = async (e: GenerationEvent) => {
      if (e.kind === "candidate") return addCandidate(e);
      const done = e.evals + (e.steps ? (e.step / e.steps) * e.candidates : e.candidates);
      ui.progress.value = Math.min(1, done / Math.max(1, settings.search === "none" ? 1 : settings.budget));
    };
    const { image, log } = await generateWithSearch(models, settings, { onEvent });
    let rgb;
    try {
      rgb = await imageRgb8(image);
    } finally {
      image.dispose();
    }
    const png = new Blob([encodePng(rgb) as Uint8Array<ArrayBuffer>], { type: "image/png" });
    const stem = `flux2ts-${log.settings.search}-seed${log.settings.seed}`;
    const runLog = { models: { model: names.model, rewardModel: names["reward-model"], rewardProcessor: names["reward-processor"] }, ...log };
    offer(ui.png, png, `${stem}.png`);
    offer(ui.json, new Blob([JSON.stringify(runLog, null, 1) + "\n"], { type: "application/json" }), `${stem}.json`);
    markBest(log.bestIndex, log.bestScore, ui.png.href);
    ui.bestCaption.textContent = `candidate ${log.bestIndex} · score ${log.bestScore.toFixed(6)} · gen ${log.candidates.find((c) => c.index === log.bestIndex)?.generation ?? 0}`;
    ui.progress.value = 1;
    const per = log.seconds / log.evals;
    ui.best.dataset.secondsPerCandidate = String(per);
    const net = opfsStats.fetchedBytes - fetched0;
    status(`done: ${log.evals} evaluations, ${log.nfe} NFE in ${log.seconds.toFixed(1)} s (${per.toFixed(2)} s per candidate)` + (field("opfs").checked ? `; ${(net / 2 ** 20).toFixed(1)} MiB of model files fetched, the rest read from the browser cache` : ""));
    ui.eta.textContent = `${log.evals}/${log.evals} scored · ${log.nfe} NFE`;
    document.body.dataset.state = "done";
  } catch (e) {
    ui.error.textContent = (lost && !(e instanceof DeviceLostError) ? `${lost}; ` : "") + String((e as Error).message ?? e);
    ui.error.hidden = false;
    status("failed");
    console.error(e);
    document.body.dataset.state = "error";
  } finally {
    running = false;
    ui.generate.disabled = false;
    void showCacheInfo();
  }
}

// ---- reference images ---------------------------------------------------------------------------------------------

function showReferences(): void {
  ui.refThumbs.replaceChildren(
    ...references.map((r, i) => {
      const c = rgbaCanvas(r.image);
      c.className = "ref-thumb";
      c.title = `${i + 1}: ${r.file} (${r.width}×${r.height}, SHA-256 ${r.sha256.slice(0, 12)}…)`;
      return c;
    }),
  );
  ui.clearRefs.hidden = !references.length;
  const missing = refsWanted - references.length;
  ui.refNote.textContent = missing > 0
    ? `this link's run used ${refsWanted} reference image(s): add them again (references are not part of links)`
    : references.length ? `${references.length} reference(s), kept in this page only` : "or drop PNG/JPEG files here; they stay in this page, not in links";
}

/** Decodes, checks and hashes added files (as `generate --ref`); the first reference sets the output size. */
async function addReferences(files: readonly File[]): Promise<void> {
  try {
    const added = await loadReferences(await Promise.all(files.map(async (f) => ({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) }))));
    if (!references.length && added.length) {
      const size = referenceSize(added[0].width, added[0].height, 16, added[0].file);
      field("width").value = String(size.width);
      field("height").value = String(size.height);
    }
    references = [...references, ...added];
    ui.error.hidden = true;
  } catch (e) {
    ui.error.textContent = `reference ${(e as Error).message}`;
    ui.error.hidden = false;
  }
  showReferences();
}

ui.refFiles.addEventListener("change", () => {
  void addReferences(Array.from(ui.refFiles.files ?? [])).then(() => (ui.refFiles.value = ""));
});
const drop = $("#ref-drop");
drop.addEventListener("dragover", (ev) => ev.preventDefault());
drop.addEventListener("drop", (ev) => {
  ev.preventDefault();
  void addReferences(Array.from(ev.dataTransfer?.files ?? []));
});
ui.clearRefs.addEventListener("click", () => {
  references = [];
  showReferences();
});

// ---- wiring -------------------------------------------------------------------------------------------------------

for (const v of VERIFIER_NAMES) field("verifier").append(new Option(v, v, v === "pickscore", v === "pickscore"));
$("#known-models").replaceChildren(...REGISTRY.map((r) => new Option(r.description, r.name)));
fillForm(new URLSearchParams(location.search));
refsWanted = Number(new URLSearchParams(location.search).get("refs") ?? 0) || 0;
showReferences();
form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  void run();
});
$("#copy-link").addEventListener("click", () => {
  writeQuery();
  void navigator.clipboard?.writeText(location.href);
});
$("#clear-cache").addEventListener("click", () => void clearOpfsCache().then(showCacheInfo));
if (!("gpu" in navigator)) ui.adapter.textContent = "this browser has no WebGPU (Chrome/Edge 113+, or enable it)";
void showCacheInfo();
if (new URLSearchParams(location.search).get("autorun") === "1" && !refsWanted) void run();
