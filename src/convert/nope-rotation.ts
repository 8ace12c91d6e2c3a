/**
 * How a rotated key component that has no RoPE slot in the converted model still enters the scores.
 *
 * In the source, pair j (frequency theta_j) of query head h at position t and its key at position s contribute
 * q^T R(-theta_j (t - s)) k, with R the 2 x 2 rotation. Without a RoPE slot the converted model can only use a
 * fixed bilinear form q^T M k. "plain" takes M = I, i.e. the rotation at distance 0 (MHA2MLA's partial RoPE).
 * "mean" takes M = E[R(-theta_j Delta)], the rotation averaged over the distances Delta = t - s that head h
 * actually attends to in the source (its attention-weighted distance histogram on calibration text):
 *
 *   M = [[c, s], [-s, c]],  c = E cos(theta_j Delta),  s = E sin(theta_j Delta)
 *
 * For slow pairs (theta_j Delta small) this is about I, as "plain"; for fast pairs, whose rotation averages out
 * over the attended distances, it shrinks the term toward its mean instead of pretending Delta = 0. The query rows
 * absorb it: q' = M^T q, so the converted model's cost and layout do not change.
 */
import { MlaError } from "../errors.js";
import { RotaryEmbedding, type RopeScaling } from "../attention/rope.js";

export type NopeRotation = "plain" | "mean";
export const NOPE_ROTATIONS: readonly NopeRotation[] = ["plain", "mean"];

export interface DistanceInput {
  /** q_proj [H d, D], k_proj [G d, D], input_layernorm weight [D]. */
  readonly wq: ArrayLike<number>;
  readonly wk: ArrayLike<number>;
  readonly gamma: ArrayLike<number>;
  /** Calibration z [n, D] of this layer: windows back to back, each starting at position 0. */
  readonly z: ArrayLike<number>;
  readonly windows: readonly number[];
  readonly H: number;
  readonly G: number;
  readonly d: number;
  readonly D: number;
  readonly rope: RopeScaling;
}

/**
 * Per head, the source's attention mass at each distance, averaged over query positions: [H, maxLen]
 * (row h sums to 1). Causal softmax of q.k / sqrt(d) with RoPE by halves, as the llama family computes it.
 */
export function attentionDistances(inp: DistanceInput): { dist: Float64Array; maxLen: number } {
  const { wq, wk, gamma, z, windows, H, G, d, D } = inp;
  const maxLen = Math.max(...windows);
  if (!(maxLen > 0)) throw new MlaError("attention distances: no calibration windows");
  const half = d / 2, perGroup = H / G, scale = 1 / Math.sqrt(d);
  const rope = new RotaryEmbedding(inp.rope, d);
  const { cos, sin } = rope.table(0, maxLen);
  const dist = new Float64Array(H * maxLen);
  let queries = 0, row0 = 0;
  const project = (w: ArrayLike<number>, heads: number, T: number) => {
    const out = new Float64Array(T * heads * d);
    for (let t = 0; t < T; t++) {
      const zo = (row0 + t) * D;
      for (let o = 0; o < heads * d; o++) {
        let s = 0;
        for (let x = 0; x < D; x++) s += w[o * D + x] * gamma[x] * z[zo + x];
        out[t * heads * d + o] = s;
      }
      for (let h = 0; h < heads; h++) {
        const b = t * heads * d + h * d;
        for (let j = 0; j < half; j++) {
          const a0 = out[b + j], a1 = out[b + j + half], cc = cos[t * half + j], ss = sin[t * half + j];
          out[b + j] = a0 * cc - a1 * ss;
          out[b + j + half] = a1 * cc + a0 * ss;
        }
      }
    }
    return out;
  };
  const p = new Float64Array(maxLen);
  for (const T of windows) {
    const q = project(inp.wq, H, T), k = project(inp.wk, G, T);
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / perGroup);
      for (let t = 0; t < T; t++) {
        let mx = -Infinity;
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let c = 0; c < d; c++) dot += q[(t * H + h) * d + c] * k[(s * G + g) * d + c];
          p[s] = dot * scale;
          mx = Math.max(mx, p[s]);
        }
        let sum = 0;
        for (let s = 0; s <= t; s++) sum += (p[s] = Math.exp(p[s] - mx));
        for (let s = 0; s <= t; s++) dist[h * maxLen + (t - s)] += p[s] / sum;
      }
    }
    queries += T;
    row0 += T;
  }
  for (let i = 0; i < dist.length; i++) dist[i] /= queries;
  return { dist, maxLen };
}

/** E cos(theta Delta), E sin(theta Delta) under one head's distance histogram. */
export function meanRotation(dist: ArrayLike<number>, offset: number, maxLen: number, theta: number): { c: number; s: number } {
  let c = 0, s = 0;
  for (let k = 0; k < maxLen; k++) {
    const w = dist[offset + k];
    c += w * Math.cos(theta * k);
    s += w * Math.sin(theta * k);
  }
  return { c, s };
}
