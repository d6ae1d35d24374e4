// `flux2ts serve`: the browser app on 127.0.0.1. The server only serves files; generation, scoring and search run
// in the page on its own WebGPU device.
// - The app: web/index.html and style.css as they are, web/app.ts bundled at start into one ES module by the
//   runtime's own bundler (Bun.build under Bun, `deno bundle` under Deno), written to .cache/web/ (gitignored) and
//   served from memory. The npm package ships the bundle prebuilt (dist/web/app.js beside index.html, made by
//   pack/build.ts), so there, on Node too, nothing is bundled at run time. The in-page self test is test code, so
//   it lives in tests/browser/ (selftest.html, selftest_page.ts: a kernel test file + a reference case); it is
//   bundled on first request, with "bun:test" resolved to tests/browser/page_shim.ts.
// - Models: /models/<owner>/<name>/<path> from the ModelScope cache (hub/cache.ts layout, MODELSCOPE_CACHE
//   honoured), so a model the CLI downloaded is not downloaded again; `--repos DIR` serves DIR/<owner>/<name>
//   instead (the fixture repos). `--fixtures DIR` serves reference cases under /fixtures/ for the self test.
// - HTTP through node:http (Bun, Deno and Node all have it): GET and HEAD, one byte range per request (FileSource
//   reads use Range; other range forms get the whole file), ETag/Last-Modified (the page's OPFS cache keys on them).
//   Every URL segment is decoded and must be a plain name (no "", ".", "..", slash, backslash or NUL), so no
//   request reaches outside the served folders.
import type { IncomingMessage, ServerResponse } from "node:http";
import { env, fileUrlToPath, joinPath, nodeFs, runtime } from "../core/platform.ts";
import { cacheRoot, repoCacheDir } from "../hub/index.ts";
import { intFlag, parseArgs, strFlag } from "./args.ts";

export const help = `flux2ts serve [--port N] [--repos DIR] [--fixtures DIR]

Serves the browser app on http://127.0.0.1:N/ (default 8787; 0 picks a free port). Open it, type a prompt, pick
the search, verifier and budget, and press Generate: the models run in the page on the browser's WebGPU (Chrome
or Edge 113+, or another browser with WebGPU enabled). The page's query parameters mirror \`generate\`'s flags
(prompt, width, height, steps, seed, search, budget, verifier, model, reward-model, reward-processor) and
autorun=1 starts the run on load, e.g. /?prompt=a+cat&search=ses&budget=8&seed=3&autorun=1

  --port N          port on 127.0.0.1 (default 8787)
  --repos DIR       serve model repos from DIR/<owner>/<name> instead of the ModelScope cache
                    (default cache: $MODELSCOPE_CACHE, else ~/.cache/modelscope/hub, as \`download\` fills it)
  --fixtures DIR    serve reference cases under /fixtures/ (for /selftest.html; default $FLUX2TS_FIXTURES)

Files: /models/<owner>/<name>/<path> (HTTP Range supported), the app at /, the in-page self test at
/selftest.html?case=<fixture case> (a kernel test file and one reference case run in the page).`;

const WEB = fileUrlToPath(new URL("../web/", import.meta.url));
const SELFTEST = fileUrlToPath(new URL("../tests/browser/", import.meta.url));
/** The bundled browser entry points, by the name of the .js they are served as. */
const ENTRIES: Record<string, string> = { app: joinPath(WEB, "app.ts"), selftest: joinPath(SELFTEST, "selftest_page.ts") };
const OUT = fileUrlToPath(new URL("../.cache/web/", import.meta.url));

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  json: "application/json; charset=utf-8",
  png: "image/png",
  svg: "image/svg+xml",
  txt: "text/plain; charset=utf-8",
  md: "text/markdown; charset=utf-8",
  jinja: "text/plain; charset=utf-8",
  safetensors: "application/octet-stream",
};
const typeOf = (path: string) => TYPES[/\.([a-z0-9]+)$/i.exec(path)?.[1].toLowerCase() ?? ""] ?? "application/octet-stream";

/** The browser entry point as one ES module: the prebuilt <name>.js beside index.html when present, else bundled. */
async function script(name: string): Promise<string> {
  const fs = await nodeFs();
  return (await fs.readFile(joinPath(WEB, `${name}.js`), "utf8").catch(() => null)) ?? bundle(name);
}

/** Bundles a browser entry point (ENTRIES) into one ES module; "bun:test" resolves to tests/browser/page_shim.ts. */
export async function bundle(name: string): Promise<string> {
  if (runtime !== "bun" && runtime !== "deno") throw new Error(`${name}.js: not prebuilt in ${WEB}, and only Bun or Deno can bundle ${ENTRIES[name]}`);
  const entry = ENTRIES[name];
  const shim = joinPath(SELFTEST, "page_shim.ts");
  const fs = await nodeFs();
  await fs.mkdir(OUT, { recursive: true });
  const out = joinPath(OUT, `${name}.js`);
  if (runtime === "bun") {
    type BunBuild = (o: object) => Promise<{ success: boolean; logs: unknown[]; outputs: { text(): Promise<string> }[] }>;
    const build = (globalThis as unknown as { Bun: { build: BunBuild } }).Bun.build;
    const r = await build({
      entrypoints: [entry],
      target: "browser",
      format: "esm",
      plugins: [{ name: "bun-test-shim", setup: (b: { onResolve(o: object, f: () => object): void }) => b.onResolve({ filter: /^bun:test$/ }, () => ({ path: shim })) }],
    });
    if (!r.success) throw new Error(`bundling ${entry} failed:\n${r.logs.map(String).join("\n")}`);
    const text = await r.outputs[0].text();
    await fs.writeFile(out, text);
    return text;
  }
  // Deno: the project's import map with "bun:test" pointed at the browser shim.
  const config = JSON.parse(await fs.readFile(new URL("../deno.json", import.meta.url), "utf8")) as { imports: Record<string, string> };
  const root = new URL("../", import.meta.url);
  const imports = Object.fromEntries(Object.entries(config.imports).map(([k, v]) => [k, v.startsWith(".") ? new URL(v, root).href : v]));
  imports["bun:test"] = `file://${shim}`;
  const map = joinPath(OUT, "import_map.json");
  await fs.writeFile(map, JSON.stringify({ imports }));
  const { execFile } = await import("node:child_process");
  const deno = (globalThis as unknown as { Deno: { execPath(): string } }).Deno.execPath();
  const args = ["bundle", "--quiet", "--no-config", `--import-map=${map}`, "--node-modules-dir=manual", "--platform=browser", "--format=esm", "-o", out, entry];
  await new Promise<void>((resolve, reject) =>
    execFile(deno, args, { cwd: fileUrlToPath(root) }, (err, _stdout, stderr) => (err ? reject(new Error(`bundling ${entry} failed:\n${stderr || err.message}`)) : resolve())),
  );
  return fs.readFile(out, "utf8");
}

/** The path segments of a URL path, decoded; null when any segment is not a plain file name. */
export function safeSegments(urlPath: string): string[] | null {
  if (!urlPath.startsWith("/")) return null;
  const segs = urlPath === "/" ? [] : urlPath.slice(1).split("/");
  const out: string[] = [];
  for (const raw of segs) {
    let s: string;
    try {
      s = decodeURIComponent(raw);
    } catch {
      return null;
    }
    if (s === "" || s === "." || s === ".." || /[/\\\0]/.test(s)) return null;
    out.push(s);
  }
  return out;
}

/** A single satisfiable byte range of `bytes=a-b`, `bytes=a-` or `bytes=-n`; "invalid" → 416; null → whole file. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | "invalid" | null {
  const m = header ? /^bytes=(\d*)-(\d*)$/.exec(header.trim()) : null;
  if (!m || (m[1] === "" && m[2] === "")) return null;
  let start: number, end: number;
  if (m[1] === "") {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  return start > end || start >= size ? "invalid" : { start, end };
}

export interface ServeOptions {
  port: number;
  /** Folder of <owner>/<name> repos; default the ModelScope cache. */
  repos?: string;
  /** Reference fixtures served under /fixtures/. */
  fixtures?: string;
}

/** Starts the server (the app is read or bundled first); resolves once it listens. */
export async function startServer(opts: ServeOptions): Promise<{ url: string; close(): Promise<void> }> {
  const fs = await nodeFs();
  const http = await import("node:http");
  const bundles = new Map<string, Promise<string>>([["app", script("app")]]);
  await bundles.get("app");

  const repoFolder = (owner: string, name: string) => (opts.repos ? joinPath(opts.repos, owner, name) : repoCacheDir(`${owner}/${name}`));

  async function sendFile(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const st = await fs.stat(path).catch(() => null);
    if (!st?.isFile()) return void res.writeHead(404, { "content-type": TYPES.txt }).end("not found\n");
    const etag = `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
    const headers: Record<string, string | number> = {
      "content-type": typeOf(path),
      "accept-ranges": "bytes",
      "last-modified": st.mtime.toUTCString(),
      etag,
      "cache-control": "no-cache",
    };
    const range = parseRange(req.headers.range, st.size);
    if (range === "invalid") return void res.writeHead(416, { ...headers, "content-range": `bytes */${st.size}` }).end();
    const { start, end } = range ?? { start: 0, end: st.size - 1 };
    if (range) headers["content-range"] = `bytes ${start}-${end}/${st.size}`;
    headers["content-length"] = Math.max(0, end - start + 1);
    res.writeHead(range ? 206 : 200, headers);
    if (req.method === "HEAD" || st.size === 0) return void res.end();
    const { createReadStream } = await import("node:fs");
    await new Promise<void>((resolve) => {
      const s = createReadStream(path, { start, end });
      s.on("error", () => (res.destroy(), resolve()));
      s.on("end", resolve);
      s.pipe(res);
    });
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== "GET" && req.method !== "HEAD") return void res.writeHead(405, { allow: "GET, HEAD" }).end();
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    const segs = safeSegments(path);
    if (!segs) return void res.writeHead(400, { "content-type": TYPES.txt }).end("bad path\n");
    const [head, ...rest] = segs;
    if (segs.length === 0) return sendFile(req, res, joinPath(WEB, "index.html"));
    if (segs.length === 1 && /^index\.html$|^style\.css$/.test(head)) return sendFile(req, res, joinPath(WEB, head));
    if (segs.length === 1 && head === "selftest.html") return sendFile(req, res, joinPath(SELFTEST, head));
    if (segs.length === 1 && /^(app|selftest)\.js$/.test(head)) {
      const name = head.slice(0, -3);
      if (!bundles.has(name)) bundles.set(name, script(name));
      const body = new TextEncoder().encode(await bundles.get(name)!);
      res.writeHead(200, { "content-type": TYPES.js, "content-length": body.length, "cache-control": "no-cache" });
      return void res.end(req.method === "HEAD" ? undefined : body);
    }
    if (head === "models" && rest.length >= 3) {
      let dir: string;
      try {
        dir = repoFolder(rest[0], rest[1]);
      } catch {
        return void res.writeHead(404, { "content-type": TYPES.txt }).end("not a repo id\n");
      }
      return sendFile(req, res, joinPath(dir, ...rest.slice(2)));
    }
    if (head === "fixtures" && opts.fixtures && rest.length >= 1) return sendFile(req, res, joinPath(opts.fixtures, ...rest));
    res.writeHead(404, { "content-type": TYPES.txt }).end("not found\n");
  }

  const server = http.createServer((req, res) => {
    route(req, res).catch((e) => {
      if (!res.headersSent) res.writeHead(500, { "content-type": TYPES.txt });
      res.end(`${(e as Error).message}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}/`, close: () => new Promise((r) => server.close(() => r())) };
}

export async function run(args: string[]): Promise<number> {
  const p = parseArgs(args, ["port", "repos", "fixtures"]);
  const { url } = await startServer({
    port: intFlag(p, "port", 8787, 0, 65535),
    repos: strFlag(p, "repos"),
    fixtures: strFlag(p, "fixtures") ?? env("FLUX2TS_FIXTURES"),
  });
  console.log(`flux2ts serve: ${url}  (models from ${strFlag(p, "repos") ?? cacheRoot()}; Ctrl-C stops)`);
  await new Promise(() => {}); // serve until the process is stopped
  return 0;
}
