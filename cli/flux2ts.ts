#!/usr/bin/env bun
// flux2ts command line: a thin dispatcher. Each command is a module in cli/ exporting `help` and `run(argv)`;
// user mistakes are thrown as UsageError and printed as one line plus a hint, never as a stack trace; so is the
// loss of the GPU device (exit 1), which no stack trace would explain better.
import { DeviceLostError } from "../core/device.ts";
import { UsageError } from "./args.ts";
import { exit, argv } from "./host.ts";

const commands: Record<string, () => Promise<{ help: string; run(args: string[]): Promise<number> }>> = {
  inspect: () => import("./inspect.ts"),
  verify: () => import("./verify.ts"),
  bench: () => import("./bench.ts"),
  info: () => import("./info.ts"),
  score: () => import("./score.ts"),
  generate: () => import("./generate.ts"),
  download: () => import("./download.ts"),
  plan: () => import("./plan.ts"),
  serve: () => import("./serve.ts"),
  batch: () => import("./batch.ts"),
  worker: () => import("./worker.ts"),
};

const usage = `flux2ts <command> [options]

commands:
  inspect <file.safetensors>   list a file's tensors and metadata (reads only the header)
  verify <case-dir>            run a reference case and compare every output against its tolerance
  bench                        time the kernels and print GFLOP/s next to a CPU baseline
  info                         show the WebGPU adapter, its limits and features
  score --prompt TEXT a.png…   PickScore of PNG or JPEG files against a prompt
  generate --prompt TEXT       text to image (or editing with --ref), optionally searching the initial noise
                               (--search ses)
  download <model>             fetch a model from ModelScope (or Hugging Face) into the local cache
  plan                         memory plan and measured peak of the real FLUX.2-klein-4B at 1024²
  serve                        the browser app on 127.0.0.1 (generation runs in the page's WebGPU)
  batch submit|status|report   prompt-set runs on BullMQ + Redis, and the paper-style report
  worker --out DIR             serve batches' jobs (one worker per GPU; --name NAME for some batches only)

Run "flux2ts <command> --help" for a command's options.`;

async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(usage);
    return name ? 0 : 2;
  }
  const load = commands[name];
  if (!load) throw new UsageError(`unknown command "${name}"`, `commands: ${Object.keys(commands).join(", ")}`);
  const cmd = await load();
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(cmd.help);
    return 0;
  }
  return cmd.run(rest);
}

try {
  exit(await main(argv()));
} catch (e) {
  if (e instanceof UsageError) {
    console.error(`flux2ts: ${e.message}`);
    if (e.hint) console.error(`hint: ${e.hint}`);
    exit(2);
  }
  if (e instanceof DeviceLostError) {
    console.error(`flux2ts: ${e.message}`);
    exit(1);
  }
  throw e;
}
