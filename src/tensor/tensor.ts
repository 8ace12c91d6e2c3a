import { type DType, bf16ToF32, f16Lut, f32ToBf16, f32ToF16 } from "./dtype.js";
import { MlaError } from "../errors.js";

/** F32 data lives in a Float32Array; BF16/F16 stay packed as raw 16-bit words. */
export type Storage = Float32Array | Uint16Array;

/** A dense row-major tensor. Weights use PyTorch's Linear layout [out, in]. */
export interface Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: Storage;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function tensor(dtype: DType, shape: readonly number[], data?: Storage): Tensor {
  const n = numel(shape);
  const d = data ?? (dtype === "F32" ? new Float32Array(n) : new Uint16Array(n));
  if (d.length !== n) throw new MlaError(`tensor data has ${d.length} elements, shape [${shape.join(", ")}] needs ${n}`);
  if ((dtype === "F32") !== d instanceof Float32Array) throw new MlaError(`tensor storage does not match dtype ${dtype}`);
  return { dtype, shape: [...shape], data: d };
}

export function f32Tensor(shape: readonly number[], data?: Float32Array): Tensor {
  return tensor("F32", shape, data);
}

/** Widen any tensor to a fresh F32 array (for small tensors: norms, biases, router weights). */
export function toF32(t: Tensor): Float32Array {
  if (t.dtype === "F32") return t.data as Float32Array;
  const src = t.data as Uint16Array;
  const out = new Float32Array(src.length);
  if (t.dtype === "BF16") {
    new Uint32Array(out.buffer).set(src);
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < u.length; i++) u[i] <<= 16;
  } else {
    const lut = f16Lut();
    for (let i = 0; i < src.length; i++) out[i] = lut[src[i]];
  }
  return out;
}

/** Round an F32 array into a 16-bit dtype (tests, random checkpoints, quantization experiments). */
export function fromF32(data: Float32Array, dtype: DType, shape: readonly number[]): Tensor {
  if (dtype === "F32") return tensor("F32", shape, data);
  const out = new Uint16Array(data.length);
  const conv = dtype === "BF16" ? f32ToBf16 : f32ToF16;
  for (let i = 0; i < data.length; i++) out[i] = conv(data[i]);
  return tensor(dtype, shape, out);
}

/** Element i of any tensor as a number. */
export function at(t: Tensor, i: number): number {
  if (t.dtype === "F32") return t.data[i];
  return t.dtype === "BF16" ? bf16ToF32(t.data[i]) : f16Lut()[t.data[i]];
}
