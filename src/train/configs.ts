/**
 * What training reads of a llama config.json (parseLlamaSpec: what training supports) and the tensors of the dense
 * llama checkpoints it writes. The config writers themselves are the families' (src/model/families/writers.ts).
 */
import { MlaError } from "../errors.js";
import type { Json } from "../model/config.js";
import type { LlamaSpec } from "../model/families/writers.js";
import { familyOf } from "../model/families/index.js";
import { llama } from "../model/families/llama.js";

export type { Json };

function int(c: Json, key: string, fallback?: number): number {
  const v = c[key] ?? fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw new MlaError(`config.json: "${key}" must be a positive integer, got ${JSON.stringify(c[key])}`);
  return v;
}

/** The parts of a llama config.json training needs, checked (what training supports: no biases, no rope scaling). */
export function parseLlamaSpec(c: Json): Required<LlamaSpec> {
  // of the llama-layout families, training runs plain llama (no biases, no sliding window)
  if (familyOf(String(c.model_type)) !== llama) throw new MlaError(`training: expected model_type llama, got ${JSON.stringify(c.model_type)}`);
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
