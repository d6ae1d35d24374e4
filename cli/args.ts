// Flag parsing shared by the commands: `--name value`, `--name=value`, boolean `--flag`, positionals.
export class UsageError extends Error {
  constructor(message: string, readonly hint?: string) {
    super(message);
  }
}

export interface Parsed {
  /** The last value of each flag given (true for booleans). */
  flags: Map<string, string | true>;
  /** Every value of each valued flag, in order (for repeatable flags such as --ref). */
  lists: Map<string, string[]>;
  positionals: string[];
}

/** Parses argv against the flags a command accepts; `booleans` take no value. Unknown flags are errors. */
export function parseArgs(args: string[], valued: string[], booleans: string[] = []): Parsed {
  const flags = new Map<string, string | true>();
  const lists = new Map<string, string[]>();
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith("--")) {
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    const name = a.slice(2, eq < 0 ? undefined : eq);
    if (booleans.includes(name)) flags.set(name, true);
    else if (valued.includes(name)) {
      const v = eq >= 0 ? a.slice(eq + 1) : args[++i];
      if (v === undefined) throw new UsageError(`--${name} needs a value`);
      flags.set(name, v);
      lists.set(name, [...(lists.get(name) ?? []), v]);
    } else throw new UsageError(`unknown option --${name}`, `known: ${[...valued, ...booleans].map((f) => "--" + f).join(" ")}`);
  }
  return { flags, lists, positionals };
}

/** A numeric flag with bounds, or the default. */
export function intFlag(p: Parsed, name: string, def: number, min = -Infinity, max = Infinity): number {
  const v = p.flags.get(name);
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer in [${min}, ${max}], got "${v}"`);
  return n;
}

export function strFlag(p: Parsed, name: string, def?: string): string | undefined {
  const v = p.flags.get(name);
  return typeof v === "string" ? v : def;
}
