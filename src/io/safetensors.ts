/**
 * safetensors reader/writer built on positional fs.readSync / fs.writeSync, so multi-GB checkpoints
 * load tensor by tensor without ever holding a whole file (or a whole file's worth of copies) in memory.
 *
 * Format: u64 LE header length N, N bytes of JSON header, then the data section. Each header entry is
 * `{ dtype, shape, data_offsets: [begin, end] }` relative to the data section; `__metadata__` is str -> str.
 */
import * as fs from "node:fs";
import { MAX_CHUNK, readFullyAt, writeFullyAt } from "./positional.js";
import * as nodePath from "node:path";
import { isBlockDType } from "../tensor/dtype.js";
import { MlaError } from "../errors.js";
import { type Tensor, numel, tensor } from "../tensor/tensor.js";
import { dequantizeFp8Rows } from "../tensor/fp8.js";
import { SAFETENSORS_DTYPE_BYTES, checkFp8Pair, decodeScales, fail, parseEntries, parseHeaderJson } from "./safetensors-header.js";

export { SAFETENSORS_DTYPE_BYTES, fp8ScaleName } from "./safetensors-header.js";

export type { TensorInfo } from "./safetensors-header.js";
import type { TensorInfo } from "./safetensors-header.js";

export interface ReadOptions {
  /** Where the tensor's bytes go, e.g. `(n) => new SharedArrayBuffer(n)` for worker-shared weights. */
  alloc?: (bytes: number) => ArrayBufferLike;
  /** @internal Largest single read; only tests lower it, to exercise the multi-chunk path on small files. */
  chunkBytes?: number;
}

/** A tensor stored as F64, which the Tensor type cannot hold; only writers produce these. */
export interface F64Array {
  dtype: "F64";
  shape: number[];
  data: Float64Array;
}

/** Real headers are a few MB even for 100k-tensor checkpoints; anything bigger is corruption. */
const MAX_HEADER = 100 * 1024 * 1024;

function openRead(file: string): number {
  try {
    return fs.openSync(file, "r");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new MlaError(`safetensors file not found: ${file}`);
    throw new MlaError(`cannot open ${file}: ${code ?? String(e)}`);
  }
}

/** Reads exactly dst.length bytes at `position`, in bounded chunks; a short file is a user-facing error. */
function readFully(fd: number, dst: Uint8Array, position: number, file: string, chunk = MAX_CHUNK): void {
  readFullyAt(fd, dst, position, (at) => fail(file, `unexpected end of file at byte ${at} (truncated file?)`), chunk);
}

function withFd<T>(file: string, fn: (fd: number) => T): T {
  const fd = openRead(file);
  try {
    return fn(fd);
  } finally {
    fs.closeSync(fd);
  }
}

// ---------------------------------------------------------------- header

export function readHeader(path: string): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  const file = nodePath.resolve(path);
  return withFd(file, (fd) => {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) fail(file, "is a directory, not a safetensors file");
    const size = st.size;
    if (size < 8) fail(file, `file is only ${size} bytes, too short for a safetensors header`);
    const headerLen = readHeaderLength(fd, file, size);
    const bytes = new Uint8Array(headerLen);
    readFully(fd, bytes, 8, file);
    const json = parseHeaderJson(bytes, file);
    return parseEntries(json, file, 8 + headerLen, size);
  });
}

function readHeaderLength(fd: number, file: string, size: number): number {
  const lenBuf = new Uint8Array(8);
  readFully(fd, lenBuf, 0, file);
  const len = new DataView(lenBuf.buffer).getBigUint64(0, true);
  if (len > BigInt(MAX_HEADER)) fail(file, `header length ${len} is absurd (over 100 MB): not a safetensors file?`);
  const n = Number(len);
  if (8 + n > size) fail(file, `header length ${n} runs past the end of the ${size}-byte file (truncated or not a safetensors file?)`);
  return n;
}

// ---------------------------------------------------------------- tensors

function allocate(bytes: number, opts: ReadOptions | undefined): ArrayBufferLike {
  const buf = opts?.alloc ? opts.alloc(bytes) : new ArrayBuffer(bytes);
  if (buf.byteLength < bytes) throw new MlaError(`allocator returned ${buf.byteLength} bytes, ${bytes} needed`);
  return buf;
}

export function readTensor(info: TensorInfo, opts?: ReadOptions): Tensor {
  const { dtype, shape, file } = info;
  if (dtype !== "F32" && dtype !== "BF16" && dtype !== "F16" && dtype !== "F64") {
    const fp8 = dtype === "F8_E4M3" ? `; an FP8 weight is read with its ${info.name}_scale_inv (readFp8Tensor, or open the model folder)` : "";
    fail(file, `tensor "${info.name}" has dtype ${dtype}, which mla-ts does not support (supported: F32, BF16, F16, F64)${fp8}`);
  }
  const span = info.end - info.begin;
  const n = numel(shape);
  const want = n * SAFETENSORS_DTYPE_BYTES[dtype];
  if (span !== want) fail(file, `tensor "${info.name}" is ${dtype} [${shape.join(", ")}] = ${want} bytes but its offsets span ${span} bytes`);
  const chunk = Math.max(1, Math.min(opts?.chunkBytes ?? MAX_CHUNK, MAX_CHUNK));
  return withFd(file, (fd) => {
    if (dtype === "F64") return tensor("F32", shape, readF64AsF32(fd, info, n, chunk, opts));
    const buf = allocate(span, opts);
    readFully(fd, new Uint8Array(buf, 0, span), info.begin, file, chunk);
    return dtype === "F32" ? tensor("F32", shape, new Float32Array(buf, 0, n)) : tensor(dtype, shape, new Uint16Array(buf, 0, n));
  });
}

/** Narrows chunk by chunk so an F64 tensor never costs more than its F32 result plus one chunk. */
function readF64AsF32(fd: number, info: TensorInfo, n: number, chunk: number, opts: ReadOptions | undefined): Float32Array {
  const out = new Float32Array(allocate(n * 4, opts), 0, n);
  const perChunk = Math.max(1, Math.floor(chunk / 8));
  const scratch = new ArrayBuffer(Math.min(perChunk, n) * 8);
  for (let i = 0; i < n; i += perChunk) {
    const m = Math.min(perChunk, n - i);
    readFully(fd, new Uint8Array(scratch, 0, m * 8), info.begin + i * 8, info.file, chunk);
    out.set(new Float64Array(scratch, 0, m), i);
  }
  return out;
}

export interface Fp8ReadOptions extends ReadOptions {
  /** The dtype the weight is dequantized to: BF16 (the default, as DeepSeek's fp8_cast_bf16.py writes) or F32. */
  dtype?: "BF16" | "F32";
}

/** Row-blocks are read a few MiB at a time: the FP8 bytes never sit in memory whole beside the result. */
const FP8_READ_BYTES = 4 * 1024 * 1024;

/**
 * A block-scaled FP8 weight (F8_E4M3, with its `_scale_inv` grid, `block` = quantization_config.weight_block_size)
 * dequantized to BF16 (or F32): the scales are read whole (one per block), the weight a few row-blocks at a time,
 * each element fp8 * the scale of its block.
 */
export function readFp8Tensor(weight: TensorInfo, scale: TensorInfo, block: readonly [number, number], opts?: Fp8ReadOptions): Tensor {
  const l = checkFp8Pair(weight, scale, block);
  const scales = decodeScales(scale.dtype, readBytes(scale, opts));
  const n = l.rows * l.cols, f32 = opts?.dtype === "F32";
  const buf = allocate(n * (f32 ? 4 : 2), opts);
  const out = f32 ? new Float32Array(buf, 0, n) : new Uint16Array(buf, 0, n);
  const chunk = Math.max(1, Math.min(opts?.chunkBytes ?? MAX_CHUNK, MAX_CHUNK));
  // whole row-blocks per read (at least one), so each read's rows share their scale rows
  const rowsPerRead = l.block[0] * Math.max(1, Math.floor(Math.min(FP8_READ_BYTES, chunk) / (l.block[0] * Math.max(l.cols, 1))));
  const scratch = new Uint8Array(Math.min(rowsPerRead, l.rows) * l.cols);
  withFd(weight.file, (fd) => {
    for (let r0 = 0; r0 < l.rows; r0 += rowsPerRead) {
      const m = Math.min(rowsPerRead, l.rows - r0);
      const src = scratch.subarray(0, m * l.cols);
      readFully(fd, src, weight.begin + r0 * l.cols, weight.file, chunk);
      dequantizeFp8Rows(l, src, r0, m, scales, out);
    }
  });
  return f32 ? tensor("F32", weight.shape, out) : tensor("BF16", weight.shape, out);
}

/** A (small) tensor's raw bytes, its size checked against its dtype and shape by the header parser. */
function readBytes(info: TensorInfo, opts: ReadOptions | undefined): Uint8Array {
  const bytes = new Uint8Array(info.end - info.begin);
  withFd(info.file, (fd) => readFully(fd, bytes, info.begin, info.file, opts?.chunkBytes ?? MAX_CHUNK));
  return bytes;
}

/**
 * Reads open and close their own descriptor (one open per tensor is noise next to the read itself),
 * so nothing stays open; this exists so callers can release readers uniformly.
 */
export function closeAll(): void {}

// ---------------------------------------------------------------- writer

const DTYPE_SIZE_OF_TENSOR: Record<"F32" | "BF16" | "F16" | "F64", number> = { F32: 4, BF16: 2, F16: 2, F64: 8 };

export function writeSafetensors(
  path: string,
  tensors: Record<string, Tensor | F64Array>,
  metadata?: Record<string, string>,
): void {
  const entries = Object.entries(tensors);
  const header = buildHeader(entries, metadata);
  const fd = fs.openSync(path, "w");
  try {
    const len = new Uint8Array(8);
    new DataView(len.buffer).setBigUint64(0, BigInt(header.length), true);
    writeFullyAt(fd, len, null);
    writeFullyAt(fd, header, null);
    for (const [, t] of entries) writeFullyAt(fd, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), null);
  } finally {
    fs.closeSync(fd);
  }
}

function buildHeader(entries: [string, Tensor | F64Array][], metadata?: Record<string, string>): Uint8Array {
  const json: Record<string, unknown> = {};
  if (metadata) json.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === "__metadata__") throw new MlaError(`"__metadata__" cannot be used as a tensor name`);
    if (t.dtype === "Q8" || isBlockDType(t.dtype)) throw new MlaError(`tensor "${name}" is ${t.dtype}, a block-quantized format that safetensors cannot hold (export GGUF instead)`);
    if (t.data.length !== numel(t.shape)) {
      throw new MlaError(`tensor "${name}" has ${t.data.length} elements but shape [${t.shape.join(", ")}] needs ${numel(t.shape)}`);
    }
    const bytes = t.data.length * DTYPE_SIZE_OF_TENSOR[t.dtype];
    json[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const text = JSON.stringify(json);
  // Padding keeps the data section 8-byte aligned, which mmap-based readers rely on.
  const raw = new TextEncoder().encode(text);
  const padded = new Uint8Array(Math.ceil(raw.length / 8) * 8).fill(0x20);
  padded.set(raw);
  return padded;
}

