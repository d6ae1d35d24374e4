// `flux2ts download <model>`: fetches a model into the cache (ModelScope layout, shared with the modelscope
// library) and prints its local folder. Progress goes to stderr: on a terminal one live line per file in flight
// (bar, bytes, rate, ETA) redrawn at most ~7 times a second; otherwise one line per finished file. The renderer is
// exported so other commands that resolve models (generate, score) show the same progress.
import { REGISTRY, resolveModel, type HubOptions, type SourceKind } from "../hub/index.ts";
import { parseArgs, strFlag, UsageError } from "./args.ts";
import { stderrIsTty, writeErr } from "./host.ts";

export const help = `flux2ts download <model> [options]

<model> is a known name, a ModelScope repo id owner/name (all files except weight formats flux2ts does not
read) or a local folder (used as is). Known names:
${REGISTRY.map((e) => `  ${e.name.padEnd(20)} ${e.repos.modelscope}\n  ${"".padEnd(20)} ${e.description}`).join("\n")}

  --source s      modelscope (default) or huggingface
  --endpoint URL  hub address (default $MODELSCOPE_ENDPOINT or https://www.modelscope.cn;
                  Hugging Face: $HF_ENDPOINT or https://huggingface.co)
  --revision R    branch, tag or commit (default master; Hugging Face: main)
  --cache DIR     cache root (default $MODELSCOPE_CACHE or ~/.cache/modelscope/hub)
  --offline       never touch the network: only check that the model is cached

Files are downloaded under a temporary name, resumed with HTTP Range after a dropped connection, checked against
the listing's size and sha256, then renamed; a file the listing gives no checksum for is checked by size only,
and --offline on a cache without flux2ts's manifest uses the files unchecked (both say so on stderr). Prints the
model's local folder on stdout.`;

type Stderr = { write(s: string): void; tty: boolean };

const stderr = (): Stderr => ({ write: writeErr, tty: stderrIsTty() });

const units = ["B", "kB", "MB", "GB", "TB"];
function bytes(n: number): string {
  let i = 0;
  while (n >= 1000 && i < units.length - 1) (n /= 1000), i++;
  return `${n.toFixed(i && n < 100 ? 1 : 0)} ${units[i]}`;
}
function duration(s: number): string {
  if (!Number.isFinite(s)) return "--:--";
  const t = Math.round(s);
  const hms = [Math.floor(t / 3600), Math.floor(t / 60) % 60, t % 60];
  return (hms[0] ? `${hms[0]}:` : "") + hms.slice(1).map((v) => String(v).padStart(2, "0")).join(":");
}

interface FileState {
  bytes: number;
  total: number;
  /** Smoothed bytes per second. */
  rate: number;
  lastT: number;
  lastB: number;
  startT: number;
  startB: number;
}

/** Progress display for resolveModel: pass `onProgress` and `onWarning`, call `finish()` when it returns or throws. */
export function downloadProgress(out: Stderr = stderr()): {
  onProgress: NonNullable<HubOptions["onProgress"]>;
  onWarning: NonNullable<HubOptions["onWarning"]>;
  finish(): void;
} {
  const live = new Map<string, FileState>();
  let drawn = 0, lastDraw = 0, cached = 0;
  const pending: string[] = [];
  const line = (path: string, f: FileState) => {
    const frac = f.total ? f.bytes / f.total : 1;
    const bar = "#".repeat(Math.round(frac * 20)).padEnd(20, ".");
    // Before the first smoothing window closes, the average since the start.
    const secs = (Date.now() - f.startT) / 1000;
    const rate = f.rate || (secs > 0 ? (f.bytes - f.startB) / secs : 0);
    const eta = rate > 0 ? (f.total - f.bytes) / rate : Infinity;
    return `${path}  [${bar}] ${(frac * 100).toFixed(0).padStart(3)}%  ${bytes(f.bytes)} / ${bytes(f.total)}  ${bytes(rate)}/s  ETA ${duration(eta)}`;
  };
  const draw = (force: boolean) => {
    const now = Date.now();
    if (!out.tty || (!force && now - lastDraw < 150)) return;
    lastDraw = now;
    let s = drawn ? `\x1b[${drawn}F` : "";
    for (const p of pending.splice(0)) s += `\x1b[2K${p}\n`;
    for (const [path, f] of live) s += `\x1b[2K${line(path, f)}\n`;
    out.write(s + "\x1b[J");
    drawn = live.size;
  };
  return {
    onWarning(m) {
      // Above the live lines on a terminal, like a finished file.
      if (out.tty) pending.push(`warning: ${m}`);
      else out.write(`warning: ${m}\n`);
      draw(true);
    },
    onProgress(p) {
      const now = Date.now();
      let f = live.get(p.path);
      if (p.done) {
        if (!f) return void cached++;
        live.delete(p.path);
        const secs = (now - f.startT) / 1000;
        const msg = `${p.path}  ${bytes(p.total)} in ${duration(secs)}${secs > 0 ? ` (${bytes(p.total / secs)}/s)` : ""}`;
        if (out.tty) pending.push(msg);
        else out.write(msg + "\n");
        return draw(true);
      }
      if (!f) live.set(p.path, (f = { bytes: p.bytes, total: p.total, rate: 0, lastT: now, lastB: p.bytes, startT: now, startB: p.bytes }));
      f.bytes = p.bytes;
      const dt = (now - f.lastT) / 1000;
      if (dt >= 0.25) {
        const inst = (p.bytes - f.lastB) / dt;
        f.rate = f.rate ? 0.7 * f.rate + 0.3 * inst : inst;
        f.lastT = now;
        f.lastB = p.bytes;
      }
      draw(false);
    },
    finish() {
      draw(true);
      if (cached) out.write(`${cached} file${cached > 1 ? "s" : ""} already in the cache\n`);
    },
  };
}

export async function run(args: string[]): Promise<number> {
  const p = parseArgs(args, ["endpoint", "source", "revision", "cache"], ["offline"]);
  if (p.positionals.length !== 1) {
    throw new UsageError("download needs one model", `flux2ts download ${REGISTRY.map((e) => e.name).join(" | ")} | owner/name`);
  }
  const source = strFlag(p, "source", "modelscope");
  if (source !== "modelscope" && source !== "huggingface") throw new UsageError(`--source must be "modelscope" or "huggingface", got "${source}"`);
  const progress = downloadProgress();
  try {
    const dir = await resolveModel(p.positionals[0], {
      source: source as SourceKind,
      endpoint: strFlag(p, "endpoint"),
      revision: strFlag(p, "revision"),
      cacheDir: strFlag(p, "cache"),
      offline: p.flags.has("offline"),
      onProgress: progress.onProgress,
      onWarning: progress.onWarning,
    });
    progress.finish();
    console.log(dir);
    return 0;
  } catch (e) {
    progress.finish();
    // Hub and file-system errors name the repo, file or folder: one line, no stack trace.
    console.error(`flux2ts: ${(e as Error).message}`);
    return 1;
  }
}
