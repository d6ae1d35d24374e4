// Kernel parameter blocks: one declaration per kernel gives both the WGSL uniform struct and its packer.
// - `uniforms("matmul", { M: "u32", N: "u32", alpha: "f32" })` yields `.wgsl` (the `struct P { … }` and its
//   `var<uniform> u: P` at @binding(0), pasted into the shader source) and `.pack({ M, N, alpha })`, which writes
//   each value at the offset the WGSL layout gives that field. Nothing is positional, so a shader and its packer
//   cannot disagree on the order of fields.
// - pack takes every field by name, no more and no fewer, and range-checks each value, naming the kernel and the
//   field: u32 takes integers in [0, 2³²), i32 integers in [−2³¹, 2³¹), f32 finite numbers whose f32 rounding is
//   finite too, unless the field is declared `{ type: "f32", nonFinite: true }` (±Infinity and NaN pass).
// - Layout is WGSL's uniform address space: scalars align to 4; vec2 to 8; vec3 and vec4 to 16 (vec3 is 12 bytes);
//   the struct's size rounds up to its alignment, and the packed bytes up to 16 (what a uniform binding reads).
type Scalar = "u32" | "i32" | "f32";
type Vector = `vec${2 | 3 | 4}${"u" | "i" | "f"}`;
export type UniformType = Scalar | Vector;
/** A field: its WGSL type, or an f32 (scalar or vector) that may hold ±Infinity and NaN. */
export type UniformField = UniformType | { type: "f32" | `vec${2 | 3 | 4}f`; nonFinite: true };
export type UniformFields = Record<string, UniformField>;

declare const packed: unique symbol;
/** Bytes made by a declared block's pack: the only uniforms Device.run takes. */
export type PackedUniforms = Uint8Array & { readonly [packed]: true };

/** What pack takes for a field: a number for a scalar, `length` numbers for a vector. */
type ValueOf<F> = F extends Scalar ? number : F extends { type: "f32" } ? number : readonly number[];
export type UniformValues<F extends UniformFields> = { [K in keyof F]: ValueOf<F[K]> };

export interface Uniforms<F extends UniformFields> {
  /** The kernel's name, as errors print it. */
  readonly kernel: string;
  /** WGSL: `struct P { … }` and `@group(0) @binding(0) var<uniform> u: P;`. */
  readonly wgsl: string;
  /** Bytes pack returns: the struct size rounded up to 16. */
  readonly bytes: number;
  pack(values: UniformValues<F>): PackedUniforms;
}

interface Slot {
  name: string;
  scalar: Scalar;
  count: number;
  offset: number;
  nonFinite: boolean;
}

const SCALAR_OF = { u: "u32", i: "i32", f: "f32" } as const;
const ALIGN = { 1: 4, 2: 8, 3: 16, 4: 16 } as Record<number, number>;
const roundUp = (x: number, a: number) => Math.ceil(x / a) * a;

function slotOf(kernel: string, name: string, field: UniformField, offset: number): Slot {
  const type = typeof field === "string" ? field : field.type;
  const nonFinite = typeof field !== "string" && field.nonFinite === true;
  const vec = /^vec([234])([uif])$/.exec(type);
  const scalar = vec ? SCALAR_OF[vec[2] as "u" | "i" | "f"] : (type as Scalar);
  if (!vec && !["u32", "i32", "f32"].includes(type)) throw new Error(`${kernel}: uniform ${name} has unknown type ${JSON.stringify(type)}`);
  if (nonFinite && scalar !== "f32") throw new Error(`${kernel}: uniform ${name}: only f32 fields may allow non-finite values`);
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`${kernel}: uniform field name ${JSON.stringify(name)} is not a WGSL identifier`);
  const count = vec ? Number(vec[1]) : 1;
  return { name, scalar, count, offset: roundUp(offset, ALIGN[count]), nonFinite };
}

/** Why `v` cannot go into a field of this slot, or "" when it can. */
function rangeError(s: Slot, v: unknown): string {
  if (typeof v !== "number") return `is a ${typeof v}, not a number`;
  if (s.scalar === "f32") {
    if (s.nonFinite || Number.isFinite(Math.fround(v))) return "";
    return Number.isFinite(v) ? "overflows f32" : "is not finite";
  }
  if (!Number.isInteger(v)) return `is not an integer (${s.scalar})`;
  const [lo, hi] = s.scalar === "u32" ? [0, 2 ** 32] : [-(2 ** 31), 2 ** 31];
  return v >= lo && v < hi ? "" : `is outside the ${s.scalar} range [${lo}, ${hi})`;
}

/** Declares a kernel's uniform parameters (see the file header). */
export function uniforms<const F extends UniformFields>(kernel: string, fields: F): Uniforms<F> {
  const slots: Slot[] = [];
  let end = 0, align = 4;
  for (const [name, field] of Object.entries(fields)) {
    const s = slotOf(kernel, name, field, end);
    slots.push(s);
    end = s.offset + 4 * s.count;
    align = Math.max(align, ALIGN[s.count]);
  }
  if (!slots.length) throw new Error(`${kernel}: a uniform block needs at least one field`);
  const bytes = roundUp(roundUp(end, align), 16);
  const type = (s: Slot) => (s.count > 1 ? `vec${s.count}<${s.scalar}>` : s.scalar);
  const wgsl = `struct P { ${slots.map((s) => `${s.name}: ${type(s)}`).join(", ")} }\n@group(0) @binding(0) var<uniform> u: P;`;
  const byName = new Map(slots.map((s) => [s.name, s]));

  const write = (view: DataView, s: Slot, k: number, x: unknown) => {
    const why = rangeError(s, x);
    if (why) throw new Error(`${kernel}: uniform ${s.name}${s.count > 1 ? `[${k}]` : ""} = ${String(x)} ${why}`);
    const at = s.offset + 4 * k;
    if (s.scalar === "u32") view.setUint32(at, x as number, true);
    else if (s.scalar === "i32") view.setInt32(at, x as number, true);
    else view.setFloat32(at, x as number, true);
  };
  // Runs per dispatch: no allocation beyond the bytes on the good path.
  const pack = (values: UniformValues<F>): PackedUniforms => {
    const given = values as Record<string, unknown>;
    let keys = 0;
    for (const k in given) {
      if (!byName.has(k)) {
        const unknown = Object.keys(given).filter((x) => !byName.has(x));
        throw new Error(`${kernel}: unknown uniform ${unknown.join(", ")} (declared: ${[...byName.keys()].join(", ")})`);
      }
      keys++;
    }
    if (keys < slots.length) throw new Error(`${kernel}: uniform ${slots.find((s) => !(s.name in given))!.name} is missing`);
    const view = new DataView(new ArrayBuffer(bytes));
    for (const s of slots) {
      const v = given[s.name];
      if (s.count === 1) write(view, s, 0, v);
      else if (!Array.isArray(v) || v.length !== s.count) throw new Error(`${kernel}: uniform ${s.name} needs ${s.count} numbers, got ${String(v)}`);
      else for (let k = 0; k < s.count; k++) write(view, s, k, v[k]);
    }
    return new Uint8Array(view.buffer) as PackedUniforms;
  };
  return { kernel, wgsl, bytes, pack };
}
