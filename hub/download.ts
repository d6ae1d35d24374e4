// One file from a repo into the cache, never leaving a corrupt file at its final path:
// bytes go to a temp file; if one is already there (an earlier attempt or run was cut off) the request asks for the
// rest with `Range: bytes=<have>-<size-1>` and appends (a server answering 200 instead restarts from zero). The
// content is hashed as it arrives (the kept prefix is re-read once), checked against the listing's size and
// checksum, and only then renamed into place. Network errors, stalls, 5xx and short bodies retry with backoff and
// resume; a checksum mismatch deletes the temp file before retrying.
// Two processes fetching one file would share its temp file, so the writer holds `<temp>.lock` (created
// exclusively, its time refreshed every LOCK_BEAT_MS); the others wait and then find the file in place. A lock
// untouched for LOCK_STALE_MS belongs to a process that died: it is taken over, and the temp file resumed.
import { nodeFs } from "../core/platform.ts";
import { ContentHash, hashPrefix } from "./hash.ts";
import { chunks, get, HubError, type RetryPolicy, withRetries } from "./http.ts";
import { localSize } from "./cache.ts";
import type { RepoFile } from "./source.ts";

export interface FileJob {
  repo: string;
  file: RepoFile;
  url: string;
  temp: string;
  dest: string;
}

const dirname = (p: string) => p.slice(0, Math.max(p.lastIndexOf("/"), 0)) || "/";
const LOCK_BEAT_MS = 2_000;
const LOCK_STALE_MS = 20_000;
const LOCK_POLL_MS = 100;

/** Takes `<temp>.lock`, waiting while another live writer holds it; returns the release function. */
async function lockTemp(temp: string): Promise<() => Promise<void>> {
  const fs = await nodeFs();
  const lock = `${temp}.lock`;
  for (;;) {
    try {
      await (await fs.open(lock, "wx")).close();
      break;
    } catch (e) {
      if ((e as { code?: string }).code !== "EEXIST") throw e;
    }
    const touched = await fs.stat(lock).then((st) => st.mtimeMs, () => Date.now());
    if (Date.now() - touched > LOCK_STALE_MS) await fs.rm(lock, { force: true }); // its writer is gone
    else await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
  }
  const beat = setInterval(() => fs.utimes(lock, new Date(), new Date()).catch(() => {}), LOCK_BEAT_MS);
  return async () => {
    clearInterval(beat);
    await fs.rm(lock, { force: true });
  };
}

export async function downloadFile(job: FileJob, policy: RetryPolicy, onBytes: (bytes: number) => void): Promise<void> {
  const fs = await nodeFs();
  const { file, temp } = job;
  await fs.mkdir(dirname(temp), { recursive: true });
  const unlock = await lockTemp(temp);
  try {
    // Another process may have finished it while this one waited.
    if ((await localSize(job.dest)) !== file.size) await fetchToDest(job, policy, onBytes);
  } finally {
    await unlock();
  }
}

async function fetchToDest(job: FileJob, policy: RetryPolicy, onBytes: (bytes: number) => void): Promise<void> {
  const fs = await nodeFs();
  const { file, temp } = job;
  await withRetries(`${job.repo}: ${file.path}`, policy, async () => {
    let have = await localSize(temp);
    if (have > file.size) await fs.rm(temp, { force: true });
    if (have < 0 || have > file.size) have = 0;
    const hash = await ContentHash.for(file);
    if (have < file.size) {
      const r = await get(job.url, policy.timeoutMs, have > 0 ? { Range: `bytes=${have}-${file.size - 1}` } : {});
      const start = r.status === 206 ? Number(/bytes (\d+)-/.exec(r.headers.get("content-range") ?? "")?.[1] ?? -1) : 0;
      if (start !== 0 && start !== have) throw new HubError(`server answered the range request from byte ${start}, not ${have}`, true);
      if (start === 0) have = 0;
      else await hashPrefix(temp, have, hash);
      const fh = await fs.open(temp, have > 0 ? "a" : "w");
      try {
        for await (const c of chunks(r.body!, policy.timeoutMs)) {
          if (have + c.length > file.size) {
            await fh.close().catch(() => {});
            await fs.rm(temp, { force: true });
            throw new HubError(`server sent more than the ${file.size} bytes the listing gives`, true);
          }
          await fh.write(c);
          hash.update(c);
          have += c.length;
          onBytes(have);
        }
      } finally {
        await fh.close().catch(() => {});
      }
      if (have < file.size) throw new HubError(`response ended after ${have} of ${file.size} bytes`, true);
    } else {
      if (have === 0) await fs.writeFile(temp, new Uint8Array()); // an empty file needs no request
      await hashPrefix(temp, have, hash);
    }
    const bad = hash.mismatch();
    if (bad) {
      await fs.rm(temp, { force: true });
      throw new HubError(bad, true);
    }
  });
  await fs.mkdir(dirname(job.dest), { recursive: true });
  await fs.rename(temp, job.dest);
}
