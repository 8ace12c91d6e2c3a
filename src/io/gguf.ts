/**
 * GGUF (llama.cpp's model file): the header, the metadata key/values and the tensor directory, read with positional
 * reads (a tokenizer's metadata can be megabytes; the tensor data, gigabytes, is never read here), and the bytes of
 * one tensor by offset. Versions 2 and 3 (64-bit counts); version 1 files (32-bit counts, 2023) are refused.
 *
 * Layout: "GGUF", u32 version, u64 tensor count, u64 key/value count; the key/values (string key, u32 value type,
 * value); the tensor infos (string name, u32 n_dims, u64 dims innermost first, u32 ggml type, u64 offset from the
 * data section); the data section at the next multiple of general.alignment (default 32).
 */
// a namespace import: browser bundles (GpuModel) stub node:fs, and named imports of a stub fail to bundle
import * as fs from "node:fs";
import { readRangeAt } from "./positional.js";
import { MlaError } from "../errors.js";
import { READABLE_GGML_TYPES, ggmlRowBytes, ggmlTypeName, isReadableGgmlType } from "../tensor/ggml.js";

/** A metadata value: numbers (64-bit integers past 2^53 as bigint), booleans, strings, and arrays of these. */
export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  readonly name: string;
  /** GGML's dims, innermost first (ne0 = a row's length). */
  readonly dims: readonly number[];
  /** Row-major shape as the engine and PyTorch write it (the dims reversed): [rows, cols] for a matrix. */
  readonly shape: readonly number[];
  /** The GGML type's name ("Q4_K"). */
  readonly type: string;
  /** Absolute byte offset of the data in the file, and its length. */
  readonly offset: number;
  readonly bytes: number;
}

export interface GgufFile {
  readonly path: string;
  readonly version: number;
  readonly metadata: ReadonlyMap<string, GgufValue>;
  readonly tensors: ReadonlyMap<string, GgufTensorInfo>;
  readonly alignment: number;
  /** Where the data section starts. */
  readonly dataOffset: number;
  readonly fileBytes: number;
}

const MAGIC = 0x46554747; // "GGUF" little-endian

/** Sequential reads over a file descriptor through a buffer that grows to hold the largest single value. */
class Cursor {
  private buf = Buffer.alloc(1 << 20);
  private start = 0; // file offset of buf[0]
  private end = 0; // valid bytes in buf
  pos = 0; // file offset of the next read

  constructor(private readonly fd: number, readonly size: number, private readonly path: string) {}

  private need(n: number): number {
    if (this.pos + n > this.size) throw new MlaError(`${this.path}: truncated GGUF header (needs byte ${this.pos + n}, the file has ${this.size})`);
    if (this.pos >= this.start && this.pos + n <= this.start + this.end) return this.pos - this.start;
    if (n > this.buf.length) this.buf = Buffer.alloc(Math.max(n, this.buf.length * 2));
    this.start = this.pos;
    this.end = fs.readSync(this.fd, this.buf, 0, Math.min(this.buf.length, this.size - this.pos), this.pos);
    if (this.end < n) throw new MlaError(`${this.path}: short read at byte ${this.pos}`);
    return 0;
  }

  private take(n: number): number {
    const at = this.need(n);
    this.pos += n;
    return at;
  }

  u8(): number { return this.buf.readUInt8(this.take(1)); }
  i8(): number { return this.buf.readInt8(this.take(1)); }
  u16(): number { return this.buf.readUInt16LE(this.take(2)); }
  i16(): number { return this.buf.readInt16LE(this.take(2)); }
  u32(): number { return this.buf.readUInt32LE(this.take(4)); }
  i32(): number { return this.buf.readInt32LE(this.take(4)); }
  f32(): number { return this.buf.readFloatLE(this.take(4)); }
  f64(): number { return this.buf.readDoubleLE(this.take(8)); }
  u64(): number | bigint { return small(this.buf.readBigUInt64LE(this.take(8))); }
  i64(): number | bigint { return small(this.buf.readBigInt64LE(this.take(8))); }

  /** A u64 that must be a count or offset (at most 2^53). */
  count(what: string): number {
    const v = this.u64();
    if (typeof v === "bigint") throw new MlaError(`${this.path}: ${what} ${v} is out of range`);
    return v;
  }

  str(): string {
    const n = this.count("string length");
    return this.buf.toString("utf8", this.take(n), this.pos - this.start);
  }
}

function small(v: bigint): number | bigint {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
}

/** GGUF value types (enum gguf_type). */
function readValue(c: Cursor, type: number, key: string): GgufValue {
  switch (type) {
    case 0: return c.u8();
    case 1: return c.i8();
    case 2: return c.u16();
    case 3: return c.i16();
    case 4: return c.u32();
    case 5: return c.i32();
    case 6: return c.f32();
    case 7: return c.u8() !== 0;
    case 8: return c.str();
    case 9: {
      const inner = c.u32(), n = c.count(`${key}: array length`);
      const out: GgufValue[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = readValue(c, inner, key);
      return out;
    }
    case 10: return c.u64();
    case 11: return c.i64();
    case 12: return c.f64();
    default: throw new MlaError(`GGUF metadata ${key} has value type ${type}, which is not in the GGUF specification`);
  }
}

/** The header, metadata and tensor directory of a GGUF file (tensor data is not read). */
export function readGguf(path: string): GgufFile {
  const fd = fs.openSync(path, "r");
  try {
    const size = fs.fstatSync(fd).size;
    const c = new Cursor(fd, size, path);
    if (size < 24 || c.u32() !== MAGIC) throw new MlaError(`${path} is not a GGUF file (no "GGUF" magic)`);
    const version = c.u32();
    if (version !== 2 && version !== 3) throw new MlaError(`${path}: GGUF version ${version} is not supported (2 and 3 are)`);
    const nTensors = c.count("tensor count"), nKv = c.count("metadata count");
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < nKv; i++) {
      const key = c.str();
      metadata.set(key, readValue(c, c.u32(), key));
    }
    const align = metadata.get("general.alignment") ?? 32;
    if (typeof align !== "number" || !Number.isInteger(align) || align <= 0) throw new MlaError(`${path}: general.alignment must be a positive integer, got ${String(align)}`);
    const infos: { name: string; dims: number[]; type: number; rel: number }[] = [];
    for (let i = 0; i < nTensors; i++) {
      const name = c.str(), nd = c.u32();
      const dims = Array.from({ length: nd }, () => c.count(`${name}: dimension`));
      infos.push({ name, dims, type: c.u32(), rel: c.count(`${name}: offset`) });
    }
    const dataOffset = Math.ceil(c.pos / align) * align;
    const tensors = new Map<string, GgufTensorInfo>();
    for (const t of infos) {
      const type = ggmlTypeName(t.type);
      const n = t.dims.reduce((a, b) => a * b, 1);
      // the readable types' sizes; others keep bytes 0 until a reader asks for them (and is refused by name)
      const bytes = isReadableGgmlType(type) ? ggmlRowBytes(type, t.dims[0] ?? 1) * (n / (t.dims[0] ?? 1)) : 0;
      const offset = dataOffset + t.rel;
      if (offset + bytes > size) throw new MlaError(`${path}: tensor ${t.name} (${type}, ${bytes} bytes at ${offset}) runs past the end of the file (${size} bytes)`);
      tensors.set(t.name, { name: t.name, dims: t.dims, shape: [...t.dims].reverse(), type, offset, bytes });
    }
    return { path, version, metadata, tensors, alignment: align, dataOffset, fileBytes: size };
  } finally {
    fs.closeSync(fd);
  }
}

/** The raw bytes of one tensor (its packed blocks as stored), by positional read. */
export function readGgufTensor(file: GgufFile, name: string): { info: GgufTensorInfo; data: Uint8Array } {
  const info = file.tensors.get(name);
  if (!info) throw new MlaError(`${file.path} has no tensor ${name}`);
  if (!isReadableGgmlType(info.type)) throw new MlaError(`${file.path}: tensor ${name} has GGML type ${info.type}, which mla-ts does not read (${READABLE_GGML_TYPES.join(", ")})`);
  return { info, data: readGgufRange(file.path, info.offset, info.bytes, name) };
}

/** n bytes of a GGUF file at `offset` (a tensor's data, or a slice of it), read in bounded chunks. */
export function readGgufRange(path: string, offset: number, n: number, what: string): Uint8Array {
  return readRangeAt(path, offset, n, () => {
    throw new MlaError(`${path}: short read of tensor ${what}`);
  });
}
