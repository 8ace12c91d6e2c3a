/**
 * deepseek_v2 (DeepSeek-V2, V2-Lite, V2.5): MLA, and a softmax router with greedy or group-limited top-k.
 * transformers: models/deepseek_v2/modeling_deepseek_v2.py.
 */
import { mlaFamily } from "./deepseek.js";

export const deepseekV2 = mlaFamily({
  modelType: "deepseek_v2",
  defaultTopkMethod: "greedy",
  topkMethods: ["greedy", "group_limited_greedy"],
  scoreBias: false,
  // s = softmax(logits); group_limited_greedy keeps the topk_group groups with the best max(s); the k weights are
  // normalised only when norm_topk_prob and k > 1
  router: (c) => ({
    scoring: "softmax", choiceBias: false, experts: c.nRoutedExperts, topK: c.numExpertsPerTok, groups: c.nGroup,
    topGroups: c.topkMethod === "group_limited_greedy" ? c.topkGroup : c.nGroup, groupScore: "max",
    normalize: c.normTopkProb && c.numExpertsPerTok > 1, scaling: c.routedScalingFactor,
  }),
});
