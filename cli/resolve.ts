// What the model-running commands (generate, score) share: opening the GPU with a hint when there is none, and
// turning --model style values (a local folder, a registry alias, owner/name) into local folders through the hub,
// downloading into the ModelScope cache unless --offline. Hub failures are user-facing: one line plus a hint.
import { Device } from "../core/index.ts";
import { type HubOptions, REGISTRY, resolveModel } from "../hub/index.ts";
import { UsageError } from "./args.ts";
import { writeErr } from "./host.ts";
import { ProgressLine } from "./progress.ts";

export async function openDevice(): Promise<Device> {
  try {
    return await Device.open();
  } catch (e) {
    throw new UsageError(
      `no WebGPU adapter (${String((e as Error).message).split("\n")[0]})`,
      "use a machine with a GPU, or install Mesa's CPU Vulkan driver lavapipe (Debian/Ubuntu: apt-get install mesa-vulkan-drivers); under Deno pass --unstable-webgpu",
    );
  }
}

/** A local folder for `name` (`flag` names the option in messages); downloads report progress on stderr. */
export async function locateModel(flag: string, name: string, hub: Pick<HubOptions, "endpoint" | "offline" | "cacheDir">): Promise<string> {
  const line = new ProgressLine();
  try {
    return await resolveModel(name, {
      ...hub,
      onProgress: (p) => {
        // A terminal redraws every chunk; a log gets one line per file.
        if (!p.done && (line.tty || p.bytes === 0)) line.update(`${flag} ${p.repo}: ${p.path} ${(p.bytes / 2 ** 20).toFixed(1)}/${(p.total / 2 ** 20).toFixed(1)} MiB`);
      },
      onWarning: (m) => {
        line.end();
        writeErr(`warning: ${flag} ${m}\n`);
      },
    });
  } catch (e) {
    const msg = String((e as Error).message).split("\n")[0];
    const aliases = REGISTRY.map((r) => r.name).join(", ");
    const hint = hub.offline && /offline/.test(msg)
      ? "download it once without --offline (or with flux2ts download), or give a local folder"
      : `give a local folder, an alias (${aliases}) or a ModelScope repo id owner/name`;
    throw new UsageError(`${flag} ${name}: ${msg}`, hint);
  } finally {
    line.end();
  }
}
