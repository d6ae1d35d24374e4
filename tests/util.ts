// Test helpers: one poisoned device per process, seeded CPU random data, error norms, fixture cases.
import { expect } from "bun:test";
import { Device, env, fileUrlToPath } from "../core/index.ts";
import { formatTable, verifyCase, type VerifyResult } from "../core/verify.ts";

let shared: Promise<Device> | undefined;

/** The process-wide test device. Every pooled allocation is NaN-filled so unwritten outputs show. */
export function testDevice(): Promise<Device> {
  shared ??= Device.open().then((d) => {
    d.poison = true;
    return d;
  });
  return shared;
}

/** Deterministic uniform values in [lo, hi) (mulberry32). */
export function rand(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return out;
}

/** ‖out − ref‖ / ‖ref‖ (Infinity on any NaN or length mismatch). */
export function relErr(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (out.length !== ref.length) return Infinity;
  let num = 0, den = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = out[i] - ref[i];
    if (Number.isNaN(d)) return Infinity;
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

export function maxAbsErr(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(out[i] - ref[i]);
    if (Number.isNaN(d)) return Infinity;
    m = Math.max(m, d);
  }
  return m;
}

/** The message `fn` throws ("(no error)" when it returns): match it with toContain, which needs no regex escaping. */
export function thrown(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  return "(no error)";
}

/** Throws with the error figures when out is not within `tol` relative error of ref. */
export function assertClose(out: ArrayLike<number>, ref: ArrayLike<number>, tol: number, label: string): number {
  const e = relErr(out, ref);
  if (!(e <= tol)) {
    let firstBad = -1;
    for (let i = 0; i < ref.length && firstBad < 0; i++) if (!(Math.abs(out[i] - ref[i]) <= tol * (1 + Math.abs(ref[i])))) firstBad = i;
    throw new Error(`${label}: relative error ${e.toExponential(3)} > ${tol} (len ${out.length}/${ref.length}; first bad index ${firstBad}: got ${out[firstBad]}, want ${ref[firstBad]})`);
  }
  return e;
}

/**
 * Runs a fixture case (its runner must be imported) and expects no FAIL, and no MISSING unless `allowMissing` names
 * it; prints the table when something fails. Returns the result for the caller's own checks.
 */
export async function expectCasePasses(dir: string, allowMissing?: RegExp): Promise<VerifyResult> {
  const r = await verifyCase(dir, await testDevice());
  const bad = r.rows.filter((row) => row.status === "FAIL" || (row.status === "MISSING" && !allowMissing?.test(row.name)));
  if (bad.length) console.log(formatTable(r));
  expect(bad.map((row) => `${row.name}: ${row.status}`)).toEqual([]);
  return r;
}

/**
 * The fixtures folder: `fromEnv` when set, else ../shared/fixtures beside the checkout holding `utilUrl` (this file):
 * a path, or a URL when this file was served to a page.
 */
export function fixturesFolder(fromEnv: string | undefined, utilUrl: string | URL): string {
  const beside = new URL("../../shared/fixtures", utilUrl);
  return fromEnv || (beside.protocol === "file:" ? fileUrlToPath(beside) : beside.href);
}

/** The shared reference fixtures: $FLUX2TS_FIXTURES, else ../shared/fixtures beside the checkout. */
export const FIXTURES: string = fixturesFolder(env("FLUX2TS_FIXTURES"), import.meta.url);
