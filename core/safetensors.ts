// Safetensors: a validating reader that reads only the header until a tensor is asked for, chunked streaming of
// byte ranges (an 8 GB file never sits in memory), a writer, and checkpoints split over shards (opening one reads
// every shard's header, so lookups are synchronous and the index is checked against the shards up front).
// Format (huggingface/safetensors README): u64 little-endian header length N, N bytes of UTF-8 JSON
// `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {string: string}}`, then the data section,
// which the tensors must cover exactly (no overlaps, no holes: that is what rules out polyglot files).
// Every check fails with "<path>: <problem>" on one line, so the CLI can print it as is: files come from anywhere.
// Files are read only through platform.openFile, so URLs work too; only listing a local folder needs node:fs.
import { decodeFloats, type DType, f16ToF32 } from "./dtype.ts";
import { exists, type FileSource, isUrl, joinPath, nodeFs, openFile } from "./platform.ts";

/** One tensor's header entry; `begin`/`end` are its `data_offsets`, relative to the start of the data section. */
export interface SafetensorsEntry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

/** Receives consecutive chunks of a byte range; `offset` is relative to the start of the range. */
export type ChunkSink = (offset: number, data: Uint8Array) => void | Promise<void>;

export interface SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  /** File offset of the data section (8 + header length). */
  readonly dataStart: number;
  /** Tensor names, sorted. */
  names(): string[];
  has(name: string): boolean;
  get(name: string): SafetensorsEntry;
  /** The raw little-endian bytes of a tensor. */
  read(name: string): Promise<Uint8Array>;
  /** A tensor of any numeric dtype converted to f32 (64-bit integers through Number, so exact up to 2^53). */
  readFloat32(name: string): Promise<Float32Array>;
  /** Reads bytes [byteOffset, byteOffset + byteLength) of a tensor in order, `chunkBytes` at a time. */
  stream(name: string, byteOffset: number, byteLength: number, sink: ChunkSink, chunkBytes?: number): Promise<void>;
}

/**
 * A model's weights: one .safetensors file, or several shards named by an index. Opening reads every shard's
 * header (one small read each, so `get` is synchronous and the index is checked against the shards up front);
 * tensor data is read only when asked for.
 */
export interface Checkpoint {
  readonly path: string;
  /** The index's "metadata" (e.g. total_size), a single file's `__metadata__`, or {} for a folder of files. */
  readonly metadata: Record<string, unknown>;
  /** The .safetensors files holding the tensors. */
  readonly files: readonly string[];
  names(): string[];
  has(name: string): boolean;
  /** The file holding a tensor. */
  fileOf(name: string): string;
  /** The opened file holding a tensor. */
  shardOf(name: string): SafetensorsFile;
  get(name: string): SafetensorsEntry;
  read(name: string): Promise<Uint8Array>;
  readFloat32(name: string): Promise<Float32Array>;
  stream(name: string, byteOffset: number, byteLength: number, sink: ChunkSink, chunkBytes?: number): Promise<void>;
}

/** Bytes per element of every dtype the format defines. All parse; only those in `gpuDTypes` go to the GPU. */
export const safetensorsItemBytes: ReadonlyMap<string, number> = new Map([
  ["BOOL", 1], ["U8", 1], ["I8", 1], ["F8_E4M3", 1], ["F8_E5M2", 1],
  ["U16", 2], ["I16", 2], ["F16", 2], ["BF16", 2],
  ["U32", 4], ["I32", 4], ["F32", 4],
  ["U64", 8], ["I64", 8], ["F64", 8],
]);

const gpuDTypes: ReadonlyMap<string, DType> = new Map([["F32", "f32"], ["F16", "f16"], ["BF16", "bf16"], ["I32", "i32"], ["U32", "u32"]]);

export function safetensorsDType(st: string, where: string): DType {
  const d = gpuDTypes.get(st);
  if (!d) throw new Error(`${where}: dtype ${st} cannot be stored on the GPU`);
  return d;
}

/** The reference implementation's limit: a bigger header is an attack, not a model. */
const MAX_HEADER = 100_000_000;
/** First read: the length and, for all but huge headers, the whole header in one request (one Range GET for URLs). */
const PROBE_BYTES = 1 << 16;
const DEFAULT_CHUNK = 64 << 20;
const INDEX_NAMES = ["model.safetensors.index.json", "diffusion_pytorch_model.safetensors.index.json"];
const SINGLE_NAMES = ["model.safetensors", "diffusion_pytorch_model.safetensors"];

const fail = (path: string, problem: string) => new Error(`${path}: ${problem}`);

const oneLine = (s: string) => s.replace(/\s+/g, " ").trim().slice(0, 200);

/** A name for messages: JSON-quoted (control characters escaped, so it stays on one line) and shortened. */
const quote = (s: string) => JSON.stringify(s.length > 100 ? s.slice(0, 100) + "…" : s);

/** Describes any JSON value without recursing into it (headers can nest arbitrarily deep). */
function kind(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === "string") return `the string ${quote(v)}`;
  if (typeof v === "object") return "an object";
  return String(v);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

const IO_PROBLEMS: Record<string, string> = {
  ENOENT: "no such file or directory",
  ENOTDIR: "not a directory (a parent of this path is a file)",
  EISDIR: "is a directory",
  EACCES: "permission denied",
  EPERM: "permission denied",
};

/** Runs a file operation, turning its failure into "<path>: <problem>". */
async function io<T>(path: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && Object.hasOwn(IO_PROBLEMS, code)) throw fail(path, IO_PROBLEMS[code]);
    const msg = oneLine(e instanceof Error ? e.message : String(e));
    throw msg.startsWith(`${path}: `) ? new Error(msg) : fail(path, msg);
  }
}

function decodeUtf8(path: string, bytes: Uint8Array, what: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw fail(path, `${what} is not valid UTF-8`);
  }
}

function parseJson(path: string, text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw fail(path, `${what} is not valid JSON (${oneLine(e instanceof Error ? e.message : String(e))})`);
  }
}

/** Element count of a shape, with a message for anything that is not a list of non-negative safe integers. */
function countOf(shape: unknown, itemBytes: number, bad: (problem: string) => Error): number {
  if (!Array.isArray(shape)) throw bad(`shape is ${kind(shape)}, not an array`);
  let count = 1;
  for (let i = 0; i < shape.length; i++) {
    const d: unknown = shape[i];
    if (typeof d !== "number" || !Number.isInteger(d) || d < 0) throw bad(`shape dimension ${i} is ${kind(d)}, not a non-negative integer`);
    if (!Number.isSafeInteger(d)) throw bad(`shape dimension ${i} (${d}) is too large`);
    count *= d;
  }
  if (!Number.isSafeInteger(count * itemBytes)) throw bad(`shape [${shape.join(", ")}] has too many elements to address`);
  return count;
}

function checkEntry(path: string, name: string, v: unknown, dataSize: number): SafetensorsEntry {
  const bad = (problem: string) => fail(path, `tensor ${quote(name)}: ${problem}`);
  if (!isObject(v)) throw bad(`entry is ${kind(v)}, not an object`);
  const { dtype, shape, data_offsets: offsets } = v;
  if (typeof dtype !== "string") throw bad(`dtype is ${kind(dtype)}, not a string`);
  const item = safetensorsItemBytes.get(dtype);
  if (item === undefined) throw bad(`unknown dtype ${quote(dtype)} (known: ${[...safetensorsItemBytes.keys()].join(" ")})`);
  const bytes = countOf(shape, item, bad) * item;
  if (!Array.isArray(offsets) || offsets.length !== 2) throw bad(`data_offsets is ${kind(offsets)}, not [begin, end]`);
  const [begin, end]: unknown[] = offsets;
  if (!Number.isSafeInteger(begin) || !Number.isSafeInteger(end) || (begin as number) < 0 || (end as number) < 0) {
    throw bad(`data_offsets [${kind(begin)}, ${kind(end)}] are not two non-negative integers`);
  }
  const [b, e] = [begin as number, end as number];
  if (b > e) throw bad(`data_offsets [${b}, ${e}] are reversed (begin > end)`);
  if (e - b !== bytes) throw bad(`shape [${(shape as number[]).join(", ")}] of ${dtype} needs ${bytes} bytes but data_offsets [${b}, ${e}] span ${e - b}`);
  if (e > dataSize) throw bad(`data_offsets [${b}, ${e}] run past the end of the data section (${dataSize} bytes): file truncated?`);
  return Object.freeze({ name, dtype, shape: Object.freeze([...(shape as number[])]) as number[], begin: b, end: e });
}

/** The tensors must tile the data section exactly, in some order. */
function checkCoverage(path: string, entries: SafetensorsEntry[], dataSize: number): void {
  const sorted = [...entries].sort((x, y) => x.begin - y.begin || x.end - y.end);
  let pos = 0;
  let prev: SafetensorsEntry | undefined;
  for (const e of sorted) {
    if (e.begin < pos) {
      throw fail(path, `tensors ${quote(prev!.name)} [${prev!.begin}, ${prev!.end}] and ${quote(e.name)} [${e.begin}, ${e.end}] overlap`);
    }
    if (e.begin > pos) throw fail(path, `data section has a hole: bytes [${pos}, ${e.begin}) before tensor ${quote(e.name)} belong to no tensor`);
    pos = e.end;
    prev = e;
  }
  if (pos < dataSize) throw fail(path, `data section has a hole: its last ${dataSize - pos} bytes [${pos}, ${dataSize}) belong to no tensor`);
}

function parseHeader(path: string, bytes: Uint8Array, dataSize: number) {
  const text = decodeUtf8(path, bytes, "header");
  const json = parseJson(path, text, "header");
  if (!isObject(json)) throw fail(path, `header is ${kind(json)}, not a JSON object`);
  if (!text.startsWith("{")) throw fail(path, `header must start with "{" (found whitespace before it)`);
  const entries = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(json)) {
    if (name !== "__metadata__") entries.set(name, checkEntry(path, name, v, dataSize));
    else if (!isObject(v)) throw fail(path, `__metadata__ is ${kind(v)}, not an object of strings`);
    else {
      const odd = Object.entries(v).find(([, s]) => typeof s !== "string");
      if (odd) throw fail(path, `__metadata__ must map strings to strings, but ${quote(odd[0])} is ${kind(odd[1])}`);
      metadata = v as Record<string, string>;
    }
  }
  checkCoverage(path, [...entries.values()], dataSize);
  return { entries, metadata };
}

/** Up to `n` names nearest to `name` by edit distance, for "did you mean" messages. */
function closeNames(name: string, names: string[], n = 3): string[] {
  const dist = (a: string, b: string) => {
    let row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      const next = [i];
      for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      row = next;
    }
    return row[b.length];
  };
  const key = name.slice(0, 200);
  // Sorted input: a window around where `name` would sort keeps pathological headers cheap.
  let at = names.findIndex((x) => x >= name);
  if (at < 0) at = names.length;
  const pool = names.length > 2000 ? names.slice(Math.max(0, at - 1000), at + 1000) : names;
  return pool
    .map((x) => ({ x, d: dist(key, x.slice(0, 200)) }))
    .sort((p, q) => p.d - q.d)
    .slice(0, n)
    .map((p) => quote(p.x));
}

function noSuchTensor(path: string, name: string, names: string[]): Error {
  const close = closeNames(name, names);
  return fail(path, `no tensor ${quote(name)} (${names.length} tensors${close.length ? `; closest: ${close.join(", ")}` : ""})`);
}

const f8Tables = new Map<string, Float32Array>();
function f8Table(dtype: "F8_E4M3" | "F8_E5M2"): Float32Array {
  let t = f8Tables.get(dtype);
  if (!t) {
    t = new Float32Array(256);
    for (let b = 0; b < 256; b++) {
      if (dtype === "F8_E5M2") t[b] = f16ToF32(b << 8); // e5m2 is the top byte of an f16
      else {
        // e4m3fn: bias 7, no infinities, only S.1111.111 is NaN
        const [s, e, m] = [b & 0x80 ? -1 : 1, (b >> 3) & 15, b & 7];
        t[b] = e === 15 && m === 7 ? NaN : s * (e ? (1 + m / 8) * 2 ** (e - 7) : (m / 8) * 2 ** -6);
      }
    }
    f8Tables.set(dtype, t);
  }
  return t;
}

/** Converts raw little-endian bytes of any safetensors dtype to f32 (the hosts we run on are little-endian). */
function toFloat32(bytes: Uint8Array, dtype: string): Float32Array {
  const gpu = gpuDTypes.get(dtype);
  if (gpu) return decodeFloats(bytes, gpu);
  const item = safetensorsItemBytes.get(dtype)!;
  const a = bytes.byteOffset % item ? bytes.slice() : bytes;
  const [buf, off, n] = [a.buffer, a.byteOffset, a.byteLength / item];
  switch (dtype) {
    case "F64": return Float32Array.from(new Float64Array(buf, off, n));
    case "I64": return Float32Array.from(new BigInt64Array(buf, off, n), Number);
    case "U64": return Float32Array.from(new BigUint64Array(buf, off, n), Number);
    case "I16": return Float32Array.from(new Int16Array(buf, off, n));
    case "U16": return Float32Array.from(new Uint16Array(buf, off, n));
    case "I8": return Float32Array.from(new Int8Array(buf, off, n));
    case "F8_E4M3":
    case "F8_E5M2": {
      const t = f8Table(dtype);
      return Float32Array.from(a, (b) => t[b]);
    }
    default: return Float32Array.from(a); // U8, BOOL
  }
}

class StFile implements SafetensorsFile {
  private readonly sorted: string[];

  constructor(
    readonly path: string,
    private readonly src: FileSource,
    readonly dataStart: number,
    private readonly entries: Map<string, SafetensorsEntry>,
    readonly metadata: Record<string, string>,
  ) {
    this.sorted = [...entries.keys()].sort();
  }

  names(): string[] {
    return [...this.sorted];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  get(name: string): SafetensorsEntry {
    const e = this.entries.get(name);
    if (!e) throw noSuchTensor(this.path, name, this.sorted);
    return e;
  }

  private async readAt(offset: number, length: number): Promise<Uint8Array> {
    return length === 0 ? new Uint8Array(0) : io(this.path, () => this.src.read(this.dataStart + offset, length));
  }

  read(name: string): Promise<Uint8Array> {
    const e = this.get(name);
    return this.readAt(e.begin, e.end - e.begin);
  }

  async readFloat32(name: string): Promise<Float32Array> {
    return toFloat32(await this.read(name), this.get(name).dtype);
  }

  async stream(name: string, byteOffset: number, byteLength: number, sink: ChunkSink, chunkBytes = DEFAULT_CHUNK): Promise<void> {
    const e = this.get(name);
    const size = e.end - e.begin;
    const ok = (x: number) => Number.isSafeInteger(x) && x >= 0;
    if (!ok(byteOffset) || !ok(byteLength) || byteOffset + byteLength > size) {
      throw fail(this.path, `tensor ${quote(name)}: bytes [${byteOffset}, ${byteOffset + byteLength}) are outside its ${size} bytes`);
    }
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes <= 0) throw new Error(`stream: chunkBytes must be a positive integer, got ${chunkBytes}`);
    // Reads one chunk ahead, so the disk (or network) works while the sink does.
    const fetch = (at: number) => {
      const p = this.readAt(e.begin + byteOffset + at, Math.min(chunkBytes, byteLength - at));
      p.catch(() => {}); // a failure surfaces when awaited; if the sink threw first, it is not "unhandled"
      return p;
    };
    let next = byteLength > 0 ? fetch(0) : undefined;
    for (let at = 0; next; at += chunkBytes) {
      const data = await next;
      next = at + chunkBytes < byteLength ? fetch(at + chunkBytes) : undefined;
      await sink(at, data);
    }
  }
}

/** Opens a .safetensors file (path or URL), reading and validating only its header. */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  const src = openFile(path);
  const size = await io(path, () => src.size());
  if (size === 0) throw fail(path, "file is empty, not a safetensors file");
  if (size < 8) throw fail(path, `file is only ${size} bytes, too short for the 8-byte header length`);
  const probe = await io(path, () => src.read(0, Math.min(size, PROBE_BYTES)));
  const n = new DataView(probe.buffer, probe.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER)) throw fail(path, `header length ${n} is absurd (over the ${MAX_HEADER}-byte limit): not a safetensors file?`);
  const headerLength = Number(n);
  if (headerLength > size - 8) throw fail(path, `header length ${headerLength} runs past the end of the file (${size} bytes): truncated or not a safetensors file`);
  const header = 8 + headerLength <= probe.length ? probe.subarray(8, 8 + headerLength) : await io(path, () => src.read(8, headerLength));
  const { entries, metadata } = parseHeader(path, header, size - 8 - headerLength);
  return new StFile(path, src, 8 + headerLength, entries, metadata);
}

/** Serialises tensors as a .safetensors file: sorted by name, header padded with spaces to a multiple of 8. */
export function writeSafetensors(
  tensors: Record<string, { dtype: string; shape: number[]; data: Uint8Array }>,
  metadata?: Record<string, string>,
): Uint8Array {
  const parts: string[] = [];
  if (metadata) {
    const odd = Object.entries(metadata).find(([, v]) => typeof v !== "string");
    if (odd) throw new Error(`writeSafetensors: metadata ${quote(odd[0])} is ${kind(odd[1])}, not a string`);
    parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  }
  const names = Object.keys(tensors).sort();
  let offset = 0;
  for (const name of names) {
    const bad = (problem: string) => new Error(`writeSafetensors: tensor ${quote(name)}: ${problem}`);
    if (name === "__metadata__") throw bad("the name is reserved");
    const { dtype, shape, data } = tensors[name];
    const item = safetensorsItemBytes.get(dtype);
    if (item === undefined) throw bad(`unknown dtype ${quote(dtype)}`);
    const bytes = countOf(shape, item, bad) * item;
    if (data.byteLength !== bytes) throw bad(`shape [${shape.join(", ")}] of ${dtype} needs ${bytes} bytes, data has ${data.byteLength}`);
    // Keys are written by hand: an object literal would drop the order and mishandle "__proto__".
    parts.push(`${JSON.stringify(name)}:${JSON.stringify({ dtype, shape, data_offsets: [offset, offset + bytes] })}`);
    offset += bytes;
  }
  const json = new TextEncoder().encode(`{${parts.join(",")}}`);
  const headerLength = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + headerLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLength);
  let at = 8 + headerLength;
  for (const name of names) {
    out.set(tensors[name].data, at);
    at += tensors[name].data.byteLength;
  }
  return out;
}

/** Names of the entries of a local folder, sorted. Needs the file system, so not for URLs. */
export async function listDir(path: string): Promise<string[]> {
  const fs = await nodeFs();
  return (await io(path, () => fs.readdir(path))).sort();
}

async function isLocalDir(path: string): Promise<boolean> {
  try {
    return (await (await nodeFs()).stat(path)).isDirectory();
  } catch {
    return false; // missing: opening it as a file reports that
  }
}

const dirOf = (path: string) => {
  const i = path.lastIndexOf("/");
  return i < 0 ? "" : i === 0 ? "/" : path.slice(0, i);
};
const baseOf = (path: string) => path.slice(path.lastIndexOf("/") + 1);

class Sharded implements Checkpoint {
  private readonly sorted: string[];

  constructor(
    readonly path: string,
    readonly metadata: Record<string, unknown>,
    private readonly where: Map<string, SafetensorsFile>,
    readonly files: readonly string[],
  ) {
    this.sorted = [...where.keys()].sort();
  }

  names(): string[] {
    return [...this.sorted];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  shardOf(name: string): SafetensorsFile {
    const st = this.where.get(name);
    if (!st) throw noSuchTensor(this.path, name, this.sorted);
    return st;
  }

  fileOf(name: string): string {
    return this.shardOf(name).path;
  }

  get(name: string): SafetensorsEntry {
    return this.shardOf(name).get(name);
  }

  read(name: string): Promise<Uint8Array> {
    return this.shardOf(name).read(name);
  }

  readFloat32(name: string): Promise<Float32Array> {
    return this.shardOf(name).readFloat32(name);
  }

  stream(name: string, byteOffset: number, byteLength: number, sink: ChunkSink, chunkBytes?: number): Promise<void> {
    return this.shardOf(name).stream(name, byteOffset, byteLength, sink, chunkBytes);
  }
}

async function openIndex(path: string): Promise<Checkpoint> {
  const src = openFile(path);
  const size = await io(path, () => src.size());
  if (size > MAX_HEADER) throw fail(path, `index is ${size} bytes, over the ${MAX_HEADER}-byte limit`);
  const json = parseJson(path, decodeUtf8(path, await io(path, () => src.read(0, size)), "index"), "index");
  if (!isObject(json) || !isObject(json.weight_map)) throw fail(path, `index has no "weight_map" object`);
  const shardOf = new Map<string, string>();
  for (const [name, shard] of Object.entries(json.weight_map)) {
    if (typeof shard !== "string" || shard === "") throw fail(path, `weight_map: tensor ${quote(name)} maps to ${kind(shard)}, not a file name`);
    if (/^([a-z][\w+.-]*:|\/)/i.test(shard) || shard.split(/[\\/]/).includes("..")) {
      throw fail(path, `weight_map: shard ${quote(shard)} is outside the index's folder`);
    }
    shardOf.set(name, joinPath(dirOf(path), shard));
  }
  const files = [...new Set(shardOf.values())];
  const present = await Promise.all(files.map(exists));
  const missing = files.find((_, i) => !present[i]);
  if (missing !== undefined) throw fail(path, `weight_map names shard ${quote(baseOf(missing))}, which does not exist (${missing})`);
  const opened = new Map((await Promise.all(files.map(openSafetensors))).map((st) => [st.path, st]));
  const where = new Map<string, SafetensorsFile>();
  for (const [name, file] of shardOf) {
    const st = opened.get(file)!;
    if (!st.has(name)) throw fail(path, `weight_map puts tensor ${quote(name)} in ${quote(baseOf(file))}, which has no such tensor`);
    where.set(name, st);
  }
  return new Sharded(path, isObject(json.metadata) ? json.metadata : {}, where, files);
}

/** Several .safetensors files read as one; a tensor in two of them is an error. */
async function openFiles(path: string, files: string[], metadata: (f: SafetensorsFile[]) => Record<string, unknown>): Promise<Checkpoint> {
  const opened = await Promise.all(files.map(openSafetensors));
  const where = new Map<string, SafetensorsFile>();
  for (const st of opened) {
    for (const name of st.names()) {
      const other = where.get(name);
      if (other) throw fail(path, `tensor ${quote(name)} is in both ${quote(baseOf(other.path))} and ${quote(baseOf(st.path))}`);
      where.set(name, st);
    }
  }
  return new Sharded(path, metadata(opened), where, files);
}

/**
 * Opens a model's weights: a .safetensors file, a `*.safetensors.index.json` with its shards, or a folder holding
 * model.safetensors.index.json / diffusion_pytorch_model.safetensors.index.json or else .safetensors files
 * (all of them; a tensor in two files is an error). A folder URL cannot be listed: it needs one of those
 * index files or a model.safetensors / diffusion_pytorch_model.safetensors.
 */
export async function openCheckpoint(path: string): Promise<Checkpoint> {
  const single = (file: string) => openFiles(file, [file], ([st]) => st.metadata);
  if (/\.json$/i.test(path)) return openIndex(path);
  if (/\.safetensors$/i.test(path)) return single(path);
  const remote = isUrl(path);
  if (!remote && !(await isLocalDir(path))) return single(path);
  const listing = remote ? undefined : await listDir(path);
  const found = async (names: string[]) => {
    const here = await Promise.all(names.map((n) => (listing ? listing.includes(n) : exists(joinPath(path, n)))));
    return names.filter((_, i) => here[i]);
  };
  const indexes = await found(INDEX_NAMES);
  if (indexes.length > 1) throw fail(path, `folder has both ${indexes.join(" and ")}: name the one to use`);
  if (indexes.length === 1) return openIndex(joinPath(path, indexes[0]));
  const files = listing
    ? listing.filter((f) => /\.safetensors$/i.test(f))
    : (await found(SINGLE_NAMES)).slice(0, 1);
  if (!files.length) {
    throw fail(path, listing ? "folder has no .safetensors files and no index" : `found none of ${[...INDEX_NAMES, ...SINGLE_NAMES].join(", ")}`);
  }
  return openFiles(path, files.map((f) => joinPath(path, f)), () => ({}));
}
