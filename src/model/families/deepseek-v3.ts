/**
 * deepseek_v3 (DeepSeek-V3, R1, V3.1; Moonlight/Kimi share its layout): MLA, and a sigmoid router whose choice adds
 * e_score_correction_bias, limited to the topk_group groups with the best sum of their two best choices (noaux_tc).
 * transformers: models/deepseek_v3/modeling_deepseek_v3.py.
 */
import { mlaFamily } from "./deepseek.js";

export const deepseekV3 = mlaFamily({
  modelType: "deepseek_v3",
  defaultTopkMethod: "noaux_tc",
  topkMethods: ["noaux_tc"],
  scoreBias: true,
  router: (c) => ({
    scoring: "sigmoid", choiceBias: true, experts: c.nRoutedExperts, topK: c.numExpertsPerTok, groups: c.nGroup,
    topGroups: c.topkGroup, groupScore: "top2", normalize: c.normTopkProb, scaling: c.routedScalingFactor,
  }),
});
