/**
 * deepseek_v3 (DeepSeek-V3, R1, V3.1, Moonlight): MLA, and a sigmoid router whose choice adds
 * e_score_correction_bias, limited to the topk_group groups with the best sum of their two best choices (noaux_tc).
 * transformers: models/deepseek_v3/modeling_deepseek_v3.py. kimi_k2 (./kimi-k2.ts) is the same model.
 */
import type { MlaFamilyOptions } from "./deepseek.js";
import { mlaFamily } from "./deepseek.js";

/** DeepSeek-V3's options, shared with the families that run its modeling code under another model_type. */
export const DEEPSEEK_V3: Omit<MlaFamilyOptions, "modelType"> = {
  moe: {
    scoring: "sigmoid",
    defaultTopkMethod: "noaux_tc",
    topkMethods: ["noaux_tc"],
    scoreBias: true,
    // transformers' deepseek_v3 makes every layer from first_k_dense_replace MoE; DeepSeek's modeling code also
    // takes moe_layer_freq (1 in every release), which the engine follows
    layers: "first_k_dense_replace",
    router: (c) => ({
      scoring: "sigmoid", choiceBias: true, experts: c.nRoutedExperts, topK: c.numExpertsPerTok, groups: c.nGroup,
      topGroups: c.topkGroup, groupScore: "top2", normalize: c.normTopkProb, scaling: c.routedScalingFactor,
    }),
  },
  defaults: { maxPositions: 4096, rmsNormEps: 1e-6, tieWordEmbeddings: false, normTopkProb: true },
  ropeStyle: "rope_interleave",
};

export const deepseekV3 = mlaFamily({ modelType: "deepseek_v3", ...DEEPSEEK_V3 });
