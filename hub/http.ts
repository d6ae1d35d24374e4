// HTTP for the hub: one error type whose message names the repo (and file) and says whether trying again can help,
// retries with exponential backoff on network errors, timeouts and 5xx/429, and an idle timeout on bodies.
// Redirects are followed by `fetch` itself (ModelScope and Hugging Face answer file requests with a 302 to a CDN).

export class HubError extends Error {
  constructor(message: string, readonly retryable = false) {
    super(message);
    this.name = "HubError";
  }
}

export interface RetryPolicy {
  /** Attempts after the first one. */
  retries: number;
  /** Wait before retry k (0-based) is delayMs * 2^k. */
  delayMs: number;
  /** No response headers or no body bytes for this long counts as a network error. */
  timeoutMs: number;
}

const retryableStatus = (s: number) => s >= 500 || s === 429 || s === 408;

/** Network-level failures (fetch rejections, resets, aborts) can be retried; our own HubErrors say so themselves. */
export function isRetryable(e: unknown): boolean {
  return e instanceof HubError ? e.retryable : true;
}

/** Runs `fn` until it succeeds, a non-retryable error occurs, or the retries are spent; `what` prefixes errors. */
export async function withRetries<T>(what: string, policy: RetryPolicy, fn: (attempt: number) => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      const msg = (e as Error).message;
      if (!isRetryable(e)) throw e instanceof HubError && msg.startsWith(what) ? e : new HubError(`${what}: ${msg}`);
      if (attempt >= policy.retries) throw new HubError(`${what}: ${msg} (gave up after ${attempt + 1} attempts)`);
      await new Promise((r) => setTimeout(r, policy.delayMs * 2 ** attempt));
    }
  }
}

const uuid = () => crypto.randomUUID();
const session = uuid();

/** GET with the headers the ModelScope SDK sends; non-2xx answers become HubErrors (retryable for 5xx/429). */
export async function get(url: string, timeoutMs: number, headers: Record<string, string> = {}): Promise<Response> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(new HubError(`no answer from ${url} in ${timeoutMs / 1000} s`, true)), timeoutMs);
  let r: Response;
  try {
    r = await fetch(url, {
      headers: { "user-agent": "flux2ts/0.1", "snapshot-identifier": session, "X-Request-ID": uuid().replace(/-/g, ""), ...headers },
      redirect: "follow",
      signal: ctl.signal,
    });
  } finally {
    clearTimeout(timer);
  }
  if (!r.ok) {
    const body = (await r.text().catch(() => "")).slice(0, 200).replace(/\s+/g, " ");
    throw new HubError(`HTTP ${r.status} from ${url}${body ? `: ${body}` : ""}`, retryableStatus(r.status));
  }
  return r;
}

/** Reads a body chunk by chunk; a stall longer than timeoutMs cancels the stream and throws (retryable). */
export async function* chunks(body: ReadableStream<Uint8Array>, timeoutMs: number): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  try {
    for (;;) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stall = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new HubError(`download stalled for ${timeoutMs / 1000} s`, true)), timeoutMs);
      });
      const step = await Promise.race([reader.read(), stall]).finally(() => clearTimeout(timer));
      if (step.done) return;
      yield step.value;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
