import { MlaError } from "../errors.js";

/**
 * Which dims RoPE pairs: "interleaved" (x0,x1),(x2,x3),... (DeepSeek's decoupled key) or "halves" (x_j, x_{j+d/2}),
 * transformers' rotate_half, as Llama/Qwen2/Mistral and MiniCPM3 checkpoints are laid out.
 */
export type RopeStyle = "interleaved" | "halves";

/** Rotary embedding settings, normalised from either config spelling (see model/config.ts). */
export interface RopeScaling {
  /**
   * default, YaRN (DeepSeek), linear / llama3 frequency scaling (the llama family), or longrope: one factor per
   * rotated pair, theta_j = 1 / (extFactors[j] base^(2j/dim)) (how `mla convert --rope-key grouped` gives every KV
   * group its own copy of the source's frequencies).
   */
  readonly type: "default" | "yarn" | "linear" | "llama3" | "longrope";
  readonly theta: number;
  /** YaRN, linear, llama3: context extension factor s. */
  readonly factor: number;
  /** YaRN, llama3: the pre-training context length L0. */
  readonly originalMaxPositionEmbeddings: number;
  /** llama3: wavelengths above L0 / lowFreqFactor are scaled by 1/s, below L0 / highFreqFactor kept, between blended. */
  readonly lowFreqFactor?: number;
  readonly highFreqFactor?: number;
  readonly betaFast: number;
  readonly betaSlow: number;
  readonly mscale: number;
  readonly mscaleAllDim: number;
  /** An explicit `attention_factor` in the config overrides the mscale ratio (YaRN) or the default 1 (longrope). */
  readonly attentionFactor?: number;
  /** longrope: the per-pair factors (short_factor; long_factor, when it differs, is never reached: see parseRope). */
  readonly extFactors?: readonly number[];
}

export const DEFAULT_ROPE: RopeScaling = {
  type: "default", theta: 10000, factor: 1, originalMaxPositionEmbeddings: 0,
  betaFast: 32, betaSlow: 1, mscale: 1, mscaleAllDim: 0,
};

/** YaRN's attention temperature m(s, k) = 0.1 k ln s + 1 (1 when not extending). */
export function yarnMscale(scale: number, k = 1): number {
  return scale <= 1 ? 1 : 0.1 * k * Math.log(scale) + 1;
}

/**
 * Rotation frequencies theta_j (float64): YaRN's ramp between interpolated and original frequencies, linear's
 * uniform 1/s, or llama3's per-wavelength blend (transformers' _compute_*_parameters).
 */
export function ropeInvFreq(rope: RopeScaling, dim: number): Float64Array {
  const half = dim >> 1;
  const inv = new Float64Array(half);
  for (let j = 0; j < half; j++) inv[j] = 1 / rope.theta ** ((2 * j) / dim);
  if (rope.type === "longrope") {
    const ext = rope.extFactors ?? [];
    if (ext.length !== half) throw new MlaError(`longrope: ${ext.length} factors for a RoPE of ${dim} dims (${half} pairs)`);
    return inv.map((f, j) => f / ext[j]);
  }
  if (rope.type === "linear") return inv.map((f) => f / rope.factor);
  if (rope.type === "llama3") return llama3InvFreq(rope, inv);
  if (rope.type !== "yarn") return inv;
  const corr = (r: number) => (dim * Math.log(rope.originalMaxPositionEmbeddings / (r * 2 * Math.PI))) / (2 * Math.log(rope.theta));
  const low = Math.max(Math.floor(corr(rope.betaFast)), 0);
  let high = Math.min(Math.ceil(corr(rope.betaSlow)), dim - 1);
  if (low === high) high += 0.001;
  for (let j = 0; j < half; j++) {
    const ramp = Math.min(Math.max((j - low) / (high - low), 0), 1);
    inv[j] = (inv[j] / rope.factor) * ramp + inv[j] * (1 - ramp);
  }
  return inv;
}

/** Llama 3.1's scaling: long wavelengths interpolated by 1/s, short ones kept, a smooth blend in between. */
function llama3InvFreq(rope: RopeScaling, inv: Float64Array): Float64Array {
  const s = rope.factor, L0 = rope.originalMaxPositionEmbeddings;
  const lo = rope.lowFreqFactor ?? 1, hi = rope.highFreqFactor ?? 4;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < L0 / hi) return f;
    if (wavelen > L0 / lo) return f / s;
    const smooth = (L0 / wavelen - lo) / (hi - lo);
    return (1 - smooth) * (f / s) + smooth * f;
  });
}

/** The factor cos/sin are multiplied by, as transformers computes it for YaRN. */
export function ropeAttentionFactor(rope: RopeScaling): number {
  if (rope.type === "longrope") return rope.attentionFactor ?? 1;
  if (rope.type !== "yarn") return 1;
  if (rope.attentionFactor !== undefined) return rope.attentionFactor;
  if (rope.mscale && rope.mscaleAllDim) return yarnMscale(rope.factor, rope.mscale) / yarnMscale(rope.factor, rope.mscaleAllDim);
  return yarnMscale(rope.factor);
}

/** Softmax scale 1/sqrt(d_qk), times m(s, mscale_all_dim)^2 when YaRN sets mscale_all_dim. */
export function attentionScale(qkHeadDim: number, rope: RopeScaling): number {
  let s = 1 / Math.sqrt(qkHeadDim);
  if (rope.type !== "default" && rope.mscaleAllDim) {
    const m = yarnMscale(rope.factor, rope.mscaleAllDim);
    s *= m * m;
  }
  return s;
}

/** cos/sin tables for positions, computed in float64 and stored as F32 rows of dim/2. */
export class RotaryEmbedding {
  readonly invFreq: Float64Array;
  readonly attentionFactor: number;

  constructor(readonly rope: RopeScaling, readonly dim: number) {
    if (dim % 2 !== 0) throw new MlaError(`RoPE dimension must be even, got ${dim}`);
    this.invFreq = ropeInvFreq(rope, dim);
    this.attentionFactor = ropeAttentionFactor(rope);
  }

  /** Tables for positions p0 .. p0+T-1. */
  table(p0: number, T: number): { cos: Float32Array; sin: Float32Array } {
    const half = this.dim >> 1;
    const cos = new Float32Array(T * half), sin = new Float32Array(T * half);
    for (let t = 0; t < T; t++) {
      for (let j = 0; j < half; j++) {
        const a = (p0 + t) * this.invFreq[j];
        cos[t * half + j] = Math.cos(a) * this.attentionFactor;
        sin[t * half + j] = Math.sin(a) * this.attentionFactor;
      }
    }
    return { cos, sin };
  }
}
