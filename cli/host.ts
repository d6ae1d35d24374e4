// Process access for the CLI (argv, exit, environment) on Bun, Deno and Node: the only runtime switch in cli/.
type Proc = { argv: string[]; exit(code: number): never; env: Record<string, string | undefined>; stdout: { write(s: string): unknown; isTTY?: boolean } };
type DenoNs = { args: string[]; exit(code: number): never; env: { get(k: string): string | undefined; toObject(): Record<string, string> } };
const deno = (globalThis as { Deno?: DenoNs }).Deno;
const proc = (globalThis as { process?: Proc }).process;

export function argv(): string[] {
  return deno ? deno.args : proc!.argv.slice(2);
}

export function exit(code: number): never {
  return deno ? deno.exit(code) : proc!.exit(code);
}

export function env(name: string): string | undefined {
  return deno ? deno.env.get(name) : proc!.env[name];
}

/** Writes without a newline (progress bars). */
export function write(s: string): void {
  if (proc?.stdout) proc.stdout.write(s);
  else (globalThis as { Deno?: { stdout: { writeSync(b: Uint8Array): number } } }).Deno?.stdout.writeSync(new TextEncoder().encode(s));
}
