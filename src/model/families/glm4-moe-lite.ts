/**
 * glm4_moe_lite (GLM-4.7-Flash, 30B-A3B): DeepSeek-V3's MLA and sigmoid router (e_score_correction_bias, noaux_tc)
 * with its own dimensions (qk_nope 192, v 256, 20 heads) and defaults. Dense or MoE per layer comes from
 * mlp_layer_types, not first_k_dense_replace. The checkpoint's multi-token-prediction layer (num_nextn_predict_layers,
 * stored as layer num_hidden_layers) is not run (ModelConfig.mtpLayers says it is there).
 * transformers: models/glm4_moe_lite/modeling_glm4_moe_lite.py. Its attribute_map sends head_dim to
 * qk_rope_head_dim, so the rotary dim is int(qk_rope_head_dim * partial_rotary_factor): only 1 fits the MLA split
 * (parseRope refuses the rest).
 */
import { mlaFamily } from "./deepseek.js";
import { DEEPSEEK_V3 } from "./deepseek-v3.js";

export const glm4MoeLite = mlaFamily({
  modelType: "glm4_moe_lite",
  moe: { ...DEEPSEEK_V3.moe!, layers: "mlp_layer_types" },
  defaults: { maxPositions: 202752, rmsNormEps: 1e-5, tieWordEmbeddings: false, normTopkProb: true },
  ropeStyle: "rope_interleave",
});
