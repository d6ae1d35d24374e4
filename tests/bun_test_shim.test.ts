// The Deno shim of bun:test (tests/bun_test_shim.ts) against bun itself. The toEqual table runs under both
// runtimes: under Bun it pins bun's own answers (measured with bun 1.4.5), under Deno it checks the shim gives the
// same ones (the old JSON-text comparison failed the NaN/null, ±0 and typed-array rows). The registration tests
// replace Deno.test for a moment and read what the shim hands it, so they need Deno.
import { describe, expect, test } from "bun:test";

type DenoTestDef = { name: string; ignore?: boolean; fn: () => Promise<void> };
const Deno = (globalThis as unknown as { Deno?: { test: (d: DenoTestDef) => void } }).Deno;

class Point {
  constructor(public x: number) {}
}

/** [label, a, b, does bun's toEqual accept]. */
const TABLE: [string, unknown, unknown, boolean][] = [
  ["NaN = NaN", NaN, NaN, true],
  ["+0 ≠ −0", 0, -0, false],
  ["nested +0 ≠ −0", { a: [0] }, { a: [-0] }, false],
  ["null ≠ undefined", null, undefined, false],
  ["[null] ≠ [undefined]", [null], [undefined], false],
  ["null ≠ {}", null, {}, false],
  ["{} ≠ []", {}, [], false],
  ["a property holding undefined is absent", { a: 1, b: undefined }, { a: 1 }, true],
  ["trailing undefined element", [1, undefined], [1], true],
  ["longer array", [1, 2], [1], false],
  ["string ≠ number", "1", 1, false],
  ["typed array ≠ plain array", Float32Array.of(1), [1], false],
  ["Float32Array ≠ Float64Array", Float32Array.of(1), Float64Array.of(1), false],
  ["typed arrays compare with ===: NaN ≠ NaN", Float32Array.of(NaN), Float32Array.of(NaN), false],
  ["typed arrays compare with ===: 0 = −0", Float32Array.of(0), Float32Array.of(-0), true],
  ["typed arrays differ in one element", Uint8Array.of(1, 2), Uint8Array.of(1, 3), false],
  ["typed arrays differ in length", Uint8Array.of(1), Uint8Array.of(1, 0), false],
  ["Maps in any order", new Map([[1, 2], [3, 4]]), new Map([[3, 4], [1, 2]]), true],
  ["Map values deep", new Map([[1, { a: [1] }]]), new Map([[1, { a: [1] }]]), true],
  ["Map values −0", new Map([["a", 0]]), new Map([["a", -0]]), false],
  ["Map object keys deep", new Map([[{ a: 1 }, 1]]), new Map([[{ a: 1 }, 1]]), true],
  ["Sets in any order", new Set([1, 2]), new Set([2, 1]), true],
  ["Set of objects deep", new Set([{ a: 1 }]), new Set([{ a: 1 }]), true],
  ["Sets differ", new Set([1, 2]), new Set([1, 3]), false],
  ["class instance = plain object", new Point(1), { x: 1 }, true],
  ["dates", new Date(1), new Date(1), true],
  ["regexps by flags", /a/g, /a/, false],
  ["errors by message", new Error("a"), new Error("b"), false],
  ["errors by name", new TypeError("a"), new Error("a"), false],
  ["boxed number ≠ primitive", new Number(1), 1, false],
  ["symbol keys compared", { [Symbol.for("s")]: 1 }, { [Symbol.for("s")]: 2 }, false],
  ["nested NaN", { a: [NaN] }, { a: [NaN] }, true],
];

describe("bun:test shim", () => {
  test("toEqual agrees with bun on every row", () => {
    const wrong: string[] = [];
    for (const [label, a, b, equal] of TABLE) {
      let accepted = true;
      try {
        expect(a).toEqual(b);
      } catch {
        accepted = false;
      }
      if (accepted !== equal) wrong.push(`${label}: toEqual ${accepted ? "accepted" : "rejected"}`);
    }
    expect(wrong).toEqual([]);
  });

  test.skipIf(!Deno)("skips are registered as ignored, a timeout fails the test (Deno only: reads Deno.test)", async () => {
    const shim = await import("./bun_test_shim.ts");
    const registered: DenoTestDef[] = [];
    const real = Deno!.test;
    Deno!.test = (d) => void registered.push(d);
    try {
      shim.test.skip("a", () => {});
      shim.test.skipIf(true)("b", () => {});
      shim.test.skipIf(false)("c", () => {});
      shim.describe.skipIf(true)("d", () => shim.test("e", () => {}));
      shim.describe.skip("f", () => shim.it("g", () => {}));
      shim.describe("h", () => shim.test("i", () => {}));
      shim.test("slow", () => new Promise((r) => setTimeout(r, 2000)), 50);
      shim.test("quick", () => new Promise((r) => setTimeout(r, 10)), { timeout: 1000 });
    } finally {
      Deno!.test = real;
    }
    expect(registered.map((d) => `${d.name}:${d.ignore ? "ignored" : "runs"}`)).toEqual(["a:ignored", "b:ignored", "c:runs", "d > e:ignored", "f > g:ignored", "h > i:runs", "slow:runs", "quick:runs"]);
    const t0 = performance.now();
    await expect(registered[6].fn()).rejects.toThrow(/^test "slow" timed out after 50ms$/);
    expect(performance.now() - t0).toBeLessThan(1500);
    await registered[7].fn();
  });
});
