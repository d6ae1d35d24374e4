// Reference-case verification, generic over models: a case folder (shared/fixtures layout) holds case.json,
// io.safetensors and optionally weights.safetensors. Runners are registered per case kind by the modules that
// know the model; this file only loads and validates a case, dispatches to a runner and compares its tensors.
// - Loading validates everything declared before any runner starts: every tensor of inputs/outputs/debug must be
//   in io.safetensors with the declared shape. Any problem is a CaseError (the CLI exits 2).
// - Dispatch: case.json's `case` field names the kind; a registration may also claim cases by a predicate (for
//   folders whose `case` is not a kind, e.g. numbered end-to-end cases).
// - Comparison, per expected tensor (every output and debug tensor, and any input the runner recomputes, such as
//   token ids): max abs error and ‖ours − ref‖/‖ref‖; PASS iff |ours − ref| ≤ atol + rtol·|ref| everywhere.
// - Nothing passes unchecked: an output or debug tensor the runner did not produce is MISSING (a failure), unless it
//   is a debug tensor the runner declares it does not produce (`notProduced`, with the reason): then it is SKIP,
//   counted in the summary. Every compared tensor's bound is the case's suggested_tolerance (exact name, else the
//   longest matching glob) or a named rule of the runner; a tensor with neither FAILs. There is no fallback bound.
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

/** A runner's bound for tensors a case gives none for, named by why it is right (shown in the table). */
export interface Rule extends Tolerance {
  rule: string;
}

/** Integers (ids, masks, coordinates) are exact. */
export const EXACT: Rule = { atol: 0, rule: "integers: exact" };

/** How a runner's results are judged beyond the case's own tolerances (names or globs as keys). */
export interface Judging {
  /** Bounds for tensors the case gives none for. */
  rules?: Record<string, Rule>;
  /** Debug tensors the runner does not produce, each with the reason; they print as SKIP. */
  notProduced?: Record<string, string>;
}

interface Registration extends Judging {
  kind: string;
  runner: Runner;
  match?: (json: CaseJson, dir: string) => boolean;
}

const registry: Registration[] = [];

/**
 * Registers the runner of a case kind (case.json `case`). `match` claims other cases too; `rules` bound tensors the
 * case itself gives no tolerance for; `notProduced` names the debug tensors the runner does not produce.
 */
export function registerCase(kind: string, runner: Runner, opts: Judging & { match?: (json: CaseJson, dir: string) => boolean } = {}): void {
  if (registry.some((r) => r.kind === kind)) throw new Error(`registerCase: kind "${kind}" is registered twice`);
  registry.push({ ...opts, kind, runner });
}

/** The rules and declarations a kind is judged by (for tests that compare a runner's parts on their own). */
export function judgingOf(kind: string): Judging {
  const r = registry.find((r) => r.kind === kind);
  if (!r) throw new Error(`judgingOf: no kind "${kind}"`);
  return { rules: r.rules, notProduced: r.notProduced };
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

export type Status = "PASS" | "FAIL" | "MISSING" | "SKIP";

export interface Row {
  name: string;
  /** "inputs" only for inputs the runner recomputes (token ids and masks). */
  section: "inputs" | "outputs" | "debug";
  status: Status;
  maxAbsErr: number;
  relErr: number;
  maxAbsRef: number;
  /** NaN when no bound applies (SKIP, MISSING, or no tolerance at all, which FAILs). */
  atol: number;
  rtol: number;
  /** Where the bound came from: the case's suggested_tolerance, a runner's named rule, or nowhere. */
  tolSource: "case" | "runner" | "none";
  /** The runner rule's name. */
  rule?: string;
  note?: string;
}

/** `name`'s entry in a table keyed by names or patterns (globs, comma lists): the exact name, else the longest match. */
function lookup<T>(table: Record<string, T>, name: string): T | undefined {
  if (Object.hasOwn(table, name)) return table[name];
  const globs = Object.keys(table).filter((p) => /[*?,]/.test(p) && globMatcher(p)(name)).sort((a, b) => b.length - a.length);
  return globs.length ? table[globs[0]] : undefined;
}

/** Compares produced tensors with the case's expected ones, judged as `judging` says (see the header). */
export async function compare(c: LoadedCase, produced: Map<string, Float32Array>, judging: Judging = {}): Promise<Row[]> {
  const rows: Row[] = [];
  const sections = [["inputs", c.json.inputs], ["outputs", c.json.outputs], ["debug", c.json.debug ?? {}]] as const;
  for (const [section, specs] of sections) {
    for (const name of Object.keys(specs)) {
      if (!c.wants(name)) continue;
      const ours = produced.get(name);
      if (!ours && section === "inputs") continue;
      const ref = await c.tensor(name);
      let maxRef = 0;
      for (const v of ref) maxRef = Math.max(maxRef, Math.abs(v));
      const fromCase = lookup(c.json.suggested_tolerance ?? {}, name);
      const fromRunner = fromCase ? undefined : lookup(judging.rules ?? {}, name);
      const tol = fromCase ?? fromRunner;
      const row: Row = {
        name,
        section,
        status: "MISSING",
        maxAbsErr: NaN,
        relErr: NaN,
        maxAbsRef: maxRef,
        atol: tol?.atol ?? NaN,
        rtol: tol ? (tol.rtol ?? 0) : NaN,
        tolSource: fromCase ? "case" : fromRunner ? "runner" : "none",
        rule: fromRunner?.rule,
      };
      if (!ours) {
        const reason = section === "debug" ? lookup(judging.notProduced ?? {}, name) : undefined;
        rows.push(reason === undefined ? row : { ...row, status: "SKIP", note: `not produced by the runner: ${reason}` });
        continue;
      }
      if (!tol) {
        rows.push({ ...row, status: "FAIL", note: "no tolerance: case.json suggests none and the runner has no rule for it" });
        continue;
      }
      if (ours.length !== ref.length) {
        rows.push({ ...row, status: "FAIL", note: `produced ${ours.length} values, expected ${ref.length}` });
        continue;
      }
      let maxErr = 0, num = 0, den = 0, ok = true;
      for (let i = 0; i < ref.length; i++) {
        const d = Math.abs(ours[i] - ref[i]);
        if (!(d <= row.atol + row.rtol * Math.abs(ref[i]))) ok = false; // a NaN fails here and propagates below
        maxErr = d > maxErr || Number.isNaN(d) ? d : maxErr;
        num += d * d;
        den += ref[i] * ref[i];
      }
      const rel = den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
      rows.push({ ...row, status: ok ? "PASS" : "FAIL", maxAbsErr: maxErr, relErr: rel });
    }
  }
  const expected = new Set([...Object.keys(c.json.inputs), ...Object.keys(c.json.outputs), ...Object.keys(c.json.debug ?? {})]);
  const extra = [...produced.keys()].filter((n) => !expected.has(n));
  if (extra.length) c.notes.push(`produced but not in case.json (not compared): ${extra.join(", ")}`);
  return rows;
}

export interface VerifyResult {
  dir: string;
  kind: string;
  rows: Row[];
  notes: string[];
  /** 0 all PASS (or SKIP), 1 any FAIL or MISSING. */
  code: 0 | 1;
  seconds: number;
}

/** Loads a case, runs its registered runner and compares. Throws CaseError for malformed cases / unknown kinds. */
export async function verifyCase(dir: string, dev: Device, opts: { only?: string } = {}): Promise<VerifyResult> {
  const c = await loadCase(dir, opts.only);
  const reg = findRegistration(c.json, dir);
  const t0 = performance.now();
  const produced = await reg.runner(c, dev);
  const rows = await compare(c, produced, reg);
  if (opts.only && !rows.length) throw new CaseError(`--only "${opts.only}" selects none of the case's tensors`);
  const code = rows.every((r) => r.status === "PASS" || r.status === "SKIP") ? 0 : 1;
  return { dir, kind: reg.kind, rows, notes: c.notes, code, seconds: (performance.now() - t0) / 1000 };
}

const fmt = (x: number) => (Number.isNaN(x) ? "NaN" : x === 0 ? "0" : x.toExponential(2));

/** The result as a fixed-width table with a summary line. */
export function formatTable(r: VerifyResult): string {
  const head = ["tensor", "status", "max abs err", "bound", "rel err", "max |ref|"];
  const body = r.rows.map((row) => [
    row.section === "outputs" ? row.name : `${row.name} (${row.section === "debug" ? "debug" : "input"})`,
    row.status,
    Number.isNaN(row.maxAbsErr) ? "-" : fmt(row.maxAbsErr),
    Number.isNaN(row.atol) ? "-" : `${fmt(row.atol)}${row.rtol ? ` + ${fmt(row.rtol)}·|ref|` : ""}${row.rule ? ` (rule: ${row.rule})` : ""}`,
    Number.isNaN(row.relErr) ? "-" : fmt(row.relErr),
    fmt(row.maxAbsRef),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((s, i) => s.padEnd(widths[i])).join("  ").trimEnd();
  const count = (s: Status) => r.rows.filter((x) => x.status === s).length;
  const out = [line(head), line(widths.map((w) => "-".repeat(w))), ...body.map(line)];
  for (const row of r.rows) if (row.note) out.push(`${row.name}: ${row.note}`);
  for (const n of r.notes) out.push(`note: ${n}`);
  out.push(`${r.kind} (${r.dir}): ${count("PASS")} pass, ${count("FAIL")} fail, ${count("MISSING")} missing, ${count("SKIP")} skipped (declared not produced) in ${r.seconds.toFixed(1)} s`);
  return out.join("\n");
}
