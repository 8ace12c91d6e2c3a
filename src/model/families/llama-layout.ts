/**
 * The building blocks of the Llama-layout families (./llama.ts, ./qwen2.ts, ./mistral.ts): GQA with RoPE by halves,
 * optional q/k/v/o biases, an optional sliding window, dense SwiGLU MLPs, a K and a V cache per layer. A family
 * differs in its biases, window and default context, given here as options.
 */
import { MlaError } from "../../errors.js";
import { toF32 } from "../../tensor/tensor.js";
import { NO_EXPERTS, UNSCALED, eosIds, num, parseRope, posInt, type Json, type ModelConfig } from "../config.js";
import { mlpWeights, type LlamaLayerWeights } from "../weights.js";
import { mlpTensors, type ModelFamily, type TensorSource } from "./family.js";

export interface LlamaLayoutOptions {
  readonly modelType: string;
  /** transformers' max_position_embeddings default for the family's config class. */
  readonly defaultContext: number;
  /** q/k/v and o biases from attention_bias. */
  readonly biases: (c: Json) => { qkv: boolean; o: boolean };
  /** The attention window, or null when every query sees the whole prefix. */
  readonly slidingWindow: (c: Json) => number | null;
}

function parseLlamaLayout(c: Json, o: LlamaLayoutOptions): ModelConfig {
  if (c.mlp_bias === true) throw new MlaError(`config.json: mlp_bias true is not supported (gate/up/down_proj without biases only)`);
  const hidden = posInt(c, "hidden_size"), heads = posInt(c, "num_attention_heads");
  if (c.head_dim == null && hidden % heads) {
    throw new MlaError(`config.json: hidden_size ${hidden} is not divisible by num_attention_heads ${heads}, and head_dim is not given`);
  }
  const headDim = posInt(c, "head_dim", hidden / heads);
  const bias = o.biases(c);
  const maxPositions = posInt(c, "max_position_embeddings", o.defaultContext);
  const cfg: ModelConfig = {
    modelType: o.modelType,
    attention: "gqa",
    headDim,
    qkvBias: bias.qkv,
    oBias: bias.o,
    slidingWindow: o.slidingWindow(c),
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
    maxPositionEmbeddings: maxPositions,
    tieWordEmbeddings: c.tie_word_embeddings === true,
    // longrope: llama3 RoPE from a GGUF file (its rope_freqs divisors, see ../gguf/config.ts)
    rope: parseRope(c, ["default", "linear", "llama3", "longrope"], maxPositions),
    ropeStyle: "halves",
    ...UNSCALED,
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

/** LlamaDecoderLayer's tensors (Qwen2 and Mistral use the same names; biases as the config says). */
function layerTensors(c: ModelConfig, i: number, m: Map<string, number[]>): void {
  const D = c.hiddenSize, qDim = c.numHeads * c.headDim, kvDim = c.numKvHeads * c.headDim;
  const p = `model.layers.${i}.`, a = `${p}self_attn.`;
  m.set(`${p}input_layernorm.weight`, [D]);
  m.set(`${p}post_attention_layernorm.weight`, [D]);
  for (const [proj, rows] of [["q", qDim], ["k", kvDim], ["v", kvDim]] as const) {
    m.set(`${a}${proj}_proj.weight`, [rows, D]);
    if (c.qkvBias) m.set(`${a}${proj}_proj.bias`, [rows]);
  }
  m.set(`${a}o_proj.weight`, [D, qDim]);
  if (c.oBias) m.set(`${a}o_proj.bias`, [D]);
  mlpTensors(m, `${p}mlp.`, D, c.intermediateSize);
}

function layer(c: ModelConfig, i: number, t: TensorSource): LlamaLayerWeights {
  const { get } = t;
  const bias = (name: string, on: boolean) => (on ? toF32(get(name)) : undefined);
  const p = `model.layers.${i}.`, a = `${p}self_attn.`;
  return {
    inputNorm: toF32(get(`${p}input_layernorm.weight`)),
    postNorm: toF32(get(`${p}post_attention_layernorm.weight`)),
    attn: {
      q: get(`${a}q_proj.weight`), k: get(`${a}k_proj.weight`), v: get(`${a}v_proj.weight`), o: get(`${a}o_proj.weight`),
      qBias: bias(`${a}q_proj.bias`, c.qkvBias), kBias: bias(`${a}k_proj.bias`, c.qkvBias),
      vBias: bias(`${a}v_proj.bias`, c.qkvBias), oBias: bias(`${a}o_proj.bias`, c.oBias),
    },
    mlp: mlpWeights(`${p}mlp.`, t),
  };
}

/** A Llama-layout GQA family. GQA's q/k/v are three products of different widths; only the MLP pair is stacked. */
export function llamaLayoutFamily(o: LlamaLayoutOptions): ModelFamily<LlamaLayerWeights> {
  return {
    modelType: o.modelType,
    attention: "gqa",
    parseConfig: (json) => parseLlamaLayout(json, o),
    layerTensors,
    stackedPairs: (_c, i, pairs) => void pairs.set(`model.layers.${i}.mlp.gate_proj.weight`, `model.layers.${i}.mlp.up_proj.weight`),
    layer,
    cacheWidths: (c) => [c.numKvHeads * c.headDim, c.numKvHeads * c.headDim],
  };
}
