/**
 * config.json writers of the decoders the engine builds (training, conversion), in Hugging Face layouts that
 * transformers loads unchanged: MLA models as dense `deepseek_v3` (denseMlaConfig, see ./deepseek-v3.ts), MHA / GQA
 * / MQA models as `llama` (llamaConfig, see ./llama.ts).
 */
import type { Json } from "../config.js";

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

