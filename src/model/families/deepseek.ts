/**
 * The building blocks of the DeepSeek-V2/V3 families (./deepseek-v2.ts, ./deepseek-v3.ts) and of the MLA families
 * built on them: their config keys, MLA weight names, dense-or-MoE layers and the latent cache. A family differs in
 * its router and defaults, given here as options.
 */
import { MlaError } from "../../errors.js";
import { toF32 } from "../../tensor/tensor.js";
import type { MlaWeights } from "../../attention/mla.js";
import { eosIds, isMoeLayer, num, parseRope, posInt, type Json, type ModelConfig } from "../config.js";
import type { RouterSpec } from "../router.js";
import { mlpWeights, type FfnWeights, type LayerWeights } from "../weights.js";
import { mlpTensors, type ModelFamily, type TensorSource } from "./family.js";

export interface MlaFamilyOptions {
  readonly modelType: string;
  /** topk_method when config.json does not say. */
  readonly defaultTopkMethod: string;
  /** The topk_methods the family's router runs (others are refused by name). */
  readonly topkMethods: readonly string[];
  /** The router description from the parsed fields (see RouterSpec). */
  readonly router: (c: Omit<ModelConfig, "router">) => RouterSpec;
  /** The MoE gate has e_score_correction_bias (DeepSeek-V3). */
  readonly scoreBias: boolean;
}

/** config.json of a DeepSeek-layout MLA model. */
function parseMlaConfig(c: Json, o: MlaFamilyOptions): ModelConfig {
  const qLora = c.q_lora_rank == null ? null : posInt(c, "q_lora_rank");
  const nRouted = c.n_routed_experts == null ? 0 : num(c, "n_routed_experts");
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
    topkMethod: String(c.topk_method ?? o.defaultTopkMethod),
    normTopkProb: c.norm_topk_prob === true,
    routedScalingFactor: num(c, "routed_scaling_factor", 1),
    firstKDenseReplace: num(c, "first_k_dense_replace", 0),
    moeLayerFreq: posInt(c, "moe_layer_freq", 1),
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
  return { ...base, router: nRouted ? o.router(base) : null };
}

function validate(c: Omit<ModelConfig, "router">, o: MlaFamilyOptions): void {
  if (c.qkRopeHeadDim % 2) throw new MlaError(`config.json: qk_rope_head_dim must be even, got ${c.qkRopeHeadDim}`);
  if (!c.nRoutedExperts) return;
  if (c.nRoutedExperts % c.nGroup) throw new MlaError(`config.json: n_routed_experts ${c.nRoutedExperts} is not divisible by n_group ${c.nGroup}`);
  if (c.topkGroup > c.nGroup) throw new MlaError(`config.json: topk_group ${c.topkGroup} exceeds n_group ${c.nGroup}`);
  if (c.numExpertsPerTok > c.nRoutedExperts) throw new MlaError(`config.json: num_experts_per_tok exceeds n_routed_experts`);
  if (!o.topkMethods.includes(c.topkMethod)) {
    throw new MlaError(`config.json: topk_method "${c.topkMethod}" is not supported for ${o.modelType} (${o.topkMethods.join(", ")})`);
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
  if (o.scoreBias) m.set(`${p}mlp.gate.e_score_correction_bias`, [c.nRoutedExperts]);
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
          scoreBias: o.scoreBias ? toF32(get(`${p}mlp.gate.e_score_correction_bias`)) : null,
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
