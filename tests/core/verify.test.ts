import { describe, expect, test } from "bun:test";
import { joinPath, writeSafetensors } from "../../core/index.ts";
import { CaseError, type CaseJson, compare, EXACT, formatTable, globMatcher, loadCase, registerCase, verifyCase } from "../../core/verify.ts";
import { run } from "../../cli/verify.ts";
import { sesReplay } from "../../search/ses_core.ts";
import { FIXTURES, testDevice } from "../util.ts";

const FIXTURE = `${FIXTURES}/ses_dwt`;

const f32 = (xs: number[]) => ({ dtype: "F32", shape: [xs.length], data: new Uint8Array(Float32Array.from(xs).buffer) });

/** Writes a case folder with the given case.json text (or object) and io tensors; returns its path. */
async function writeCase(json: unknown, io: Record<string, { dtype: string; shape: number[]; data: Uint8Array }> | null): Promise<string> {
  const fs = await import("node:fs/promises");
  const os = await import("node:os");
  const dir = await fs.mkdtemp(joinPath(os.tmpdir(), "flux2ts-verify-"));
  if (json !== null) await fs.writeFile(joinPath(dir, "case.json"), typeof json === "string" ? json : JSON.stringify(json));
  if (io) await fs.writeFile(joinPath(dir, "io.safetensors"), writeSafetensors(io));
  return dir;
}

const fakeJson: CaseJson = {
  case: "verify_test_fake",
  inputs: { x: { shape: [2], dtype: "F32" } },
  outputs: { a: { shape: [3], dtype: "F32" }, b: { shape: [2, 2], dtype: "F32" }, c: { shape: [3], dtype: "F32" }, n: { shape: [2], dtype: "I32" } },
  debug: { dbg: { shape: [2], dtype: "F32" } },
  suggested_tolerance: { a: { atol: 1e-3 }, "*": { atol: 1e-6 }, "b*": { atol: 0.5, rtol: 0.1 } },
};
const fakeIo = () => ({
  x: f32([1, 2]),
  a: f32([1, 2, 3]),
  b: { ...f32([1, 0, -1, 0]), shape: [2, 2] },
  c: f32([0, 0, 0]),
  n: { dtype: "I32", shape: [2], data: new Uint8Array(Int32Array.from([7, -3]).buffer) },
  dbg: f32([5, 5]),
});
let fakeOutputs = new Map<string, Float32Array>();
registerCase("verify_test_fake", async () => fakeOutputs);
// The same case, from a runner that declares it does not produce the debug tensors "db*".
registerCase("verify_test_declared", async () => fakeOutputs, { notProduced: { "db*": "the test runner has no such stage" } });
// A case whose runner recomputes an input (token ids, as the end-to-end runner does from the prompt text).
const tokenJson: CaseJson = {
  case: "verify_test_tokens",
  inputs: { ids: { shape: [3], dtype: "I32" } },
  outputs: { y: { shape: [1], dtype: "F32" } },
  suggested_tolerance: { y: { atol: 1e-6 } },
};
const tokenIo = () => ({ ids: { dtype: "I32", shape: [3], data: new Uint8Array(Int32Array.from([5, 6, 7]).buffer) }, y: f32([0.5]) });
let ourIds = Float32Array.from([5, 6, 7]);
registerCase("verify_test_tokens", async () => new Map([["ids", ourIds], ["y", Float32Array.from([0.5])]]), { rules: { ids: { ...EXACT, rule: "token ids: exact" } } });

describe("verify", () => {
  test("the ses_dwt fixture passes every output and debug tensor", async () => {
    const dev = await testDevice();
    const r = await verifyCase(FIXTURE, dev);
    const c = await loadCase(FIXTURE);
    expect(r.kind).toBe("ses_dwt");
    // Every output and debug tensor; the recorded draws, which the replay consumes, are a declared SKIP.
    expect(r.rows.map((x) => x.name)).toEqual([...Object.keys(c.json.outputs), ...Object.keys(c.json.debug ?? {})]);
    for (const row of r.rows) {
      if (row.name === "search_z_noise") {
        expect(row.status).toBe("SKIP");
        continue;
      }
      if (row.status !== "PASS") throw new Error(`${row.name}: ${row.status} max abs err ${row.maxAbsErr} > ${row.atol}`);
      expect(row.maxAbsErr).toBeLessThan(2e-6);
    }
    expect(formatTable(r)).toMatch(/1 skipped \(declared not produced\)/);
    expect(r.code).toBe(0);
  }, 120_000);

  test("PASS/FAIL/MISSING, atol + rtol·|ref|, glob precedence and exit code 1", async () => {
    const dev = await testDevice();
    const dir = await writeCase(fakeJson, fakeIo());
    fakeOutputs = new Map([
      ["a", Float32Array.from([1.0005, 2, 3])], // within the exact-name bound 1e-3 (not the "*" 1e-6)
      ["b", Float32Array.from([1.55, 0, -1, 0.49])], // 0.55 <= 0.5 + 0.1·1 and 0.49 <= 0.5: "b*" beats "*"
      ["n", Float32Array.from([7, -3])],
      ["extra", Float32Array.from([1])],
    ]);
    let r = await verifyCase(dir, dev);
    const status = Object.fromEntries(r.rows.map((x) => [x.name, x.status]));
    expect(status).toEqual({ a: "PASS", b: "PASS", c: "MISSING", n: "PASS", dbg: "MISSING" });
    expect(r.code).toBe(1);
    expect(r.notes.join()).toContain("extra");
    fakeOutputs = new Map([["a", Float32Array.from([1, 2, NaN])], ["b", Float32Array.from([1.7, 0, -1, 0])], ["c", new Float32Array(2)], ["dbg", Float32Array.from([5, 5])]]);
    r = await verifyCase(dir, dev, { only: "a,b,c,dbg" });
    expect(r.rows.map((x) => `${x.name}:${x.status}`)).toEqual(["a:FAIL", "b:FAIL", "c:FAIL", "dbg:PASS"]);
    expect(r.rows[2].note).toMatch(/produced 2 values, expected 3/);
    expect(r.rows[1].relErr).toBeGreaterThan(0.48);
    await expect(verifyCase(dir, dev, { only: "zzz" })).rejects.toThrow(/selects none/);
  }, 60_000);

  test("a debug tensor the runner does not produce fails unless the runner declares it; declared ones print SKIP", async () => {
    const dev = await testDevice();
    const produced = new Map([["a", Float32Array.from([1, 2, 3])], ["b", Float32Array.from([1, 0, -1, 0])], ["c", Float32Array.from([0, 0, 0])], ["n", Float32Array.from([7, -3])]]);
    fakeOutputs = produced;
    const undeclared = await verifyCase(await writeCase(fakeJson, fakeIo()), dev);
    expect(undeclared.rows.find((x) => x.name === "dbg")!.status).toBe("MISSING");
    expect(undeclared.code).toBe(1);
    const dir = await writeCase({ ...fakeJson, case: "verify_test_declared" }, fakeIo());
    const declared = await verifyCase(dir, dev);
    const dbg = declared.rows.find((x) => x.name === "dbg")!;
    expect([dbg.status, dbg.note]).toEqual(["SKIP", "not produced by the runner: the test runner has no such stage"]);
    expect(declared.code).toBe(0);
    const table = formatTable(declared);
    expect(table).toMatch(/^dbg \(debug\) +SKIP /m);
    expect(table).toMatch(/4 pass, 0 fail, 0 missing, 1 skipped \(declared not produced\)/);
    expect(await run([dir])).toBe(0);
    fakeOutputs = new Map([...produced, ["dbg", Float32Array.from([5, 6])]]); // produced after all: compared
    expect((await verifyCase(dir, dev)).rows.find((x) => x.name === "dbg")!.status).toBe("FAIL");
  }, 60_000);

  test("a token id or mask mismatch is a FAIL and the command exits 1", async () => {
    const dev = await testDevice();
    const dir = await writeCase(tokenJson, tokenIo());
    ourIds = Float32Array.from([5, 6, 7]);
    const same = await verifyCase(dir, dev);
    expect(same.rows.map((x) => `${x.section} ${x.name}:${x.status}`)).toEqual(["inputs ids:PASS", "outputs y:PASS"]);
    expect(await run([dir])).toBe(0);
    ourIds = Float32Array.from([5, 6, 8]);
    expect((await verifyCase(dir, dev)).rows[0].status).toBe("FAIL");
    expect(await run([dir])).toBe(1);
    ourIds = Float32Array.from([5, 6]);
    expect(await run([dir])).toBe(1);
  }, 60_000);

  test("no fallback bound: a tensor with neither a case tolerance nor a runner rule fails; rules are named", async () => {
    const dir = await writeCase({ ...fakeJson, suggested_tolerance: { a: { atol: 1e-4 } } }, fakeIo());
    const c = await loadCase(dir);
    const exact = new Map([["b", Float32Array.from([1, 0, -1, 0])], ["c", Float32Array.from([0, 0, 0])], ["n", Float32Array.from([7, -3])]]);
    const rows = await compare(c, exact, { rules: { "b*": { atol: 0.25, rule: "test rule" } } });
    const b = rows.find((x) => x.name === "b")!, n = rows.find((x) => x.name === "n")!, cc = rows.find((x) => x.name === "c")!;
    expect([b.status, b.tolSource, b.atol, b.rule]).toEqual(["PASS", "runner", 0.25, "test rule"]);
    // Exact values, but no bound anywhere: FAIL (the old fallback scaled the case's loosest atol by max|ref|).
    expect([n.status, n.tolSource, cc.status]).toEqual(["FAIL", "none", "FAIL"]);
    expect(n.note).toMatch(/no tolerance/);
    expect(globMatcher("dwt_*,x?")("dwt_s0")).toBe(true);
    expect(globMatcher("dwt_*,x?")("xy")).toBe(true);
    expect(globMatcher("dwt_*,x?")("xyz")).toBe(false);
  }, 60_000);

  test("malformed cases are CaseErrors and the command exits 2", async () => {
    const dev = await testDevice();
    const cases: [string, Promise<string>, RegExp][] = [
      ["no case.json", writeCase(null, fakeIo()), /no case\.json/],
      ["bad JSON", writeCase("{ \"case\": ", fakeIo()), /case\.json: /],
      ["no io.safetensors", writeCase(fakeJson, null), /no io\.safetensors/],
      ["input missing", writeCase({ ...fakeJson, inputs: { y: { shape: [2], dtype: "F32" } } }, fakeIo()), /inputs tensor "y" declared in case\.json is missing/],
      ["shape mismatch", writeCase({ ...fakeJson, inputs: { x: { shape: [3], dtype: "F32" } } }, fakeIo()), /"x" has shape \[2\], case\.json declares \[3\]/],
      ["unknown kind", writeCase({ ...fakeJson, case: "no_such_kind" }, fakeIo()), /no runner for case kind "no_such_kind" \(known: .*ses_dwt/],
    ];
    for (const [label, dir, msg] of cases) {
      const err = await verifyCase(await dir, dev).then(() => null, (e) => e as Error);
      if (!(err instanceof CaseError)) throw new Error(`${label}: expected a CaseError, got ${err}`);
      expect(err.message).toMatch(msg);
    }
    expect(await run([await cases[1][1]])).toBe(2);
    expect(await run([FIXTURE, "--only", "dwt_s1_c_low,dwt_s1_high_level3_*"])).toBe(0);
  }, 120_000);

  test("sesReplay: partial last generation, elitism and strict best", () => {
    // D = 1, popsize 2, budget 5: generations of 2, 2, 1; z is the candidate itself at mean 0, std 1.
    const draws = Float32Array.from([1, 2, 3, 4, 5, 6]);
    const { generations, best } = sesReplay({ popsize: 2, kElites: 2, budget: 5 }, Float32Array.from([9]), draws, [1, 1, 0, 2, 2]);
    expect(generations.map((g) => g.evaluated.length)).toEqual([2, 2, 1]);
    expect(best.index).toBe(3); // the later 2 does not replace the first 2 (strictly greater only)
    expect([...generations[0].mean]).toEqual([1.5]); // elites {1, 2}: ties keep evaluation order
    const std1 = Math.fround(Math.sqrt(Math.fround(0.5 + Math.fround(1e-7)))); // unbiased var of {1, 2} + 1e-7
    expect(generations[1].std[0]).toBe(std1);
    const c3 = Math.fround(1.5 + Math.fround(4 * std1)); // elites after generation 1: c3 (score 2), c0 = 1 (score 1, older)
    expect(Math.abs(generations[1].variance![0] - (c3 - 1) ** 2 / 2)).toBeLessThan(1e-6);
    expect(() => sesReplay({ popsize: 2, kElites: 2, budget: 5 }, Float32Array.from([9]), draws.subarray(0, 4), [1, 1, 0, 2, 2])).toThrow(/draws cover 2 generations/);
  });
});
