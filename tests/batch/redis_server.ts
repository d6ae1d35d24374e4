// A private redis-server for a test or benchmark: Debian's binary on a free loopback port with its own temp dir,
// no RDB snapshots, optional appendonly (so a restart on the same dir keeps the queue), stopped by its PID. Nothing
// depends on a system service.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const hasRedis = spawnSync("redis-server", ["--version"]).status === 0;

export interface RedisServer {
  url: string;
  port: number;
  dir: string;
  /** Stops it (SIGTERM, then waits for the exit); the dir stays for a restart. */
  stop(): Promise<void>;
  /** Starts it again on the same port and dir. */
  restart(): Promise<void>;
  /** Stops it and removes the dir. */
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}: ${log()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, "127.0.0.1", () => {
        c.end();
        resolve(true);
      });
      c.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`redis-server did not listen on ${port} within 10 s: ${log()}`);
}

export async function startRedis(opts: { appendonly?: boolean } = {}): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), "flux2ts-redis-"));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    let out = "";
    const c = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", opts.appendonly ? "yes" : "no"], { stdio: ["ignore", "pipe", "pipe"] });
    c.stdout!.on("data", (d: Uint8Array) => (out += new TextDecoder().decode(d)));
    c.stderr!.on("data", (d: Uint8Array) => (out += new TextDecoder().decode(d)));
    child = c;
    await waitForPort(port, c, () => out.slice(-500));
  };
  const stop = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once("exit", r));
    process.kill(c.pid!, "SIGTERM");
    await exited;
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    stop,
    restart: start,
    close: async () => {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
