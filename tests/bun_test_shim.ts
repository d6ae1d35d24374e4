// Lets the bun:test suites run under `deno test`: deno.json maps "bun:test" here.
// Only what the suites use: describe/test/it (with timeouts), beforeAll/afterAll and a small expect.
type Fn = () => unknown | Promise<unknown>;
const DenoNs = (globalThis as unknown as { Deno: { test(o: { name: string; fn: Fn; sanitizeOps: boolean; sanitizeResources: boolean; sanitizeExit: boolean }): void } }).Deno;
const prefix: string[] = [];
const beforeAlls: Fn[] = [];
const afterAlls: Fn[] = [];
let ranBefore = false;
let pending = 0;

export function describe(name: string, fn: () => void): void {
  prefix.push(name);
  fn();
  prefix.pop();
}

export function test(name: string, fn: Fn, _timeout?: number | { timeout?: number }): void {
  pending++;
  DenoNs.test({
    name: [...prefix, name].join(" > "),
    sanitizeOps: false,
    sanitizeResources: false,
    sanitizeExit: false,
    async fn() {
      if (!ranBefore) {
        ranBefore = true;
        for (const b of beforeAlls) await b();
      }
      try {
        await fn();
      } finally {
        if (--pending === 0) for (const a of afterAlls) await a();
      }
    },
  });
}
test.skip = (_name: string, _fn: Fn) => {};
test.skipIf = (cond: boolean) => (cond ? test.skip : test);
export const it = test;
export const beforeAll = (fn: Fn) => void beforeAlls.push(fn);
export const afterAll = (fn: Fn) => void afterAlls.push(fn);

class Expectation {
  constructor(private actual: unknown, private negate = false) {}
  get not() {
    return new Expectation(this.actual, !this.negate);
  }
  private check(ok: boolean, msg: string) {
    if (ok === this.negate) throw new Error(`expect: ${this.negate ? "not " : ""}${msg}`);
  }
  toBe(v: unknown) { this.check(Object.is(this.actual, v), `${String(this.actual)} to be ${String(v)}`); }
  toEqual(v: unknown) { this.check(JSON.stringify(this.actual) === JSON.stringify(v), `${JSON.stringify(this.actual)} to equal ${JSON.stringify(v)}`); }
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
