// Environment access for hub/ on Bun, Deno and Node (Deno has no `process.env` without the node compat layer in
// every mode), plus the node modules hub/ needs, imported through variables so browser bundlers leave them alone.
type DenoEnv = { env: { get(k: string): string | undefined } };

export function env(name: string): string | undefined {
  const deno = (globalThis as { Deno?: DenoEnv }).Deno;
  if (deno) return deno.env.get(name);
  return (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env[name];
}

/** The user's home folder (HOME, USERPROFILE on Windows). */
export function homeDir(): string {
  const home = env("HOME") ?? env("USERPROFILE");
  if (!home) throw new Error("hub: cannot find the home folder (HOME is not set); pass cacheDir or set MODELSCOPE_CACHE");
  return home;
}

type Crypto = typeof import("node:crypto");
let cryptoModule: Promise<Crypto> | undefined;
export function nodeCrypto(): Promise<Crypto> {
  const name = "node:crypto";
  return (cryptoModule ??= import(name) as Promise<Crypto>);
}
