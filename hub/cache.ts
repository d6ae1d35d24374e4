// The on-disk cache, laid out like the modelscope library's so both reuse each other's files:
//   <root>/models/<owner>/<name with "." written "___">/<repo path>   root = cacheDir, MODELSCOPE_CACHE or
//   ~/.cache/modelscope/hub. Partial downloads live in <root>/._____temp/<owner>/<name>/<path> (the SDK's temp
//   folder name), never under the repo folder, so a loader never sees a half-written file.
// Beside the files, a manifest per (source, revision) keeps the listing and which files were verified against it:
// with it a later run knows what the model needs without asking the network.
import { env, joinPath, nodeFs } from "../core/platform.ts";
import { homeDir } from "./env.ts";
import type { RepoFile, SourceKind } from "./source.ts";

export function cacheRoot(cacheDir?: string): string {
  return cacheDir || env("MODELSCOPE_CACHE") || joinPath(homeDir(), ".cache", "modelscope", "hub");
}

const mangle = (name: string) => name.replace(/\./g, "___");

export function splitRepo(repo: string): [string, string] {
  const m = /^([\w.-]+)\/([\w.-]+)$/.exec(repo);
  if (!m || [m[1], m[2]].some((s) => /^\.+$/.test(s))) throw new Error(`"${repo}" is not a repo id of the form owner/name`);
  return [m[1], m[2]];
}

export function repoDir(root: string, repo: string): string {
  const [owner, name] = splitRepo(repo);
  return joinPath(root, "models", owner, mangle(name));
}

export function tempPath(root: string, repo: string, path: string): string {
  const [owner, name] = splitRepo(repo);
  return joinPath(root, "._____temp", owner, mangle(name), path);
}

export interface Manifest {
  repo: string;
  source: SourceKind;
  endpoint: string;
  revision: string;
  /** The whole listing (all blobs), so any selection can be answered offline. */
  files: RepoFile[];
  /** Paths whose local copy was checked (downloaded or hashed) against the listing. */
  verified: string[];
}

const manifestPath = (dir: string, source: SourceKind, revision: string) =>
  joinPath(dir, `.flux2ts-${source}-${encodeURIComponent(revision)}.json`);

export async function readManifest(dir: string, source: SourceKind, revision: string): Promise<Manifest | undefined> {
  const fs = await nodeFs();
  try {
    const m = JSON.parse(await fs.readFile(manifestPath(dir, source, revision), "utf8")) as Manifest;
    return Array.isArray(m.files) && Array.isArray(m.verified) ? m : undefined;
  } catch {
    return undefined;
  }
}

/** Written to a temp name of its own and renamed, so neither a crash nor a second writer leaves a half-written manifest. */
export async function writeManifest(dir: string, m: Manifest): Promise<void> {
  const fs = await nodeFs();
  const path = manifestPath(dir, m.source, m.revision);
  const tmp = `${path}.${Date.now()}-${Math.random().toString(36).slice(2)}.tmp`;
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(tmp, JSON.stringify(m));
  await fs.rename(tmp, path);
}

/** Size of a local file, or -1 when it is not a regular file. */
export async function localSize(path: string): Promise<number> {
  const st = await (await nodeFs()).stat(path).catch(() => undefined);
  return st?.isFile() ? st.size : -1;
}

/** Repo-relative paths of the regular files under a folder, hidden bookkeeping files (ours, the SDK's .msc/.mv) excluded. */
export async function localFiles(dir: string, prefix = ""): Promise<string[]> {
  const fs = await nodeFs();
  const out: string[] = [];
  for (const e of await fs.readdir(joinPath(dir, prefix), { withFileTypes: true }).catch(() => [])) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await localFiles(dir, rel)));
    else if (e.isFile() && !e.name.startsWith(".")) out.push(rel);
  }
  return out;
}

export interface CachedRepo {
  repo: string;
  dir: string;
  bytes: number;
  files: number;
}

/** Every repo folder in the cache with its size (ours and the modelscope library's). */
export async function cacheContents(opts: { cacheDir?: string } = {}): Promise<CachedRepo[]> {
  const fs = await nodeFs();
  const models = joinPath(cacheRoot(opts.cacheDir), "models");
  const dirs = async (p: string) => (await fs.readdir(p, { withFileTypes: true }).catch(() => [])).filter((e) => e.isDirectory() && !e.name.startsWith("."));
  const out: CachedRepo[] = [];
  for (const owner of await dirs(models)) {
    for (const name of await dirs(joinPath(models, owner.name))) {
      const dir = joinPath(models, owner.name, name.name);
      const files = await localFiles(dir);
      const sizes = await Promise.all(files.map((f) => localSize(joinPath(dir, f))));
      out.push({ repo: `${owner.name}/${name.name.replace(/___/g, ".")}`, dir, bytes: sizes.reduce((a, b) => a + b, 0), files: files.length });
    }
  }
  return out.sort((a, b) => a.repo.localeCompare(b.repo));
}
