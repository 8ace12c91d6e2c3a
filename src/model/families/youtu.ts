/**
 * youtu (Youtu-LLM-2B): DeepSeek-V3's MLA attention (rope_interleave) in Llama decoder layers with dense SwiGLU MLPs
 * and tied embeddings. transformers: models/youtu/modular_youtu.py (YoutuAttention = DeepseekV3Attention, YoutuMLP =
 * Qwen3MLP). YoutuConfig's attribute_map is empty but it sets head_dim = qk_rope_head_dim, so LlamaRotaryEmbedding
 * rotates qk_rope_head_dim dims, as in DeepSeek-V3. Its config class has no expert keys: they are not read.
 */
import { mlaFamily } from "./deepseek.js";

export const youtu = mlaFamily({
  modelType: "youtu",
  moe: null,
  defaults: { maxPositions: 131072, rmsNormEps: 1e-6, tieWordEmbeddings: true, normTopkProb: false },
  ropeStyle: "rope_interleave",
});
