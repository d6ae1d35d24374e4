// Where repo files come from: the ModelScope REST API or a Hugging Face (mirror) endpoint. Both give a recursive
// listing (path, size, content hash) and a per-file URL that may redirect to a CDN and honours Range requests.
// Every listed path is checked before anything touches the disk: a path that could leave the repo folder
// (absolute, "..", backslashes, drive letters) makes the whole listing refused.
import { env } from "../core/platform.ts";
import { chunks, get, HubError, type RetryPolicy, withRetries } from "./http.ts";

export type SourceKind = "modelscope" | "huggingface";

export interface RepoFile {
  /** Repo-relative path with "/" separators. */
  path: string;
  size: number;
  /** Hex sha256 of the content (ModelScope `Sha256`, Hugging Face `lfs.oid`). */
  sha256?: string;
  /** Hex git blob sha1 (Hugging Face `oid` of a non-LFS file). */
  gitSha1?: string;
}

export interface Source {
  kind: SourceKind;
  endpoint: string;
  revision: string;
  list(repo: string, policy: RetryPolicy): Promise<RepoFile[]>;
  fileUrl(repo: string, path: string): string;
}

export function defaultEndpoint(kind: SourceKind): string {
  if (kind === "huggingface") return env("HF_ENDPOINT") || "https://huggingface.co";
  const domain = env("MODELSCOPE_DOMAIN");
  return env("MODELSCOPE_ENDPOINT") || (domain ? `https://${domain}` : "https://www.modelscope.cn");
}

export function makeSource(kind: SourceKind, endpoint?: string, revision?: string): Source {
  const ep = (endpoint || defaultEndpoint(kind)).replace(/\/+$/, "");
  return kind === "huggingface" ? huggingFace(ep, revision || "main") : modelScope(ep, revision || "master");
}

const SKIPPED = new Set([".gitignore", ".gitattributes"]);
const skipped = (path: string) => SKIPPED.has(path.slice(path.lastIndexOf("/") + 1));

/** Refuses paths that would resolve outside the repo folder once joined to it. */
export function checkPath(repo: string, path: string): string {
  const segs = path.split("/");
  const bad = path === "" || path.startsWith("/") || /[\\\0]/.test(path) || /^[A-Za-z]:/.test(path) ||
    segs.some((s) => s === "" || s === "." || s === "..");
  if (bad) throw new HubError(`${repo}: the listing has a path that escapes the cache folder, refused: ${JSON.stringify(path)}`);
  return path;
}

async function json(url: string, policy: RetryPolicy): Promise<{ body: unknown; next?: string }> {
  const r = await get(url, policy.timeoutMs);
  const dec = new TextDecoder();
  let text = "";
  for await (const c of chunks(r.body!, policy.timeoutMs)) text += dec.decode(c, { stream: true });
  text += dec.decode();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new HubError(`listing from ${url} is not JSON`, true);
  }
  const link = /<([^>]+)>\s*;\s*rel="?next"?/.exec(r.headers.get("link") ?? "");
  return { body, next: link ? new URL(link[1], url).href : undefined };
}

type MsFile = { Path?: string; Type?: string; Size?: number; Sha256?: string };
type MsListing = { Code?: number; Success?: boolean; Message?: string; Data?: { Files?: MsFile[] } };

function modelScope(endpoint: string, revision: string): Source {
  const q = encodeURIComponent;
  return {
    kind: "modelscope",
    endpoint,
    revision,
    async list(repo, policy) {
      const url = `${endpoint}/api/v1/models/${repo}/repo/files?Revision=${q(revision)}&Recursive=True`;
      const { body } = await withRetries(`${repo}: listing files`, policy, () => json(url, policy));
      const b = body as MsListing;
      if ((b.Code !== undefined && b.Code !== 200) || b.Success === false || !Array.isArray(b.Data?.Files)) {
        throw new HubError(`${repo}: ModelScope (${endpoint}) refused the listing at revision ${revision}: ${b.Message ?? JSON.stringify(body).slice(0, 200)}`);
      }
      return b.Data!.Files!.filter((f) => f.Type !== "tree" && !skipped(f.Path ?? "")).map((f) => ({
        path: checkPath(repo, String(f.Path ?? "")),
        size: Number(f.Size ?? 0),
        sha256: f.Sha256 ? f.Sha256.toLowerCase() : undefined,
      }));
    },
    fileUrl: (repo, path) => `${endpoint}/api/v1/models/${repo}/repo?Revision=${q(revision)}&FilePath=${q(path)}`,
  };
}

type HfEntry = { type?: string; path?: string; size?: number; oid?: string; lfs?: { oid?: string; size?: number } };

function huggingFace(endpoint: string, revision: string): Source {
  const enc = (p: string) => p.split("/").map(encodeURIComponent).join("/");
  return {
    kind: "huggingface",
    endpoint,
    revision,
    async list(repo, policy) {
      const out: RepoFile[] = [];
      // The tree API is paginated through `Link: <…>; rel="next"`.
      let url: string | undefined = `${endpoint}/api/models/${repo}/tree/${encodeURIComponent(revision)}?recursive=true`;
      while (url) {
        const page: { body: unknown; next?: string } = await withRetries(`${repo}: listing files`, policy, () => json(url!, policy));
        if (!Array.isArray(page.body)) throw new HubError(`${repo}: unexpected listing from ${url}: ${JSON.stringify(page.body).slice(0, 200)}`);
        for (const e of page.body as HfEntry[]) {
          if (e.type !== "file" || skipped(e.path ?? "")) continue;
          const lfs = e.lfs?.oid?.toLowerCase();
          out.push({
            path: checkPath(repo, String(e.path ?? "")),
            size: Number(e.lfs?.size ?? e.size ?? 0),
            sha256: lfs,
            gitSha1: lfs ? undefined : e.oid?.toLowerCase(),
          });
        }
        url = page.next;
      }
      return out;
    },
    fileUrl: (repo, path) => `${endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${enc(path)}`,
  };
}
