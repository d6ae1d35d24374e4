// What hub/ needs from the host beyond files: the home folder (from the environment, which only core/platform.ts
// reads) and node:crypto, imported through a variable so browser bundlers leave it alone.
import { env } from "../core/platform.ts";

/** The user's home folder (HOME, USERPROFILE on Windows). */
export function homeDir(): string {
  const home = env("HOME") ?? env("USERPROFILE");
  if (!home) throw new Error("hub: cannot find the home folder (HOME is not set); pass cacheDir or set MODELSCOPE_CACHE");
  return home;
}

/** @internal (left out of the .d.ts: its type needs @types/node, which a browser project lacks) */
type Crypto = typeof import("node:crypto");
let cryptoModule: Promise<Crypto> | undefined;
/** @internal */
export function nodeCrypto(): Promise<Crypto> {
  const name = "node:crypto";
  return (cryptoModule ??= import(name) as Promise<Crypto>);
}
