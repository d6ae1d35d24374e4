// The bun:test subset the suites use, for test files bundled into a page (selftest_page.ts): `describe`/`test`
// only register; `runRegistered` runs them in order and reports each. `expect` is the Deno shim's (it uses no
// runtime API), so the page checks with exactly the assertions Deno does.
export { expect } from "../bun_test_shim.ts";

type Fn = () => unknown | Promise<unknown>;

export interface TestOutcome {
  name: string;
  ok: boolean;
  ms: number;
  error?: string;
}

const registered: { name: string; fn: Fn }[] = [];
const prefix: string[] = [];
const beforeAlls: Fn[] = [];
const afterAlls: Fn[] = [];

export function describe(name: string, fn: () => void): void {
  prefix.push(name);
  fn();
  prefix.pop();
}

export function test(name: string, fn: Fn, _timeout?: number | { timeout?: number }): void {
  registered.push({ name: [...prefix, name].join(" > "), fn });
}
test.skip = (_name: string, _fn: Fn) => {};
test.skipIf = (cond: unknown) => (cond ? test.skip : test);
export const it = test;
export const beforeAll = (fn: Fn) => void beforeAlls.push(fn);
export const afterAll = (fn: Fn) => void afterAlls.push(fn);

/** Runs every registered test in registration order; `onResult` sees each outcome as it finishes. */
export async function runRegistered(onResult: (r: TestOutcome) => void = () => {}): Promise<TestOutcome[]> {
  const out: TestOutcome[] = [];
  for (const b of beforeAlls) await b();
  try {
    for (const t of registered) {
      const t0 = performance.now();
      let error: string | undefined;
      try {
        await t.fn();
      } catch (e) {
        error = String((e as Error).message ?? e);
      }
      const r: TestOutcome = { name: t.name, ok: error === undefined, ms: performance.now() - t0, ...(error === undefined ? {} : { error }) };
      out.push(r);
      onResult(r);
    }
  } finally {
    for (const a of afterAlls) await a();
  }
  return out;
}
