// The one place that knows which runtime we are on.
// WebGPU: `navigator.gpu` (Deno, browsers) or Dawn's node bindings (npm `webgpu`, Bun and Node).
// Files: the node:fs API (Bun, Deno and Node all have it) or `fetch` with Range requests in a browser.
// Everything above core/ reads files only through `openFile` and gets its GPU only through `gpu()`.

const DAWN_KEY = Symbol.for("flux2ts.dawn");
type Global = typeof globalThis & { [DAWN_KEY]?: GPU; Deno?: unknown; Bun?: unknown; process?: { versions?: { node?: string } } };
const g = globalThis as Global;

export const runtime: "bun" | "deno" | "node" | "browser" =
  g.Bun ? "bun" : g.Deno ? "deno" : g.process?.versions?.node ? "node" : "browser";

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

type Fs = typeof import("node:fs/promises");
let fsModule: Promise<Fs> | undefined;
export function nodeFs(): Promise<Fs> {
  const name = "node:fs/promises";
  return (fsModule ??= import(name) as Promise<Fs>);
}

export function openFile(path: string): FileSource {
  return isUrl(path) ? urlSource(path) : fsSource(path);
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

function urlSource(url: string): FileSource {
  let size: number | undefined;
  return {
    name: url,
    async size() {
      if (size !== undefined) return size;
      const r = await fetch(url, { method: "HEAD" });
      if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
      size = Number(r.headers.get("content-length"));
      return size;
    },
    async read(offset, length) {
      const r = await fetch(url, { headers: { Range: `bytes=${offset}-${offset + length - 1}` } });
      if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
      const buf = new Uint8Array(await r.arrayBuffer());
      // A server that ignores Range answers 200 with the whole file.
      const out = r.status === 206 ? buf : buf.subarray(offset, offset + length);
      if (out.length !== length) throw new Error(`${url}: short read at byte ${offset}`);
      return out;
    },
  };
}

export async function readText(path: string): Promise<string> {
  const f = openFile(path);
  return new TextDecoder().decode(await f.read(0, await f.size()));
}

export async function exists(path: string): Promise<boolean> {
  try {
    await openFile(path).size();
    return true;
  } catch {
    return false;
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
