/**
 * deepseek_v2 (DeepSeek-V2, V2-Lite, V2.5): MLA, and a softmax router with greedy or group-limited top-k.
 * transformers: models/deepseek_v2/modeling_deepseek_v2.py. Its RoPE is a complex product over interleaved pairs,
 * always (DeepseekV2Config has no rope_interleave).
 */
import { mlaFamily } from "./deepseek.js";

export const deepseekV2 = mlaFamily({
  modelType: "deepseek_v2",
  moe: {
    scoring: "softmax",
    defaultTopkMethod: "greedy",
    topkMethods: ["greedy", "group_limited_greedy"],
    scoreBias: false,
    layers: "first_k_dense_replace",
    // s = softmax(logits); group_limited_greedy keeps the topk_group groups with the best max(s); the k weights are
    // normalised only when norm_topk_prob and k > 1 (DeepSeek-V2's modeling code; transformers never normalises, and
    // every released V2 config sets norm_topk_prob false)
    router: (c) => ({
      scoring: "softmax", choiceBias: false, experts: c.nRoutedExperts, topK: c.numExpertsPerTok, groups: c.nGroup,
      topGroups: c.topkMethod === "group_limited_greedy" ? c.topkGroup : c.nGroup, groupScore: "max",
      normalize: c.normTopkProb && c.numExpertsPerTok > 1, scaling: c.routedScalingFactor,
    }),
  },
  defaults: { maxPositions: 2048, rmsNormEps: 1e-6, tieWordEmbeddings: false, normTopkProb: false },
  ropeStyle: "interleaved",
});
