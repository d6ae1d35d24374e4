// Safetensors reader/writer, checkpoints and `flux2ts inspect`. A corpus of broken files is written to a temp dir:
// each must fail with "<path>: <problem>" naming the problem, in the library and through the CLI (exit 2, one
// stderr line, no stack trace). Good files round-trip every dtype; the real fixtures and the tiny sharded repo open.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileUrlToPath } from "../../core/platform.ts";
import { openCheckpoint, openSafetensors, safetensorsItemBytes, writeSafetensors } from "../../core/safetensors.ts";
import { FIXTURES } from "../util.ts";

const TEXT_ENCODER = `${FIXTURES}/repos/black-forest-labs/FLUX.2-klein-tiny/text_encoder`;
const ROOT = fileUrlToPath(new URL("../..", import.meta.url));
let dir = "";

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "flux2ts-st-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A file with header `json` (any text) and `data` zero bytes; `length` overrides the stored header length. */
function raw(json: string, data = 0, length?: bigint): Uint8Array {
  const h = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + h.length + data);
  new DataView(out.buffer).setBigUint64(0, length ?? BigInt(h.length), true);
  out.set(h, 8);
  return out;
}

const entry = (dtype: string, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });
const hdr = (o: Record<string, unknown>) => JSON.stringify(o);
const good = writeSafetensors({
  a: { dtype: "F32", shape: [2, 3], data: new Uint8Array(24).fill(1) },
  b: { dtype: "BF16", shape: [4], data: new Uint8Array(8).fill(2) },
});

// name -> [bytes, the problem the message must name]
const corpus: Record<string, [Uint8Array, RegExp]> = {
  empty: [new Uint8Array(0), /file is empty/],
  three_bytes: [new Uint8Array([1, 2, 3]), /only 3 bytes/],
  truncated_prefix: [good.subarray(0, 20), /header length \d+ runs past the end of the file \(20 bytes\)/],
  absurd_header_length: [raw("{}", 0, 1n << 62n), /header length 4611686018427387904 is absurd/],
  header_length_past_eof: [raw("{}", 0, 1000n), /header length 1000 runs past the end/],
  not_json: [raw("hello world"), /header is not valid JSON/],
  not_utf8: [Uint8Array.from([2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe]), /header is not valid UTF-8/],
  json_array: [raw("[1, 2]"), /header is an array of 2, not a JSON object/],
  json_number: [raw("42"), /header is 42, not a JSON object/],
  leading_space: [raw(" {}"), /header must start with "\{"/],
  entry_not_object: [raw(hdr({ a: 5 })), /tensor "a": entry is 5, not an object/],
  dtype_missing: [raw(hdr({ a: { shape: [1], data_offsets: [0, 4] } }), 4), /tensor "a": dtype is undefined, not a string/],
  unknown_dtype: [raw(hdr({ a: entry("F9", [1], [0, 4]) }), 4), /tensor "a": unknown dtype "F9"/],
  shape_not_array: [raw(hdr({ a: entry("F32", 4, [0, 16]) }), 16), /tensor "a": shape is 4, not an array/],
  negative_dim: [raw(hdr({ a: entry("F32", [2, -1], [0, 4]) }), 4), /tensor "a": shape dimension 1 is -1, not a non-negative integer/],
  fractional_dim: [raw(hdr({ a: entry("F32", [1.5], [0, 4]) }), 4), /tensor "a": shape dimension 0 is 1.5, not a non-negative integer/],
  string_dim: [raw(hdr({ a: entry("F32", ["2"], [0, 8]) }), 8), /tensor "a": shape dimension 0 is the string "2"/],
  overflowing_dim: [raw(hdr({ a: entry("U8", [2 ** 60], [0, 4]) }), 4), /tensor "a": shape dimension 0 \(1152921504606847000\) is too large/],
  overflowing_product: [raw(hdr({ a: entry("F32", [2 ** 30, 2 ** 30], [0, 4]) }), 4), /tensor "a": shape \[1073741824, 1073741824\] has too many elements/],
  deep_shape: [raw(`{"a":{"dtype":"F32","shape":${"[".repeat(100000)}${"]".repeat(100000)},"data_offsets":[0,4]}}`, 4), /tensor "a": shape dimension 0 is an array of 1/],
  offsets_not_pair: [raw(hdr({ a: entry("F32", [1], [0]) }), 4), /tensor "a": data_offsets is an array of 1, not \[begin, end\]/],
  offsets_negative: [raw(hdr({ a: entry("F32", [1], [-4, 0]) }), 4), /tensor "a": data_offsets \[-4, 0\] are not two non-negative integers/],
  offsets_reversed: [raw(hdr({ a: entry("F32", [1], [4, 0]) }), 4), /tensor "a": data_offsets \[4, 0\] are reversed/],
  offsets_past_end: [raw(hdr({ a: entry("F32", [2], [0, 8]) }), 4), /tensor "a": data_offsets \[0, 8\] run past the end of the data section \(4 bytes\)/],
  shape_bytes_disagree: [raw(hdr({ a: entry("F32", [3], [0, 8]) }), 8), /tensor "a": shape \[3\] of F32 needs 12 bytes but data_offsets \[0, 8\] span 8/],
  overlapping: [raw(hdr({ a: entry("F32", [2], [0, 8]), b: entry("F32", [2], [4, 12]) }), 12), /tensors "a" \[0, 8\] and "b" \[4, 12\] overlap/],
  hole_between: [raw(hdr({ a: entry("F32", [1], [0, 4]), b: entry("F32", [1], [8, 12]) }), 12), /hole: bytes \[4, 8\) before tensor "b"/],
  hole_at_end: [raw(hdr({ a: entry("F32", [1], [0, 4]) }), 8), /hole: its last 4 bytes \[4, 8\)/],
  metadata_not_strings: [raw(hdr({ __metadata__: { format: "pt", n: 1 } })), /__metadata__ must map strings to strings, but "n" is 1/],
  metadata_array: [raw(hdr({ __metadata__: ["pt"] })), /__metadata__ is an array of 1, not an object of strings/],
  truncated_data: [good.subarray(0, good.length - 4), /tensor "b": data_offsets \[24, 32\] run past the end of the data section \(28 bytes\)/],
  control_chars_in_name: [raw(hdr({ "x\ny\u0007": 1 })), /tensor "x\\ny\\u0007": entry is 1/],
};

const corpusPath = (name: string) => join(dir, `${name}.safetensors`);

describe("safetensors reader", () => {
  test("every malformed file fails with its path and the problem", async () => {
    for (const [name, [bytes, problem]] of Object.entries(corpus)) {
      const path = corpusPath(name);
      await writeFile(path, bytes);
      let msg = "";
      try {
        await openSafetensors(path);
      } catch (e) {
        msg = (e as Error).message;
      }
      expect(`${name}: ${msg.startsWith(`${path}: `)}`).toBe(`${name}: true`);
      expect(msg).toMatch(problem);
      expect(msg.includes("\n")).toBe(false);
    }
  });

  test("missing file", async () => {
    await expect(openSafetensors(join(dir, "nope.safetensors"))).rejects.toThrow(/nope\.safetensors: no such file or directory$/);
  });

  test("valid edge cases: empty header, zero-size and 0-rank tensors, padding", async () => {
    const path = join(dir, "edge.safetensors");
    const h = hdr({ z: entry("F32", [0, 5], [4, 4]), s: entry("I64", [], [4, 12]), u: entry("U8", [4], [0, 4]) });
    await writeFile(path, raw(h + "   ", 12));
    const st = await openSafetensors(path);
    expect(st.names()).toEqual(["s", "u", "z"]);
    expect(st.get("z").shape).toEqual([0, 5]);
    expect((await st.read("z")).length).toBe(0);
    expect(Array.from(await st.readFloat32("s"))).toEqual([0]);
    await writeFile(path, raw("{}"));
    expect((await openSafetensors(path)).names()).toEqual([]);
  });

  test("get names close tensors when one is missing", async () => {
    const path = join(dir, "names.safetensors");
    await writeFile(path, good);
    const st = await openSafetensors(path);
    expect(st.has("a")).toBe(true);
    expect(st.has("c")).toBe(false);
    expect(() => st.get("c")).toThrow(/names\.safetensors: no tensor "c" \(2 tensors; closest: "a", "b"\)/);
  });
});

describe("safetensors writer", () => {
  test("round-trips every dtype through the reader, readFloat32 decodes each", async () => {
    const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    const cases: Record<string, [Uint8Array, number[]]> = {
      F32: [bytesOf(Float32Array.of(1.5, -2, 3e-8)), [1.5, -2, Math.fround(3e-8)]],
      F64: [bytesOf(Float64Array.of(0.25, -1e10)), [0.25, -1e10]],
      F16: [bytesOf(Uint16Array.of(0x3c00, 0xc000, 0x0001, 0x7c00)), [1, -2, 2 ** -24, Infinity]],
      BF16: [bytesOf(Uint16Array.of(0x3f80, 0xc040, 0x0000)), [1, -3, 0]],
      F8_E5M2: [Uint8Array.of(0x3c, 0xc0, 0x01, 0x7c), [1, -2, 2 ** -16, Infinity]],
      F8_E4M3: [Uint8Array.of(0x38, 0xb8, 0x7e, 0x01), [1, -1, 448, 2 ** -9]],
      I64: [bytesOf(BigInt64Array.of(-3n, 0n, 1n << 40n)), [-3, 0, 2 ** 40]],
      U64: [bytesOf(BigUint64Array.of(7n, 1n << 63n)), [7, 2 ** 63]],
      I32: [bytesOf(Int32Array.of(-5, 1 << 30)), [-5, 2 ** 30]],
      U32: [bytesOf(Uint32Array.of(0xffffffff, 9)), [4294967296, 9]],
      I16: [bytesOf(Int16Array.of(-32768, 7)), [-32768, 7]],
      U16: [bytesOf(Uint16Array.of(65535, 1)), [65535, 1]],
      I8: [bytesOf(Int8Array.of(-128, 127)), [-128, 127]],
      U8: [Uint8Array.of(0, 255), [0, 255]],
      BOOL: [Uint8Array.of(1, 0, 1), [1, 0, 1]],
    };
    expect(Object.keys(cases).sort()).toEqual([...safetensorsItemBytes.keys()].sort());
    const tensors = Object.fromEntries(
      Object.entries(cases).map(([dtype, [data]]) => [`t.${dtype}`, { dtype, shape: [data.length / safetensorsItemBytes.get(dtype)!], data }]),
    );
    const file = writeSafetensors(tensors, { format: "pt", note: "round trip" });
    const headerLength = Number(new DataView(file.buffer).getBigUint64(0, true));
    expect(headerLength % 8).toBe(0);
    const header = new TextDecoder().decode(file.subarray(8, 8 + headerLength));
    expect(header.trimEnd().endsWith("}")).toBe(true);
    expect(header.length - header.trimEnd().length).toBeLessThan(8);
    const path = join(dir, "all_dtypes.safetensors");
    await writeFile(path, file);
    const st = await openSafetensors(path);
    expect(st.metadata).toEqual({ format: "pt", note: "round trip" });
    expect(st.dataStart).toBe(8 + headerLength);
    const names = st.names();
    expect(names).toEqual(Object.keys(tensors).sort());
    // Laid out in name order, back to back.
    let at = 0;
    for (const name of names) {
      expect(st.get(name).begin).toBe(at);
      at = st.get(name).end;
    }
    for (const [dtype, [data, values]] of Object.entries(cases)) {
      expect(Array.from(await st.read(`t.${dtype}`))).toEqual(Array.from(data));
      expect(`${dtype}: ${Array.from(await st.readFloat32(`t.${dtype}`)).join(" ")}`).toBe(`${dtype}: ${values.map(Math.fround).join(" ")}`);
    }
    expect(st.get("t.F8_E4M3").dtype).toBe("F8_E4M3");
  });

  test("NaN in f8 e4m3fn is S.1111.111 only", async () => {
    const path = join(dir, "nan.safetensors");
    await writeFile(path, writeSafetensors({ x: { dtype: "F8_E4M3", shape: [3], data: Uint8Array.of(0x7f, 0xff, 0x78) } }));
    const v = await (await openSafetensors(path)).readFloat32("x");
    expect([Number.isNaN(v[0]), Number.isNaN(v[1]), v[2]]).toEqual([true, true, 256]);
  });

  test("rejects inconsistent input", () => {
    expect(() => writeSafetensors({ a: { dtype: "F32", shape: [3], data: new Uint8Array(8) } })).toThrow(/tensor "a": shape \[3\] of F32 needs 12 bytes, data has 8/);
    expect(() => writeSafetensors({ a: { dtype: "Q4", shape: [1], data: new Uint8Array(1) } })).toThrow(/unknown dtype "Q4"/);
    expect(() => writeSafetensors({ a: { dtype: "F32", shape: [-1], data: new Uint8Array(0) } })).toThrow(/dimension 0 is -1/);
    expect(() => writeSafetensors({ __metadata__: { dtype: "U8", shape: [0], data: new Uint8Array(0) } })).toThrow(/reserved/);
  });
});

describe("stream", () => {
  test("chunks cover exactly the requested range, in order, with an async sink", async () => {
    const n = 1000;
    const data = Uint8Array.from({ length: n }, (_, i) => (i * 37 + 11) & 255);
    const path = join(dir, "stream.safetensors");
    await writeFile(path, writeSafetensors({ pre: { dtype: "U8", shape: [13], data: new Uint8Array(13) }, t: { dtype: "U8", shape: [n], data } }));
    const st = await openSafetensors(path);
    for (const [offset, length, chunk] of [[0, n, 64], [100, 777, 64], [5, 3, 1], [0, n, 1 << 20], [999, 1, 7], [10, 0, 8]]) {
      const got = new Uint8Array(length);
      const offsets: number[] = [];
      await st.stream("t", offset, length, async (at, bytes) => {
        await new Promise((r) => setTimeout(r, 0));
        offsets.push(at);
        got.set(bytes, at);
      }, chunk);
      expect(offsets).toEqual(Array.from({ length: Math.ceil(length / chunk) }, (_, i) => i * chunk));
      expect(Array.from(got)).toEqual(Array.from(data.subarray(offset, offset + length)));
    }
    await expect(st.stream("t", 900, 200, () => {})).rejects.toThrow(/tensor "t": bytes \[900, 1100\) are outside its 1000 bytes/);
    await expect(st.stream("t", 0, 10, () => {}, 0)).rejects.toThrow(/chunkBytes/);
    await expect(st.stream("t", 0, n, () => { throw new Error("sink failed"); }, 100)).rejects.toThrow(/sink failed/);
  });
});

describe("checkpoints", () => {
  const shard = (names: string[], seed: number) =>
    writeSafetensors(Object.fromEntries(names.map((name, i) => [name, { dtype: "F32", shape: [2], data: new Uint8Array(Float32Array.of(seed + i, -(seed + i)).buffer) }])));

  async function repo(name: string, index: Record<string, string> | undefined, shards: Record<string, string[]>): Promise<string> {
    const d = join(dir, name);
    await mkdir(d, { recursive: true });
    let seed = 0;
    for (const [file, names] of Object.entries(shards)) await writeFile(join(d, file), shard(names, (seed += 10)));
    if (index) await writeFile(join(d, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: 48 }, weight_map: index }));
    return d;
  }

  test("two shards through an index, by index path and by folder", async () => {
    const d = await repo("sharded", { x: "s1.safetensors", y: "s1.safetensors", z: "s2.safetensors" }, { "s1.safetensors": ["x", "y"], "s2.safetensors": ["z"] });
    for (const path of [join(d, "model.safetensors.index.json"), d]) {
      const ck = await openCheckpoint(path);
      expect(ck.names()).toEqual(["x", "y", "z"]);
      expect(ck.files.map((f) => f.slice(d.length + 1))).toEqual(["s1.safetensors", "s2.safetensors"]);
      expect(ck.fileOf("z")).toBe(join(d, "s2.safetensors"));
      expect(ck.metadata).toEqual({ total_size: 48 });
      expect(ck.get("y").shape).toEqual([2]);
      expect(Array.from(await ck.readFloat32("y"))).toEqual([11, -11]);
      expect(Array.from(await ck.readFloat32("z"))).toEqual([20, -20]);
      const parts: number[] = [];
      await ck.stream("z", 4, 4, (_, b) => void parts.push(...new Float32Array(b.slice().buffer)));
      expect(parts).toEqual([-20]);
      expect(() => ck.get("w")).toThrow(/no tensor "w"/);
    }
  });

  test("index errors: missing shard, tensor absent from its shard, no weight_map, path escape", async () => {
    const missing = await repo("missing_shard", { x: "s1.safetensors", z: "gone.safetensors" }, { "s1.safetensors": ["x"] });
    await expect(openCheckpoint(missing)).rejects.toThrow(/model\.safetensors\.index\.json: weight_map names shard "gone\.safetensors", which does not exist/);
    const absent = await repo("absent_tensor", { x: "s1.safetensors", q: "s1.safetensors" }, { "s1.safetensors": ["x"] });
    await expect(openCheckpoint(absent)).rejects.toThrow(/index\.json: weight_map puts tensor "q" in "s1\.safetensors", which has no such tensor/);
    const bad = join(dir, "bad.safetensors.index.json");
    await writeFile(bad, JSON.stringify({ weights: {} }));
    await expect(openCheckpoint(bad)).rejects.toThrow(/bad\.safetensors\.index\.json: index has no "weight_map" object/);
    await writeFile(bad, "{oops");
    await expect(openCheckpoint(bad)).rejects.toThrow(/bad\.safetensors\.index\.json: index is not valid JSON/);
    await writeFile(bad, JSON.stringify({ weight_map: { x: "../sharded/s1.safetensors" } }));
    await expect(openCheckpoint(bad)).rejects.toThrow(/shard "\.\.\/sharded\/s1\.safetensors" is outside the index's folder/);
  });

  test("a folder of files without an index; a tensor in two files is an error", async () => {
    const d = await repo("plain", undefined, { "a.safetensors": ["x"], "b.safetensors": ["y", "z"], "notes.txt": [] });
    const ck = await openCheckpoint(d);
    expect(ck.names()).toEqual(["x", "y", "z"]);
    expect(ck.fileOf("y")).toBe(join(d, "b.safetensors"));
    const dup = await repo("dup", undefined, { "a.safetensors": ["x"], "b.safetensors": ["x"] });
    await expect(openCheckpoint(dup)).rejects.toThrow(/tensor "x" is in both "a\.safetensors" and "b\.safetensors"/);
    const none = join(dir, "nothing");
    await mkdir(none, { recursive: true });
    await expect(openCheckpoint(none)).rejects.toThrow(/nothing: folder has no \.safetensors files and no index/);
    await expect(openCheckpoint(join(dir, "no_such_dir"))).rejects.toThrow(/no_such_dir: no such file or directory/);
  });

  test("the tiny FLUX.2-klein text encoder: 2 shards, index total_size matches", async () => {
    const ck = await openCheckpoint(TEXT_ENCODER);
    const names = ck.names();
    expect(names.length).toBe(398);
    expect(ck.files.map((f) => f.slice(f.lastIndexOf("/") + 1)).sort()).toEqual(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]);
    const bytes = names.reduce((s, n) => s + ck.get(n).end - ck.get(n).begin, 0);
    expect(bytes).toBe(ck.metadata.total_size as number);
    const norm = await ck.readFloat32("model.norm.weight");
    expect(norm.length).toBe(32);
    expect(norm.every(Number.isFinite)).toBe(true);
  });

  test("every fixture weights and io file opens and lists", async () => {
    const files: string[] = [];
    for (const c of (await readdir(FIXTURES)).sort()) {
      const inside = await readdir(join(FIXTURES, c)).catch(() => [] as string[]);
      for (const f of ["weights.safetensors", "io.safetensors"]) if (inside.includes(f)) files.push(join(FIXTURES, c, f));
    }
    expect(files.filter((f) => f.endsWith("weights.safetensors")).length).toBeGreaterThanOrEqual(7);
    for (const path of files) {
      const st = await openSafetensors(path);
      expect(st.names().length).toBeGreaterThan(0);
      const first = st.names()[0];
      const e = st.get(first);
      expect((await st.readFloat32(first)).length).toBe(e.shape.reduce((a, b) => a * b, 1));
    }
  });
});

describe("flux2ts inspect", () => {
  const deno = (globalThis as { Deno?: { execPath(): string } }).Deno;
  const cli = (...args: string[]) => {
    const [exe, pre] = deno ? [deno.execPath(), ["run", "-A", "--quiet"]] : [process.execPath, []];
    const r = spawnSync(exe, [...pre, "cli/flux2ts.ts", "inspect", ...args], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  test("every malformed or missing file: exit 2, one stderr line naming the file, no stack", async () => {
    for (const name of [...Object.keys(corpus), "missing"]) {
      const path = corpusPath(name);
      if (name in corpus) await writeFile(path, corpus[name][0]);
      const r = cli(path);
      const lines = r.stderr.split("\n").filter((l) => l !== "");
      expect(`${name}: ${r.status} ${lines.length}`).toBe(`${name}: 2 1`);
      expect(lines[0].startsWith(`flux2ts: ${path}: `)).toBe(true);
      expect(lines[0]).toMatch(name === "missing" ? /no such file or directory/ : corpus[name][1]);
      expect(r.stdout).toBe("");
    }
  }, 120_000);

  test("lists a good file, a sharded folder, and --json", async () => {
    const path = join(dir, "good.safetensors");
    await writeFile(path, writeSafetensors({ "w.b": { dtype: "F32", shape: [2, 3], data: new Uint8Array(24) }, "w.a": { dtype: "BF16", shape: [5], data: new Uint8Array(10) } }, { format: "pt" }));
    const r = cli(path);
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[1]).toMatch(/^name\s+dtype\s+shape\s+bytes$/);
    expect(lines[2]).toMatch(/^w\.a\s+BF16\s+\[5\]\s+10$/);
    expect(lines[3]).toMatch(/^w\.b\s+F32\s+\[2, 3\]\s+24$/);
    expect(r.stdout).toContain("total: 2 tensors, 11 parameters, 34 bytes");
    expect(r.stdout).toContain("  format: pt");
    const j = cli(path, "--json");
    expect(j.status).toBe(0);
    const parsed = JSON.parse(j.stdout) as { tensors: { name: string; bytes: number }[]; total: { bytes: number }; metadata: object };
    expect(parsed.tensors.map((t) => t.name)).toEqual(["w.a", "w.b"]);
    expect(parsed.total.bytes).toBe(34);
    expect(parsed.metadata).toEqual({ format: "pt" });
    const te = cli(TEXT_ENCODER);
    expect(te.status).toBe(0);
    expect(te.stdout).toContain("total: 398 tensors, 5418400 parameters, 10836800 bytes");
    expect(te.stdout).toMatch(/model\.norm\.weight\s+BF16\s+\[32\]\s+64\s+model-00002-of-00002\.safetensors/);
  }, 60_000);
});
