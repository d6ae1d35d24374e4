// Reference-case verification, generic over models: a case folder (shared/fixtures layout) holds case.json,
// io.safetensors and optionally weights.safetensors. Runners are registered per case kind by the modules that
// know the model; this file only loads and validates a case, dispatches to a runner and compares its tensors.
// - Loading validates everything declared before any runner starts: every tensor of inputs/outputs/debug must be
//   in io.safetensors with the declared shape. Any problem is a CaseError (the CLI exits 2).
// - Dispatch: case.json's `case` field names the kind; a registration may also claim cases by a predicate (for
//   folders whose `case` is not a kind, e.g. numbered end-to-end cases).
// - Comparison, per expected tensor the runner produced (outputs always, debug when produced): max abs error and
//   ‖ours − ref‖/‖ref‖; PASS iff |ours − ref| ≤ atol + rtol·|ref| everywhere. An output the runner did not produce
//   is MISSING (a failure). Tolerances come from suggested_tolerance (exact name, else the longest matching glob),
//   then the runner's own defaults, else a stated fallback: integers exact (uint8 ±1), floats the case's loosest float
//   suggested atol scaled by max(1, max|ref|).
import type { Device } from "./device.ts";
import { exists, joinPath, readText } from "./platform.ts";
import { openSafetensors, type SafetensorsFile } from "./safetensors.ts";

/** A malformed case or an unusable request: the command exits with code 2. */
export class CaseError extends Error {}

export interface TensorSpec {
  shape: number[];
  dtype: string;
  doc?: string;
}

export interface Tolerance {
  atol: number;
  rtol?: number;
}

export interface CaseJson {
  case: string;
  function?: string;
  inputs: Record<string, TensorSpec>;
  outputs: Record<string, TensorSpec>;
  debug?: Record<string, TensorSpec>;
  suggested_tolerance?: Record<string, Tolerance>;
  [key: string]: unknown;
}

export interface LoadedCase {
  dir: string;
  json: CaseJson;
  io: SafetensorsFile;
  /** weights.safetensors when the folder has one. */
  weights?: SafetensorsFile;
  /** The shape of a tensor of io.safetensors (declared ones validated against case.json). */
  shape(name: string): number[];
  has(name: string): boolean;
  /** A tensor of io.safetensors as f32 (integers converted), read once. */
  tensor(name: string): Promise<Float32Array>;
  /** Whether `--only` selects this name: runners may skip work nobody compares. */
  wants(name: string): boolean;
  /** Remarks a runner wants printed under the table. */
  notes: string[];
}

export type Runner = (c: LoadedCase, dev: Device) => Promise<Map<string, Float32Array>>;

interface Registration {
  kind: string;
  runner: Runner;
  match?: (json: CaseJson, dir: string) => boolean;
  tolerance: Record<string, Tolerance>;
}

const registry: Registration[] = [];

/**
 * Registers the runner of a case kind (case.json `case`). `match` claims other cases too; `tolerance` gives
 * bounds (names or globs) for tensors the case itself has no suggested tolerance for.
 */
export function registerCase(
  kind: string,
  runner: Runner,
  opts: { match?: (json: CaseJson, dir: string) => boolean; tolerance?: Record<string, Tolerance> } = {},
): void {
  if (registry.some((r) => r.kind === kind)) throw new Error(`registerCase: kind "${kind}" is registered twice`);
  registry.push({ kind, runner, match: opts.match, tolerance: opts.tolerance ?? {} });
}

export function knownKinds(): string[] {
  return registry.map((r) => r.kind).sort();
}

function findRegistration(json: CaseJson, dir: string): Registration {
  const r = registry.find((r) => r.kind === json.case) ?? registry.find((r) => r.match?.(json, dir));
  if (!r) throw new CaseError(`${dir}: no runner for case kind "${json.case}" (known: ${knownKinds().join(", ") || "none"})`);
  return r;
}

/** A glob with `*` and `?`, or several separated by commas. */
export function globMatcher(pattern: string): (name: string) => boolean {
  const res = pattern.split(",").map((p) => new RegExp(`^${p.trim().replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`));
  return (name) => res.some((re) => re.test(name));
}

function isSpecMap(v: unknown): v is Record<string, TensorSpec> {
  return !!v && typeof v === "object" && Object.values(v).every((s) => !!s && Array.isArray((s as TensorSpec).shape) && typeof (s as TensorSpec).dtype === "string");
}

/** Reads and validates a case folder. */
export async function loadCase(dir: string, only?: string): Promise<LoadedCase> {
  const jsonPath = joinPath(dir, "case.json");
  if (!(await exists(jsonPath))) throw new CaseError(`${dir}: no case.json`);
  let json: CaseJson;
  try {
    json = JSON.parse(await readText(jsonPath));
  } catch (e) {
    throw new CaseError(`${jsonPath}: ${(e as Error).message}`);
  }
  if (!json || typeof json !== "object" || typeof json.case !== "string") throw new CaseError(`${jsonPath}: no "case" string`);
  for (const sec of ["inputs", "outputs", "debug"] as const) {
    if ((sec !== "debug" || json[sec] !== undefined) && !isSpecMap(json[sec])) {
      throw new CaseError(`${jsonPath}: "${sec}" must map names to {shape, dtype}`);
    }
  }
  const ioPath = joinPath(dir, "io.safetensors");
  if (!(await exists(ioPath))) throw new CaseError(`${dir}: no io.safetensors`);
  let io: SafetensorsFile, weights: SafetensorsFile | undefined;
  try {
    io = await openSafetensors(ioPath);
    const wPath = joinPath(dir, "weights.safetensors");
    if (await exists(wPath)) weights = await openSafetensors(wPath);
  } catch (e) {
    throw new CaseError((e as Error).message);
  }
  for (const sec of ["inputs", "outputs", "debug"] as const) {
    for (const [name, spec] of Object.entries(json[sec] ?? {})) {
      if (!io.has(name)) throw new CaseError(`${ioPath}: ${sec} tensor "${name}" declared in case.json is missing`);
      const got = io.get(name).shape;
      if (got.length !== spec.shape.length || got.some((d, i) => d !== spec.shape[i])) {
        throw new CaseError(`${ioPath}: tensor "${name}" has shape [${got}], case.json declares [${spec.shape}]`);
      }
    }
  }
  for (const [pattern, tol] of Object.entries(json.suggested_tolerance ?? {})) {
    if (typeof tol?.atol !== "number" || (tol.rtol !== undefined && typeof tol.rtol !== "number")) {
      throw new CaseError(`${jsonPath}: suggested_tolerance "${pattern}" needs a numeric atol (and optional rtol)`);
    }
  }
  const cache = new Map<string, Promise<Float32Array>>();
  const wants = only ? globMatcher(only) : () => true;
  return {
    dir,
    json,
    io,
    weights,
    notes: [],
    wants,
    has: (name) => io.has(name),
    shape(name) {
      if (!io.has(name)) throw new CaseError(`${ioPath}: no tensor "${name}"`);
      return io.get(name).shape;
    },
    tensor(name) {
      if (!io.has(name)) return Promise.reject(new CaseError(`${ioPath}: no tensor "${name}"`));
      let t = cache.get(name);
      if (!t) cache.set(name, (t = io.readFloat32(name)));
      return t;
    },
  };
}

export type Status = "PASS" | "FAIL" | "MISSING";

export interface Row {
  name: string;
  section: "outputs" | "debug";
  status: Status;
  maxAbsErr: number;
  relErr: number;
  maxAbsRef: number;
  atol: number;
  rtol: number;
  /** Where the bound came from: "case", "runner" or "default". */
  tolSource: "case" | "runner" | "default";
  note?: string;
}

function lookupTolerance(table: Record<string, Tolerance>, name: string): Tolerance | undefined {
  if (table[name]) return table[name];
  const globs = Object.keys(table).filter((p) => /[*?]/.test(p) && globMatcher(p)(name)).sort((a, b) => b.length - a.length);
  return globs.length ? table[globs[0]] : undefined;
}

function toleranceFor(c: LoadedCase, runnerTol: Record<string, Tolerance>, name: string, spec: TensorSpec, maxRef: number): [Tolerance, Row["tolSource"]] {
  const fromCase = lookupTolerance(c.json.suggested_tolerance ?? {}, name);
  if (fromCase) return [fromCase, "case"];
  const fromRunner = lookupTolerance(runnerTol, name);
  if (fromRunner) return [fromRunner, "runner"];
  if (/^[IU]\d+$/i.test(spec.dtype)) return [{ atol: spec.dtype.toUpperCase() === "U8" ? 1 : 0 }, "default"];
  // Loosest bound among float tensors only: a uint8 image's ±1 must not become the bound of a score.
  const specs = { ...c.json.inputs, ...c.json.outputs, ...c.json.debug };
  const isInt = (pattern: string) => {
    const names = Object.keys(specs).filter(globMatcher(pattern));
    return names.length > 0 && names.every((n) => /^[IU]\d+$/i.test(specs[n].dtype));
  };
  const floatTols = Object.entries(c.json.suggested_tolerance ?? {}).filter(([k]) => !isInt(k));
  const loosest = Math.max(0, ...floatTols.map(([, t]) => t.atol ?? 0));
  return [{ atol: (loosest || 1e-5) * Math.max(1, maxRef) }, "default"];
}

/** Compares produced tensors with the case's expected ones; `runnerTol` bounds tensors the case gives none for. */
export async function compare(c: LoadedCase, produced: Map<string, Float32Array>, runnerTol: Record<string, Tolerance> = {}): Promise<Row[]> {
  const rows: Row[] = [];
  const sections = [["outputs", c.json.outputs], ["debug", c.json.debug ?? {}]] as const;
  for (const [section, specs] of sections) {
    for (const [name, spec] of Object.entries(specs)) {
      if (!c.wants(name)) continue;
      const ours = produced.get(name);
      if (!ours && section === "debug") continue;
      const ref = await c.tensor(name);
      let maxRef = 0;
      for (const v of ref) maxRef = Math.max(maxRef, Math.abs(v));
      const [tol, tolSource] = toleranceFor(c, runnerTol, name, spec, maxRef);
      const rtol = tol.rtol ?? 0;
      const row: Row = { name, section, status: "MISSING", maxAbsErr: NaN, relErr: NaN, maxAbsRef: maxRef, atol: tol.atol, rtol, tolSource };
      if (!ours) {
        rows.push(row);
        continue;
      }
      if (ours.length !== ref.length) {
        rows.push({ ...row, status: "FAIL", note: `produced ${ours.length} values, expected ${ref.length}` });
        continue;
      }
      let maxErr = 0, num = 0, den = 0, ok = true;
      for (let i = 0; i < ref.length; i++) {
        const d = Math.abs(ours[i] - ref[i]);
        if (!(d <= tol.atol + rtol * Math.abs(ref[i]))) ok = false; // a NaN fails here and propagates below
        maxErr = d > maxErr || Number.isNaN(d) ? d : maxErr;
        num += d * d;
        den += ref[i] * ref[i];
      }
      const rel = den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
      rows.push({ ...row, status: ok ? "PASS" : "FAIL", maxAbsErr: maxErr, relErr: rel });
    }
  }
  const expected = new Set([...Object.keys(c.json.outputs), ...Object.keys(c.json.debug ?? {})]);
  const extra = [...produced.keys()].filter((n) => !expected.has(n));
  if (extra.length) c.notes.push(`produced but not in case.json (not compared): ${extra.join(", ")}`);
  return rows;
}

export interface VerifyResult {
  dir: string;
  kind: string;
  rows: Row[];
  notes: string[];
  /** 0 all PASS, 1 any FAIL or MISSING. */
  code: 0 | 1;
  seconds: number;
}

/** Loads a case, runs its registered runner and compares. Throws CaseError for malformed cases / unknown kinds. */
export async function verifyCase(dir: string, dev: Device, opts: { only?: string } = {}): Promise<VerifyResult> {
  const c = await loadCase(dir, opts.only);
  const reg = findRegistration(c.json, dir);
  const t0 = performance.now();
  const produced = await reg.runner(c, dev);
  const rows = await compare(c, produced, reg.tolerance);
  if (opts.only && !rows.length) throw new CaseError(`--only "${opts.only}" selects none of the case's tensors`);
  const code = rows.every((r) => r.status === "PASS") ? 0 : 1;
  return { dir, kind: reg.kind, rows, notes: c.notes, code, seconds: (performance.now() - t0) / 1000 };
}

const fmt = (x: number) => (Number.isNaN(x) ? "NaN" : x === 0 ? "0" : x.toExponential(2));

/** The result as a fixed-width table with a summary line. */
export function formatTable(r: VerifyResult): string {
  const head = ["tensor", "status", "max abs err", "bound", "rel err", "max |ref|"];
  const body = r.rows.map((row) => [
    row.section === "debug" ? `${row.name} (debug)` : row.name,
    row.status,
    row.status === "MISSING" ? "-" : fmt(row.maxAbsErr),
    `${fmt(row.atol)}${row.rtol ? ` + ${fmt(row.rtol)}·|ref|` : ""}${row.tolSource === "case" ? "" : ` (${row.tolSource})`}`,
    row.status === "MISSING" ? "-" : fmt(row.relErr),
    fmt(row.maxAbsRef),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((s, i) => s.padEnd(widths[i])).join("  ").trimEnd();
  const count = (s: Status) => r.rows.filter((x) => x.status === s).length;
  const out = [line(head), line(widths.map((w) => "-".repeat(w))), ...body.map(line)];
  for (const row of r.rows) if (row.note) out.push(`${row.name}: ${row.note}`);
  for (const n of r.notes) out.push(`note: ${n}`);
  out.push(`${r.kind} (${r.dir}): ${count("PASS")} pass, ${count("FAIL")} fail, ${count("MISSING")} missing in ${r.seconds.toFixed(1)} s`);
  return out.join("\n");
}
