/**
 * The engine's normalised model configuration, and the helpers families use to read config.json into it. Which
 * keys a model_type has, and what they mean, is each family's business (./families/): this file knows none.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { MlaError } from "../errors.js";
import { DEFAULT_ROPE, type RopeScaling } from "../attention/rope.js";
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

export function eosIds(v: unknown): number[] {
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  if (!list.every((x) => Number.isInteger(x))) throw new MlaError(`config.json: eos_token_id must be an integer or a list of integers`);
  return list as number[];
}

/** The MoE fields of a dense model. */
export const NO_EXPERTS = {
  nRoutedExperts: 0, nSharedExperts: 0, numExpertsPerTok: 0, moeIntermediateSize: 0, nGroup: 1, topkGroup: 1,
  topkMethod: "greedy", normTopkProb: false, routedScalingFactor: 1, firstKDenseReplace: 0, moeLayerFreq: 1, router: null,
} as const;

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
  return c.nRoutedExperts > 0 && i >= c.firstKDenseReplace && i % c.moeLayerFreq === 0;
}
