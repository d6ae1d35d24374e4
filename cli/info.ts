// `flux2ts info`: what WebGPU adapter this machine has, its limits and features, and the runtime.
import { Device, runtime } from "../core/index.ts";
import { parseArgs, UsageError } from "./args.ts";

export const help = `flux2ts info [--json]

Opens the WebGPU adapter and prints its description, the limits flux2ts requests and the optional
features it found (shader-f16, subgroups, timestamp-query).`;

export async function run(args: string[]): Promise<number> {
  const p = parseArgs(args, [], ["json"]);
  let dev: Device;
  try {
    dev = await Device.open();
  } catch (e) {
    throw new UsageError((e as Error).message, "flux2ts needs a WebGPU adapter; without a GPU, Mesa's lavapipe works");
  }
  const info = { runtime, adapter: dev.describe(), limits: dev.limits, features: [...dev.features].sort() };
  if (p.flags.has("json")) console.log(JSON.stringify(info, null, 2));
  else {
    console.log(`runtime   ${info.runtime}\nadapter   ${info.adapter}\nfeatures  ${info.features.join(", ") || "(none)"}`);
    for (const [k, v] of Object.entries(info.limits)) console.log(`  ${k.padEnd(36)} ${v}`);
  }
  dev.destroy();
  return 0;
}
