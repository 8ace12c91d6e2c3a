import { test } from "node:test";
import assert from "node:assert/strict";
import { routeSigmoidGrouped, routeSoftmax, topK, type RouterConfig, type Routing } from "../src/model/router.js";
import { randn } from "./helpers.js";

const logit = (p: number) => Math.log(p / (1 - p));
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
/** Router logits whose sigmoids are exactly the given scores (up to float32 rounding of the logits). */
const logitsFor = (scores: number[]) => Float32Array.from(scores, logit);

function cfg(over: Partial<RouterConfig>): RouterConfig {
  return {
    nRoutedExperts: 8, numExpertsPerTok: 2, nGroup: 4, topkGroup: 2, topkMethod: "noaux_tc",
    normTopkProb: false, routedScalingFactor: 1, ...over,
  };
}

function row(r: Routing, t: number, k: number): { experts: number[]; weights: number[] } {
  return { experts: Array.from(r.experts.subarray(t * k, t * k + k)), weights: Array.from(r.weights.subarray(t * k, t * k + k)) };
}

function near(a: number[], b: number[], tol = 1e-6): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol * Math.max(1, Math.abs(b[i])), `[${a}] vs [${b}]`);
}

/** sigmoid of the float32 logits, as the router sees them */
function sig(logits: Float32Array, e: number): number {
  return sigmoid(logits[e]);
}

// ---------------------------------------------------------------------------------------------------------------
// DeepSeek-V3: sigmoid scores, grouped top-k

test("V3: group limiting excludes a high-scoring expert of a dropped group", () => {
  // groups (2 experts each): g0 sum 1.00 (holds the best expert 0.90), g1 1.20, g2 1.10, g3 0.40
  const L = logitsFor([0.9, 0.1, 0.62, 0.58, 0.56, 0.54, 0.2, 0.2]);
  const r = row(routeSigmoidGrouped(L, 1, null, cfg({})), 0, 2);
  assert.deepEqual(r.experts, [2, 3]);
  near(r.weights, [sig(L, 2), sig(L, 3)]);
  // with every group kept the best expert is chosen
  const all = row(routeSigmoidGrouped(L, 1, null, cfg({ topkGroup: 4 })), 0, 2);
  assert.deepEqual(all.experts, [0, 2]);
  // a single group: plain top-k
  const one = row(routeSigmoidGrouped(L, 1, null, cfg({ nGroup: 1, topkGroup: 1 })), 0, 2);
  assert.deepEqual(one.experts, [0, 2]);
});

test("V3: group score is the sum of the top-2 choices in the group (not max, not sum of all)", () => {
  // 12 experts in 3 groups of 4; keep 1 group.
  //   g0: top-2 sum 1.00, max 0.95, sum 1.10
  //   g1: top-2 sum 1.15, max 0.60, sum 1.25   <- wins by top-2 sum
  //   g2: top-2 sum 0.80, max 0.50, sum 1.40
  const s = [0.95, 0.05, 0.05, 0.05, 0.05, 0.6, 0.05, 0.55, 0.3, 0.5, 0.3, 0.3];
  const L = logitsFor(s);
  const c = cfg({ nRoutedExperts: 12, nGroup: 3, topkGroup: 1, numExpertsPerTok: 2 });
  const r = row(routeSigmoidGrouped(L, 1, null, c), 0, 2);
  assert.deepEqual(r.experts, [5, 7]);
  near(r.weights, [sig(L, 5), sig(L, 7)]);
  // topkGroup 2 keeps g1 and g0: the best experts of those two groups
  const r2 = row(routeSigmoidGrouped(L, 1, null, { ...c, topkGroup: 2, numExpertsPerTok: 3 }), 0, 3);
  assert.deepEqual(r2.experts, [0, 5, 7]);
});

test("V3: e_score_correction_bias changes the choice, weights are sigmoid without bias", () => {
  const s = [0.9, 0.8, 0.7, 0.1, 0.3, 0.2, 0.15, 0.05];
  const L = logitsFor(s);
  const c = cfg({ nGroup: 1, topkGroup: 1 });
  const noBias = row(routeSigmoidGrouped(L, 1, null, c), 0, 2);
  assert.deepEqual(noBias.experts, [0, 1]);
  const bias = new Float32Array([0, 0, 0, 0.75, 0, 0, 0, 0]); // choice of expert 3 becomes 0.85
  const withBias = row(routeSigmoidGrouped(L, 1, bias, c), 0, 2);
  assert.deepEqual(withBias.experts, [0, 3]);
  near(withBias.weights, [sig(L, 0), sig(L, 3)]); // 0.9 and 0.1, NOT 0.85
  assert.ok(Math.abs(withBias.weights[1] - 0.1) < 1e-6, "expected Math.abs(withBias.weights[1] - 0.1) < 1e-6");
  // normalised: divided by the sum of the unbiased scores
  const n = row(routeSigmoidGrouped(L, 1, bias, { ...c, normTopkProb: true }), 0, 2);
  near(n.weights, [0.9 / 1.0, 0.1 / 1.0]);

  // the bias also steers the group choice (groups are ranked by biased top-2 sums)
  const L2 = logitsFor([0.9, 0.1, 0.62, 0.58, 0.56, 0.54, 0.2, 0.2]);
  const b2 = new Float32Array([0, 0, 0, 0, 0, 0, 0.5, 0.5]); // g3 -> 1.40, the best group
  const r2 = row(routeSigmoidGrouped(L2, 1, b2, cfg({})), 0, 2);
  assert.deepEqual(r2.experts, [6, 7]); // choices 0.70 and 0.70 (tie -> lower index first); g1 experts 0.62, 0.58
  near(r2.weights, [sig(L2, 6), sig(L2, 7)]);
});

test("V3: experts of dropped groups are excluded outright, even against negative kept choices", () => {
  // kept group g0 has choices [0.9, -0.3]; dropped g1 has [0.25, 0.25]. DeepSeek masks g1 with -inf.
  const L = logitsFor([0.9, 0.2, 0.25, 0.25]);
  const bias = new Float32Array([0, -0.5, 0, 0]);
  const r = row(routeSigmoidGrouped(L, 1, bias, cfg({ nRoutedExperts: 4, nGroup: 2, topkGroup: 1 })), 0, 2);
  assert.deepEqual(r.experts, [0, 1]);
  near(r.weights, [sig(L, 0), sig(L, 1)]);
});

test("V3: norm_topk_prob and routed_scaling_factor", () => {
  const L = logitsFor([0.9, 0.1, 0.62, 0.58, 0.56, 0.54, 0.2, 0.2]);
  const s2 = sig(L, 2), s3 = sig(L, 3);
  near(row(routeSigmoidGrouped(L, 1, null, cfg({ routedScalingFactor: 2.5 })), 0, 2).weights, [2.5 * s2, 2.5 * s3]);
  near(row(routeSigmoidGrouped(L, 1, null, cfg({ normTopkProb: true })), 0, 2).weights, [s2 / (s2 + s3), s3 / (s2 + s3)]);
  const both = row(routeSigmoidGrouped(L, 1, null, cfg({ normTopkProb: true, routedScalingFactor: 2.5 })), 0, 2).weights;
  near(both, [(2.5 * s2) / (s2 + s3), (2.5 * s3) / (s2 + s3)]);
  assert.ok(Math.abs(both[0] + both[1] - 2.5) < 1e-6, "expected Math.abs(both[0] + both[1] - 2.5) < 1e-6");
});

test("V3: several tokens are routed independently", () => {
  const a = [0.9, 0.1, 0.62, 0.58, 0.56, 0.54, 0.2, 0.2];
  const b = [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.7, 0.8];
  const L = logitsFor([...a, ...b]);
  const r = routeSigmoidGrouped(L, 2, null, cfg({}));
  assert.deepEqual(row(r, 0, 2).experts, [2, 3]);
  assert.deepEqual(row(r, 1, 2).experts, [7, 6]);
});

// ---------------------------------------------------------------------------------------------------------------
// DeepSeek-V2: softmax scores

function softmaxOf(l: Float32Array, off: number, n: number): number[] {
  const m = Math.max(...l.subarray(off, off + n));
  const e = Array.from(l.subarray(off, off + n), (x) => Math.exp(x - m));
  const z = e.reduce((p, q) => p + q, 0);
  return e.map((x) => x / z);
}

test("V2 greedy: top-k of softmax, raw probabilities unless normalised", () => {
  const L = new Float32Array([1, 3, 2, 0.5, -1, 2.5, 0, 1.5]);
  const p = softmaxOf(L, 0, 8);
  const c = cfg({ topkMethod: "greedy", nGroup: 1, topkGroup: 1, numExpertsPerTok: 3 });
  const r = row(routeSoftmax(L, 1, c), 0, 3);
  assert.deepEqual(r.experts, [1, 5, 2]);
  near(r.weights, [p[1], p[5], p[2]]);
  // normalised when norm_topk_prob and k > 1
  const n = row(routeSoftmax(L, 1, { ...c, normTopkProb: true }), 0, 3).weights;
  const z = p[1] + p[5] + p[2];
  near(n, [p[1] / z, p[5] / z, p[2] / z]);
  // k = 1: never normalised, even with norm_topk_prob
  const k1 = row(routeSoftmax(L, 1, { ...c, numExpertsPerTok: 1, normTopkProb: true }), 0, 1);
  assert.deepEqual(k1.experts, [1]);
  near(k1.weights, [p[1]]);
  assert.ok(k1.weights[0] < 0.5, "expected k1.weights[0] < 0.5");
  // routed scaling applies in every case
  near(row(routeSoftmax(L, 1, { ...c, routedScalingFactor: 16 }), 0, 3).weights, [16 * p[1], 16 * p[5], 16 * p[2]]);
  near(row(routeSoftmax(L, 1, { ...c, numExpertsPerTok: 1, normTopkProb: true, routedScalingFactor: 16 }), 0, 1).weights, [16 * p[1]]);
  near(row(routeSoftmax(L, 1, { ...c, normTopkProb: true, routedScalingFactor: 2 }), 0, 3).weights, [2 * p[1] / z, 2 * p[5] / z, 2 * p[2] / z]);
  // greedy ignores groups even when n_group > 1
  assert.deepEqual(row(routeSoftmax(L, 1, { ...c, nGroup: 4, topkGroup: 1 }), 0, 3).experts, [1, 5, 2]);
});

test("V2 group_limited_greedy: groups ranked by their max probability", () => {
  // groups of 2: g0 [3.0, -5] max 3.0; g1 [2.8, 2.7] max 2.8 (but largest sum); g2 [2.9, -5]; g3 [0, 0]
  const L = new Float32Array([3.0, -5, 2.8, 2.7, 2.9, -5, 0, 0]);
  const p = softmaxOf(L, 0, 8);
  const c = cfg({ topkMethod: "group_limited_greedy", nGroup: 4, topkGroup: 1, numExpertsPerTok: 2 });
  const r = row(routeSoftmax(L, 1, c), 0, 2);
  assert.deepEqual(r.experts, [0, 1]); // only g0 kept: its weak second expert is chosen over g1/g2's strong ones
  near(r.weights, [p[0], p[1]]); // probabilities of the full softmax, not renormalised within the group
  const r2 = row(routeSoftmax(L, 1, { ...c, topkGroup: 2 }), 0, 2);
  assert.deepEqual(r2.experts, [0, 4]); // g0 and g2 kept
  const greedy = row(routeSoftmax(L, 1, { ...c, topkMethod: "greedy" }), 0, 2);
  assert.deepEqual(greedy.experts, [0, 4]);
  const g3 = row(routeSoftmax(L, 1, { ...c, topkGroup: 3, numExpertsPerTok: 3 }), 0, 3);
  assert.deepEqual(g3.experts, [0, 4, 2]);
});

test("topK: descending, ties to the lower index, respects the filter", () => {
  assert.deepEqual(topK([1, 5, 5, 2, 5], 3), [1, 2, 4]);
  assert.deepEqual(topK([1, 5, 5, 2, 5], 2, (i) => i !== 1), [2, 4]);
  assert.deepEqual(topK([3, 1, 2], 5), [0, 2, 1]);
});

// ---------------------------------------------------------------------------------------------------------------
// Randomised comparison against a straightforward re-implementation

/** Indices sorted by value descending, index ascending on ties. */
function order(v: number[]): number[] {
  return v.map((x, i) => [x, i] as const).sort((a, b) => (b[0] !== a[0] ? b[0] - a[0] : a[1] - b[1])).map((p) => p[1]);
}

function refV3(logits: number[], bias: number[] | null, c: RouterConfig): Map<number, number> {
  const E = c.nRoutedExperts, per = E / c.nGroup;
  const s = logits.map(sigmoid);
  const choice = s.map((x, e) => x + (bias ? bias[e] : 0));
  const gScore: number[] = [];
  for (let g = 0; g < c.nGroup; g++) {
    const m = choice.slice(g * per, (g + 1) * per).sort((a, b) => b - a);
    gScore.push(m[0] + m[1]);
  }
  const kept = order(gScore).slice(0, c.topkGroup);
  const masked = choice.map((x, e) => (kept.includes(Math.floor(e / per)) ? x : -Infinity));
  const picked = order(masked).slice(0, c.numExpertsPerTok);
  let w = picked.map((e) => s[e]);
  if (c.normTopkProb) {
    const z = w.reduce((a, b) => a + b, 0) + 1e-20;
    w = w.map((x) => x / z);
  }
  return new Map(picked.map((e, j) => [e, w[j] * c.routedScalingFactor]));
}

function refV2(logits: number[], c: RouterConfig): Map<number, number> {
  const E = c.nRoutedExperts, per = E / c.nGroup;
  const m = Math.max(...logits);
  const ex = logits.map((x) => Math.exp(x - m));
  const z = ex.reduce((a, b) => a + b, 0);
  let s = ex.map((x) => x / z);
  if (c.topkMethod === "group_limited_greedy") {
    const gMax: number[] = [];
    for (let g = 0; g < c.nGroup; g++) gMax.push(Math.max(...s.slice(g * per, (g + 1) * per)));
    const kept = order(gMax).slice(0, c.topkGroup);
    s = s.map((x, e) => (kept.includes(Math.floor(e / per)) ? x : 0));
  }
  const picked = order(s).slice(0, c.numExpertsPerTok);
  let w = picked.map((e) => s[e]);
  if (c.normTopkProb && c.numExpertsPerTok > 1) {
    const sum = w.reduce((a, b) => a + b, 0) + 1e-20;
    w = w.map((x) => x / sum);
  }
  return new Map(picked.map((e, j) => [e, w[j] * c.routedScalingFactor]));
}

function compareRouting(r: Routing, t: number, k: number, ref: Map<number, number>, tag: string): void {
  const got = row(r, t, k);
  assert.equal(new Set(got.experts).size, k, `${tag}: duplicate experts ${got.experts}`);
  assert.deepEqual([...got.experts].sort((a, b) => a - b), [...ref.keys()].sort((a, b) => a - b), `${tag}: experts`);
  got.experts.forEach((e, j) => {
    const want = ref.get(e)!;
    assert.ok(Math.abs(got.weights[j] - want) <= 1e-6 * Math.max(1, Math.abs(want)), `${tag}: expert ${e} weight ${got.weights[j]} vs ${want}`);
  });
}

test("routers agree with an independent re-implementation on many random tokens (E=16, n_group=4, topk_group=2, k=3)", () => {
  const E = 16, k = 3, T = 301;
  for (const norm of [false, true]) {
    for (const scaling of [1, 2.5]) {
      const seed = 900 + (norm ? 10 : 0) + scaling * 2;
      const logits = randn(T * E, seed, 4);
      const bias = randn(E, seed + 1, 0.3);
      const base: RouterConfig = { nRoutedExperts: E, numExpertsPerTok: k, nGroup: 4, topkGroup: 2, topkMethod: "noaux_tc", normTopkProb: norm, routedScalingFactor: scaling };
      for (const b of [null, bias]) {
        const r = routeSigmoidGrouped(logits, T, b, base);
        for (let t = 0; t < T; t++) {
          compareRouting(r, t, k, refV3(Array.from(logits.subarray(t * E, (t + 1) * E)), b && Array.from(b), base), `V3 norm=${norm} scale=${scaling} bias=${!!b} t=${t}`);
        }
      }
      for (const method of ["greedy", "group_limited_greedy"]) {
        const c = { ...base, topkMethod: method };
        const r = routeSoftmax(logits, T, c);
        for (let t = 0; t < T; t++) {
          compareRouting(r, t, k, refV2(Array.from(logits.subarray(t * E, (t + 1) * E)), c), `V2 ${method} norm=${norm} scale=${scaling} t=${t}`);
        }
      }
    }
  }
  // the grouping must actually matter on these inputs (otherwise the test proves little)
  const logits = randn(T * E, 977, 4);
  const c: RouterConfig = { nRoutedExperts: E, numExpertsPerTok: k, nGroup: 4, topkGroup: 2, topkMethod: "group_limited_greedy", normTopkProb: false, routedScalingFactor: 1 };
  const grouped = routeSoftmax(logits, T, c), greedy = routeSoftmax(logits, T, { ...c, topkMethod: "greedy" });
  let differ = 0;
  for (let t = 0; t < T; t++) if (row(grouped, t, k).experts.join() !== row(greedy, t, k).experts.join()) differ++;
  assert.ok(differ > T / 10, `grouping changed only ${differ} of ${T} tokens`);
});
