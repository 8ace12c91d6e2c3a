/**
 * The safetensors header: parsing and validation shared by the file reader (./safetensors.ts) and the in-memory
 * reader (./safetensors-buffer.ts, for browsers). No Node APIs here.
 *
 * Format: u64 LE header length N, N bytes of JSON header, then the data section. Each header entry is
 * `{ dtype, shape, data_offsets: [begin, end] }` relative to the data section; `__metadata__` is str -> str.
 */
import { MlaError } from "../errors.js";
import { numel } from "../tensor/tensor.js";

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** Absolute byte offset of the first byte in the file (8 + header length + data_offsets[0]). */
  begin: number;
  /** Absolute byte offset one past the last byte. */
  end: number;
  file: string;
}

/** Element sizes of every dtype the safetensors spec defines that we can size-check. */
export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<string, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
};

export function fail(file: string, problem: string): never {
  throw new MlaError(`${file.split(/[\\/]/).pop()}: ${problem}`);
}

export function parseHeaderJson(bytes: Uint8Array, file: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    fail(file, `header is not valid JSON (${e instanceof Error ? e.message : String(e)}): not a safetensors file?`);
  }
  if (!isObject(json)) fail(file, "header JSON is not an object");
  return json;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function parseEntries(
  json: Record<string, unknown>,
  file: string,
  dataStart: number,
  size: number,
): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(json)) {
    if (name === "__metadata__") metadata = parseMetadata(entry, file);
    else tensors.set(name, parseEntry(name, entry, file, dataStart, size));
  }
  return { tensors, metadata };
}

function parseMetadata(entry: unknown, file: string): Record<string, string> {
  if (!isObject(entry)) fail(file, "__metadata__ is not an object");
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(entry)) {
    if (typeof v !== "string") fail(file, `__metadata__ value for "${k}" is not a string`);
    out[k] = v;
  }
  return out;
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function parseEntry(name: string, entry: unknown, file: string, dataStart: number, size: number): TensorInfo {
  const where = `tensor "${name}"`;
  if (!isObject(entry)) fail(file, `${where}: header entry is not an object`);
  const { dtype, shape, data_offsets: offs } = entry;
  if (typeof dtype !== "string") fail(file, `${where} has no dtype`);
  if (!Array.isArray(shape) || !shape.every(isNonNegInt)) fail(file, `${where} has no valid shape (need a list of non-negative integers)`);
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isNonNegInt) || offs[0] > offs[1]) {
    fail(file, `${where} has invalid data_offsets ${JSON.stringify(offs)} (need [begin, end] with 0 <= begin <= end)`);
  }
  const [b, e] = offs as [number, number];
  const dataLen = size - dataStart;
  if (e > dataLen) {
    fail(file, `${where} has offsets [${b}, ${e}] but the file's data section is only ${dataLen} bytes (truncated or corrupt file?)`);
  }
  checkByteLength(where, dtype, shape, e - b, file);
  return { name, dtype, shape: [...shape], begin: dataStart + b, end: dataStart + e, file };
}

function checkByteLength(where: string, dtype: string, shape: number[], span: number, file: string): void {
  const el = SAFETENSORS_DTYPE_BYTES[dtype];
  if (el === undefined) return; // unknown dtypes are kept so readTensor can name them
  const want = numel(shape) * el;
  if (want !== span) {
    fail(file, `${where} is ${dtype} [${shape.join(", ")}] = ${want} bytes but its offsets span ${span} bytes`);
  }
}

