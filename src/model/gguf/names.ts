/**
 * GGUF (llama.cpp) <-> Hugging Face: tensor names and metadata keys, for the architectures mla-ts reads and writes.
 * Facts taken from llama.cpp (gguf-py/gguf/constants.py TENSOR_NAMES and Keys, tensor_mapping.py,
 * conversion/deepseek.py DeepseekV2Model, conversion/llama.py LlamaModel, conversion/qwen.py Qwen2Model,
 * src/models/deepseek2.cpp); the loader (./checkpoint.ts, ./config.ts) and the GGUF exporter both import this file.
 *
 * Architectures: `deepseek2` (DeepSeek-V2/V2-Lite/V3 and their MLA relatives), `llama` (llama, and mistral: llama.cpp
 * converts MistralForCausalLM with LlamaModel, so mistral GGUFs say `llama`), `qwen2`.
 *
 * Names that are not Hugging Face's but the converter's intermediate ones, kept because the exporter needs a name:
 * - `model.layers.N.mlp.experts.{gate,up,down}_proj.weight`: all experts of a layer stacked into one 3-D tensor
 *   [n_expert, rows, cols] (blk.N.ffn_*_exps); `expertOf` maps each HF expert name to it.
 * - `model.layers.N.self_attn.{k,v}_b_proj.weight`: kv_b_proj split per head (blk.N.attn_k_b [n_head, dc, dn], the
 *   transposed W^UK; blk.N.attn_v_b [n_head, dv, dc], W^UV), the layout llama.cpp writes since 2025.
 */
import { MlaError } from "../../errors.js";

/** The GGUF architectures mla-ts loads. */
export const GGUF_ARCHS = ["deepseek2", "llama", "qwen2"] as const;
export type GgufArch = (typeof GGUF_ARCHS)[number];

/** `general.architecture`, checked (a one-line error names it and the supported ones). */
export function checkGgufArch(arch: unknown): GgufArch {
  if (typeof arch === "string" && (GGUF_ARCHS as readonly string[]).includes(arch)) return arch as GgufArch;
  throw new MlaError(`GGUF architecture ${JSON.stringify(arch ?? null)} is not supported (supported: ${GGUF_ARCHS.join(", ")})`);
}

/**
 * The architecture llama.cpp's converter writes for a config.json model_type (mistral converts as llama; GLM-4.7-Flash,
 * Kimi-K2 and Youtu-LLM as deepseek2, DeepSeek-V3's graph).
 */
const ARCH_OF_MODEL_TYPE: Readonly<Record<string, GgufArch>> = {
  deepseek_v2: "deepseek2", deepseek_v3: "deepseek2", glm4_moe_lite: "deepseek2", kimi_k2: "deepseek2", youtu: "deepseek2",
  llama: "llama", mistral: "llama", qwen2: "qwen2",
};

/** Model types mla-ts runs but does not export, and why. */
const NOT_EXPORTED: Readonly<Record<string, string>> = {
  minicpm3: "llama.cpp runs MiniCPM3 as its own architecture (minicpm3: scaled embeddings, residuals and logits, LongRoPE by halves), which mla-ts does not write; deepseek2 has no place for its multipliers",
};

/** The GGUF architecture to export a model_type as (added for the exporter, src/convert/export-gguf.ts). */
export function ggufArchOf(modelType: string): GgufArch {
  const a = Object.hasOwn(ARCH_OF_MODEL_TYPE, modelType) ? ARCH_OF_MODEL_TYPE[modelType] : undefined;
  if (!a && Object.hasOwn(NOT_EXPORTED, modelType)) throw new MlaError(`model_type ${JSON.stringify(modelType)} is not exported to GGUF: ${NOT_EXPORTED[modelType]}`);
  if (!a) throw new MlaError(`model_type ${JSON.stringify(modelType)} has no GGUF architecture (exportable: ${Object.keys(ARCH_OF_MODEL_TYPE).join(", ")})`);
  return a;
}

// ---------------------------------------------------------------------------------------------------------------
// Tensor names

/** Whole-model tensors (the same for every architecture). rope_freqs (llama3 RoPE) has no HF tensor: see config.ts. */
const GLOBAL: readonly (readonly [string, string])[] = [
  ["token_embd.weight", "model.embed_tokens.weight"],
  ["output_norm.weight", "model.norm.weight"],
  ["output.weight", "lm_head.weight"],
];

/** Per-layer tensors: GGUF suffix after `blk.N.`, HF suffix after `model.layers.N.`. */
const NORMS_AND_MLP: readonly (readonly [string, string])[] = [
  ["attn_norm.weight", "input_layernorm.weight"],
  ["ffn_norm.weight", "post_attention_layernorm.weight"],
  ["ffn_gate.weight", "mlp.gate_proj.weight"],
  ["ffn_up.weight", "mlp.up_proj.weight"],
  ["ffn_down.weight", "mlp.down_proj.weight"],
];

const DEEPSEEK2_LAYER: readonly (readonly [string, string])[] = [
  ...NORMS_AND_MLP,
  ["attn_q.weight", "self_attn.q_proj.weight"],
  ["attn_q_a.weight", "self_attn.q_a_proj.weight"],
  ["attn_q_a_norm.weight", "self_attn.q_a_layernorm.weight"],
  ["attn_q_b.weight", "self_attn.q_b_proj.weight"],
  ["attn_kv_a_mqa.weight", "self_attn.kv_a_proj_with_mqa.weight"],
  ["attn_kv_a_norm.weight", "self_attn.kv_a_layernorm.weight"],
  ["attn_kv_b.weight", "self_attn.kv_b_proj.weight"],
  ["attn_k_b.weight", "self_attn.k_b_proj.weight"],
  ["attn_v_b.weight", "self_attn.v_b_proj.weight"],
  ["attn_output.weight", "self_attn.o_proj.weight"],
  ["ffn_gate_inp.weight", "mlp.gate.weight"],
  ["exp_probs_b.bias", "mlp.gate.e_score_correction_bias"],
  ["ffn_gate_exps.weight", "mlp.experts.gate_proj.weight"],
  ["ffn_up_exps.weight", "mlp.experts.up_proj.weight"],
  ["ffn_down_exps.weight", "mlp.experts.down_proj.weight"],
  ["ffn_gate_shexp.weight", "mlp.shared_experts.gate_proj.weight"],
  ["ffn_up_shexp.weight", "mlp.shared_experts.up_proj.weight"],
  ["ffn_down_shexp.weight", "mlp.shared_experts.down_proj.weight"],
];

const LLAMA_LAYER: readonly (readonly [string, string])[] = [
  ...NORMS_AND_MLP,
  ...(["q", "k", "v"] as const).flatMap((x) => (["weight", "bias"] as const).map((s) => [`attn_${x}.${s}`, `self_attn.${x}_proj.${s}`] as const)),
  ["attn_output.weight", "self_attn.o_proj.weight"],
  ["attn_output.bias", "self_attn.o_proj.bias"],
];

const LAYER: Readonly<Record<GgufArch, readonly (readonly [string, string])[]>> = {
  deepseek2: DEEPSEEK2_LAYER, llama: LLAMA_LAYER, qwen2: LLAMA_LAYER,
};

const GGUF_BLK = /^blk\.(\d+)\.(.+)$/;
const HF_LAYER = /^model\.layers\.(\d+)\.(.+)$/;

/** The GGUF name of an HF tensor, or undefined when the architecture has none. */
export function tryGgufTensorName(arch: GgufArch, hf: string): string | undefined {
  const g = GLOBAL.find(([, h]) => h === hf);
  if (g) return g[0];
  const m = HF_LAYER.exec(hf);
  const e = m && LAYER[arch].find(([, h]) => h === m[2]);
  return e ? `blk.${m[1]}.${e[0]}` : undefined;
}

/** The HF name of a GGUF tensor, or undefined when it has none (rope_freqs, MTP layers' extra tensors...). */
export function tryHfTensorName(arch: GgufArch, gguf: string): string | undefined {
  const g = GLOBAL.find(([n]) => n === gguf);
  if (g) return g[1];
  const m = GGUF_BLK.exec(gguf);
  const e = m && LAYER[arch].find(([n]) => n === m[2]);
  return e ? `model.layers.${m[1]}.${e[1]}` : undefined;
}

export function ggufTensorName(arch: GgufArch, hf: string): string {
  const n = tryGgufTensorName(arch, hf);
  if (n === undefined) throw new MlaError(`tensor ${hf} has no GGUF name for architecture ${arch}`);
  return n;
}

export function hfTensorName(arch: GgufArch, gguf: string): string {
  const n = tryHfTensorName(arch, gguf);
  if (n === undefined) throw new MlaError(`GGUF tensor ${gguf} has no Hugging Face name for architecture ${arch}`);
  return n;
}

const HF_EXPERT = /^model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$/;

/**
 * An HF routed-expert tensor (model.layers.L.mlp.experts.E.gate_proj.weight) as the stacked GGUF tensor that holds
 * it (blk.L.ffn_gate_exps.weight, [n_expert, rows, cols]) and its index there; undefined for other names.
 */
export function expertOf(hf: string): { readonly gguf: string; readonly expert: number } | undefined {
  const m = HF_EXPERT.exec(hf);
  if (!m) return undefined;
  return { gguf: `blk.${m[1]}.ffn_${m[3].slice(0, -5)}_exps.weight`, expert: Number(m[2]) };
}

/** The HF name of expert E inside a stacked GGUF expert tensor (the inverse of expertOf). */
export function expertHfName(gguf: string, expert: number): string | undefined {
  const m = /^blk\.(\d+)\.ffn_(gate|up|down)_exps\.weight$/.exec(gguf);
  return m ? `model.layers.${m[1]}.mlp.experts.${expert}.${m[2]}_proj.weight` : undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// The llama RoPE permutation

/**
 * Whether the converter permuted this HF tensor's rows for llama.cpp's RoPE (adjacent pairs) and by how many heads:
 * LlamaModel.permute on q_proj (n_head) and k_proj (n_head_kv), weights and biases, for arch `llama` only. qwen2
 * uses llama.cpp's NEOX RoPE (halves, as HF) and is not permuted; deepseek2's q/k RoPE parts are not either: HF
 * DeepSeek already rotates adjacent pairs (it permutes inside apply_rotary_pos_emb), as llama.cpp's NORM RoPE does.
 */
export function ropePermutedHeads(arch: GgufArch, hf: string, numHeads: number, numKvHeads: number): number | null {
  if (arch !== "llama") return null;
  if (/\.self_attn\.q_proj\.(weight|bias)$/.test(hf)) return numHeads;
  if (/\.self_attn\.k_proj\.(weight|bias)$/.test(hf)) return numKvHeads;
  return null;
}

/**
 * LlamaModel.permute as a row order: GGUF row r holds HF row `order[r]` (w.reshape(n_head, 2, hd/2, ...)
 * .swapaxes(1, 2)). Exporting gathers HF rows by `order`; loading puts GGUF row r back at HF row order[r].
 */
export function ropePermutationOrder(rows: number, nHead: number): Int32Array {
  const hd = rows / nHead, half = hd / 2;
  if (!Number.isInteger(half)) throw new MlaError(`RoPE permutation: ${rows} rows do not split into ${nHead} heads of an even width`);
  const order = new Int32Array(rows);
  for (let h = 0; h < nHead; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) order[h * hd + 2 * i + j] = h * hd + j * half + i;
    }
  }
  return order;
}

// ---------------------------------------------------------------------------------------------------------------
// Metadata keys <-> config.json fields

export type GgufScalarKind = "u32" | "f32" | "bool" | "string";

/** A metadata key (`{arch}` stands for the architecture) that is one config.json field, unchanged. */
export interface MetadataField {
  readonly key: string;
  readonly hf: string;
  readonly kind: GgufScalarKind;
  /** Only for these architectures (all when absent). */
  readonly archs?: readonly GgufArch[];
}

const DS2: readonly GgufArch[] = ["deepseek2"];

/**
 * The one-to-one fields. Not here, because they are not one-to-one (see ./config.ts and the exporter):
 * - `{arch}.attention.head_count_kv`: deepseek2 writes 1 (MLA as MQA over the latent); HF's is n_head.
 * - `{arch}.rope.dimension_count`: llama/qwen2 head_dim; deepseek2 qk_rope_head_dim.
 * - deepseek2 `{arch}.attention.key_length_mla` = qk_nope_head_dim + qk_rope_head_dim, `value_length_mla` =
 *   v_head_dim (current files; then key_length = kv_lora_rank + qk_rope_head_dim, value_length = kv_lora_rank);
 *   files without them (older) have key_length = qk_nope + qk_rope and value_length = v_head_dim.
 * - deepseek2 `{arch}.expert_gating_func`: 1 softmax, 2 sigmoid (EXPERT_GATING_FUNC); absent means softmax
 *   (llama.cpp's default for V2 files). Sigmoid is DeepSeek-V3 (noaux_tc, exp_probs_b); softmax DeepSeek-V2
 *   (group_limited_greedy when expert_group_count > 1, else greedy).
 * - `{arch}.expert_weights_norm` is written only when true (norm_topk_prob).
 * - `{arch}.attention.q_lora_rank` is absent (or 0) when q_lora_rank is null.
 * - RoPE scaling: `{arch}.rope.scaling.type` ("none" | "linear" | "yarn"), `.factor`,
 *   `.original_context_length` (original_max_position_embeddings), `.yarn_beta_fast`, `.yarn_beta_slow`, and for
 *   deepseek2 `.yarn_log_multiplier` = 0.1 * mscale_all_dim (conversion/deepseek.py; llama.cpp divides it back).
 *   llama3 scaling is not metadata: the converter writes the per-pair divisors as the tensor rope_freqs.weight.
 * - `{arch}.attention.sliding_window` (mistral), when a file has it.
 * - deepseek2 `{arch}.nextn_predict_layers`: multi-token-prediction blocks written after the decoder's and counted in
 *   block_count (GLM-4.7-Flash); num_hidden_layers is block_count less them.
 */
export const METADATA_FIELDS: readonly MetadataField[] = [
  { key: "{arch}.vocab_size", hf: "vocab_size", kind: "u32" },
  { key: "{arch}.context_length", hf: "max_position_embeddings", kind: "u32" },
  { key: "{arch}.embedding_length", hf: "hidden_size", kind: "u32" },
  { key: "{arch}.feed_forward_length", hf: "intermediate_size", kind: "u32" },
  { key: "{arch}.block_count", hf: "num_hidden_layers", kind: "u32" },
  { key: "{arch}.attention.head_count", hf: "num_attention_heads", kind: "u32" },
  { key: "{arch}.attention.layer_norm_rms_epsilon", hf: "rms_norm_eps", kind: "f32" },
  { key: "{arch}.rope.freq_base", hf: "rope_theta", kind: "f32" },
  { key: "{arch}.leading_dense_block_count", hf: "first_k_dense_replace", kind: "u32", archs: DS2 },
  { key: "{arch}.attention.kv_lora_rank", hf: "kv_lora_rank", kind: "u32", archs: DS2 },
  { key: "{arch}.expert_feed_forward_length", hf: "moe_intermediate_size", kind: "u32", archs: DS2 },
  { key: "{arch}.expert_count", hf: "n_routed_experts", kind: "u32", archs: DS2 },
  { key: "{arch}.expert_used_count", hf: "num_experts_per_tok", kind: "u32", archs: DS2 },
  { key: "{arch}.expert_shared_count", hf: "n_shared_experts", kind: "u32", archs: DS2 },
  { key: "{arch}.expert_group_count", hf: "n_group", kind: "u32", archs: DS2 },
  { key: "{arch}.expert_group_used_count", hf: "topk_group", kind: "u32", archs: DS2 },
  { key: "{arch}.expert_weights_scale", hf: "routed_scaling_factor", kind: "f32", archs: DS2 },
];

/** Metadata keys with `{arch}` filled in. */
export const GGUF_KEYS = {
  architecture: "general.architecture",
  name: "general.name",
  alignment: "general.alignment",
  headCountKv: "{arch}.attention.head_count_kv",
  keyLength: "{arch}.attention.key_length",
  valueLength: "{arch}.attention.value_length",
  keyLengthMla: "{arch}.attention.key_length_mla",
  valueLengthMla: "{arch}.attention.value_length_mla",
  qLoraRank: "{arch}.attention.q_lora_rank",
  slidingWindow: "{arch}.attention.sliding_window",
  ropeDims: "{arch}.rope.dimension_count",
  ropeScalingType: "{arch}.rope.scaling.type",
  ropeScalingFactor: "{arch}.rope.scaling.factor",
  ropeScalingOrigCtx: "{arch}.rope.scaling.original_context_length",
  ropeYarnLogMul: "{arch}.rope.scaling.yarn_log_multiplier",
  ropeYarnBetaFast: "{arch}.rope.scaling.yarn_beta_fast",
  ropeYarnBetaSlow: "{arch}.rope.scaling.yarn_beta_slow",
  ropeYarnAttnFactor: "{arch}.rope.scaling.yarn_attn_factor",
  expertGatingFunc: "{arch}.expert_gating_func",
  expertWeightsNorm: "{arch}.expert_weights_norm",
  nextnPredictLayers: "{arch}.nextn_predict_layers",
  tokenizerModel: "tokenizer.ggml.model",
  tokenizerPre: "tokenizer.ggml.pre",
  tokens: "tokenizer.ggml.tokens",
  tokenType: "tokenizer.ggml.token_type",
  scores: "tokenizer.ggml.scores",
  merges: "tokenizer.ggml.merges",
  bosId: "tokenizer.ggml.bos_token_id",
  eosId: "tokenizer.ggml.eos_token_id",
  eotId: "tokenizer.ggml.eot_token_id",
  unkId: "tokenizer.ggml.unknown_token_id",
  padId: "tokenizer.ggml.padding_token_id",
  addBos: "tokenizer.ggml.add_bos_token",
  addEos: "tokenizer.ggml.add_eos_token",
  addSpacePrefix: "tokenizer.ggml.add_space_prefix",
  chatTemplate: "tokenizer.chat_template",
} as const;

/** A key with its `{arch}` filled in. */
export function archKey(arch: GgufArch, key: string): string {
  return key.replace("{arch}", arch);
}

/** llama.cpp's expert gating function ids (EXPERT_GATING_FUNC / llama_expert_gating_func_type). */
export const EXPERT_GATING_FUNC = { softmax: 1, sigmoid: 2 } as const;

/** llama.cpp's token types (tokenizer.ggml.token_type). */
export const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;
