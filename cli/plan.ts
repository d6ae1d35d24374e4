// `flux2ts plan`: prints the memory plan of models/flux2/plan.ts (the real klein-4B at 1024² in dry-run mode by
// default, --execute to run it) as a table or JSON.
import { Device } from "../core/index.ts";
import { type PlanOptions, type PlanReport, runPlan } from "../models/flux2/plan.ts";
import { intFlag, parseArgs, strFlag } from "./args.ts";

export const help = `flux2ts plan [options]

Memory plan of text-to-image with FLUX.2-klein-4B (random bf16 weights with the real names and shapes, generated
on the GPU: nothing is downloaded): per phase the weights resident, the activation peak and the total peak of
the device's buffer pool, the final peak against the 12 GB goal, and the activations larger than one storage
binding of this adapter.

  --width n, --height n   image size (default 1024 x 1024)
  --steps n               denoising steps (default 4)
  --batch n               images per batch (default 1)
  --refs n                editing: n reference images of the output size (default 0)
  --execute               run the kernels for real and time each phase (GPU machines); default: dry run
  --repo dir              configs and weights of a local repo folder (diffusers layout) instead
  --json                  print the report as JSON`;

/** The issue's goal for the whole text-to-image path at 1024². */
const gb = (n: number) => `${(n / 1e9).toFixed(2)} GB`;
const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;

export function formatPlan(r: PlanReport): string {
  const rows = [["phase", "weights", "activations", "total peak", "after", ...(r.mode === "executed" ? ["time"] : [])]];
  for (const p of r.phases) rows.push([p.phase, gb(p.weights), gb(p.activations), gb(p.peak), gb(p.after), ...(p.seconds === undefined ? [] : [`${p.seconds.toFixed(1)} s`])]);
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  const table = rows.map((row) => row.map((v, c) => (c ? v.padStart(widths[c]) : v.padEnd(widths[c]))).join("  ")).join("\n");
  const ok = r.peak <= r.goal;
  const lines = [
    `${r.model}: ${r.width}×${r.height}, ${r.steps} steps, batch ${r.batch}${r.refs ? `, ${r.refs} reference${r.refs > 1 ? "s" : ""}` : ""} — ${r.mode} on ${r.adapter}`,
    `tokens per transformer row: ${r.tokens.target} target + ${r.tokens.reference} reference + ${r.tokens.text} text`,
    "",
    table,
    "",
    `measured peak ${gb(r.peak)} ${ok ? "≤" : ">"} goal ${gb(r.goal)}: ${ok ? "fits" : "DOES NOT FIT"}`,
    `PNG: ${r.pngBytes} bytes${r.mode === "dry run" ? " (dry run: zero pixels)" : ""}`,
    "",
    `largest single buffer ${mib(r.largest)}: adapters whose maxStorageBufferBindingSize is smaller (WebGPU's default and lavapipe's: 128 MiB) need the activations below split; this adapter's is ${mib(r.maxStorageBufferBindingSize)}`,
  ];
  if (r.large.length) {
    lines.push(`activations larger than this adapter's binding limit (weights are split into row chunks, these are not):`);
    for (const a of r.large) lines.push(`  ${mib(a.bytes).padStart(9)} ×${String(a.count).padEnd(4)} ${a.site}  [${a.phase}]`);
  } else lines.push("no activation exceeds this adapter's binding limit");
  return lines.join("\n");
}

export async function run(args: string[]): Promise<number> {
  const p = parseArgs(args, ["width", "height", "steps", "batch", "refs", "repo"], ["execute", "json"]);
  const opts: PlanOptions = {
    width: intFlag(p, "width", 1024, 16, 8192),
    height: intFlag(p, "height", 1024, 16, 8192),
    steps: intFlag(p, "steps", 4, 1, 1000),
    batch: intFlag(p, "batch", 1, 1, 64),
    refs: intFlag(p, "refs", 0, 0, 16),
    execute: p.flags.has("execute"),
    repo: strFlag(p, "repo"),
  };
  const dev = await Device.open();
  try {
    const report = await runPlan(dev, opts);
    console.log(p.flags.has("json") ? JSON.stringify(report, null, 2) : formatPlan(report));
    return 0;
  } finally {
    dev.destroy();
  }
}
