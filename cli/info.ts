// `flux2ts info`: what WebGPU adapter this machine has, its limits and features, the runtime, and the models in
// the download cache.
import { Device, runtime } from "../core/index.ts";
import { cacheContents, cacheRoot } from "../hub/index.ts";
import { parseArgs, UsageError } from "./args.ts";

export const help = `flux2ts info [--json]

Opens the WebGPU adapter and prints its description, the limits flux2ts requests and the optional
features it found (shader-f16, subgroups, timestamp-query), then the model cache ($MODELSCOPE_CACHE or
~/.cache/modelscope/hub) with each cached repo's size.`;

export async function run(args: string[]): Promise<number> {
  const p = parseArgs(args, [], ["json"]);
  let dev: Device;
  try {
    dev = await Device.open();
  } catch (e) {
    throw new UsageError((e as Error).message, "flux2ts needs a WebGPU adapter; without a GPU, Mesa's lavapipe works");
  }
  const cache = { root: cacheRoot(), repos: await cacheContents() };
  const info = { runtime, adapter: dev.describe(), limits: dev.limits, features: [...dev.features].sort(), cache };
  if (p.flags.has("json")) console.log(JSON.stringify(info, null, 2));
  else {
    console.log(`runtime   ${info.runtime}\nadapter   ${info.adapter}\nfeatures  ${info.features.join(", ") || "(none)"}`);
    for (const [k, v] of Object.entries(info.limits)) console.log(`  ${k.padEnd(36)} ${v}`);
    console.log(`cache     ${cache.root}${cache.repos.length ? "" : " (no models)"}`);
    for (const r of cache.repos) console.log(`  ${r.repo.padEnd(52)} ${(r.bytes / 1e6).toFixed(1).padStart(10)} MB  ${r.files} files`);
  }
  dev.destroy();
  return 0;
}
