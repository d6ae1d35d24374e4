// `flux2ts bench`: the kernel benchmark of bench/kernels.ts from the CLI.
import { benchToFile } from "../bench/kernels.ts";
import { parseArgs, strFlag } from "./args.ts";

export const help = `flux2ts bench [--quick] [--out results.json]

Times every kernel family (ms per call, GFLOP/s or GB/s) next to baselines measured in the same run: the
adapter's FMA-only peak, a CPU matmul (numpy/OpenBLAS when installed, else JS) and a vec4 WGSL copy
(stream_peak), which each memory-bound row is printed as a ratio of.
  --quick        smaller sizes (a few seconds on a CPU adapter)
  --out FILE     where to write the JSON rows (default bench/results.json)`;

export async function run(args: string[]): Promise<number> {
  const p = parseArgs(args, ["out"], ["quick"]);
  await benchToFile(strFlag(p, "out", "bench/results.json")!, p.flags.has("quick"));
  return 0;
}
