/**
 * The safetensors header: parsing and validation shared by the file reader (./safetensors.ts) and the in-memory
 * reader (./safetensors-buffer.ts, for browsers). No Node APIs here.
 *
 * Format: u64 LE header length N, N bytes of JSON header, then the data section. Each header entry is
 * `{ dtype, shape, data_offsets: [begin, end] }` relative to the data section; `__metadata__` is str -> str.
 */
import { MlaError } from "../errors.js";
import { bf16ToF32, f16Lut } from "../tensor/dtype.js";
import { e8m0Lut, fp8ScaleShape, type Fp8Layout } from "../tensor/fp8.js";
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
  F8_E8M0: 1,
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

// ---------------------------------------------------------------- block-scaled FP8

/** The scale tensor of an FP8 weight: `X.weight` -> `X.weight_scale_inv` (DeepSeek's and transformers' name). */
export function fp8ScaleName(weight: string): string {
  return `${weight}_scale_inv`;
}

/** Scale dtypes: F32 (DeepSeek-V3/R1/V3.1, Kimi-K2), F8_E8M0 (UE8M0 stored as such, V4-style), BF16/F16 (re-exports). */
const SCALE_DTYPES = ["F32", "F8_E8M0", "BF16", "F16"];

/**
 * An FP8 weight and its scale, checked against each other: e4m3 bytes, a matrix, a scale grid of
 * [ceil(rows / bm), ceil(cols / bn)] in a dtype we decode. Returns the matrix's layout.
 */
export function checkFp8Pair(weight: TensorInfo, scale: TensorInfo, block: readonly [number, number]): Fp8Layout {
  const where = `tensor "${weight.name}"`;
  if (!block.every((b) => Number.isSafeInteger(b) && b > 0)) throw new MlaError(`FP8 block size [${block.join(", ")}] must be two positive integers`);
  if (weight.dtype !== "F8_E4M3") fail(weight.file, `${where} is ${weight.dtype}, not F8_E4M3 (block-scaled FP8 weights are float8_e4m3fn)`);
  if (weight.shape.length !== 2) fail(weight.file, `${where} is FP8 with shape [${weight.shape.join(", ")}]; block-scaled FP8 weights are matrices`);
  const l: Fp8Layout = { rows: weight.shape[0], cols: weight.shape[1], block: [block[0], block[1]] };
  if (!SCALE_DTYPES.includes(scale.dtype)) {
    fail(scale.file, `tensor "${scale.name}" has dtype ${scale.dtype}; FP8 block scales are read as ${SCALE_DTYPES.join(", ")}`);
  }
  const grid = fp8ScaleShape(l);
  if (scale.shape.length !== 2 || scale.shape[0] !== grid[0] || scale.shape[1] !== grid[1]) {
    fail(scale.file, `tensor "${scale.name}" has shape [${scale.shape.join(", ")}] but ${weight.name} [${l.rows}, ${l.cols}] in ` +
      `${block[0]}x${block[1]} blocks (quantization_config.weight_block_size) needs [${grid.join(", ")}]`);
  }
  return l;
}

/** A scale tensor's bytes (checked by checkFp8Pair) as F32: F32 as is, the others widened exactly. */
export function decodeScales(dtype: string, bytes: Uint8Array): Float32Array {
  if (dtype === "F8_E8M0") {
    const lut = e8m0Lut();
    return Float32Array.from(bytes, (b) => lut[b]);
  }
  const copy = new Uint8Array(bytes); // a copy: typed views need alignment the file does not promise (and Buffer.slice is a view)
  if (dtype === "F32") return new Float32Array(copy.buffer, 0, copy.length / 4);
  const h = new Uint16Array(copy.buffer, 0, copy.length / 2);
  if (dtype === "BF16") return Float32Array.from(h, bf16ToF32);
  const lut = f16Lut();
  return Float32Array.from(h, (x) => lut[x]);
}
