// `flux2ts inspect`: lists a checkpoint's tensors (name, dtype, shape, bytes) and metadata from the headers alone.
// Files come from anywhere, so a malformed one is an expected outcome, not a crash: whatever goes wrong is printed
// as the single line "flux2ts: <path>: <problem>" and the exit code is 2.
import { type Checkpoint, openCheckpoint, safetensorsItemBytes } from "../core/safetensors.ts";
import { parseArgs, UsageError } from "./args.ts";

export const help = `flux2ts inspect <file.safetensors | *.safetensors.index.json | folder> [--json]

Lists every tensor (name, dtype, shape, bytes) sorted by name, a total, and the metadata. Reads only the
headers. A folder is read through its model.safetensors.index.json or diffusion_pytorch_model.safetensors.index.json,
or else all its .safetensors files.

  --json   print one JSON object instead of a table

Exit code 2 (and one line on stderr) if the file is missing or malformed.`;

interface Row {
  name: string;
  dtype: string;
  shape: number[];
  bytes: number;
  file: string;
}

const baseName = (p: string) => p.slice(p.lastIndexOf("/") + 1);

function humanBytes(n: number): string {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) [n, i] = [n / 1024, i + 1];
  return i === 0 ? `${n} bytes` : `${n.toFixed(2)} ${units[i]}`;
}

/** Escapes control characters: names come from the file, and must neither break lines nor drive the terminal. */
const clean = (s: string) => s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);

function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, c) => rows.reduce((w, r) => Math.max(w, r[c].length), 0));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join("  "));
}

function render(ck: Checkpoint, rows: Row[], json: boolean): string {
  const total = {
    tensors: rows.length,
    parameters: rows.reduce((s, r) => s + r.bytes / safetensorsItemBytes.get(r.dtype)!, 0),
    bytes: rows.reduce((s, r) => s + r.bytes, 0),
  };
  const sharded = ck.files.length > 1;
  if (json) {
    // One tensor per line: readable, and still one JSON document.
    const tensors = rows.map(({ file, ...r }) => JSON.stringify(sharded ? { ...r, file: baseName(file) } : r));
    const head = { path: ck.path, files: ck.files, total, metadata: ck.metadata };
    return `${JSON.stringify(head).slice(0, -1)},\n"tensors": [\n${tensors.join(",\n")}\n]}`;
  }
  const header = ["name", "dtype", "shape", "bytes", ...(sharded ? ["file"] : [])];
  const body = rows.map((r) => [clean(r.name), r.dtype, `[${r.shape.join(", ")}]`, String(r.bytes), ...(sharded ? [baseName(r.file)] : [])]);
  const meta = Object.entries(ck.metadata);
  return [
    `${clean(ck.path)}${sharded ? ` (${ck.files.length} files)` : ""}`,
    ...table([header, ...body]),
    `total: ${total.tensors} tensors, ${total.parameters} parameters, ${total.bytes} bytes (${humanBytes(total.bytes)})`,
    meta.length ? "metadata:" : "metadata: none",
    ...meta.map(([k, v]) => `  ${clean(k)}: ${clean(typeof v === "string" ? v : JSON.stringify(v))}`),
  ].join("\n");
}

export async function run(args: string[]): Promise<number> {
  const p = parseArgs(args, [], ["json"]);
  if (p.positionals.length !== 1) {
    throw new UsageError(`inspect needs exactly one file, got ${p.positionals.length}`, "flux2ts inspect <file.safetensors> [--json]");
  }
  const path = p.positionals[0];
  let out: string;
  try {
    const ck = await openCheckpoint(path);
    const rows = ck.names().map((name): Row => {
      const e = ck.get(name);
      return { name, dtype: e.dtype, shape: e.shape, bytes: e.end - e.begin, file: ck.fileOf(name) };
    });
    out = render(ck, rows, p.flags.has("json"));
  } catch (e) {
    // core's errors are plain Errors starting with the file's path; anything else (a bug) gets the path put first.
    const msg = e instanceof Error && e.constructor === Error ? e.message : `${path}: ${String(e)}`;
    console.error(`flux2ts: ${clean(msg)}`);
    return 2;
  }
  console.log(out);
  return 0;
}
