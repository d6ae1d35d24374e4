// resolveModel: a name (local folder, registry alias or owner/name) to a local folder in the repo's real layout.
// Order of work, so later runs need no network: (1) a local folder is used as is; (2) the manifest in the cache
// answers which files the selection needs, and if all are there, verified and of the listed size, we are done;
// (3) offline: a cache without our manifest (the modelscope library's) is accepted when the selection's files are
// present, else a clear error; (4) online: list, select, keep local files that match the listing (hashing those we
// did not verify ourselves), download the rest a few at a time, and record what was verified.
// Checks that are weaker than a checksum are said, through `onWarning` (default: the console's warning stream): a
// listing entry without a checksum is verified by size only, and an offline run on a cache without our manifest
// uses the files unverified (there is no listing to check them against).
import { joinPath, nodeFs } from "../core/platform.ts";
import { cacheRoot, localFiles, localSize, readManifest, repoDir, splitRepo, tempPath, writeManifest } from "./cache.ts";
import { downloadFile } from "./download.ts";
import { fileMatches } from "./hash.ts";
import { HubError, type RetryPolicy } from "./http.ts";
import { fnmatch, selectPaths } from "./pattern.ts";
import { autoSelect, REGISTRY, registryEntry } from "./registry.ts";
import { makeSource, type RepoFile, type SourceKind } from "./source.ts";

export interface HubOptions {
  /** Default: MODELSCOPE_ENDPOINT (or https://MODELSCOPE_DOMAIN) or https://www.modelscope.cn; HF: HF_ENDPOINT or https://huggingface.co. */
  endpoint?: string;
  source?: SourceKind;
  offline?: boolean;
  /** Default: MODELSCOPE_CACHE or ~/.cache/modelscope/hub. */
  cacheDir?: string;
  /** Default "master" (Hugging Face: "main"). */
  revision?: string;
  onProgress?: (p: { repo: string; path: string; bytes: number; total: number; done: boolean }) => void;
  /** Says when files are checked less than fully (size only, or not at all); default console.warn. */
  onWarning?: (message: string) => void;
  /** Files downloaded at once (default 4). */
  concurrency?: number;
  /** Retries per request after the first attempt (default 5), the first backoff (default 1000 ms, doubling) and
   *  the time without an answer or a body byte that counts as a network error (default 60 s). */
  retries?: number;
  retryDelayMs?: number;
  timeoutMs?: number;
}

/** Where a repo lives in the cache. */
export function repoCacheDir(repo: string, opts: HubOptions = {}): string {
  return repoDir(cacheRoot(opts.cacheDir), repo);
}

interface Target {
  repo: string;
  /** Paths of the repo the loaders need. */
  pick(paths: readonly string[]): string[];
  /** Patterns that must each match a picked path. */
  required: readonly string[];
}

async function isDir(path: string): Promise<boolean> {
  const st = await (await nodeFs()).stat(path).catch(() => undefined);
  return st?.isDirectory() ?? false;
}

function target(name: string, kind: SourceKind): Target {
  const entry = registryEntry(name);
  if (entry) return { repo: entry.repos[kind], pick: (p) => selectPaths(p, entry.allow), required: entry.required };
  try {
    splitRepo(name);
  } catch {
    throw new HubError(`"${name}" is not a local folder, a known model (${REGISTRY.map((e) => e.name).join(", ")}) or a repo id owner/name`);
  }
  return { repo: name, pick: autoSelect, required: [] };
}

/** The listed files the target needs; errors when a required pattern matches nothing. */
function choose(t: Target, files: readonly RepoFile[], where: string): RepoFile[] {
  const picked = new Set(t.pick(files.map((f) => f.path)));
  const missing = t.required.filter((g) => ![...picked].some((p) => fnmatch(p, g)));
  if (missing.length) throw new HubError(`${t.repo}: ${where} has no file matching ${missing.map((g) => JSON.stringify(g)).join(", ")}`);
  if (!picked.size) throw new HubError(`${t.repo}: ${where} has no files to download`);
  return files.filter((f) => picked.has(f.path));
}

async function pool<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const worker = async () => {
    while (!errors.length && next < items.length) {
      const item = items[next++];
      await fn(item).catch((e) => void errors.push(e));
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  if (errors.length) throw errors[0];
}

/** A local folder in the repo's real layout holding the files the model needs; downloads what is missing. */
export async function resolveModel(nameOrPath: string, opts: HubOptions = {}): Promise<string> {
  if (await isDir(nameOrPath)) return nameOrPath;
  const kind = opts.source ?? "modelscope";
  if (kind !== "modelscope" && kind !== "huggingface") throw new HubError(`unknown source "${kind}" (modelscope or huggingface)`);
  const t = target(nameOrPath, kind);
  const source = makeSource(kind, opts.endpoint, opts.revision);
  const root = cacheRoot(opts.cacheDir);
  const dir = repoDir(root, t.repo);
  const progress = opts.onProgress ?? (() => {});
  const done = (f: RepoFile) => progress({ repo: t.repo, path: f.path, bytes: f.size, total: f.size, done: true });
  const sized = async (f: RepoFile) => (await localSize(joinPath(dir, f.path))) === f.size;
  const warn = opts.onWarning ?? ((m: string) => console.warn(`warning: ${m}`));

  const manifest = await readManifest(dir, kind, source.revision);
  if (manifest) {
    const ok = new Set(manifest.verified);
    const need = choose(t, manifest.files, "the cached listing");
    if ((await Promise.all(need.map(async (f) => ok.has(f.path) && (await sized(f))))).every(Boolean)) {
      need.forEach(done);
      return dir;
    }
  }
  if (opts.offline) {
    if (!manifest) {
      const have = t.pick(await localFiles(dir));
      if (have.length && t.required.every((g) => have.some((p) => fnmatch(p, g)))) {
        warn(`${t.repo}: using ${dir} unverified: the cache has no flux2ts manifest (listing) to check sizes or checksums against; run "flux2ts download ${nameOrPath}" online once to verify it`);
        return dir;
      }
    }
    throw new HubError(
      `${t.repo} is not${manifest ? " completely" : ""} in the cache (${dir}) and offline mode forbids downloading: ` +
        `run "flux2ts download ${nameOrPath}${kind === "huggingface" ? " --source huggingface" : ""}" while online first`,
    );
  }

  const policy: RetryPolicy = { retries: opts.retries ?? 5, delayMs: opts.retryDelayMs ?? 1000, timeoutMs: opts.timeoutMs ?? 60_000 };
  const files = await source.list(t.repo, policy);
  const need = choose(t, files, `the listing from ${source.endpoint} (revision ${source.revision})`);
  const unsummed = need.filter((f) => !f.sha256 && !f.gitSha1).map((f) => f.path);
  if (unsummed.length) {
    const list = unsummed.length > 5 ? `${unsummed.slice(0, 5).join(", ")} and ${unsummed.length - 5} more` : unsummed.join(", ");
    warn(`${t.repo}: the listing from ${source.endpoint} gives no checksum for ${unsummed.length} file${unsummed.length > 1 ? "s" : ""} (${list}): size-only verification`);
  }
  // Files verified earlier stay verified only while their listing entry is unchanged.
  const before = new Map((manifest?.files ?? []).filter((f) => manifest!.verified.includes(f.path)).map((f) => [f.path, f]));
  const same = (a: RepoFile, b: RepoFile | undefined) => b !== undefined && a.size === b.size && a.sha256 === b.sha256 && a.gitSha1 === b.gitSha1;
  const verified = new Set(files.filter((f) => same(f, before.get(f.path))).map((f) => f.path));
  const todo: RepoFile[] = [];
  for (const f of need) {
    if ((await sized(f)) && (verified.has(f.path) || (await fileMatches(joinPath(dir, f.path), f)))) {
      verified.add(f.path);
      done(f);
    } else {
      verified.delete(f.path);
      todo.push(f);
    }
  }
  try {
    await pool(todo, opts.concurrency ?? 4, async (f) => {
      progress({ repo: t.repo, path: f.path, bytes: 0, total: f.size, done: false });
      const job = { repo: t.repo, file: f, url: source.fileUrl(t.repo, f.path), temp: tempPath(root, t.repo, f.path), dest: joinPath(dir, f.path) };
      await downloadFile(job, policy, (bytes) => progress({ repo: t.repo, path: f.path, bytes, total: f.size, done: false }));
      verified.add(f.path);
      done(f);
    });
  } finally {
    await writeManifest(dir, { repo: t.repo, source: kind, endpoint: source.endpoint, revision: source.revision, files, verified: [...verified] });
  }
  return dir;
}
