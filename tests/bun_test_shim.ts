// Lets the bun:test suites run under `deno test`: deno.json maps "bun:test" here.
// Only what the suites use, with bun's meaning (tests/bun_test_shim.test.ts pins each point under both runtimes):
// - describe/test/it with a timeout argument (a test running longer fails, naming the limit), beforeAll/afterAll;
// - test.skip / test.skipIf(cond) / describe.skip / describe.skipIf(cond) register the test as ignored, so Deno
//   prints its name (which carries the reason) and counts it, instead of dropping it;
// - expect(...).toEqual compares structurally as bun does: NaN equals NaN, +0 differs from −0 except inside typed
//   arrays (compared element by element with ===), null differs from undefined, properties holding undefined count
//   as absent, Maps and Sets compare by content in any order, prototypes are not compared (arrays and plain objects
//   do differ).
type Fn = () => unknown | Promise<unknown>;
type Timeout = number | { timeout?: number };
interface DenoTestDef { name: string; fn: Fn; ignore: boolean; sanitizeOps: boolean; sanitizeResources: boolean; sanitizeExit: boolean }
const DenoNs = (globalThis as unknown as { Deno?: { test(o: DenoTestDef): void; inspect(v: unknown): string } }).Deno;
/** A value for a failure message: Deno's inspector, or (in a page, where `expect` is reused) String / JSON. */
const show = (v: unknown): string => {
  if (DenoNs) return DenoNs.inspect(v);
  try {
    return typeof v === "object" && v !== null ? JSON.stringify(v, (_k, x) => (typeof x === "number" && !Number.isFinite(x) ? String(x) : x)) : String(v);
  } catch {
    return String(v);
  }
};
const prefix: string[] = [];
const beforeAlls: Fn[] = [];
const afterAlls: Fn[] = [];
let ranBefore = false;
let pending = 0;
let skipDepth = 0;

/** Runs `fn`, failing if it has not settled after `ms` milliseconds (bun's message). */
async function withTimeout(name: string, fn: Fn, ms: number | undefined): Promise<void> {
  if (ms === undefined) return void (await fn());
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`test "${name}" timed out after ${ms}ms`)), ms);
  });
  try {
    await Promise.race([fn(), expired]);
  } finally {
    clearTimeout(timer);
  }
}

function register(name: string, fn: Fn, timeout: Timeout | undefined, skip: boolean): void {
  const full = [...prefix, name].join(" > ");
  const ms = typeof timeout === "number" ? timeout : timeout?.timeout;
  const ignore = skip || skipDepth > 0;
  if (!ignore) pending++;
  DenoNs!.test({
    name: full,
    ignore,
    sanitizeOps: false,
    sanitizeResources: false,
    sanitizeExit: false,
    async fn() {
      if (!ranBefore) {
        ranBefore = true;
        for (const b of beforeAlls) await b();
      }
      try {
        await withTimeout(full, fn, ms);
      } finally {
        if (--pending === 0) for (const a of afterAlls) await a();
      }
    },
  });
}

export function test(name: string, fn: Fn, timeout?: Timeout): void {
  register(name, fn, timeout, false);
}
test.skip = (name: string, fn: Fn, timeout?: Timeout) => register(name, fn, timeout, true);
test.skipIf = (cond: unknown) => (cond ? test.skip : test);
export const it = test;

export function describe(name: string, fn: () => void, skip = false): void {
  prefix.push(name);
  if (skip) skipDepth++;
  try {
    fn();
  } finally {
    if (skip) skipDepth--;
    prefix.pop();
  }
}
describe.skip = (name: string, fn: () => void) => describe(name, fn, true);
describe.skipIf = (cond: unknown) => (cond ? describe.skip : describe);

export const beforeAll = (fn: Fn) => void beforeAlls.push(fn);
export const afterAll = (fn: Fn) => void afterAlls.push(fn);

/** bun's toEqual (see the header). */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (ArrayBuffer.isView(a) || ArrayBuffer.isView(b) || a instanceof ArrayBuffer || b instanceof ArrayBuffer) return sameBytesOrElements(a, b);
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  for (const Box of [Date, Number, String, Boolean, RegExp, Error] as const) {
    if (a instanceof Box !== b instanceof Box) return false;
  }
  if (a instanceof Date) return Object.is(a.getTime(), (b as Date).getTime());
  if (a instanceof RegExp) return String(a) === String(b);
  if (a instanceof Error && (a.name !== (b as Error).name || a.message !== (b as Error).message)) return false;
  if (a instanceof Number || a instanceof String || a instanceof Boolean) return Object.is(a.valueOf(), (b as typeof a).valueOf());
  if (a instanceof Map || b instanceof Map) {
    if (!(a instanceof Map && b instanceof Map) || a.size !== b.size) return false;
    return [...a].every(([k, v]) => (b.has(k) ? deepEqual(v, b.get(k)) : [...b].some(([k2, v2]) => deepEqual(k, k2) && deepEqual(v, v2))));
  }
  if (a instanceof Set || b instanceof Set) {
    if (!(a instanceof Set && b instanceof Set) || a.size !== b.size) return false;
    return [...a].every((v) => b.has(v) || [...b].some((w) => deepEqual(v, w)));
  }
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    for (let i = 0; i < Math.max(a.length, bb.length); i++) if (!deepEqual(a[i], bb[i])) return false;
    return true;
  }
  const ra = a as Record<PropertyKey, unknown>, rb = b as Record<PropertyKey, unknown>;
  const keys = new Set<PropertyKey>([...Reflect.ownKeys(a), ...Reflect.ownKeys(b)]);
  for (const k of keys) {
    const enumerable = Object.prototype.propertyIsEnumerable.call(a, k) || Object.prototype.propertyIsEnumerable.call(b, k);
    if (enumerable && !deepEqual(ra[k], rb[k])) return false;
  }
  return true;
}

/** Typed arrays of one type element by element (===, as bun: NaN ≠ NaN, 0 = −0); DataViews and buffers by byte. */
function sameBytesOrElements(a: object, b: object): boolean {
  if (a.constructor !== b.constructor) return false;
  const view = (x: object) => (x instanceof ArrayBuffer ? new Uint8Array(x) : x instanceof DataView ? new Uint8Array(x.buffer, x.byteOffset, x.byteLength) : x) as ArrayLike<unknown>;
  const va = view(a), vb = view(b);
  if (va.length !== vb.length) return false;
  for (let i = 0; i < va.length; i++) if (va[i] !== vb[i]) return false;
  return true;
}

class Expectation {
  constructor(private actual: unknown, private negate = false) {}
  get not() {
    return new Expectation(this.actual, !this.negate);
  }
  private check(ok: boolean, msg: string) {
    if (ok === this.negate) throw new Error(`expect: ${this.negate ? "not " : ""}${msg}`);
  }
  toBe(v: unknown) { this.check(Object.is(this.actual, v), `${String(this.actual)} to be ${String(v)}`); }
  toEqual(v: unknown) { this.check(deepEqual(this.actual, v), `${show(this.actual)} to equal ${show(v)}`); }
  toBeLessThan(v: number) { this.check((this.actual as number) < v, `${this.actual} < ${v}`); }
  toBeLessThanOrEqual(v: number) { this.check((this.actual as number) <= v, `${this.actual} <= ${v}`); }
  toBeGreaterThan(v: number) { this.check((this.actual as number) > v, `${this.actual} > ${v}`); }
  toBeGreaterThanOrEqual(v: number) { this.check((this.actual as number) >= v, `${this.actual} >= ${v}`); }
  toBeTrue() { this.check(this.actual === true, `${this.actual} to be true`); }
  toBeDefined() { this.check(this.actual !== undefined, `value to be defined`); }
  toContain(v: unknown) { this.check((this.actual as { includes(x: unknown): boolean }).includes(v), `${String(this.actual)} to contain ${String(v)}`); }
  toMatch(re: RegExp | string) { this.check(new RegExp(re).test(String(this.actual)), `${String(this.actual)} to match ${re}`); }
  toThrow(re?: RegExp | string) {
    let threw = false, msg = "";
    try { (this.actual as () => unknown)(); } catch (e) { threw = true; msg = String((e as Error).message); }
    this.check(threw && (!re || new RegExp(re).test(msg)), `function to throw ${re ?? ""} (got "${msg}")`);
  }
  get rejects() {
    const p = this.actual as Promise<unknown>;
    return {
      toThrow: async (re?: RegExp | string) => {
        let msg: string | undefined;
        try { await p; } catch (e) { msg = String((e as Error).message); }
        if (msg === undefined || (re && !new RegExp(re).test(msg))) throw new Error(`expect: promise to reject with ${re ?? "an error"} (got ${msg})`);
      },
    };
  }
}
export const expect = (v: unknown) => new Expectation(v);
