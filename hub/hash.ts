// Content checks against a listing entry: sha256 (ModelScope `Sha256`, Hugging Face LFS oid) or, for Hugging Face's
// small non-LFS files, the git blob sha1 (sha1 of "blob <size>\0" + content). Hashes stream, so a multi-GB file is
// never held in memory.
import { nodeFs } from "../core/platform.ts";
import { nodeCrypto } from "./env.ts";
import type { RepoFile } from "./source.ts";

type Hash = ReturnType<typeof import("node:crypto").createHash>;

export class ContentHash {
  private constructor(private readonly file: RepoFile, private readonly hash: Hash | undefined, private readonly kind: string) {}

  /** A hash for the entry's checksum, or a no-op when the listing gives none. */
  static async for(file: RepoFile): Promise<ContentHash> {
    const { createHash } = await nodeCrypto();
    if (file.sha256) return new ContentHash(file, createHash("sha256"), "sha256");
    if (file.gitSha1) return new ContentHash(file, createHash("sha1").update(`blob ${file.size}\0`), "git sha1");
    return new ContentHash(file, undefined, "");
  }

  update(bytes: Uint8Array): void {
    this.hash?.update(bytes);
  }

  /** Undefined when the content matches, else why not. */
  mismatch(): string | undefined {
    if (!this.hash) return undefined;
    const want = this.file.sha256 ?? this.file.gitSha1;
    const got = this.hash.digest("hex");
    return got === want ? undefined : `${this.kind} mismatch: expected ${want}, got ${got}`;
  }
}

const CHUNK = 8 << 20;

/** Feeds the first `length` bytes of a local file into `hash`. */
export async function hashPrefix(path: string, length: number, hash: ContentHash): Promise<void> {
  const fs = await nodeFs();
  const fh = await fs.open(path, "r");
  try {
    const buf = new Uint8Array(Math.min(CHUNK, Math.max(length, 1)));
    for (let off = 0; off < length; ) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, length - off), off);
      if (bytesRead === 0) throw new Error(`${path}: unexpected end of file at byte ${off}`);
      hash.update(buf.subarray(0, bytesRead));
      off += bytesRead;
    }
  } finally {
    await fh.close();
  }
}

/** Whether a local file has the entry's size and checksum. */
export async function fileMatches(path: string, file: RepoFile): Promise<boolean> {
  const fs = await nodeFs();
  const st = await fs.stat(path).catch(() => undefined);
  if (!st?.isFile() || st.size !== file.size) return false;
  const hash = await ContentHash.for(file);
  await hashPrefix(path, file.size, hash);
  return hash.mismatch() === undefined;
}
