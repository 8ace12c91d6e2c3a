/**
 * The MoE routers of DeepSeek-V2 and V3: which num_experts_per_tok experts each token goes to, and with what weight.
 * Pure functions over the router logits x W_g^T so they can be tested alone. Ties go to the lower index.
 */
export interface RouterConfig {
  readonly nRoutedExperts: number; // E
  readonly numExpertsPerTok: number; // k
  readonly nGroup: number;
  readonly topkGroup: number;
  readonly topkMethod: string;
  readonly normTopkProb: boolean;
  readonly routedScalingFactor: number;
}

/**
 * How a MoE layer chooses its experts: the one description both backends read (the CPU router below, the WebGPU
 * routing kernel). A family builds it from config.json (see ./families/).
 */
export interface RouterSpec {
  /** Scores from the router logits: softmax over experts (DeepSeek-V2) or a sigmoid per expert (V3). */
  readonly scoring: "softmax" | "sigmoid";
  /** e_score_correction_bias is added to the scores to choose the experts (not to weight them). */
  readonly choiceBias: boolean;
  readonly experts: number; // E, n_routed_experts
  readonly topK: number; //    k, num_experts_per_tok
  readonly groups: number; //  n_group
  /** Groups kept before the top-k (topk_group); equal to `groups` when routing is not group-limited. */
  readonly topGroups: number;
  /** A group's rank: its best score (V2 group_limited_greedy) or the sum of its two best choices (V3 noaux_tc). */
  readonly groupScore: "max" | "top2";
  /** The k weights are divided by their sum. */
  readonly normalize: boolean;
  /** routed_scaling_factor, applied to the weights last. */
  readonly scaling: number;
}

/** The RouterConfig fields the two reference routers below take, from a RouterSpec. */
function routerConfig(s: RouterSpec): RouterConfig {
  return {
    nRoutedExperts: s.experts, numExpertsPerTok: s.topK, nGroup: s.groups, topkGroup: s.topGroups,
    topkMethod: s.scoring === "sigmoid" ? "noaux_tc" : s.topGroups < s.groups ? "group_limited_greedy" : "greedy",
    normTopkProb: s.normalize, routedScalingFactor: s.scaling,
  };
}

/** Route T tokens' router logits [T, E] as the spec says (bias: e_score_correction_bias, when the spec uses one). */
export function routeTokens(spec: RouterSpec, logits: Float32Array, T: number, bias: Float32Array | null): Routing {
  const c = routerConfig(spec);
  return spec.scoring === "sigmoid" ? routeSigmoidGrouped(logits, T, spec.choiceBias ? bias : null, c) : routeSoftmax(logits, T, c);
}

export interface Routing {
  /** [T, k] expert ids. */
  readonly experts: Int32Array;
  /** [T, k] weights applied to each chosen expert's output. */
  readonly weights: Float32Array;
}

/** Indices of the k largest values among those allowed (ties to the lower index). */
export function topK(v: ArrayLike<number>, k: number, allowed?: (i: number) => boolean): number[] {
  const idx: number[] = [];
  for (let i = 0; i < v.length; i++) if (!allowed || allowed(i)) idx.push(i);
  idx.sort((a, b) => v[b] - v[a] || a - b);
  return idx.slice(0, k);
}

/** The topk_group groups with the best score (score of a group = f(its members)). */
function keptGroups(choice: ArrayLike<number>, c: RouterConfig, groupScore: (members: number[]) => number): Set<number> {
  const per = c.nRoutedExperts / c.nGroup;
  const scores: number[] = [];
  for (let g = 0; g < c.nGroup; g++) scores.push(groupScore(Array.from({ length: per }, (_, j) => choice[g * per + j])));
  return new Set(topK(scores, c.topkGroup));
}

function finish(weights: Float32Array, t: number, k: number, c: RouterConfig, normalise: boolean): void {
  let sum = 0;
  for (let j = 0; j < k; j++) sum += weights[t * k + j];
  const d = normalise ? sum + 1e-20 : 1;
  for (let j = 0; j < k; j++) weights[t * k + j] = (weights[t * k + j] / d) * c.routedScalingFactor;
}

/**
 * DeepSeek-V3 (noaux_tc): s = sigmoid(logits); choice = s + e_score_correction_bias; groups ranked by the sum of
 * their top-2 choices; top-k by choice inside the kept groups (others excluded); weights = s, optionally normalised,
 * times routed_scaling_factor.
 */
export function routeSigmoidGrouped(logits: Float32Array, T: number, bias: Float32Array | null, c: RouterConfig): Routing {
  const E = c.nRoutedExperts, k = c.numExpertsPerTok, per = E / c.nGroup;
  const experts = new Int32Array(T * k), weights = new Float32Array(T * k);
  const s = new Float64Array(E), choice = new Float64Array(E);
  for (let t = 0; t < T; t++) {
    for (let e = 0; e < E; e++) {
      s[e] = 1 / (1 + Math.exp(-logits[t * E + e]));
      choice[e] = s[e] + (bias ? bias[e] : 0);
    }
    const kept = keptGroups(choice, c, (m) => m.sort((a, b) => b - a).slice(0, 2).reduce((a, b) => a + b, 0));
    const picked = topK(choice, k, (e) => kept.has(Math.floor(e / per)));
    picked.forEach((e, j) => {
      experts[t * k + j] = e;
      weights[t * k + j] = s[e];
    });
    finish(weights, t, k, c, c.normTopkProb && k > 1);
  }
  return { experts, weights };
}

/**
 * DeepSeek-V2: s = softmax(logits); `greedy` takes the top-k of s; `group_limited_greedy` first keeps the
 * topk_group groups with the highest max(s) (zeroing the rest). Weights = s, normalised only if norm_topk_prob
 * (and k > 1), times routed_scaling_factor.
 */
export function routeSoftmax(logits: Float32Array, T: number, c: RouterConfig): Routing {
  const E = c.nRoutedExperts, k = c.numExpertsPerTok, per = E / c.nGroup;
  const experts = new Int32Array(T * k), weights = new Float32Array(T * k);
  const s = new Float64Array(E);
  for (let t = 0; t < T; t++) {
    let m = -Infinity, sum = 0;
    for (let e = 0; e < E; e++) m = Math.max(m, logits[t * E + e]);
    for (let e = 0; e < E; e++) sum += s[e] = Math.exp(logits[t * E + e] - m);
    for (let e = 0; e < E; e++) s[e] /= sum;
    if (c.topkMethod === "group_limited_greedy") {
      const kept = keptGroups(s, c, (members) => Math.max(...members));
      for (let e = 0; e < E; e++) if (!kept.has(Math.floor(e / per))) s[e] = 0;
    }
    topK(s, k).forEach((e, j) => {
      experts[t * k + j] = e;
      weights[t * k + j] = s[e];
    });
    finish(weights, t, k, c, c.normTopkProb && k > 1);
  }
  return { experts, weights };
}
