// `flux2ts verify <case-dir>`: runs a reference case (shared/fixtures layout) through its registered runner and
// compares every output with the case's tolerances. Exit 0 all pass, 1 any failure, 2 a malformed case or error.
import { Device } from "../core/index.ts";
import { env } from "../core/platform.ts";
import { formatTable, knownKinds, verifyCase } from "../core/verify.ts";
import { parseArgs, strFlag, UsageError } from "./args.ts";
import "./cases.ts";

export const help = `flux2ts verify <case-dir> [--json] [--only pattern]

Loads case.json, io.safetensors (and weights.safetensors) from <case-dir>, runs the runner registered for the
case's kind on the GPU and compares each expected tensor (and the token ids the runner recomputes): max abs error,
relative error ‖ours − ref‖/‖ref‖ and PASS when |ours − ref| <= atol (+ rtol·|ref|) everywhere. Bounds are the
case's suggested tolerances, else a rule the runner names (shown in the table); a tensor with neither FAILs. A
tensor the runner does not produce is MISSING, unless the runner declares it does not produce that debug tensor:
then it is SKIP (counted, with the reason).

  --json           print the result as JSON instead of a table
  --only pattern   compare only tensors matching a glob (* and ?; several separated by commas)

Exit code: 0 all PASS or SKIP, 1 any FAIL or MISSING, 2 malformed case, unknown kind or other error.
Set FLUX2TS_TRACE=1 to get stack traces.
Known case kinds: ${knownKinds().join(", ")}`;

export async function run(args: string[]): Promise<number> {
  const p = parseArgs(args, ["only"], ["json"]);
  if (p.positionals.length !== 1) throw new UsageError("verify needs exactly one case folder", "flux2ts verify <case-dir> [--json] [--only pattern]");
  let dev: Device | undefined;
  try {
    dev = await Device.open();
    const result = await verifyCase(p.positionals[0], dev, { only: strFlag(p, "only") });
    console.log(p.flags.has("json") ? JSON.stringify(result, null, 2) : formatTable(result));
    return result.code;
  } catch (e) {
    console.error(`flux2ts verify: ${String((e as Error).message ?? e).split("\n")[0]}`);
    if (env("FLUX2TS_TRACE")) console.error((e as Error).stack);
    return 2;
  } finally {
    dev?.destroy();
  }
}
