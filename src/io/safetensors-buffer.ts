/**
 * safetensors from memory (a fetched file in a browser): the same header checks as the file reader, tensors as
 * views on the bytes where alignment allows (copies otherwise), F64 narrowed to F32.
 */
import { MlaError } from "../errors.js";
import { numel, tensor, type Tensor } from "../tensor/tensor.js";
import { SAFETENSORS_DTYPE_BYTES, fail, parseEntries, parseHeaderJson, type TensorInfo } from "./safetensors-header.js";

export function parseSafetensorsBuffer(bytes: Uint8Array, name = "model.safetensors"): Map<string, Tensor> {
  if (bytes.byteLength < 8) fail(name, `only ${bytes.byteLength} bytes, too short for a safetensors header`);
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (8 + n > bytes.byteLength) fail(name, `header length ${n} runs past the end of the ${bytes.byteLength} bytes (truncated or not a safetensors file?)`);
  const { tensors } = parseEntries(parseHeaderJson(bytes.subarray(8, 8 + n), name), name, 8 + n, bytes.byteLength);
  const out = new Map<string, Tensor>();
  for (const [k, info] of tensors) out.set(k, toTensor(bytes, info));
  return out;
}

function toTensor(bytes: Uint8Array, info: TensorInfo): Tensor {
  const { dtype, shape } = info;
  if (dtype !== "F32" && dtype !== "BF16" && dtype !== "F16" && dtype !== "F64") {
    throw new MlaError(`${info.file}: tensor "${info.name}" has dtype ${dtype}, which mla-ts does not support (supported: F32, BF16, F16, F64)`);
  }
  const n = numel(shape), size = SAFETENSORS_DTYPE_BYTES[dtype];
  const view = new Uint8Array(bytes.buffer, bytes.byteOffset + info.begin, n * size);
  // typed-array views need element alignment; the data section usually is, but the spec does not promise it
  const buf = view.byteOffset % size === 0 ? view : view.slice();
  if (dtype === "F64") return tensor("F32", shape, Float32Array.from(new Float64Array(buf.buffer, buf.byteOffset, n)));
  if (dtype === "F32") return tensor("F32", shape, new Float32Array(buf.buffer, buf.byteOffset, n));
  return tensor(dtype, shape, new Uint16Array(buf.buffer, buf.byteOffset, n));
}
