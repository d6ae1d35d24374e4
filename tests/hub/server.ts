// A loopback hub for tests: node:http (so it runs on Bun, Deno and Node) serving a folder of repos
// (<root>/<owner>/<name>/…) through the ModelScope API shapes (recursive listing, file endpoint) and the Hugging
// Face ones (paginated tree listing with Link headers, resolve URLs). File endpoints answer with a 302 to a "CDN"
// path that serves the bytes with Range support, as the real hubs do. Faults are injected at that CDN path (or
// the listing) and each fires a set number of times; every request is logged for assertions.
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { readdir, readFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";

export interface HubFaults {
  /** Close the connection after `afterBytes` body bytes of this file (fires `times` times, default once). */
  drop?: { path: string; afterBytes: number; times?: number }[];
  /** Answer 500 to the first `times` requests for this file's content ("<listing>": for listings). */
  error500?: { path: string; times: number }[];
  /** The listing gives a wrong sha256 (and HF oid) for these paths. */
  wrongSha?: string[];
  /** The listing gives no checksum at all (no Sha256; no HF oid, LFS or not) for these paths. */
  noChecksum?: string[];
  /** A well-formed but short answer: the body (and Content-Length) end after `bytes` (default: every time). */
  truncate?: { path: string; bytes: number; times?: number }[];
  /** Extra listing entries with these paths (e.g. "../../escape.txt"), served with a few bytes. */
  extraPaths?: string[];
  /** Listed, but the content request answers 404. */
  missing?: string[];
}

export interface HubRequest {
  method: string;
  /** Path and query as sent. */
  path: string;
  range?: string;
  /** What was asked: a listing, a file endpoint (the API URL that redirects) or file content (the CDN URL). */
  kind: "listing" | "file" | "content" | "other";
  /** Repo-relative file path for "file" and "content" requests. */
  file?: string;
}

export interface HubServer {
  url: string;
  close(): Promise<void>;
  requests: HubRequest[];
}

/** Repo ids of the real models mapped to the tiny fixture repos (for `repos`), so aliases resolve against fixtures. */
export const FIXTURE_REPOS: Record<string, string> = {
  "black-forest-labs/FLUX.2-klein-4B": "black-forest-labs/FLUX.2-klein-tiny",
  "AI-ModelScope/PickScore_v1": "AI-ModelScope/PickScore-tiny",
  "yuvalkirstain/PickScore_v1": "AI-ModelScope/PickScore-tiny",
  "laion/CLIP-ViT-H-14-laion2B-s32B-b79K": "laion/CLIP-ViT-H-14-tiny-processor",
};

interface Entry {
  path: string;
  bytes: Uint8Array;
  sha256: string;
  gitSha1: string;
  lfs: boolean;
}

const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const GITATTRIBUTES = new TextEncoder().encode("*.safetensors filter=lfs diff=lfs merge=lfs -text\n");

async function walk(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(prefix ? `${dir}/${prefix}` : dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await walk(dir, rel)));
    else if (e.isFile()) out.push(rel);
  }
  return out.sort();
}

function entry(path: string, bytes: Uint8Array): Entry {
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  const gitSha1 = createHash("sha1").update(`blob ${bytes.length}\0`).update(bytes).digest("hex");
  return { path, bytes, sha256, gitSha1, lfs: /\.safetensors$/.test(path) };
}

/** Starts the server on 127.0.0.1 (a free port). `repos` maps extra repo ids to folders under root. */
export async function startHubServer(opts: { root: string; faults?: HubFaults; repos?: Record<string, string>; pageSize?: number }): Promise<HubServer> {
  const faults = opts.faults ?? {};
  const counters = new Map<object, number>();
  /** Whether a fault still fires (and counts it). */
  const fire = (f: object & { times?: number }, def: number) => {
    const n = counters.get(f) ?? 0;
    if (n >= (f.times ?? def)) return false;
    counters.set(f, n + 1);
    return true;
  };
  const repoCache = new Map<string, Promise<Entry[] | undefined>>();
  const load = (repo: string) => {
    let p = repoCache.get(repo);
    if (!p) {
      const dir = `${opts.root}/${opts.repos?.[repo] ?? repo}`;
      p = walk(dir).then(
        async (paths) => [
          entry(".gitattributes", GITATTRIBUTES),
          ...(await Promise.all(paths.map(async (p) => entry(p, new Uint8Array(await readFile(`${dir}/${p}`)))))),
          ...(faults.extraPaths ?? []).map((p) => entry(p, new TextEncoder().encode("escaped\n"))),
        ],
        () => undefined,
      );
      repoCache.set(repo, p);
    }
    return p;
  };
  const sha = (e: Entry, h: string) =>
    (faults.noChecksum ?? []).includes(e.path) ? undefined : (faults.wrongSha ?? []).includes(e.path) ? "f".repeat(h.length) : h;
  const dirsOf = (entries: Entry[]) =>
    [...new Set(entries.flatMap((e) => e.path.split("/").slice(0, -1).map((_, i, a) => a.slice(0, i + 1).join("/"))))].sort();

  const requests: HubRequest[] = [];
  let base = "";

  const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify(body));
  };
  const redirect = (res: ServerResponse, repo: string, path: string) => {
    res.writeHead(302, { location: `${base}/_cdn/${repo}/${path.split("/").map(encodeURIComponent).join("/")}` });
    res.end();
  };
  const notFound = (res: ServerResponse, what: string) => json(res, 404, { Code: 10010205, Message: `${what} not found`, Success: false, error: `${what} not found` });
  const listingFault = (res: ServerResponse) => {
    const f = (faults.error500 ?? []).find((f) => f.path === "<listing>");
    if (f && fire(f, 1)) {
      json(res, 500, { Code: 500, Message: "injected error" });
      return true;
    }
    return false;
  };

  async function content(req: IncomingMessage, res: ServerResponse, repo: string, path: string) {
    const e = (await load(repo))?.find((x) => x.path === path);
    const err = (faults.error500 ?? []).find((f) => f.path === path);
    if (err && fire(err, 1)) return json(res, 500, { Code: 500, Message: "injected error" });
    if (!e || (faults.missing ?? []).includes(path)) return notFound(res, `${repo}/${path}`);
    const size = e.bytes.length;
    let start = 0, end = size - 1;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    if (m) {
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
      if (start >= size || start > end) {
        res.writeHead(416, { "content-range": `bytes */${size}` });
        return res.end();
      }
    }
    let body = e.bytes.subarray(start, end + 1);
    const trunc = (faults.truncate ?? []).find((f) => f.path === path);
    if (trunc && fire(trunc, Infinity)) body = body.subarray(0, Math.max(0, trunc.bytes - start));
    const headers: Record<string, string> = { "content-type": "application/octet-stream", "content-length": String(body.length), "accept-ranges": "bytes", etag: `"${e.sha256}"` };
    if (m) headers["content-range"] = `bytes ${start}-${start + body.length - 1}/${size}`;
    res.writeHead(m ? 206 : 200, headers);
    const drop = (faults.drop ?? []).find((f) => f.path === path && f.afterBytes < start + body.length);
    if (drop && fire(drop, 1)) {
      // Headers promise the whole body; the socket dies after the first bytes.
      res.write(body.subarray(0, Math.max(0, drop.afterBytes - start)), () => res.socket?.destroy());
      return;
    }
    res.end(body);
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const u = new URL(req.url ?? "/", base);
    const log: HubRequest = { method: req.method ?? "GET", path: req.url ?? "/", kind: "other" };
    if (req.headers.range) log.range = String(req.headers.range);
    requests.push(log);
    const seg = u.pathname.split("/").slice(1).map(decodeURIComponent);
    let m: RegExpExecArray | null;

    // ModelScope: listing and file endpoint.
    if ((m = /^\/api\/v1\/models\/([^/]+\/[^/]+)\/repo\/files$/.exec(u.pathname))) {
      log.kind = "listing";
      if (listingFault(res)) return;
      const rev = u.searchParams.get("Revision") ?? "master";
      const entries = await load(m[1]);
      if (!entries || !["master", "main", COMMIT].includes(rev)) return notFound(res, `${m[1]}@${rev}`);
      const files = [
        ...dirsOf(entries).map((d) => ({ Name: d.split("/").pop(), Path: d, Type: "tree", Size: 0, Revision: COMMIT })),
        ...entries.map((e) => ({ Name: e.path.split("/").pop(), Path: e.path, Type: "blob", Size: e.bytes.length, Sha256: sha(e, e.sha256), Revision: COMMIT, IsLFS: e.lfs })),
      ];
      return json(res, 200, { Code: 200, Data: { Files: files }, Message: "success", Success: true });
    }
    if ((m = /^\/api\/v1\/models\/([^/]+\/[^/]+)\/repo$/.exec(u.pathname))) {
      log.kind = "file";
      log.file = u.searchParams.get("FilePath") ?? "";
      return redirect(res, m[1], log.file);
    }
    // Hugging Face: paginated tree listing and resolve URLs.
    if ((m = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(u.pathname))) {
      log.kind = "listing";
      if (listingFault(res)) return;
      const entries = await load(m[1]);
      if (!entries || !["main", "master", COMMIT].includes(decodeURIComponent(m[2]))) return notFound(res, m[1]);
      const all = [
        ...dirsOf(entries).map((d) => ({ type: "directory", oid: COMMIT, size: 0, path: d })),
        ...entries.map((e) => ({
          type: "file",
          oid: sha(e, e.gitSha1),
          size: e.bytes.length,
          path: e.path,
          ...(e.lfs ? { lfs: { oid: sha(e, e.sha256), size: e.bytes.length, pointerSize: 134 } } : {}),
        })),
      ];
      const page = opts.pageSize ?? 8;
      const at = Number(u.searchParams.get("cursor") ?? 0);
      const headers: Record<string, string> = {};
      if (at + page < all.length) headers.link = `<${base}${u.pathname}?recursive=true&cursor=${at + page}>; rel="next"`;
      return json(res, 200, all.slice(at, at + page), headers);
    }
    if (seg.length >= 5 && seg[2] === "resolve") {
      log.kind = "file";
      log.file = seg.slice(4).join("/");
      return redirect(res, `${seg[0]}/${seg[1]}`, log.file);
    }
    if (seg[0] === "_cdn" && seg.length >= 4) {
      log.kind = "content";
      log.file = seg.slice(3).join("/");
      return content(req, res, `${seg[1]}/${seg[2]}`, log.file);
    }
    notFound(res, u.pathname);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((e) => {
      if (!res.headersSent) json(res, 500, { Code: 500, Message: String(e) });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
