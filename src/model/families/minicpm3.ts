/**
 * minicpm3 (MiniCPM3-4B): DeepSeek-V2's MLA with Llama's RoPE by halves (rotate_half, not interleaved), dense SwiGLU
 * MLPs, tied embeddings, and three multipliers: embeddings times scale_emb, every attention and MLP output times
 * scale_depth / sqrt(num_hidden_layers) before the residual add, the final hidden states divided by
 * hidden_size / dim_model_base before lm_head. LongRoPE (short_factor / long_factor, see parseRope).
 * transformers: models/minicpm3/modular_minicpm3.py; the model repository's modeling_minicpm.py.
 */
import { MlaError } from "../../errors.js";
import { num, posInt, type Json } from "../config.js";
import { mlaFamily, type MlaExtras } from "./deepseek.js";

/**
 * The multipliers, and v_head_dim when absent (MiniCPM3-4B's config leaves it out). transformers defaults it to
 * hidden_size / num_attention_heads, the repository's code to qk_nope_head_dim; where they differ it is refused.
 * The multipliers have different defaults there too (12, 1.4, 256 against 1, 1, 1), so they are required.
 */
function extras(c: Json): MlaExtras {
  const hidden = posInt(c, "hidden_size"), heads = posInt(c, "num_attention_heads"), layers = posInt(c, "num_hidden_layers");
  for (const k of ["scale_emb", "scale_depth", "dim_model_base"]) {
    if (c[k] == null) throw new MlaError(`config.json: minicpm3 needs "${k}" (transformers and the model's own code default it differently)`);
  }
  let vHeadDim: number | undefined;
  if (c.v_head_dim == null) {
    if (hidden % heads || hidden / heads !== posInt(c, "qk_nope_head_dim")) {
      throw new MlaError(`config.json: minicpm3 without "v_head_dim": transformers defaults it to hidden_size / num_attention_heads, the model's own code to qk_nope_head_dim, and they differ here`);
    }
    vHeadDim = hidden / heads;
  }
  return {
    vHeadDim,
    embedScale: num(c, "scale_emb"),
    residualScale: num(c, "scale_depth") / Math.sqrt(layers),
    logitScale: num(c, "dim_model_base") / hidden,
  };
}

export const minicpm3 = mlaFamily({
  modelType: "minicpm3",
  moe: null,
  defaults: { maxPositions: 32768, rmsNormEps: 1e-5, tieWordEmbeddings: true, normTopkProb: false },
  ropeStyle: "halves",
  extras,
});
