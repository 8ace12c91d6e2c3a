/**
 * config.json's quantization_config: which pre-quantized releases mla-ts reads. One kind is read, block-scaled FP8
 * as DeepSeek-V3/R1/V3.1 and Kimi-K2 ship it (transformers' "fine-grained FP8"): every Linear weight is
 * float8_e4m3fn with a `<name>_scale_inv` per weight_block_size block; embeddings, norms, the router gate and
 * lm_head stay BF16. The loader (./checkpoint.ts) dequantizes those weights to BF16 as it reads them, so the engine
 * computes what transformers computes on the dequantized model: activations stay F32 (activation_scheme "dynamic"
 * names the FP8 quantization of activations that FP8 GEMM kernels do on the fly; here there is none).
 * Everything else is refused by name, before any weight is read.
 */
import { MlaError } from "../errors.js";
import type { Json } from "./config.js";

/** A block-scaled FP8 release: each blockSize[0] x blockSize[1] block of a weight shares one scale. */
export interface Fp8Quantization {
  readonly method: "fp8";
  /** weight_block_size: [rows, cols] of a block ([128, 128] in every release). */
  readonly blockSize: readonly [number, number];
  /**
   * scale_fmt: "ue8m0" (V3.1) says the scales are powers of two (stored as F32, or as F8_E8M0); either way the
   * stored value is the scale, so both read alike ("float" is transformers' name for the default).
   */
  readonly scaleFmt: "float" | "ue8m0";
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function refuse(key: string, value: unknown, why: string): never {
  throw new MlaError(`config.json: quantization_config.${key} ${JSON.stringify(value)}: ${why}`);
}

/** The FP8 spec of a config.json, null when it has no quantization_config; throws for any other quantization. */
export function checkQuantization(json: Json): Fp8Quantization | null {
  const q = json.quantization_config;
  if (q === undefined || q === null) return null;
  if (!isObject(q)) throw new MlaError(`config.json: quantization_config is ${JSON.stringify(q)}, not an object`);
  const method = q.quant_method;
  if (method === "fp8") return fp8Spec(q);
  refuse("quant_method", method, otherMethod(method, q));
}

const READ = "mla-ts reads unquantized and block-scaled FP8 (quant_method fp8) releases";

/** Why a quant_method other than fp8 is refused, naming the weights it would have to read. */
function otherMethod(method: unknown, q: Record<string, unknown>): string {
  if (method === "compressed-tensors") return `${compressedWeights(q)} compressed-tensors weights are not supported (${READ})`;
  if (method === "gptq" || method === "awq") return `${typeof q.bits === "number" ? `INT${q.bits} ` : ""}${String(method).toUpperCase()} weights are not supported (${READ}; load the unquantized release, or a GGUF)`;
  if (method === "bitsandbytes") return `bitsandbytes weights are not supported (${READ})`;
  if (typeof method !== "string") return `no quant_method string: cannot tell how the weights are stored (${READ})`;
  return `not supported (${READ})`;
}

/** "INT4" for Kimi-K2-Thinking's group-quantized int weights, from the first config group. */
function compressedWeights(q: Record<string, unknown>): string {
  const groups = isObject(q.config_groups) ? Object.values(q.config_groups) : [];
  const w = groups.length && isObject(groups[0]) && isObject(groups[0].weights) ? groups[0].weights : null;
  if (!w) return "these";
  return `${typeof w.type === "string" ? w.type.toUpperCase() : ""}${typeof w.num_bits === "number" ? w.num_bits : ""}` || "these";
}

function fp8Spec(q: Record<string, unknown>): Fp8Quantization {
  // transformers' FineGrainedFP8Config defaults: no fmt key is e4m3, no weight_block_size is [128, 128]
  const fmt = q.fmt ?? "e4m3";
  if (fmt !== "e4m3") refuse("fmt", fmt, "only e4m3 (float8_e4m3fn) FP8 weights are supported");
  const act = q.activation_scheme ?? "dynamic";
  if (act !== "dynamic") refuse("activation_scheme", act, "only dynamic is supported (static activation scales belong to FP8 GEMMs; mla-ts computes activations in F32)");
  const scaleFmt = q.scale_fmt ?? "float";
  if (scaleFmt !== "float" && scaleFmt !== "ue8m0") refuse("scale_fmt", scaleFmt, "supported: float (the default) and ue8m0");
  const bs = q.weight_block_size === undefined ? [128, 128] : q.weight_block_size;
  if (bs === null) refuse("weight_block_size", bs, "per-tensor FP8 scales are not supported (block-scaled FP8 as DeepSeek-V3 ships it is)");
  if (!Array.isArray(bs) || bs.length !== 2 || !bs.every((b) => Number.isSafeInteger(b) && b > 0)) {
    refuse("weight_block_size", bs, "must be two positive integers [rows, cols], e.g. [128, 128]");
  }
  return { method: "fp8", blockSize: [bs[0] as number, bs[1] as number], scaleFmt };
}
