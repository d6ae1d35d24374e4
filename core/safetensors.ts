// PLACEHOLDER: being written by a helper (full validation, writer, sharded checkpoints).
import type { DType } from "./dtype.ts";
export interface SafetensorsEntry { name: string; dtype: string; shape: number[]; begin: number; end: number }
export interface SafetensorsFile {
  path: string;
  metadata: Record<string, string>;
  names(): string[];
  has(name: string): boolean;
  get(name: string): SafetensorsEntry;
  read(name: string): Promise<Uint8Array>;
  stream(name: string, byteOffset: number, byteLength: number, sink: (offset: number, data: Uint8Array) => void | Promise<void>): Promise<void>;
}
export function safetensorsDType(st: string, where: string): DType {
  const m: Record<string, DType> = { F32: "f32", F16: "f16", BF16: "bf16", I32: "i32", U32: "u32" };
  if (!m[st]) throw new Error(`${where}: dtype ${st} cannot be stored on the GPU`);
  return m[st];
}
export async function openSafetensors(_path: string): Promise<SafetensorsFile> { throw new Error("not yet"); }
