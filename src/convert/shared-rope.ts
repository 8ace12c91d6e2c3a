/**
 * One shared RoPE key from several KV heads (the idea of TransMLA's RoRoPE).
 *
 * RoPE rotates pair j of every KV head by the same angle p theta_j. A real G x G orthogonal mixing U applied to the
 * pair-j vectors of the G heads (the same U on both components of the pair) therefore commutes with RoPE:
 * rotating then mixing equals mixing then rotating. So per kept pair j we can change the basis of the G heads'
 * pair-j keys to the principal directions of their covariance, and the first direction u_j (unit, G numbers)
 * carries the most key energy of any single combination. MLA keeps exactly one rotated key, shared by all heads:
 *
 *   shared pair-j key      k~_j = sum_g u_{j,g} k_{g,j}                 (kv_a_proj_with_mqa's RoPE rows)
 *   query of head h        q~_{h,j} = u_{j,g(h)} q_{h,j}                (q_proj's RoPE rows; g(h) = h's KV group)
 *   score                  q~_{h,j} . R k~_j = u_{j,g(h)} q_{h,j} . R k~_j = q_{h,j} . R (u_{j,g(h)} k~_j)
 *
 * which is the source's q_{h,j} . R k_{g(h),j} exactly when k_{g,j} = u_{j,g} k~_j for every g, i.e. when the heads'
 * pair-j keys are proportional (always for G = 1; MQA). The rest, r_{g,j} = k_{g,j} - u_{j,g} k~_j, is what one
 * shared key cannot hold: the conversion keeps it as an unrotated (NoPE) key dim, or drops it.
 */
import { MlaError } from "../errors.js";
import { symEig } from "./linalg.js";

export interface SharedRope {
  /** [pairs.length, G]: unit mixing vector u_j per kept pair (sign fixed: largest |component| positive). */
  readonly u: Float64Array;
  /** Per kept pair: the fraction of the G heads' pair-j key energy in the shared key (1 = exact). */
  readonly captured: Float64Array;
}

/**
 * The principal mixing per kept pair. wk [G d, D] is k_proj (rows g d + c), sigmaX [D, D] the covariance of the
 * attention input x (E x x^T; use the identity-based one without data), pairs the kept pair indices (dims j and
 * j + d/2 of each head, RoPE by halves).
 */
export function sharedRopeKey(wk: ArrayLike<number>, sigmaX: ArrayLike<number>, G: number, d: number, D: number, pairs: readonly number[]): SharedRope {
  if (wk.length !== G * d * D) throw new MlaError(`sharedRopeKey: k_proj has ${wk.length} values, expected ${G * d * D}`);
  const half = d / 2;
  const u = new Float64Array(pairs.length * G), captured = new Float64Array(pairs.length);
  const sw = new Float64Array(D);
  pairs.forEach((j, pi) => {
    const c = new Float64Array(G * G);
    for (const dim of [j, j + half]) {
      for (let g = 0; g < G; g++) {
        // sw = Sigma w_{g, dim}
        const wo = (g * d + dim) * D;
        for (let a = 0; a < D; a++) {
          let s = 0;
          for (let b = 0; b < D; b++) s += sigmaX[a * D + b] * wk[wo + b];
          sw[a] = s;
        }
        for (let g2 = 0; g2 < G; g2++) {
          const w2 = (g2 * d + dim) * D;
          let s = 0;
          for (let a = 0; a < D; a++) s += wk[w2 + a] * sw[a];
          c[g2 * G + g] += s;
        }
      }
    }
    for (let a = 0; a < G; a++) for (let b = 0; b < a; b++) c[a * G + b] = c[b * G + a] = 0.5 * (c[a * G + b] + c[b * G + a]);
    const e = symEig(c, G);
    let big = 0;
    for (let g = 0; g < G; g++) if (Math.abs(e.vectors[g * G]) > Math.abs(e.vectors[big * G])) big = g;
    const sign = e.vectors[big * G] < 0 ? -1 : 1;
    for (let g = 0; g < G; g++) u[pi * G + g] = sign * e.vectors[g * G];
    let tr = 0;
    for (let g = 0; g < G; g++) tr += c[g * G + g];
    captured[pi] = tr > 0 ? Math.max(0, e.values[0]) / tr : 1;
  });
  return { u, captured };
}
