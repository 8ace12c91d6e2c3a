/**
 * The engine's normalised model configuration, and the helpers families use to read config.json into it. Which
 * keys a model_type has, and what they mean, is each family's business (./families/): this file knows none.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { MlaError } from "../errors.js";
import { DEFAULT_ROPE, type RopeScaling, type RopeStyle } from "../attention/rope.js";
import type { RouterSpec } from "./router.js";

/** A config.json model_type that a family in ./families/ reads ("deepseek_v3", "llama", ...). */
export type ModelType = string;

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
  /**
   * Which dims RoPE pairs: "interleaved" (x0,x1),(x2,x3),... (DeepSeek's decoupled key; rope_interleave true) or
   * "halves" (x_j, x_{j+d/2}), transformers' rotate_half (the GQA families, MiniCPM3, rope_interleave false).
   */
  readonly ropeStyle: RopeStyle;
  /** Multiplier of the embedding rows (MiniCPM3's scale_emb); 1 for every other family. */
  readonly embedScale: number;
  /**
   * Multiplier of each attention and feed-forward output before it joins the residual stream (MiniCPM3's
   * scale_depth / sqrt(num_hidden_layers)); 1 for every other family.
   */
  readonly residualScale: number;
  /** Multiplier of the final normed hidden states before lm_head (MiniCPM3's dim_model_base / hidden_size); else 1. */
  readonly logitScale: number;
  /**
   * Multi-token-prediction layers the checkpoint holds after the last decoder layer (num_nextn_predict_layers,
   * stored as layers num_hidden_layers..): the engine does not run them and does not read their tensors.
   */
  readonly mtpLayers: number;
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
  /**
   * Per layer, whether it is MoE, when the config lists it (glm4_moe_lite's mlp_layer_types); null: first_k_dense_replace
   * and moe_layer_freq decide (isMoeLayer).
   */
  readonly moeLayers: readonly boolean[] | null;
  /** How MoE layers choose experts (null: no experts), as both backends run it. */
  readonly router: RouterSpec | null;
  readonly bosTokenId: number | null;
  readonly eosTokenIds: readonly number[];
}

export type Json = Record<string, unknown>;

export function num(c: Json, key: string, fallback?: number): number {
  const v = c[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new MlaError(`config.json: missing "${key}"`);
  }
  if (typeof v !== "number" || !Number.isFinite(v)) throw new MlaError(`config.json: "${key}" must be a number, got ${JSON.stringify(v)}`);
  return v;
}

export function posInt(c: Json, key: string, fallback?: number): number {
  const v = num(c, key, fallback);
  if (!Number.isInteger(v) || v <= 0) throw new MlaError(`config.json: "${key}" must be a positive integer, got ${v}`);
  return v;
}

/**
 * rope_parameters (transformers >= 5) or top-level rope_theta + rope_scaling {type|rope_type} (hub checkpoints).
 * `supported` is per family: DeepSeek uses default and YaRN; the llama family default, linear and llama3.
 * maxPositions (the family's max_position_embeddings, default filled) decides longrope's defaults; without it
 * config.json's own key is read.
 */
export function parseRope(c: Json, supported: readonly RopeScaling["type"][] = ["default", "yarn", "longrope"], maxPositions?: number): RopeScaling {
  const params = (c.rope_parameters ?? c.rope_scaling ?? {}) as Json;
  if (typeof params !== "object") throw new MlaError("config.json: rope_parameters/rope_scaling must be an object or null");
  checkPartialRotary(c, params);
  const theta = num(params, "rope_theta", num(c, "rope_theta", DEFAULT_ROPE.theta));
  const type = String(params.rope_type ?? params.type ?? "default");
  if (!(supported as readonly string[]).includes(type)) {
    throw new MlaError(`config.json: rope type "${type}" is not supported (supported: ${supported.join(", ")})`);
  }
  if (type === "default") return { ...DEFAULT_ROPE, theta };
  if (type === "longrope") return parseLongrope(c, params, theta, maxPositions ?? (c.max_position_embeddings == null ? undefined : num(c, "max_position_embeddings")));
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
 * partial_rotary_factor (top level, or in rope_parameters where transformers 5 moves it): transformers rotates the
 * first int(head_dim * f) dims. The engine rotates the whole RoPE part (an MLA head's qk_rope_head_dim, a GQA head),
 * so any other factor is refused.
 */
function checkPartialRotary(c: Json, params: Json): void {
  for (const [where, obj] of [["", c], ["rope_parameters.", params]] as const) {
    const f = obj.partial_rotary_factor;
    if (f != null && f !== 1) throw new MlaError(`config.json: ${where}partial_rotary_factor ${JSON.stringify(f)} is not supported (RoPE over the whole rotary head dim only)`);
  }
}

/**
 * longrope as transformers computes it (_compute_longrope_parameters): theta_j = 1 / (ext_j base^(2j/d)) with
 * ext = short_factor while the sequence stays within original_max_position_embeddings (top level, else in the rope
 * parameters, else max_position_embeddings) and long_factor past it. Switching would also change the keys already
 * cached, so different factors are accepted only where the switch cannot happen (max_position_embeddings <=
 * original_max_position_embeddings: MiniCPM3-4B). factor defaults to max_position_embeddings / original, the
 * attention factor (cos/sin multiplier) to 1 for factor <= 1, else sqrt(1 + ln(factor) / ln(original)).
 */
function parseLongrope(c: Json, params: Json, theta: number, maxPositions: number | undefined): RopeScaling {
  const list = (k: string): number[] => {
    const v = params[k];
    if (!Array.isArray(v) || !v.every((x) => typeof x === "number" && Number.isFinite(x) && x > 0)) {
      throw new MlaError(`config.json: longrope ${k} must be a list of positive numbers`);
    }
    return v as number[];
  };
  const short = list("short_factor"), long = list("long_factor");
  const original = c.original_max_position_embeddings != null ? num(c, "original_max_position_embeddings")
    : params.original_max_position_embeddings != null ? num(params, "original_max_position_embeddings") : maxPositions;
  const differ = short.length !== long.length || short.some((x, i) => x !== long[i]);
  if (differ && (maxPositions === undefined || original === undefined || maxPositions > original)) {
    throw new MlaError(`config.json: longrope with different short_factor and long_factor is not supported when max_position_embeddings (${maxPositions ?? "unset"}) exceeds original_max_position_embeddings (${original ?? "unset"}): transformers switches to long_factor past it, which would also change the keys already cached`);
  }
  const factor = params.factor != null ? num(params, "factor") : maxPositions !== undefined && original ? maxPositions / original : 1;
  let attentionFactor = params.attention_factor == null ? undefined : num(params, "attention_factor");
  if (attentionFactor === undefined && factor > 1) {
    if (!original || original <= 1) throw new MlaError("config.json: longrope with factor > 1 needs an explicit attention_factor or original_max_position_embeddings");
    attentionFactor = Math.sqrt(1 + Math.log(factor) / Math.log(original));
  }
  return { ...DEFAULT_ROPE, type: "longrope", theta, factor, originalMaxPositionEmbeddings: original ?? 0, extFactors: short, attentionFactor };
}

export function eosIds(v: unknown): number[] {
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  if (!list.every((x) => Number.isInteger(x))) throw new MlaError(`config.json: eos_token_id must be an integer or a list of integers`);
  return list as number[];
}

/** The MoE fields of a dense model. */
export const NO_EXPERTS = {
  nRoutedExperts: 0, nSharedExperts: 0, numExpertsPerTok: 0, moeIntermediateSize: 0, nGroup: 1, topkGroup: 1,
  topkMethod: "greedy", normTopkProb: false, routedScalingFactor: 1, firstKDenseReplace: 0, moeLayerFreq: 1, moeLayers: null,
  router: null,
} as const;

/** The fields of a model without MiniCPM3's multipliers or MTP layers. */
export const UNSCALED = { embedScale: 1, residualScale: 1, logitScale: 1, mtpLayers: 0 } as const;

/** Refuse what the engine does not run (SwiGLU MLPs only). */
export function checkActivation(c: Json): void {
  const act = c.hidden_act ?? "silu";
  if (act !== "silu") throw new MlaError(`config.json: hidden_act "${String(act)}" is not supported (supported: silu)`);
}

/** config.json of a checkpoint folder, as a JSON object (not yet parsed by a family). */
export function readConfigJson(dir: string): Json {
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
  return json as Json;
}

/** Whether layer i uses the mixture of experts (else the dense MLP). */
export function isMoeLayer(c: ModelConfig, i: number): boolean {
  if (c.nRoutedExperts === 0) return false;
  if (c.moeLayers) return c.moeLayers[i] === true;
  return i >= c.firstKDenseReplace && i % c.moeLayerFreq === 0;
}

/** What `mla info` says of the MTP layers the config declares (null when none): they are never run. */
export function mtpNote(c: ModelConfig): string | null {
  if (!c.mtpLayers) return null;
  return `${c.mtpLayers} multi-token-prediction layer${c.mtpLayers > 1 ? "s" : ""} declared (num_nextn_predict_layers), not run`;
}
