/**
 * The weight structs of the engine's two decoders, and the reading of a checkpoint's tensors (checked, one at a
 * time, matrices prepared for the backend as they arrive). Which tensors a model has is its family's business
 * (./families/); the registry there ties the two together (expectedTensors, loadWeights).
 */
import { MlaError } from "../errors.js";
import { BLOCK_DTYPES } from "../tensor/dtype.js";
import { concatRows, sliceRows, toF32, type Tensor } from "../tensor/tensor.js";
import type { TensorStore } from "./tensor-store.js";
import type { ModelConfig } from "./config.js";
import type { MlaWeights } from "../attention/mla.js";
import type { GqaWeights } from "../attention/gqa.js";
import type { MlpWeights } from "./mlp.js";
import type { MoeWeights } from "./moe.js";

/** A layer's feed-forward block: a dense SwiGLU MLP, or a mixture of experts. */
export type FfnWeights = { readonly kind: "dense"; readonly mlp: MlpWeights } | { readonly kind: "moe"; readonly moe: MoeWeights };

/** One MLA (DeepSeek-layout) decoder layer's weights. Norm vectors are widened to F32; matrices keep their stored dtype. */
export interface LayerWeights {
  readonly inputNorm: Float32Array; // input_layernorm
  readonly postNorm: Float32Array; //  post_attention_layernorm
  readonly attn: MlaWeights;
  readonly ffn: FfnWeights;
}

/** One llama-family decoder layer: GQA attention (biases widened to F32) and a dense SwiGLU MLP. */
export interface LlamaLayerWeights {
  readonly inputNorm: Float32Array;
  readonly postNorm: Float32Array;
  readonly attn: GqaWeights;
  readonly mlp: MlpWeights;
}

/** Every weight of a decoder in one struct (llama2.c style); L is the family's layer. */
export interface DecoderWeights<L> {
  readonly embed: Tensor; // model.embed_tokens [V, D]
  readonly layers: readonly L[];
  readonly norm: Float32Array; // model.norm
  readonly lmHead: Tensor; // lm_head [V, D] (the embedding when tied)
}

/** A DeepSeek-V2/V3 model's weights. */
export type ModelWeights = DecoderWeights<LayerWeights>;
/** A llama/qwen2/mistral model's weights. */
export type LlamaWeights = DecoderWeights<LlamaLayerWeights>;

export interface LoadProgress {
  (doneBytes: number, totalBytes: number, name: string): void;
}

/** Matrices the kernels multiply with (the embedding only when it doubles as lm_head; the router runs in F32). */
export function isMatmulWeight(c: ModelConfig, name: string): boolean {
  if (name === "model.embed_tokens.weight") return c.tieWordEmbeddings;
  return name.endsWith("_proj.weight") || name === "lm_head.weight" || name.endsWith("kv_a_proj_with_mqa.weight");
}

/** Safetensors' float dtypes, and the block dtypes a GGUF file holds (./gguf/checkpoint.ts). */
const LOADABLE_DTYPES = new Set<string>(["F32", "BF16", "F16", "F64", "Q8", ...BLOCK_DTYPES]);

export function listNames(names: readonly string[], max = 5): string {
  return names.slice(0, max).join(", ") + (names.length > max ? ` and ${names.length - max} more` : "");
}

/** Every tensor's presence, dtype and shape, checked before any is read (so a bad checkpoint fails fast). */
function checkTensors(expected: Map<string, number[]>, ckpt: TensorStore): void {
  const missing = ckpt.missing([...expected.keys()]);
  if (missing.length) throw new MlaError(`checkpoint ${ckpt.dir} is missing ${missing.length} tensor(s): ${listNames(missing)}`);
  for (const [name, shape] of expected) {
    const { dtype, shape: got } = ckpt.info(name);
    if (!LOADABLE_DTYPES.has(dtype)) {
      const hint = dtype.startsWith("F8") ? ` (an FP8 weight loads with its ${name}_scale_inv block scales when config.json's quantization_config has quant_method "fp8")` : "";
      throw new MlaError(`tensor ${name} has dtype ${dtype}, which mla-ts does not support (F32, BF16, F16, F64; in GGUF files also Q8_0, ${BLOCK_DTYPES.join(", ")})${hint}`);
    }
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new MlaError(`tensor ${name} has shape [${got.join(", ")}] but config.json implies [${shape.join(", ")}]`);
    }
  }
}

/** Named tensors, and the stacked matrix that begins with a name (when the loader stacked one). */
export interface ReadTensors {
  readonly get: (name: string) => Tensor;
  /** Whether a tensor was read (the optional ones are read only when the checkpoint has them). */
  readonly has: (name: string) => boolean;
  /** The stacked matrix whose first part is `first`, when the backend stacked it. */
  readonly stacked: (first: string) => Tensor | undefined;
}

/**
 * Read every expected tensor (checked first), matrices through `prepare` (the backend's upload/quantization hook);
 * with `prepare`, the `pairs` (first -> second) that read the same input are stacked into one matrix.
 */
export function readTensors(
  c: ModelConfig, ckpt: TensorStore, expected: Map<string, number[]>, pairs: Map<string, string>, onProgress?: LoadProgress, prepare?: (w: Tensor) => Tensor,
): ReadTensors {
  checkTensors(expected, ckpt);
  const names = [...expected.keys()];
  // One tensor at a time, so a backend that copies or quantizes weights never holds two copies of the model.
  const total = ckpt.totalBytes(names);
  const t = new Map<string, Tensor>();
  const stacked = new Map<string, Tensor>();
  if (!prepare) pairs = new Map();
  const second = new Set(pairs.values());
  let done = 0;
  const progress = (name: string) => {
    done += ckpt.info(name).end - ckpt.info(name).begin;
    onProgress?.(done, total, name);
  };
  for (const name of names) {
    if (second.has(name)) continue; // loaded with its partner
    const w = ckpt.load(name);
    const partner = pairs.get(name);
    if (partner && ckpt.info(partner).dtype === ckpt.info(name).dtype) {
      // Two matrices that read the same input are stacked into one, so a decode step streams them in one call.
      const both = prepare!(concatRows(w, ckpt.load(partner)));
      const rows = w.shape[0];
      stacked.set(name, both);
      t.set(name, sliceRows(both, 0, rows));
      t.set(partner, sliceRows(both, rows, both.shape[0]));
      progress(name);
      progress(partner);
      continue;
    }
    t.set(name, prepare && isMatmulWeight(c, name) ? prepare(w) : w);
    progress(name);
    if (partner) {
      t.set(partner, prepare!(ckpt.load(partner)));
      progress(partner);
    }
  }
  return { get: (name) => t.get(name)!, has: (name) => t.has(name), stacked: (name) => stacked.get(name) };
}

/** A SwiGLU MLP's weights under prefix p (gate/up stacked when the loader stacked them). */
export function mlpWeights(p: string, { get, stacked }: ReadTensors): MlpWeights {
  return {
    gate: get(`${p}gate_proj.weight`), up: get(`${p}up_proj.weight`), down: get(`${p}down_proj.weight`),
    gateUp: stacked(`${p}gate_proj.weight`),
  };
}

/**
 * The final norm, embedding and lm_head around a family's layers. A tied model uses its embedding as lm_head unless
 * the checkpoint also stores an lm_head.weight: transformers (5.x) then loads that one and leaves the two untied.
 */
export function decoderWeights<L>(c: ModelConfig, { get, has }: Pick<ReadTensors, "get" | "has">, layers: L[]): DecoderWeights<L> {
  const embed = get("model.embed_tokens.weight");
  const tied = c.tieWordEmbeddings && !has("lm_head.weight");
  return { embed, layers, norm: toF32(get("model.norm.weight")), lmHead: tied ? embed : get("lm_head.weight") };
}

