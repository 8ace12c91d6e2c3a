/**
 * config.json of the models `mla train` builds, in Hugging Face layouts that transformers loads unchanged:
 *   - MLA models as dense `deepseek_v3` (denseMlaConfig),
 *   - MHA / GQA / MQA models as `llama` (llamaConfig): q_proj/k_proj/v_proj/o_proj, num_key_value_heads KV heads
 *     (= heads: MHA, 1: MQA, between: GQA), RoPE by halves over the whole head (transformers' rotate_half).
 */
import { MlaError } from "../errors.js";

export type Json = Record<string, unknown>;

/** What every trained decoder's config has, whatever its attention. */
export interface DecoderSpec {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly maxPositionEmbeddings?: number;
  readonly rmsNormEps?: number;
  readonly ropeTheta?: number;
  readonly bosTokenId?: number | null;
  readonly eosTokenId?: number | null;
}

/** config.json fields of a DecoderSpec, in the hub spelling: dense SwiGLU, untied, no RoPE scaling, float32. */
function decoderFields(s: DecoderSpec): Json {
  return {
    vocab_size: s.vocabSize,
    hidden_size: s.hiddenSize,
    intermediate_size: s.intermediateSize,
    num_hidden_layers: s.numLayers,
    num_attention_heads: s.numHeads,
    hidden_act: "silu",
    max_position_embeddings: s.maxPositionEmbeddings ?? 2048,
    initializer_range: 0.02,
    rms_norm_eps: s.rmsNormEps ?? 1e-6,
    rope_theta: s.ropeTheta ?? 10000.0,
    rope_scaling: null,
    attention_bias: false,
    attention_dropout: 0.0,
    tie_word_embeddings: false,
    use_cache: true,
    bos_token_id: s.bosTokenId ?? null,
    eos_token_id: s.eosTokenId ?? null,
    torch_dtype: "float32",
  };
}

/** Sizes of a dense MLA model; the config.json it implies comes from `denseMlaConfig`. */
export interface DenseMlaSpec extends DecoderSpec {
  readonly kvLoraRank: number;
  readonly qLoraRank?: number | null;
  readonly qkNopeHeadDim: number;
  readonly qkRopeHeadDim: number;
  readonly vHeadDim: number;
}

/**
 * config.json of a dense deepseek_v3 model in the hub spelling (top-level rope_theta, rope_scaling null,
 * n_routed_experts null and first_k_dense_replace = num_hidden_layers, so every layer is dense for both mla-ts
 * and transformers; rope_interleave true, which is how the engine and DeepSeek apply RoPE).
 */
export function denseMlaConfig(s: DenseMlaSpec): Json {
  return {
    architectures: ["DeepseekV3ForCausalLM"],
    model_type: "deepseek_v3",
    ...decoderFields(s),
    moe_intermediate_size: s.intermediateSize,
    num_key_value_heads: s.numHeads,
    n_shared_experts: null,
    n_routed_experts: null,
    num_experts_per_tok: null,
    first_k_dense_replace: s.numLayers,
    moe_layer_freq: 1,
    n_group: 1,
    topk_group: 1,
    routed_scaling_factor: 1.0,
    norm_topk_prob: true,
    kv_lora_rank: s.kvLoraRank,
    q_lora_rank: s.qLoraRank ?? null,
    qk_nope_head_dim: s.qkNopeHeadDim,
    qk_rope_head_dim: s.qkRopeHeadDim,
    v_head_dim: s.vHeadDim,
    rope_interleave: true,
    num_nextn_predict_layers: 0,
  };
}

/** Sizes of a dense Llama-layout model (MHA / GQA / MQA by numKvHeads). */
export interface LlamaSpec extends DecoderSpec {
  /** numHeads: MHA; 1: MQA; a divisor in between: GQA. */
  readonly numKvHeads: number;
  readonly headDim: number;
}

/** config.json of a `llama` model in the hub spelling (top-level rope_theta, rope_scaling null, explicit head_dim). */
export function llamaConfig(s: LlamaSpec): Json {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    ...decoderFields(s),
    num_key_value_heads: s.numKvHeads,
    head_dim: s.headDim,
    mlp_bias: false,
    pretraining_tp: 1,
  };
}

function int(c: Json, key: string, fallback?: number): number {
  const v = c[key] ?? fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw new MlaError(`config.json: "${key}" must be a positive integer, got ${JSON.stringify(c[key])}`);
  return v;
}

/** The parts of a llama config.json training needs, checked (what training supports: no biases, no rope scaling). */
export function parseLlamaSpec(c: Json): Required<LlamaSpec> {
  if (c.model_type !== "llama") throw new MlaError(`training: expected model_type llama, got ${JSON.stringify(c.model_type)}`);
  if (c.rope_scaling != null) throw new MlaError("training: llama rope_scaling is not supported");
  if (c.attention_bias === true || c.mlp_bias === true) throw new MlaError("training: llama biases are not supported");
  const hiddenSize = int(c, "hidden_size"), numHeads = int(c, "num_attention_heads");
  const s: Required<LlamaSpec> = {
    vocabSize: int(c, "vocab_size"), hiddenSize, intermediateSize: int(c, "intermediate_size"), numLayers: int(c, "num_hidden_layers"),
    numHeads, numKvHeads: int(c, "num_key_value_heads", numHeads), headDim: int(c, "head_dim", Math.floor(hiddenSize / numHeads)),
    maxPositionEmbeddings: int(c, "max_position_embeddings", 2048),
    rmsNormEps: typeof c.rms_norm_eps === "number" ? c.rms_norm_eps : 1e-6,
    ropeTheta: typeof c.rope_theta === "number" ? c.rope_theta : 10000,
    bosTokenId: typeof c.bos_token_id === "number" ? c.bos_token_id : null,
    eosTokenId: typeof c.eos_token_id === "number" ? c.eos_token_id : null,
  };
  if (s.numHeads % s.numKvHeads !== 0) throw new MlaError(`config.json: num_attention_heads ${s.numHeads} is not a multiple of num_key_value_heads ${s.numKvHeads}`);
  if (s.headDim % 2 !== 0) throw new MlaError(`config.json: head_dim must be even for RoPE, got ${s.headDim}`);
  return s;
}

/** Tensor names and shapes of a dense llama checkpoint, in checkpoint order (HF names, [out, in]). */
export function llamaTensors(s: LlamaSpec): Map<string, number[]> {
  const D = s.hiddenSize, F = s.intermediateSize, H = s.numHeads, G = s.numKvHeads, hd = s.headDim;
  const m = new Map<string, number[]>();
  m.set("model.embed_tokens.weight", [s.vocabSize, D]);
  for (let i = 0; i < s.numLayers; i++) {
    const p = `model.layers.${i}.`;
    m.set(`${p}input_layernorm.weight`, [D]);
    m.set(`${p}self_attn.q_proj.weight`, [H * hd, D]);
    m.set(`${p}self_attn.k_proj.weight`, [G * hd, D]);
    m.set(`${p}self_attn.v_proj.weight`, [G * hd, D]);
    m.set(`${p}self_attn.o_proj.weight`, [D, H * hd]);
    m.set(`${p}post_attention_layernorm.weight`, [D]);
    m.set(`${p}mlp.gate_proj.weight`, [F, D]);
    m.set(`${p}mlp.up_proj.weight`, [F, D]);
    m.set(`${p}mlp.down_proj.weight`, [D, F]);
  }
  m.set("model.norm.weight", [D]);
  m.set("lm_head.weight", [s.vocabSize, D]);
  return m;
}
