import { type DType, bf16ToF32, f16Lut, f32ToBf16, f32ToF16, isBlockDType } from "./dtype.js";
import { MlaError } from "../errors.js";
import { Q8_BLOCK, dequantizeRowQ8, quantizeRowsQ8 } from "./quant.js";
import { dequantizeGgml, ggmlRowBytes } from "./ggml.js";

/**
 * F32 data lives in a Float32Array; BF16/F16 stay packed as raw 16-bit words; Q8 as int8 with f32 scales; the
 * GGML block types (Q4_0, Q4_K, Q5_K, Q6_K) as their packed bytes, each row a whole number of blocks.
 */
export type Storage = Float32Array | Uint16Array | Int8Array | Uint8Array;

/** A dense row-major tensor. Weights use PyTorch's Linear layout [out, in]. */
export interface Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: Storage;
  /** Q8 only: one scale per 32 elements of each row ([rows, cols / 32]). */
  readonly scales?: Float32Array;
}

function storageMatches(dtype: DType, d: Storage): boolean {
  if (dtype === "F32") return d instanceof Float32Array;
  if (dtype === "Q8") return d instanceof Int8Array;
  if (isBlockDType(dtype)) return d instanceof Uint8Array;
  return d instanceof Uint16Array;
}

/** Storage elements of a tensor: numel, or packed bytes for the block dtypes. */
function storageLength(dtype: DType, shape: readonly number[]): number {
  if (!isBlockDType(dtype)) return numel(shape);
  const cols = shape.length ? shape[shape.length - 1] : 1;
  return (numel(shape) / Math.max(cols, 1)) * ggmlRowBytes(dtype, cols);
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function tensor(dtype: DType, shape: readonly number[], data?: Storage, scales?: Float32Array): Tensor {
  const n = storageLength(dtype, shape);
  const d = data ?? (dtype === "F32" ? new Float32Array(n) : dtype === "Q8" ? new Int8Array(n) : isBlockDType(dtype) ? new Uint8Array(n) : new Uint16Array(n));
  if (d.length !== n) throw new MlaError(`tensor data has ${d.length} ${isBlockDType(dtype) ? "bytes" : "elements"}, ${dtype} shape [${shape.join(", ")}] needs ${n}`);
  if (!storageMatches(dtype, d)) throw new MlaError(`tensor storage does not match dtype ${dtype}`);
  if (dtype !== "Q8") return { dtype, shape: [...shape], data: d };
  const cols = shape[shape.length - 1];
  const s = scales ?? new Float32Array(n / Q8_BLOCK);
  if (cols % Q8_BLOCK !== 0 || s.length !== n / Q8_BLOCK) throw new MlaError(`Q8 tensor [${shape.join(", ")}] needs rows of a multiple of ${Q8_BLOCK} and one scale per block`);
  return { dtype, shape: [...shape], data: d, scales: s };
}

/** Quantize a matrix [rows, cols] (any dtype, cols a multiple of 32) to Q8. */
export function quantizeQ8(t: Tensor): Tensor {
  const cols = t.shape[t.shape.length - 1], rows = numel(t.shape) / cols;
  const out = tensor("Q8", t.shape);
  const scratch = new Float32Array(cols);
  quantizeRowsQ8(out.data as Int8Array, out.scales!, rows, cols, (r) => rowF32(t, r, cols, scratch));
  return out;
}

/** Row r of a matrix with `cols` columns as F32 (a view for F32, else widened into `scratch`). */
export function rowF32(t: Tensor, r: number, cols: number, scratch: Float32Array): Float32Array {
  const off = r * cols;
  switch (t.dtype) {
    case "F32":
      return (t.data as Float32Array).subarray(off, off + cols);
    case "BF16": {
      const src = t.data as Uint16Array;
      const u = new Uint32Array(scratch.buffer, scratch.byteOffset, cols);
      for (let k = 0; k < cols; k++) u[k] = src[off + k] << 16;
      return scratch;
    }
    case "F16": {
      const src = t.data as Uint16Array, lut = f16Lut();
      for (let k = 0; k < cols; k++) scratch[k] = lut[src[off + k]];
      return scratch;
    }
    case "Q8":
      return dequantizeRowQ8(t.data as Int8Array, t.scales!, r, cols, scratch);
    default: {
      const rb = ggmlRowBytes(t.dtype, cols);
      return dequantizeGgml(t.dtype, t.data as Uint8Array, r * rb, cols, scratch);
    }
  }
}

export function f32Tensor(shape: readonly number[], data?: Float32Array): Tensor {
  return tensor("F32", shape, data);
}

/** Widen any tensor to a fresh F32 array (for small tensors: norms, biases, router weights). */
export function toF32(t: Tensor): Float32Array {
  if (t.dtype === "F32") return t.data as Float32Array;
  const cols = t.shape.length ? t.shape[t.shape.length - 1] : 1;
  const n = numel(t.shape), rows = cols ? n / cols : 0;
  const out = new Float32Array(n);
  for (let r = 0; r < rows; r++) rowF32(t, r, cols, out.subarray(r * cols, (r + 1) * cols));
  return out;
}

/** Round an F32 array into a 16-bit dtype (tests, random checkpoints, quantization experiments). */
export function fromF32(data: Float32Array, dtype: DType, shape: readonly number[]): Tensor {
  if (dtype === "F32") return tensor("F32", shape, data);
  if (dtype === "Q8") return quantizeQ8(tensor("F32", shape, data));
  if (isBlockDType(dtype)) throw new MlaError(`fromF32: quantize to ${dtype} with quantizeTensor (src/tensor/ggml-quantize.ts)`);
  const out = new Uint16Array(data.length);
  const conv = dtype === "BF16" ? f32ToBf16 : f32ToF16;
  for (let i = 0; i < data.length; i++) out[i] = conv(data[i]);
  return tensor(dtype, shape, out);
}

/** Element i of any tensor as a number. */
export function at(t: Tensor, i: number): number {
  if (t.dtype === "F32") return t.data[i];
  if (t.dtype === "Q8") return t.data[i] * t.scales![Math.floor(i / Q8_BLOCK)];
  if (isBlockDType(t.dtype)) {
    const cols = t.shape[t.shape.length - 1], r = Math.floor(i / cols);
    return rowF32(t, r, cols, new Float32Array(cols))[i - r * cols];
  }
  return t.dtype === "BF16" ? bf16ToF32(t.data[i]) : f16Lut()[t.data[i]];
}

/** Rows [r0, r1) of a matrix as a view (no copy; Q8 scales sliced alongside). */
export function sliceRows(t: Tensor, r0: number, r1: number): Tensor {
  const cols = t.shape[t.shape.length - 1];
  if (isBlockDType(t.dtype)) {
    const rb = ggmlRowBytes(t.dtype, cols);
    return tensor(t.dtype, [r1 - r0, cols], t.data.subarray(r0 * rb, r1 * rb));
  }
  const data = t.data.subarray(r0 * cols, r1 * cols);
  const scales = t.scales?.subarray((r0 * cols) / Q8_BLOCK, (r1 * cols) / Q8_BLOCK);
  return tensor(t.dtype, [r1 - r0, cols], data, scales);
}

/** The rows of a then the rows of b, in one new matrix (same dtype and width). */
export function concatRows(a: Tensor, b: Tensor): Tensor {
  const cols = a.shape[a.shape.length - 1];
  if (a.dtype !== b.dtype || b.shape[b.shape.length - 1] !== cols) {
    throw new MlaError(`cannot stack ${a.dtype} [${a.shape.join(", ")}] and ${b.dtype} [${b.shape.join(", ")}]`);
  }
  const ra = numel(a.shape) / cols, rb = numel(b.shape) / cols;
  const out = tensor(a.dtype, [ra + rb, cols]);
  (out.data as Storage & Uint8Array).set(a.data as Storage & Uint8Array);
  (out.data as Storage & Uint8Array).set(b.data as Storage & Uint8Array, a.data.length);
  if (a.scales && b.scales && out.scales) {
    out.scales.set(a.scales);
    out.scales.set(b.scales, a.scales.length);
  }
  return out;
}
