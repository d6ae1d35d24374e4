// Process access for the CLI (argv, exit, stdout/stderr) on Bun, Deno and Node: the only runtime switch in cli/.
// The environment is read through core/platform.ts's env(), the project's one reader.
type Stream = { write(s: string): unknown; isTTY?: boolean };
type Proc = { argv: string[]; exit(code: number): never; stdout: Stream; stderr: Stream };
type DenoOut = { writeSync(b: Uint8Array): number; isTerminal(): boolean };
type DenoNs = {
  args: string[];
  exit(code: number): never;
  stdout: DenoOut;
  stderr: DenoOut;
};
const deno = (globalThis as { Deno?: DenoNs }).Deno;
const proc = (globalThis as { process?: Proc }).process;

export function argv(): string[] {
  return deno ? deno.args : proc!.argv.slice(2);
}

export function exit(code: number): never {
  return deno ? deno.exit(code) : proc!.exit(code);
}

/** Writes to stdout without a newline. */
export function write(s: string): void {
  if (deno) deno.stdout.writeSync(new TextEncoder().encode(s));
  else proc!.stdout.write(s);
}

/** Writes to stderr without a newline (progress lines). */
export function writeErr(s: string): void {
  if (deno) deno.stderr.writeSync(new TextEncoder().encode(s));
  else proc!.stderr.write(s);
}

export const stderrIsTty = (): boolean => (deno ? deno.stderr.isTerminal() : !!proc?.stderr.isTTY);
