/**
 * The building blocks of the DeepSeek-V2/V3 families (./deepseek-v2.ts, ./deepseek-v3.ts) and of the MLA families
 * built on them (./glm4-moe-lite.ts, ./kimi-k2.ts, ./youtu.ts, ./minicpm3.ts): their config keys, MLA weight names,
 * dense-or-MoE layers and the latent cache. A family differs in its router, which layers are MoE, its RoPE pairing,
 * its config class defaults and its own keys (MiniCPM3's multipliers), given here as options.
 */
import { MlaError } from "../../errors.js";
import { toF32 } from "../../tensor/tensor.js";
import type { MlaWeights } from "../../attention/mla.js";
import type { RopeStyle } from "../../attention/rope.js";
import { eosIds, isMoeLayer, num, parseRope, posInt, type Json, type ModelConfig } from "../config.js";
import type { RouterSpec } from "../router.js";
import { mlpWeights, type FfnWeights, type LayerWeights } from "../weights.js";
import { mlpTensors, type ModelFamily, type TensorSource } from "./family.js";

/** The MoE side of an MLA family: its router and how config.json says which layers are MoE. */
export interface MlaMoeOptions {
  /** The router's scoring; a config.json scoring_func that names another is refused. */
  readonly scoring: "softmax" | "sigmoid";
  /** topk_method when config.json does not say. */
  readonly defaultTopkMethod: string;
  /** The topk_methods the family's router runs (others are refused by name). */
  readonly topkMethods: readonly string[];
  /** The router description from the parsed fields (see RouterSpec). */
  readonly router: (c: Omit<ModelConfig, "router">) => RouterSpec;
  /** The MoE gate has e_score_correction_bias (DeepSeek-V3). */
  readonly scoreBias: boolean;
  /**
   * Which layers are MoE: "first_k_dense_replace" (with moe_layer_freq, as DeepSeek's released modeling code decides)
   * or "mlp_layer_types" (GLM's per-layer list of "dense" / "sparse").
   */
  readonly layers: "first_k_dense_replace" | "mlp_layer_types";
}

/** The family's config class defaults, for keys config.json may leave out. */
export interface MlaDefaults {
  readonly maxPositions: number;
  readonly rmsNormEps: number;
  readonly tieWordEmbeddings: boolean;
  /** norm_topk_prob (MoE families). */
  readonly normTopkProb: boolean;
}

/** What a family reads beyond the DeepSeek keys (MiniCPM3's multipliers and v_head_dim default). */
export interface MlaExtras {
  readonly vHeadDim?: number;
  readonly embedScale?: number;
  readonly residualScale?: number;
  readonly logitScale?: number;
}

export interface MlaFamilyOptions {
  readonly modelType: string;
  /** The router and MoE layout; null for a dense family whose config class has no expert keys (they are not read). */
  readonly moe: MlaMoeOptions | null;
  readonly defaults: MlaDefaults;
  /**
   * RoPE pairing: from rope_interleave (default true: interleaved), or fixed by the family's modeling code, in which
   * case a rope_interleave that says otherwise is refused rather than guessed at.
   */
  readonly ropeStyle: RopeStyle | "rope_interleave";
  /** Family-only keys, read after the common ones. */
  readonly extras?: (c: Json) => MlaExtras;
}

/** config.json of a DeepSeek-layout MLA model. */
function parseMlaConfig(c: Json, o: MlaFamilyOptions): ModelConfig {
  checkMlaKeys(c, o);
  const qLora = c.q_lora_rank == null ? null : posInt(c, "q_lora_rank");
  const moe = o.moe;
  const nRouted = !moe || c.n_routed_experts == null ? 0 : num(c, "n_routed_experts");
  const maxPositions = posInt(c, "max_position_embeddings", o.defaults.maxPositions);
  const extras = o.extras?.(c) ?? {};
  const base = {
    modelType: o.modelType,
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
    vHeadDim: extras.vHeadDim ?? posInt(c, "v_head_dim"),
    rmsNormEps: num(c, "rms_norm_eps", o.defaults.rmsNormEps),
    maxPositionEmbeddings: maxPositions,
    tieWordEmbeddings: typeof c.tie_word_embeddings === "boolean" ? c.tie_word_embeddings : o.defaults.tieWordEmbeddings,
    rope: parseRope(c, ["default", "yarn", "longrope"], maxPositions),
    ropeStyle: ropeStyle(c, o),
    embedScale: extras.embedScale ?? 1,
    residualScale: extras.residualScale ?? 1,
    logitScale: extras.logitScale ?? 1,
    mtpLayers: c.num_nextn_predict_layers == null ? 0 : nonNegInt(c, "num_nextn_predict_layers"),
    nRoutedExperts: nRouted,
    nSharedExperts: nRouted ? num(c, "n_shared_experts", 0) : 0,
    numExpertsPerTok: nRouted ? posInt(c, "num_experts_per_tok") : 0,
    moeIntermediateSize: nRouted ? posInt(c, "moe_intermediate_size") : 0,
    nGroup: nRouted ? posInt(c, "n_group", 1) : 1,
    topkGroup: nRouted ? posInt(c, "topk_group", 1) : 1,
    topkMethod: moe ? String(c.topk_method ?? moe.defaultTopkMethod) : "greedy",
    normTopkProb: typeof c.norm_topk_prob === "boolean" ? c.norm_topk_prob : o.defaults.normTopkProb,
    routedScalingFactor: nRouted ? num(c, "routed_scaling_factor", 1) : 1,
    firstKDenseReplace: moe?.layers === "first_k_dense_replace" ? nonNegInt(c, "first_k_dense_replace", 0) : 0,
    moeLayerFreq: nRouted && moe?.layers === "first_k_dense_replace" ? moeLayerFreq(c) : 1,
    moeLayers: nRouted && moe?.layers === "mlp_layer_types" ? mlpLayerTypes(c) : null,
    bosTokenId: c.bos_token_id == null ? null : num(c, "bos_token_id"),
    eosTokenIds: eosIds(c.eos_token_id),
    // last, so a malformed config fails on the same key as before these fields existed
    attention: "mla" as const,
    headDim: posInt(c, "qk_nope_head_dim") + posInt(c, "qk_rope_head_dim"),
    qkvBias: false,
    oBias: false,
    slidingWindow: null,
  };
  validate(base, o);
  return { ...base, router: nRouted && moe ? moe.router(base) : null };
}

function nonNegInt(c: Json, key: string, fallback?: number): number {
  const v = num(c, key, fallback);
  if (!Number.isInteger(v) || v < 0) throw new MlaError(`config.json: "${key}" must be a non-negative integer, got ${v}`);
  return v;
}

/**
 * Keys of MLA configs that ask for computation the engine does not run, refused by name: the sparse-attention
 * indexer, biases, and a scoring_func other than the family's router's. (rope_interleave against a fixed pairing:
 * see ropeStyle; moe_layer_freq 0 and mlp_layer_types: see their readers.)
 */
function checkMlaKeys(c: Json, o: MlaFamilyOptions): void {
  const indexer = Object.keys(c).filter((k) => k.startsWith("index_") && c[k] != null);
  if (indexer.length) {
    throw new MlaError(`config.json: ${indexer.join(", ")}: DeepSeek Sparse Attention (the lightning indexer that picks index_topk keys per query) is not supported`);
  }
  if (c.attention_bias === true) throw new MlaError(`config.json: attention_bias true is not supported for ${o.modelType} (MLA projections without biases only)`);
  if (c.mlp_bias === true) throw new MlaError(`config.json: mlp_bias true is not supported (gate/up/down_proj without biases only)`);
  if (o.moe && c.scoring_func != null && c.scoring_func !== o.moe.scoring) {
    throw new MlaError(`config.json: scoring_func ${JSON.stringify(c.scoring_func)} does not match ${o.modelType}'s router (${o.moe.scoring})`);
  }
}

/** The RoPE pairing: rope_interleave (transformers' default true), or the family's own, which rope_interleave must not contradict. */
function ropeStyle(c: Json, o: MlaFamilyOptions): RopeStyle {
  const v = c.rope_interleave;
  if (v != null && typeof v !== "boolean") throw new MlaError(`config.json: "rope_interleave" must be true or false, got ${JSON.stringify(v)}`);
  if (o.ropeStyle === "rope_interleave") return v === false ? "halves" : "interleaved";
  if (v != null && v !== (o.ropeStyle === "interleaved")) {
    throw new MlaError(`config.json: rope_interleave ${v} is not supported for ${o.modelType}, whose modeling code always rotates ${o.ropeStyle === "interleaved" ? "interleaved pairs" : "by halves"}`);
  }
  return o.ropeStyle;
}

/** moe_layer_freq: DeepSeek's modeling code makes layer i MoE when i % moe_layer_freq == 0, so 0 cannot run. */
function moeLayerFreq(c: Json): number {
  if (c.moe_layer_freq === 0) throw new MlaError("config.json: moe_layer_freq 0 with routed experts is invalid (DeepSeek's modeling code takes layer_idx % moe_layer_freq)");
  return posInt(c, "moe_layer_freq", 1);
}

/**
 * GLM's mlp_layer_types ("dense" | "sparse" per layer; default one dense layer, then sparse). GLM configs also carry
 * first_k_dense_replace, which transformers' glm4_moe_lite does not read: when only it is given and disagrees with
 * the default list, the config is ambiguous and refused.
 */
function mlpLayerTypes(c: Json): boolean[] {
  const n = posInt(c, "num_hidden_layers");
  if (c.mlp_layer_types == null) {
    if (c.first_k_dense_replace != null && c.first_k_dense_replace !== 1) {
      throw new MlaError(`config.json: first_k_dense_replace ${JSON.stringify(c.first_k_dense_replace)} without mlp_layer_types: glm4_moe_lite chooses MoE layers by mlp_layer_types (default: layer 0 dense, the rest sparse), so the two disagree`);
    }
    return Array.from({ length: n }, (_, i) => i > 0);
  }
  const t = c.mlp_layer_types;
  if (!Array.isArray(t) || t.length !== n || !t.every((x) => x === "dense" || x === "sparse")) {
    throw new MlaError(`config.json: mlp_layer_types must list "dense" or "sparse" for each of the ${n} layers`);
  }
  return t.map((x) => x === "sparse");
}

function validate(c: Omit<ModelConfig, "router">, o: MlaFamilyOptions): void {
  if (c.qkRopeHeadDim % 2) throw new MlaError(`config.json: qk_rope_head_dim must be even, got ${c.qkRopeHeadDim}`);
  if (!c.nRoutedExperts || !o.moe) return;
  if (c.nRoutedExperts % c.nGroup) throw new MlaError(`config.json: n_routed_experts ${c.nRoutedExperts} is not divisible by n_group ${c.nGroup}`);
  if (c.topkGroup > c.nGroup) throw new MlaError(`config.json: topk_group ${c.topkGroup} exceeds n_group ${c.nGroup}`);
  if (c.numExpertsPerTok > c.nRoutedExperts) throw new MlaError(`config.json: num_experts_per_tok exceeds n_routed_experts`);
  if (!o.moe.topkMethods.includes(c.topkMethod)) {
    throw new MlaError(`config.json: topk_method "${c.topkMethod}" is not supported for ${o.modelType} (${o.moe.topkMethods.join(", ")})`);
  }
}

/** The MLA tensors of layer i's self_attn (q_lora or a plain q_proj), its norms, and its dense MLP or MoE. */
function layerTensors(c: ModelConfig, i: number, m: Map<string, number[]>, o: MlaFamilyOptions): void {
  const D = c.hiddenSize, H = c.numHeads, dqk = c.qkNopeHeadDim + c.qkRopeHeadDim;
  const p = `model.layers.${i}.`, a = `${p}self_attn.`;
  m.set(`${p}input_layernorm.weight`, [D]);
  m.set(`${p}post_attention_layernorm.weight`, [D]);
  if (c.qLoraRank) {
    m.set(`${a}q_a_proj.weight`, [c.qLoraRank, D]);
    m.set(`${a}q_a_layernorm.weight`, [c.qLoraRank]);
    m.set(`${a}q_b_proj.weight`, [H * dqk, c.qLoraRank]);
  } else {
    m.set(`${a}q_proj.weight`, [H * dqk, D]);
  }
  m.set(`${a}kv_a_proj_with_mqa.weight`, [c.kvLoraRank + c.qkRopeHeadDim, D]);
  m.set(`${a}kv_a_layernorm.weight`, [c.kvLoraRank]);
  m.set(`${a}kv_b_proj.weight`, [H * (c.qkNopeHeadDim + c.vHeadDim), c.kvLoraRank]);
  m.set(`${a}o_proj.weight`, [D, H * c.vHeadDim]);
  if (!isMoeLayer(c, i)) return mlpTensors(m, `${p}mlp.`, D, c.intermediateSize);
  m.set(`${p}mlp.gate.weight`, [c.nRoutedExperts, D]);
  if (o.moe?.scoreBias) m.set(`${p}mlp.gate.e_score_correction_bias`, [c.nRoutedExperts]);
  for (let e = 0; e < c.nRoutedExperts; e++) mlpTensors(m, `${p}mlp.experts.${e}.`, D, c.moeIntermediateSize);
  if (c.nSharedExperts) mlpTensors(m, `${p}mlp.shared_experts.`, D, c.nSharedExperts * c.moeIntermediateSize);
}

/** kv_b_proj split per head as GGUF files store it (see MlaWeights.ukT/uv), read when the checkpoint has it. */
function optionalTensors(c: ModelConfig, i: number, m: Map<string, number[]>): void {
  const a = `model.layers.${i}.self_attn.`, H = c.numHeads;
  m.set(`${a}k_b_proj.weight`, [H * c.kvLoraRank, c.qkNopeHeadDim]);
  m.set(`${a}v_b_proj.weight`, [H * c.vHeadDim, c.kvLoraRank]);
}

/** The query and latent down-projections read the same x, and so do every MLP's gate_proj and up_proj. */
function stackedPairs(c: ModelConfig, i: number, pairs: Map<string, string>): void {
  const p = `model.layers.${i}.`, a = `${p}self_attn.`;
  const mlp = (q: string) => pairs.set(`${q}gate_proj.weight`, `${q}up_proj.weight`);
  pairs.set(c.qLoraRank ? `${a}q_a_proj.weight` : `${a}q_proj.weight`, `${a}kv_a_proj_with_mqa.weight`);
  if (!isMoeLayer(c, i)) return void mlp(`${p}mlp.`);
  for (let e = 0; e < c.nRoutedExperts; e++) mlp(`${p}mlp.experts.${e}.`);
  if (c.nSharedExperts) mlp(`${p}mlp.shared_experts.`);
}

function layer(c: ModelConfig, i: number, t: TensorSource, o: MlaFamilyOptions): LayerWeights {
  const { get, stacked } = t;
  const p = `model.layers.${i}.`, a = `${p}self_attn.`;
  const kv = {
    kvA: get(`${a}kv_a_proj_with_mqa.weight`), kvANorm: toF32(get(`${a}kv_a_layernorm.weight`)), kvB: get(`${a}kv_b_proj.weight`), o: get(`${a}o_proj.weight`),
    ...(t.has(`${a}k_b_proj.weight`) && t.has(`${a}v_b_proj.weight`) ? { ukT: get(`${a}k_b_proj.weight`), uv: get(`${a}v_b_proj.weight`) } : {}),
  };
  const attn: MlaWeights = c.qLoraRank
    ? { query: { kind: "lora", qA: get(`${a}q_a_proj.weight`), qANorm: toF32(get(`${a}q_a_layernorm.weight`)), qB: get(`${a}q_b_proj.weight`) }, qkvA: stacked(`${a}q_a_proj.weight`), ...kv }
    : { query: { kind: "direct", q: get(`${a}q_proj.weight`) }, qkvA: stacked(`${a}q_proj.weight`), ...kv };
  const mlp = (q: string) => mlpWeights(q, t);
  const ffn: FfnWeights = isMoeLayer(c, i)
    ? {
        kind: "moe",
        moe: {
          gate: toF32(get(`${p}mlp.gate.weight`)),
          scoreBias: o.moe?.scoreBias ? toF32(get(`${p}mlp.gate.e_score_correction_bias`)) : null,
          experts: Array.from({ length: c.nRoutedExperts }, (_, e) => mlp(`${p}mlp.experts.${e}.`)),
          shared: c.nSharedExperts ? mlp(`${p}mlp.shared_experts.`) : null,
        },
      }
    : { kind: "dense", mlp: mlp(`${p}mlp.`) };
  return { inputNorm: toF32(get(`${p}input_layernorm.weight`)), postNorm: toF32(get(`${p}post_attention_layernorm.weight`)), attn, ffn };
}

/** A DeepSeek-layout MLA family: the latent cache holds c_KV and the shared RoPE key per token and layer. */
export function mlaFamily(o: MlaFamilyOptions): ModelFamily<LayerWeights> {
  return {
    modelType: o.modelType,
    attention: "mla",
    parseConfig: (json) => parseMlaConfig(json, o),
    layerTensors: (c, i, m) => layerTensors(c, i, m, o),
    stackedPairs,
    layer: (c, i, t) => layer(c, i, t, o),
    optionalTensors,
    cacheWidths: (c) => [c.kvLoraRank + c.qkRopeHeadDim],
  };
}
