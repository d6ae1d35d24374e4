// The one place that knows which runtime we are on.
// Environment: `env(name)` is the project's one reader of environment variables (Deno.env, else process.env; none
// in a browser).
// WebGPU: `navigator.gpu` (Deno, browsers) or Dawn's node bindings (npm `webgpu`, Bun and Node).
// Files: the node:fs API (Bun, Deno and Node all have it) or `fetch` with Range requests in a browser.
// Everything above core/ reads files only through `openFile` and gets its GPU only through `gpu()`.
// Browser cache: after `enableOpfsCache()`, URL sources keep what they read in the Origin Private File System in
// fixed-size blocks (block i of a file = bytes [i·B, (i+1)·B)), so a reload reads weights from disk, not the network.
// Blocks are keyed by a hash of the absolute URL, the size and the server's validator (ETag or Last-Modified), so a
// changed file never serves stale bytes; a block file appears only once completely written (createWritable commits
// on close), and only the blocks a model actually reads are fetched and kept.

const DAWN_KEY = Symbol.for("flux2ts.dawn");
type Global = typeof globalThis & { [DAWN_KEY]?: GPU; Deno?: unknown; Bun?: unknown; process?: { versions?: { node?: string } } };
const g = globalThis as Global;

export const runtime: "bun" | "deno" | "node" | "browser" =
  g.Bun ? "bun" : g.Deno ? "deno" : g.process?.versions?.node ? "node" : "browser";

type DenoEnv = { env: { get(k: string): string | undefined } };

/** An environment variable; undefined when unset or in a browser. */
export function env(name: string): string | undefined {
  if (runtime === "deno") return (g.Deno as DenoEnv).env.get(name);
  return (g as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name];
}

/**
 * The file path of a file: URL, percent-decoding each character (so "a%20b" is "a b"). Drive letters keep
 * Windows' form with forward slashes ("file:///C:/x" → "C:/x"), a host gives a UNC path ("//host/share/x"); an
 * encoded "/" or "\" is refused, as no file name holds one. Pure, so it runs on every runtime and in a page.
 */
export function fileUrlToPath(url: URL | string): string {
  const u = typeof url === "string" ? new URL(url) : url;
  if (u.protocol !== "file:") throw new Error(`fileUrlToPath: not a file: URL: ${u.href}`);
  if (/%(2f|5c)/i.test(u.pathname)) throw new Error(`fileUrlToPath: an encoded / or \\ in ${u.href}`);
  const path = decodeURIComponent(u.pathname);
  if (u.hostname && u.hostname !== "localhost") return `//${u.hostname}${path}`;
  return /^\/[A-Za-z]:(\/|$)/.test(path) ? path.slice(1) : path;
}

// Dawn's node bindings free their instance when the object returned by `create()` is collected, even while a
// device made from it is in use (use-after-free in event polling). We keep it reachable for the process' life.
export async function gpu(): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  if (g[DAWN_KEY]) return g[DAWN_KEY];
  const pkg = "webgpu"; // a variable so browser bundlers leave it alone
  const dawn = (await import(pkg)) as { create(flags: string[]): GPU; globals: object };
  Object.assign(globalThis, dawn.globals);
  g[DAWN_KEY] = dawn.create([]);
  return g[DAWN_KEY];
}

/** A read-only random-access byte source: a local file or a URL. */
export interface FileSource {
  readonly name: string;
  size(): Promise<number>;
  read(offset: number, length: number): Promise<Uint8Array>;
}

export const isUrl = (p: string) => /^(https?|blob|data):/.test(p) || runtime === "browser";

/** @internal (left out of the .d.ts: its type needs @types/node, which a browser project lacks) */
type Fs = typeof import("node:fs/promises");
let fsModule: Promise<Fs> | undefined;
/** @internal */
export function nodeFs(): Promise<Fs> {
  const name = "node:fs/promises";
  return (fsModule ??= import(name) as Promise<Fs>);
}

export function openFile(path: string): FileSource {
  if (!isUrl(path)) return fsSource(path);
  return opfs && !/^(blob|data):/.test(path) ? opfsSource(path, opfs) : urlSource(path);
}

function fsSource(path: string): FileSource {
  return {
    name: path,
    async size() {
      const fs = await nodeFs();
      return (await fs.stat(path)).size;
    },
    async read(offset, length) {
      const fs = await nodeFs();
      const fh = await fs.open(path, "r");
      try {
        const out = new Uint8Array(length);
        let got = 0;
        while (got < length) {
          const { bytesRead } = await fh.read(out, got, length - got, offset + got);
          if (bytesRead === 0) throw new Error(`${path}: unexpected end of file at byte ${offset + got}`);
          got += bytesRead;
        }
        return out;
      } finally {
        await fh.close();
      }
    },
  };
}

/** An HTTP failure, with its status (which `exists` reads). */
function httpError(url: string, status: number): Error {
  return Object.assign(new Error(`${url}: HTTP ${status}`), { status });
}

interface UrlHead {
  size: number;
  /** ETag or Last-Modified, "" when the server sends neither. */
  validator: string;
}

function urlSource(url: string): FileSource & { head(): Promise<UrlHead> } {
  let head: Promise<UrlHead> | undefined;
  const src = {
    name: url,
    head() {
      return (head ??= fetch(url, { method: "HEAD" }).then((r) => {
        if (!r.ok) {
          head = undefined; // a later call may succeed (file appeared, server restarted)
          throw httpError(url, r.status);
        }
        return { size: Number(r.headers.get("content-length")), validator: r.headers.get("etag") ?? r.headers.get("last-modified") ?? "" };
      }));
    },
    async size() {
      return (await src.head()).size;
    },
    async read(offset: number, length: number) {
      const r = await fetch(url, { headers: { Range: `bytes=${offset}-${offset + length - 1}` } });
      if (!r.ok) throw httpError(url, r.status);
      const buf = new Uint8Array(await r.arrayBuffer());
      // A server that ignores Range answers 200 with the whole file.
      const out = r.status === 206 ? buf : buf.subarray(offset, offset + length);
      if (out.length !== length) throw new Error(`${url}: short read at byte ${offset}`);
      return out;
    },
  };
  return src;
}

// ---- Origin Private File System block cache (browsers) ----------------------------------------------------------

const OPFS_DIR = "flux2ts-files";
let opfs: { dir: FileSystemDirectoryHandle; blockBytes: number } | null = null;
/** Blocks served from the OPFS cache and blocks fetched over the network since the cache was enabled. */
export const opfsStats = { cachedBlocks: 0, fetchedBlocks: 0, fetchedBytes: 0 };

async function opfsRoot(): Promise<FileSystemDirectoryHandle | null> {
  const storage = (globalThis as { navigator?: { storage?: StorageManager } }).navigator?.storage;
  if (runtime !== "browser" || !storage?.getDirectory) return null;
  try {
    return await storage.getDirectory();
  } catch {
    return null; // e.g. a private window without OPFS
  }
}

/**
 * Browsers: from now on, URL sources opened by `openFile` keep the blocks they read in the Origin Private File
 * System and read them from there when present. Returns false (and changes nothing) where OPFS is unavailable.
 */
export async function enableOpfsCache(opts: { blockBytes?: number } = {}): Promise<boolean> {
  const root = await opfsRoot();
  if (!root) return false;
  opfs = { dir: await root.getDirectoryHandle(OPFS_DIR, { create: true }), blockBytes: opts.blockBytes ?? 8 << 20 };
  return true;
}

export function disableOpfsCache(): void {
  opfs = null;
}

/** Deletes every cached block. */
export async function clearOpfsCache(): Promise<void> {
  const root = await opfsRoot();
  await root?.removeEntry(OPFS_DIR, { recursive: true }).catch(() => {});
  if (opfs && root) opfs.dir = await root.getDirectoryHandle(OPFS_DIR, { create: true });
}

/** Bytes the OPFS cache holds. */
export async function opfsCacheBytes(): Promise<number> {
  const root = await opfsRoot();
  if (!root) return 0;
  let total = 0;
  const dir = await root.getDirectoryHandle(OPFS_DIR, { create: true });
  for await (const h of (dir as unknown as { values(): AsyncIterable<FileSystemHandle> }).values()) {
    if (h.kind === "file") total += (await (h as FileSystemFileHandle).getFile()).size;
  }
  return total;
}

async function sha256Hex(text: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(d.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join("");
}

function opfsSource(url: string, cache: { dir: FileSystemDirectoryHandle; blockBytes: number }): FileSource {
  const net = urlSource(url);
  const B = cache.blockBytes;
  let key: Promise<string> | undefined;
  const inflight = new Map<number, Promise<Blob | Uint8Array>>();
  const blockKey = () =>
    (key ??= net.head().then((h) => sha256Hex(`${new URL(url, (globalThis as { location?: { href: string } }).location?.href).href}\n${h.size}\n${h.validator}`)));

  // Block b as the OPFS file when it holds the complete block, else fetched whole and stored. Concurrent reads of
  // one block share one lookup.
  function block(b: number): Promise<Blob | Uint8Array> {
    let p = inflight.get(b);
    if (!p) {
      p = lookup(b).finally(() => inflight.delete(b));
      inflight.set(b, p);
    }
    return p;
  }
  async function lookup(b: number): Promise<Blob | Uint8Array> {
    const name = `${await blockKey()}.${b}`;
    const want = Math.min(B, (await net.size()) - b * B);
    const file = await cache.dir.getFileHandle(name).then((h) => h.getFile(), () => null);
    if (file && file.size === want) {
      opfsStats.cachedBlocks++;
      return file;
    }
    const data = await net.read(b * B, want);
    opfsStats.fetchedBlocks++;
    opfsStats.fetchedBytes += data.length;
    try {
      const w = await (await cache.dir.getFileHandle(name, { create: true })).createWritable();
      await w.write(data as Uint8Array<ArrayBuffer>);
      await w.close();
    } catch {
      // Quota exceeded or OPFS unavailable: the bytes are still good, only not kept.
    }
    return data;
  }

  return {
    name: url,
    size: () => net.size(),
    async read(offset, length) {
      if (offset + length > (await net.size())) throw new Error(`${url}: read of ${length} bytes at ${offset} is past the end`);
      const out = new Uint8Array(length);
      const parts: Promise<void>[] = [];
      for (let b = Math.floor(offset / B); b * B < offset + length; b++) {
        const from = Math.max(offset, b * B) - b * B, to = Math.min(offset + length, (b + 1) * B) - b * B;
        parts.push(
          block(b).then(async (d) => out.set(d instanceof Uint8Array ? d.subarray(from, to) : new Uint8Array(await d.slice(from, to).arrayBuffer()), b * B + from - offset)),
        );
      }
      await Promise.all(parts);
      return out;
    },
  };
}

export async function readText(path: string): Promise<string> {
  const f = openFile(path);
  return new TextDecoder().decode(await f.read(0, await f.size()));
}

/**
 * Whether a file (or URL) is there. Only "no such file" (ENOENT; HTTP 404 or 410) is false: a permission error, a
 * parent that is a file (ENOTDIR), a server error or a dropped connection throws, naming the path, rather than
 * passing for "missing" and sending the caller down the wrong branch.
 */
export async function exists(path: string): Promise<boolean> {
  try {
    await openFile(path).size();
    return true;
  } catch (e) {
    const { code, status } = e as { code?: unknown; status?: unknown };
    if (code === "ENOENT" || status === 404 || status === 410) return false;
    const msg = String((e as Error).message ?? e);
    throw new Error(msg.includes(path) ? msg : `${path}: ${msg}`);
  }
}

/** Joins path segments with "/", resolving "." and "..". Works for URLs and file paths. */
export function joinPath(...parts: string[]): string {
  const joined = parts.filter((p) => p !== "").join("/").replace(/\/+/g, "/").replace(/^(\w+:)\//, "$1//");
  const out: string[] = [];
  for (const seg of joined.split("/")) {
    if (seg === "." && out.length) continue;
    if (seg === ".." && out.length && out[out.length - 1] !== ".." && out[out.length - 1] !== "") out.pop();
    else out.push(seg);
  }
  return out.join("/");
}
