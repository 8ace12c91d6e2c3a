/**
 * GGUF v3 writer, the counterpart of ./gguf.ts: the header, typed metadata, the tensor directory, then the data
 * section, written tensor by tensor to a file descriptor so that a model never has to be in memory at once.
 *
 * Every offset is known before any tensor byte is written: a tensor's size follows from its GGML type and shape,
 * so the directory (which holds each tensor's offset) is written first and the tensors follow in the same order,
 * each starting at a multiple of general.alignment.
 */
import { closeSync, openSync } from "node:fs";
import { writeFullyAt } from "./positional.js";
import { MlaError } from "../errors.js";
import { GGML_BLOCK, GGML_TYPE, type ReadableGgmlType } from "../tensor/ggml.js";

/** GGUF's value types by name (enum gguf_type). */
const VALUE_TYPE = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12 } as const;

export type GgufScalarType = Exclude<keyof typeof VALUE_TYPE, "array">;

/**
 * A metadata value with its GGUF type. JavaScript numbers carry no width, so the writer is told it: llama.cpp
 * reads most keys with a fixed type (u32 counts, f32 epsilons) and refuses a file whose type differs.
 */
export type GgufTypedValue =
  | { readonly type: "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "f32" | "f64"; readonly value: number }
  | { readonly type: "u64" | "i64"; readonly value: number | bigint }
  | { readonly type: "bool"; readonly value: boolean }
  | { readonly type: "string"; readonly value: string }
  | { readonly type: "array"; readonly itemType: GgufScalarType; readonly value: readonly (number | bigint | boolean | string)[] }
  | { readonly type: "array"; readonly itemType: "array"; readonly value: readonly GgufArrayValue[] };

export type GgufArrayValue = Extract<GgufTypedValue, { type: "array" }>;

/** Shorthands: gv.u32(7), gv.str("llama"), gv.arr("i32", [1, 2]). */
export const gv = {
  u8: (value: number): GgufTypedValue => ({ type: "u8", value }),
  i8: (value: number): GgufTypedValue => ({ type: "i8", value }),
  u16: (value: number): GgufTypedValue => ({ type: "u16", value }),
  i16: (value: number): GgufTypedValue => ({ type: "i16", value }),
  u32: (value: number): GgufTypedValue => ({ type: "u32", value }),
  i32: (value: number): GgufTypedValue => ({ type: "i32", value }),
  u64: (value: number | bigint): GgufTypedValue => ({ type: "u64", value }),
  i64: (value: number | bigint): GgufTypedValue => ({ type: "i64", value }),
  f32: (value: number): GgufTypedValue => ({ type: "f32", value }),
  f64: (value: number): GgufTypedValue => ({ type: "f64", value }),
  bool: (value: boolean): GgufTypedValue => ({ type: "bool", value }),
  str: (value: string): GgufTypedValue => ({ type: "string", value }),
  arr: (itemType: GgufScalarType, value: readonly (number | bigint | boolean | string)[]): GgufArrayValue => ({ type: "array", itemType, value }),
};

/**
 * The GGML types a file may be written in: those mla-ts reads, plus Q5_0 and Q5_1, which llama.cpp's quantizer
 * puts where a Q4_K or Q5_K row is not a whole number of 256-blocks (the exporter follows it).
 */
export type GgufWriteType = ReadableGgmlType | "Q5_0" | "Q5_1";

/** Weights per block and bytes per block (ggml-common.h). */
const BLOCK: Readonly<Record<GgufWriteType, readonly [number, number]>> = { ...GGML_BLOCK, Q5_0: [32, 22], Q5_1: [32, 24] };

/** One tensor of the directory: its name, row-major shape (as PyTorch writes it) and GGML type. */
export interface GgufTensorSpec {
  readonly name: string;
  readonly shape: readonly number[];
  readonly type: GgufWriteType;
}

/** Weights per block of a type (1 for F32/F16/BF16). */
export function ggufBlockSize(type: GgufWriteType): number {
  return BLOCK[type][0];
}

export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Bytes of a tensor of this type and row-major shape (rows of the last dimension, whole blocks). */
export function ggufTensorBytes(spec: GgufTensorSpec): number {
  const cols = spec.shape.length ? spec.shape[spec.shape.length - 1] : 1;
  const rows = spec.shape.slice(0, -1).reduce((a, b) => a * b, 1);
  const [per, bytes] = BLOCK[spec.type];
  if (cols % per) throw new MlaError(`GGUF tensor ${spec.name}: ${spec.type} stores rows in blocks of ${per} weights; a row of ${cols} does not divide`);
  return rows * (cols / per) * bytes;
}

/** Little-endian bytes of the header, metadata and directory, built in memory (they are small next to the data). */
class Bytes {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  private room(n: number): number {
    if (this.length + n > this.buf.length) {
      const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
      this.buf.copy(next, 0, 0, this.length);
      this.buf = next;
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  // room() may replace this.buf, so it runs before this.buf is read (not as an argument of this.buf.write...)
  u8(v: number): void { const at = this.room(1); this.buf.writeUInt8(v, at); }
  i8(v: number): void { const at = this.room(1); this.buf.writeInt8(v, at); }
  u16(v: number): void { const at = this.room(2); this.buf.writeUInt16LE(v, at); }
  i16(v: number): void { const at = this.room(2); this.buf.writeInt16LE(v, at); }
  u32(v: number): void { const at = this.room(4); this.buf.writeUInt32LE(v, at); }
  i32(v: number): void { const at = this.room(4); this.buf.writeInt32LE(v, at); }
  f32(v: number): void { const at = this.room(4); this.buf.writeFloatLE(v, at); }
  f64(v: number): void { const at = this.room(8); this.buf.writeDoubleLE(v, at); }
  u64(v: number | bigint): void { const at = this.room(8); this.buf.writeBigUInt64LE(BigInt(v), at); }
  i64(v: number | bigint): void { const at = this.room(8); this.buf.writeBigInt64LE(BigInt(v), at); }

  str(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    const at = this.room(b.length);
    b.copy(this.buf, at);
  }

  pad(align: number): void {
    this.room((align - (this.length % align)) % align); // Buffer.alloc zero-fills
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function writeScalar(b: Bytes, type: GgufScalarType, v: number | bigint | boolean | string, key: string): void {
  const bad = () => new MlaError(`GGUF metadata ${key}: ${JSON.stringify(typeof v === "bigint" ? String(v) : v)} is not a ${type}`);
  if (type === "string") {
    if (typeof v !== "string") throw bad();
    return b.str(v);
  }
  if (type === "bool") {
    if (typeof v !== "boolean") throw bad();
    return b.u8(v ? 1 : 0);
  }
  if (type === "u64" || type === "i64") {
    if (typeof v !== "bigint" && !(typeof v === "number" && Number.isInteger(v))) throw bad();
    return type === "u64" ? b.u64(v) : b.i64(v);
  }
  if (typeof v !== "number") throw bad();
  if (type !== "f32" && type !== "f64" && !Number.isInteger(v)) throw bad();
  try {
    b[type](v); // Buffer's writers throw RangeError on out-of-range integers
  } catch {
    throw bad();
  }
}

function writeValue(b: Bytes, key: string, v: GgufTypedValue): void {
  b.u32(VALUE_TYPE[v.type]);
  writeBody(b, key, v);
}

function writeBody(b: Bytes, key: string, v: GgufTypedValue): void {
  if (v.type !== "array") return writeScalar(b, v.type, v.value, key);
  b.u32(VALUE_TYPE[v.itemType]);
  b.u64(v.value.length);
  if (v.itemType === "array") {
    for (const inner of v.value as readonly GgufArrayValue[]) writeBody(b, key, inner);
    return;
  }
  for (const x of v.value as readonly (number | bigint | boolean | string)[]) writeScalar(b, v.itemType, x, key);
}

/**
 * A GGUF file being written: `open` writes the header, metadata and directory; `writeTensor` then takes each
 * tensor's bytes in directory order; `close` checks that all came and closes the descriptor.
 */
export class GgufWriter {
  private next = 0; // index of the tensor expected next
  private pos: number; // file offset of the next byte

  private constructor(
    private fd: number | null,
    readonly path: string,
    private readonly tensors: readonly GgufTensorSpec[],
    private readonly sizes: readonly number[],
    private readonly alignment: number,
    headerBytes: number,
  ) {
    this.pos = headerBytes;
  }

  /** Create `path` and write everything up to the data section. general.alignment is added when absent. */
  static open(path: string, metadata: Iterable<readonly [string, GgufTypedValue]>, tensors: readonly GgufTensorSpec[]): GgufWriter {
    const kv = new Map(metadata);
    const alignValue = kv.get("general.alignment");
    const alignment = alignValue ? Number(alignValue.value) : GGUF_DEFAULT_ALIGNMENT;
    if (alignValue && (alignValue.type !== "u32" || !Number.isInteger(alignment) || alignment <= 0 || alignment % 8)) {
      throw new MlaError(`GGUF general.alignment must be a u32 multiple of 8, got ${alignValue.type} ${String(alignValue.value)}`);
    }
    if (!alignValue) kv.set("general.alignment", gv.u32(alignment));
    const names = new Set<string>();
    for (const t of tensors) {
      if (names.has(t.name)) throw new MlaError(`GGUF tensor ${t.name} is listed twice`);
      names.add(t.name);
    }
    const sizes = tensors.map(ggufTensorBytes);
    const b = header(kv, tensors, sizes, alignment);
    const fd = openSync(path, "w");
    try {
      writeFullyAt(fd, b, 0);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    return new GgufWriter(fd, path, tensors, sizes, alignment, b.length);
  }

  /** The tensor whose bytes `writeTensor` expects next, or undefined when all were written. */
  get expected(): GgufTensorSpec | undefined {
    return this.tensors[this.next];
  }

  /** The next tensor's packed bytes (little-endian, as GGML stores them); `name` must be the one expected. */
  writeTensor(name: string, data: ArrayBufferView): void {
    if (this.fd === null) throw new MlaError(`${this.path}: GGUF writer is closed`);
    const spec = this.tensors[this.next];
    if (!spec) throw new MlaError(`${this.path}: tensor ${name} is not in the GGUF directory (all ${this.tensors.length} were written)`);
    if (spec.name !== name) throw new MlaError(`${this.path}: tensor ${name} written where the directory has ${spec.name} next`);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.length !== this.sizes[this.next]) throw new MlaError(`${this.path}: tensor ${name} (${spec.type} [${spec.shape.join(", ")}]) needs ${this.sizes[this.next]} bytes, got ${bytes.length}`);
    this.pos += writeFullyAt(this.fd, bytes, this.pos);
    const pad = (this.alignment - (this.pos % this.alignment)) % this.alignment;
    if (pad) this.pos += writeFullyAt(this.fd, new Uint8Array(pad), this.pos);
    this.next++;
  }

  /** Close the file; throws when tensors of the directory were not written (the file would be truncated). */
  close(): void {
    if (this.fd === null) return;
    closeSync(this.fd);
    this.fd = null;
    if (this.next < this.tensors.length) throw new MlaError(`${this.path}: closed after ${this.next} of ${this.tensors.length} tensors (next: ${this.tensors[this.next].name})`);
  }

  /** Close without the completeness check (after an error elsewhere). */
  abort(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

function header(kv: ReadonlyMap<string, GgufTypedValue>, tensors: readonly GgufTensorSpec[], sizes: readonly number[], alignment: number): Buffer {
  const b = new Bytes();
  b.u32(0x46554747); // "GGUF"
  b.u32(3);
  b.u64(tensors.length);
  b.u64(kv.size);
  for (const [key, v] of kv) {
    b.str(key);
    writeValue(b, key, v);
  }
  let offset = 0;
  for (let i = 0; i < tensors.length; i++) {
    const t = tensors[i];
    b.str(t.name);
    b.u32(t.shape.length);
    for (let d = t.shape.length - 1; d >= 0; d--) b.u64(t.shape[d]); // GGML's ne: innermost first
    b.u32(GGML_TYPE[t.type]);
    b.u64(offset);
    offset += Math.ceil(sizes[i] / alignment) * alignment;
  }
  b.pad(alignment);
  return b.bytes();
}

