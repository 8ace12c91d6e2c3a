import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { MlaError } from "../errors.js";
import { DEFAULT_ROPE, type RopeScaling } from "../attention/rope.js";

export type ModelType = "deepseek_v2" | "deepseek_v3" | "llama" | "qwen2" | "mistral";

/** Every model_type mla-ts loads, in the order error messages list them. */
export const MODEL_TYPES: readonly ModelType[] = ["deepseek_v2", "deepseek_v3", "llama", "qwen2", "mistral"];

/** How a model's attention caches keys and values: MLA's shared latent, or per-head K/V (MHA/GQA/MQA). */
export type AttentionFamily = "mla" | "gqa";

/**
 * config.json of a supported checkpoint, normalised (camelCase, defaults filled, both rope spellings).
 *
 * One flat shape for both families, so code that reads the DeepSeek fields keeps working. For the llama family
 * (`attention` "gqa") the MLA-only fields hold the values that describe the same computation: no latent
 * (kvLoraRank 0, qLoraRank null), RoPE on the whole head (qkNopeHeadDim 0, qkRopeHeadDim = vHeadDim = headDim)
 * and no experts (nRoutedExperts 0).
 */
export interface ModelConfig {
  readonly modelType: ModelType;
  readonly attention: AttentionFamily;
  /** Query/key width per head (MLA: qkNopeHeadDim + qkRopeHeadDim). */
  readonly headDim: number;
  /** q_proj, k_proj and v_proj have biases (qwen2 always; llama/mistral when attention_bias). */
  readonly qkvBias: boolean;
  /** o_proj has a bias (llama/mistral when attention_bias). */
  readonly oBias: boolean;
  /** Tokens a query may look back (mistral/qwen2 sliding-window attention); null when attention is global. */
  readonly slidingWindow: number | null;
  readonly vocabSize: number;
  readonly hiddenSize: number; // D
  readonly intermediateSize: number; // dense MLP width
  readonly numLayers: number;
  readonly numHeads: number; // n_h
  readonly numKvHeads: number;
  readonly qLoraRank: number | null; // d_c'
  readonly kvLoraRank: number; // d_c
  readonly qkNopeHeadDim: number; // d_h
  readonly qkRopeHeadDim: number; // d_h^R
  readonly vHeadDim: number; // d_v
  readonly rmsNormEps: number;
  readonly maxPositionEmbeddings: number;
  readonly tieWordEmbeddings: boolean;
  readonly rope: RopeScaling;
  // Mixture of experts (nRoutedExperts 0: every layer dense)
  readonly nRoutedExperts: number;
  readonly nSharedExperts: number;
  readonly numExpertsPerTok: number;
  readonly moeIntermediateSize: number;
  readonly nGroup: number;
  readonly topkGroup: number;
  readonly topkMethod: string;
  readonly normTopkProb: boolean;
  readonly routedScalingFactor: number;
  readonly firstKDenseReplace: number;
  readonly moeLayerFreq: number;
  readonly bosTokenId: number | null;
  readonly eosTokenIds: readonly number[];
}

type Json = Record<string, unknown>;

function num(c: Json, key: string, fallback?: number): number {
  const v = c[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new MlaError(`config.json: missing "${key}"`);
  }
  if (typeof v !== "number" || !Number.isFinite(v)) throw new MlaError(`config.json: "${key}" must be a number, got ${JSON.stringify(v)}`);
  return v;
}

function posInt(c: Json, key: string, fallback?: number): number {
  const v = num(c, key, fallback);
  if (!Number.isInteger(v) || v <= 0) throw new MlaError(`config.json: "${key}" must be a positive integer, got ${v}`);
  return v;
}

/**
 * rope_parameters (transformers >= 5) or top-level rope_theta + rope_scaling {type|rope_type} (hub checkpoints).
 * `supported` is per family: DeepSeek uses default and YaRN; the llama family default, linear and llama3.
 */
export function parseRope(c: Json, supported: readonly RopeScaling["type"][] = ["default", "yarn", "longrope"]): RopeScaling {
  const params = (c.rope_parameters ?? c.rope_scaling ?? {}) as Json;
  if (typeof params !== "object") throw new MlaError("config.json: rope_parameters/rope_scaling must be an object or null");
  const theta = num(params, "rope_theta", num(c, "rope_theta", DEFAULT_ROPE.theta));
  const type = String(params.rope_type ?? params.type ?? "default");
  if (!(supported as readonly string[]).includes(type)) {
    throw new MlaError(`config.json: rope type "${type}" is not supported (supported: ${supported.join(", ")})`);
  }
  if (type === "default") return { ...DEFAULT_ROPE, theta };
  if (type === "longrope") return parseLongrope(params, theta);
  // mscale_all_dim 0: these types leave the softmax scale at 1/sqrt(d) (see attentionScale)
  if (type === "linear") return { ...DEFAULT_ROPE, type, theta, factor: num(params, "factor") };
  if (type === "llama3") {
    return {
      ...DEFAULT_ROPE, type, theta,
      factor: num(params, "factor"),
      originalMaxPositionEmbeddings: num(params, "original_max_position_embeddings"),
      lowFreqFactor: num(params, "low_freq_factor"),
      highFreqFactor: num(params, "high_freq_factor"),
    };
  }
  return {
    type: "yarn",
    theta,
    factor: num(params, "factor"),
    originalMaxPositionEmbeddings: num(params, "original_max_position_embeddings"),
    betaFast: num(params, "beta_fast", 32),
    betaSlow: num(params, "beta_slow", 1),
    // absent means unset (0), not 1: transformers uses m(s, 1) unless both mscale and mscale_all_dim are set
    mscale: num(params, "mscale", 0),
    mscaleAllDim: num(params, "mscale_all_dim", 0),
    attentionFactor: params.attention_factor == null ? undefined : num(params, "attention_factor"),
  };
}

/**
 * longrope as transformers computes it, for the cases that do not depend on the sequence length: short_factor and
 * long_factor equal (transformers switches between them once a forward pass reaches
 * original_max_position_embeddings, which would also change keys already cached), and attention_factor given or
 * factor at most 1 (attention factor 1).
 */
function parseLongrope(params: Json, theta: number): RopeScaling {
  const list = (k: string): number[] => {
    const v = params[k];
    if (!Array.isArray(v) || !v.every((x) => typeof x === "number" && Number.isFinite(x) && x > 0)) {
      throw new MlaError(`config.json: longrope ${k} must be a list of positive numbers`);
    }
    return v as number[];
  };
  const short = list("short_factor"), long = list("long_factor");
  if (short.length !== long.length || short.some((x, i) => x !== long[i])) {
    throw new MlaError("config.json: longrope with different short_factor and long_factor is not supported (transformers switches between them by sequence length, which also changes the keys already cached)");
  }
  const factor = params.factor == null ? 1 : num(params, "factor");
  const attentionFactor = params.attention_factor == null ? undefined : num(params, "attention_factor");
  if (attentionFactor === undefined && factor > 1) {
    throw new MlaError("config.json: longrope with factor > 1 needs an explicit attention_factor (its default depends on original_max_position_embeddings conventions)");
  }
  return { ...DEFAULT_ROPE, type: "longrope", theta, factor, extFactors: short, attentionFactor };
}

function eosIds(v: unknown): number[] {
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  if (!list.every((x) => Number.isInteger(x))) throw new MlaError(`config.json: eos_token_id must be an integer or a list of integers`);
  return list as number[];
}

function isModelType(v: unknown): v is ModelType {
  return (MODEL_TYPES as readonly unknown[]).includes(v);
}

/** Parse any supported config.json (the family is chosen by model_type). */
export function parseConfig(c: Json): ModelConfig {
  const modelType = c.model_type;
  if (!isModelType(modelType)) {
    throw new MlaError(`config.json: model_type ${JSON.stringify(modelType)} is not supported (supported: ${MODEL_TYPES.join(", ")})`);
  }
  const act = c.hidden_act ?? "silu";
  if (act !== "silu") throw new MlaError(`config.json: hidden_act "${String(act)}" is not supported (supported: silu)`);
  return modelType === "deepseek_v2" || modelType === "deepseek_v3" ? parseDeepseek(c, modelType) : parseLlamaFamily(c, modelType);
}

function parseDeepseek(c: Json, modelType: "deepseek_v2" | "deepseek_v3"): ModelConfig {
  const qLora = c.q_lora_rank == null ? null : posInt(c, "q_lora_rank");
  const nRouted = c.n_routed_experts == null ? 0 : num(c, "n_routed_experts");
  const cfg: ModelConfig = {
    modelType,
    vocabSize: posInt(c, "vocab_size"),
    hiddenSize: posInt(c, "hidden_size"),
    intermediateSize: posInt(c, "intermediate_size"),
    numLayers: posInt(c, "num_hidden_layers"),
    numHeads: posInt(c, "num_attention_heads"),
    numKvHeads: posInt(c, "num_key_value_heads", num(c, "num_attention_heads")),
    qLoraRank: qLora,
    kvLoraRank: posInt(c, "kv_lora_rank"),
    qkNopeHeadDim: posInt(c, "qk_nope_head_dim"),
    qkRopeHeadDim: posInt(c, "qk_rope_head_dim"),
    vHeadDim: posInt(c, "v_head_dim"),
    rmsNormEps: num(c, "rms_norm_eps", 1e-6),
    maxPositionEmbeddings: posInt(c, "max_position_embeddings", 4096),
    tieWordEmbeddings: c.tie_word_embeddings === true,
    rope: parseRope(c),
    nRoutedExperts: nRouted,
    nSharedExperts: num(c, "n_shared_experts", 0),
    numExpertsPerTok: nRouted ? posInt(c, "num_experts_per_tok") : 0,
    moeIntermediateSize: nRouted ? posInt(c, "moe_intermediate_size") : 0,
    nGroup: posInt(c, "n_group", 1),
    topkGroup: posInt(c, "topk_group", 1),
    topkMethod: String(c.topk_method ?? (modelType === "deepseek_v3" ? "noaux_tc" : "greedy")),
    normTopkProb: c.norm_topk_prob === true,
    routedScalingFactor: num(c, "routed_scaling_factor", 1),
    firstKDenseReplace: num(c, "first_k_dense_replace", 0),
    moeLayerFreq: posInt(c, "moe_layer_freq", 1),
    bosTokenId: c.bos_token_id == null ? null : num(c, "bos_token_id"),
    eosTokenIds: eosIds(c.eos_token_id),
    // last, so a malformed config fails on the same key as before these fields existed
    attention: "mla",
    headDim: posInt(c, "qk_nope_head_dim") + posInt(c, "qk_rope_head_dim"),
    qkvBias: false,
    oBias: false,
    slidingWindow: null,
  };
  validate(cfg);
  return cfg;
}

/** transformers' max_position_embeddings defaults per llama-family config class. */
const LLAMA_FAMILY_CONTEXT: Record<"llama" | "qwen2" | "mistral", number> = { llama: 2048, qwen2: 32768, mistral: 4096 * 32 };

/** llama, qwen2 and mistral (LlamaConfig, Qwen2Config, MistralConfig): GQA, dense SwiGLU, RoPE by halves. */
function parseLlamaFamily(c: Json, modelType: "llama" | "qwen2" | "mistral"): ModelConfig {
  if (c.mlp_bias === true) throw new MlaError(`config.json: mlp_bias true is not supported (gate/up/down_proj without biases only)`);
  const hidden = posInt(c, "hidden_size"), heads = posInt(c, "num_attention_heads");
  if (c.head_dim == null && hidden % heads) {
    throw new MlaError(`config.json: hidden_size ${hidden} is not divisible by num_attention_heads ${heads}, and head_dim is not given`);
  }
  const headDim = posInt(c, "head_dim", hidden / heads);
  const attnBias = c.attention_bias === true;
  const cfg: ModelConfig = {
    modelType,
    attention: "gqa",
    headDim,
    qkvBias: modelType === "qwen2" || attnBias, // Qwen2Attention: q/k/v always biased, o_proj never
    oBias: modelType !== "qwen2" && attnBias,
    slidingWindow: slidingWindow(c, modelType),
    vocabSize: posInt(c, "vocab_size"),
    hiddenSize: hidden,
    intermediateSize: posInt(c, "intermediate_size"),
    numLayers: posInt(c, "num_hidden_layers"),
    numHeads: heads,
    numKvHeads: posInt(c, "num_key_value_heads", heads),
    // the MLA fields, as the same computation: no latent, RoPE over the whole head
    qLoraRank: null,
    kvLoraRank: 0,
    qkNopeHeadDim: 0,
    qkRopeHeadDim: headDim,
    vHeadDim: headDim,
    rmsNormEps: num(c, "rms_norm_eps", 1e-6),
    maxPositionEmbeddings: posInt(c, "max_position_embeddings", LLAMA_FAMILY_CONTEXT[modelType]),
    tieWordEmbeddings: c.tie_word_embeddings === true,
    rope: parseRope(c, ["default", "linear", "llama3"]),
    ...NO_EXPERTS,
    bosTokenId: c.bos_token_id == null ? null : num(c, "bos_token_id"),
    eosTokenIds: eosIds(c.eos_token_id),
  };
  if (cfg.numHeads % cfg.numKvHeads) {
    throw new MlaError(`config.json: num_attention_heads ${cfg.numHeads} is not a multiple of num_key_value_heads ${cfg.numKvHeads}`);
  }
  if (headDim % 2) throw new MlaError(`config.json: head_dim must be even for RoPE, got ${headDim}`);
  return cfg;
}

/** The MoE fields of a dense model. */
const NO_EXPERTS = {
  nRoutedExperts: 0, nSharedExperts: 0, numExpertsPerTok: 0, moeIntermediateSize: 0, nGroup: 1, topkGroup: 1,
  topkMethod: "greedy", normTopkProb: false, routedScalingFactor: 1, firstKDenseReplace: 0, moeLayerFreq: 1,
} as const;

/**
 * The attention window, or null when every query sees the whole prefix. Mistral's sliding_window defaults to 4096
 * when the key is absent (MistralConfig) and null turns it off; Qwen2 uses it only with use_sliding_window, and
 * we apply it to every layer then (stricter than max_window_layers, never looser).
 */
function slidingWindow(c: Json, modelType: "llama" | "qwen2" | "mistral"): number | null {
  if (modelType === "llama") return null;
  if (modelType === "qwen2" && c.use_sliding_window !== true) return null;
  if (c.sliding_window === null) return null;
  return posInt(c, "sliding_window", 4096);
}

function validate(c: ModelConfig): void {
  if (c.qkRopeHeadDim % 2) throw new MlaError(`config.json: qk_rope_head_dim must be even, got ${c.qkRopeHeadDim}`);
  if (c.nRoutedExperts) {
    if (c.nRoutedExperts % c.nGroup) throw new MlaError(`config.json: n_routed_experts ${c.nRoutedExperts} is not divisible by n_group ${c.nGroup}`);
    if (c.topkGroup > c.nGroup) throw new MlaError(`config.json: topk_group ${c.topkGroup} exceeds n_group ${c.nGroup}`);
    if (c.numExpertsPerTok > c.nRoutedExperts) throw new MlaError(`config.json: num_experts_per_tok exceeds n_routed_experts`);
    if (c.modelType === "deepseek_v2" && c.topkMethod !== "greedy" && c.topkMethod !== "group_limited_greedy") {
      throw new MlaError(`config.json: topk_method "${c.topkMethod}" is not supported for deepseek_v2 (greedy, group_limited_greedy)`);
    }
  }
}

export function loadConfig(dir: string): ModelConfig {
  if (!existsSync(dir)) throw new MlaError(`model directory not found: ${dir}`);
  const path = join(dir, "config.json");
  if (!existsSync(path)) throw new MlaError(`no config.json in ${dir}`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new MlaError(`config.json in ${dir} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new MlaError(`config.json in ${dir} is not a JSON object`);
  return parseConfig(json as Json);
}

/** Whether layer i uses the mixture of experts (else the dense MLP). */
export function isMoeLayer(c: ModelConfig, i: number): boolean {
  return c.nRoutedExperts > 0 && i >= c.firstKDenseReplace && i % c.moeLayerFreq === 0;
}
