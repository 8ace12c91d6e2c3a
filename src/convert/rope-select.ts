/**
 * Which RoPE frequencies of a llama-layout head survive as MLA's decoupled RoPE key (partial RoPE, MHA2MLA), and
 * the rope_theta that makes deepseek_v3's RoPE rotate them exactly as the source did.
 *
 * A llama head of width d rotates d/2 pairs (dim j with dim j + d/2, "by halves") at frequencies
 * theta_j = base^(-2j/d), j = 0..d/2-1. deepseek_v3 rotates its r RoPE dims as r/2 interleaved pairs at
 * base'^(-2i/r), i = 0..r/2-1: a geometric sequence that always starts at frequency 1. So the kept source pairs
 * must be j_i = k i for a stride k >= 1 (frequencies 1, base^(-2k/d), base^(-4k/d), ...), and then
 * base' = base^(k r / d) reproduces them exactly. Any other subset (e.g. MHA2MLA's per-head 2-norm choice) would
 * need a per-pair frequency table that the config cannot express.
 *
 *   high     k = 1: the r/2 highest frequencies (the fastest-rotating dims, which carry relative position over short
 *            distances; the low frequencies barely rotate within a short context and lose least as NoPE dims)
 *   uniform  k = floor(d / r): every k-th pair (MHA2MLA's S_uniform)
 *   norm     the stride whose pairs carry the largest query-key 2-norm product (MHA2MLA's S_2-norm score, but one
 *            choice for all heads and restricted to the representable strides)
 */
import { MlaError } from "../errors.js";
import { DEFAULT_ROPE, ropeInvFreq, type RopeScaling } from "../attention/rope.js";

export type RopeSelect = "high" | "uniform" | "norm";
export const ROPE_SELECTS: readonly RopeSelect[] = ["high", "uniform", "norm"];

export interface RopeChoice {
  /** Source pair indices kept, j_i = stride * i (pair j = dims j and j + d/2 of the head). */
  readonly pairs: readonly number[];
  readonly stride: number;
  /** rope_theta of the converted model: base^(stride r / d). */
  readonly theta: number;
}

/** Check r against the head width d (even, 2..d). */
export function checkRopeDim(d: number, r: number): void {
  if (!Number.isInteger(r) || r < 2 || r % 2) throw new MlaError(`--rope-dim must be an even integer >= 2 (RoPE rotates pairs; deepseek_v3 needs qk_rope_head_dim > 0), got ${r}`);
  if (r > d) throw new MlaError(`--rope-dim ${r} exceeds the source's head_dim ${d} (a head has only ${d / 2} RoPE pairs)`);
}

/** The strides k for which pairs 0, k, ..., k (r/2 - 1) fit in d/2 pairs. */
export function representableStrides(d: number, r: number): number[] {
  checkRopeDim(d, r);
  const n = r / 2;
  const max = n === 1 ? 1 : Math.floor((d / 2 - 1) / (n - 1));
  return Array.from({ length: max }, (_, i) => i + 1);
}

/** The kept pairs and target rope_theta for a stride. */
export function ropeChoice(base: number, d: number, r: number, stride: number): RopeChoice {
  if (!representableStrides(d, r).includes(stride)) throw new MlaError(`RoPE stride ${stride} does not fit ${r / 2} pairs into a head of ${d / 2}`);
  return { pairs: Array.from({ length: r / 2 }, (_, i) => stride * i), stride, theta: base ** ((stride * r) / d) };
}

/**
 * Choose the kept pairs. `scores` (length d/2, needed for "norm") rates each source pair, e.g. the sum over heads
 * of E||q_h^(j)|| E||k_h^(j)||.
 */
export function selectRope(base: number, d: number, r: number, how: RopeSelect, scores?: ArrayLike<number>): RopeChoice {
  const strides = representableStrides(d, r);
  if (how === "high") return ropeChoice(base, d, r, 1);
  if (how === "uniform") return ropeChoice(base, d, r, Math.min(strides[strides.length - 1], Math.max(1, Math.floor(d / r))));
  if (how !== "norm") throw new MlaError(`--rope-select must be one of ${ROPE_SELECTS.join(", ")}, got "${String(how)}"`);
  if (!scores || scores.length !== d / 2) throw new MlaError(`rope selection "norm" needs one score per RoPE pair (${d / 2})`);
  const sum = (k: number) => {
    let s = 0;
    for (let i = 0; i < r / 2; i++) s += scores[k * i];
    return s;
  };
  let best = 1, bestScore = sum(1);
  for (const k of strides) {
    const s = sum(k);
    if (s > bestScore * (1 + 1e-12)) (best = k), (bestScore = s); // ties keep the smaller stride
  }
  return ropeChoice(base, d, r, best);
}

/**
 * Throw unless deepseek_v3's plain RoPE (default type, theta = choice.theta, dim r) rotates the kept pairs at the
 * source's frequencies (to 1e-9 relative). This rejects kept pairs that the source's rope_scaling changed (linear
 * everywhere; llama3 below its high-frequency band), which deepseek_v3's default/YaRN RoPE cannot express.
 */
export function checkRopeFrequencies(src: RopeScaling, d: number, r: number, choice: RopeChoice): void {
  const have = ropeInvFreq(src, d), want = ropeInvFreq({ ...DEFAULT_ROPE, theta: choice.theta }, r);
  choice.pairs.forEach((j, i) => {
    if (Math.abs(have[j] - want[i]) > 1e-9 * have[j]) {
      throw new MlaError(
        `the source's RoPE (${src.type}) rotates pair ${j} at frequency ${have[j].toExponential(6)}, which deepseek_v3's RoPE ` +
        `cannot reproduce (it would use ${want[i].toExponential(6)}): keep only unscaled pairs (a smaller --rope-dim, --rope-select high)`,
      );
    }
  });
}
