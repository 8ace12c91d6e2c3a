/**
 * safetensors from memory (a fetched file in a browser): the same header checks as the file reader, tensors as
 * views on the bytes where alignment allows (copies otherwise), F64 narrowed to F32, block-scaled FP8 weights
 * dequantized to BF16 when the caller gives the block size.
 */
import { MlaError } from "../errors.js";
import { dequantizeFp8Rows } from "../tensor/fp8.js";
import { numel, tensor, type Tensor } from "../tensor/tensor.js";
import { SAFETENSORS_DTYPE_BYTES, checkFp8Pair, decodeScales, fail, fp8ScaleName, parseEntries, parseHeaderJson, type TensorInfo } from "./safetensors-header.js";

export interface BufferReadOptions {
  /**
   * config.json's quantization_config.weight_block_size, for an FP8 release: each F8_E4M3 weight with a
   * `<name>_scale_inv` is dequantized to BF16, and the scales are consumed (not returned).
   */
  readonly fp8BlockSize?: readonly [number, number];
}

export function parseSafetensorsBuffer(bytes: Uint8Array, name = "model.safetensors", opts: BufferReadOptions = {}): Map<string, Tensor> {
  if (bytes.byteLength < 8) fail(name, `only ${bytes.byteLength} bytes, too short for a safetensors header`);
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (8 + n > bytes.byteLength) fail(name, `header length ${n} runs past the end of the ${bytes.byteLength} bytes (truncated or not a safetensors file?)`);
  const { tensors } = parseEntries(parseHeaderJson(bytes.subarray(8, 8 + n), name), name, 8 + n, bytes.byteLength);
  const block = opts.fp8BlockSize;
  const scaleOf = (info: TensorInfo) => (block && info.dtype === "F8_E4M3" ? tensors.get(fp8ScaleName(info.name)) : undefined);
  const consumed = new Set<string>();
  for (const info of tensors.values()) if (scaleOf(info)) consumed.add(fp8ScaleName(info.name));
  const out = new Map<string, Tensor>();
  for (const [k, info] of tensors) {
    if (consumed.has(k)) continue;
    const scale = scaleOf(info);
    out.set(k, scale ? fp8Tensor(bytes, info, scale, block!) : toTensor(bytes, info));
  }
  return out;
}

function fp8Tensor(bytes: Uint8Array, weight: TensorInfo, scale: TensorInfo, block: readonly [number, number]): Tensor {
  const l = checkFp8Pair(weight, scale, block);
  const scales = decodeScales(scale.dtype, bytes.subarray(scale.begin, scale.end));
  const out = new Uint16Array(l.rows * l.cols);
  dequantizeFp8Rows(l, bytes.subarray(weight.begin, weight.end), 0, l.rows, scales, out);
  return tensor("BF16", weight.shape, out);
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
