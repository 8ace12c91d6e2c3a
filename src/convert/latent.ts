/**
 * The low-rank KV latent of a converted layer: c_KV = Q z (R numbers per token) and per-head up-projections B such
 * that B RMSNorm(c_KV) reproduces the source's non-RoPE keys and its values, y = M z.
 *
 * z is the layer input normalized to unit RMS *before* input_layernorm's weight gamma (z = h / sqrt(mean(h^2) + eps),
 * x = gamma * z), so the latent down-projection written to kv_a_proj_with_mqa is Q diag(1/gamma). Working in z is what
 * makes deepseek_v3's RMSNorm on the latent (kv_a_layernorm) harmless: Q has orthonormal rows, so with R = D the
 * latent is a rotation of z and mean(c^2) = mean(z^2) = mean(h^2) / (mean(h^2) + eps), i.e. 1 to within eps: the
 * norm divides by 1 and the full-rank conversion is exact. With R < D, mean(c^2) varies from token to token and
 * the norm rescales each token's keys and values a little; with calibration data B is fitted by least squares to
 * the normalized latents, which absorbs the average effect.
 *
 * Which R-dimensional subspace: the reduced-rank regression of y on z (MHA2MLA's and TransMLA's PCA of the key/value
 * activations): the top-R principal directions of y = M z under the activation covariance Sigma_z (the identity
 * without calibration data, which makes it the SVD of the weights M), pulled back to z-space and orthonormalized in
 * order (so the subspace of rank R is nested in that of rank R + 1). Past the rank of M, further latent dims carry
 * no key or value information; they are filled with the directions of largest remaining activation variance
 * ("ballast"), which only steady the latent norm (at R = D they complete the rotation).
 */
import { MlaError } from "../errors.js";
import { gram, matmul, orthonormalizeRows, solveSpd, symEig, transpose, type Mat } from "./linalg.js";

/** Epsilon of deepseek_v3's kv_a_layernorm (fixed at 1e-6 whatever rms_norm_eps says). */
export const LATENT_EPS = 1e-6;

export interface LatentInput {
  /** M [rows, D]: the key and value rows to reproduce, as functions of z. */
  readonly m: ArrayLike<number>;
  readonly rows: number;
  readonly dim: number;
  /** Latent width R (1..dim). */
  readonly rank: number;
  /** Calibration samples of z [n, dim] (absent: weights only, Sigma_z = I). */
  readonly z?: ArrayLike<number> | null;
  readonly n?: number;
}

export interface Latent {
  /** [R, dim], orthonormal rows: c_KV = q z. */
  readonly q: Mat;
  /** [rows, R]: y ~ b RMSNorm(c_KV) (weight 1, eps LATENT_EPS). */
  readonly b: Mat;
  readonly rank: number;
  /** Rows of q that carry key/value information (the rank of M captured); the rest are ballast. */
  readonly informative: number;
  /** Fraction of E||y||^2 (under Sigma_z) inside the latent subspace, before the norm. */
  readonly energy: number;
}

/** Share of the identity mixed into a sample covariance (see covariance). */
export const COVARIANCE_SHRINK = 1e-3;

/**
 * Sigma_z = Z^T Z / n, shrunk toward the identity by `shrink` (default 0): (1 - s) Z^T Z / n + s tr/dim I, so that
 * directions the samples never visit (few calibration tokens) are still ordered by the weights. The identity
 * without samples.
 */
export function covariance(z: ArrayLike<number> | null | undefined, n: number, dim: number, shrink = 0): Mat {
  const s = new Float64Array(dim * dim);
  if (!z) {
    for (let i = 0; i < dim; i++) s[i * dim + i] = 1;
    return s;
  }
  const g = gram(z, n, dim);
  let tr = 0;
  for (let i = 0; i < dim; i++) tr += g[i * dim + i];
  for (let i = 0; i < s.length; i++) s[i] = ((1 - shrink) * g[i]) / n;
  for (let i = 0; i < dim; i++) s[i * dim + i] += (shrink * tr) / n / dim;
  return s;
}

export function fitLatent(inp: LatentInput): Latent {
  const { m, rows, dim, rank } = inp;
  if (!Number.isInteger(rank) || rank < 1 || rank > dim) throw new MlaError(`latent rank must be an integer in 1..${dim}, got ${rank}`);
  const n = inp.n ?? 0;
  if (inp.z && (n < 1 || inp.z.length !== n * dim)) throw new MlaError(`calibration samples: expected [${n}, ${dim}], got ${inp.z.length} values`);
  const sigma = covariance(inp.z, n, dim, COVARIANCE_SHRINK);
  // principal directions of y = M z: eigenvectors of M Sigma M^T [rows, rows]
  const ms = matmul(m, sigma, rows, dim, dim);
  const cy = matmul(ms, transpose(m, rows, dim), rows, dim, rows);
  for (let i = 0; i < rows; i++) for (let j = 0; j < i; j++) cy[i * rows + j] = cy[j * rows + i] = 0.5 * (cy[i * rows + j] + cy[j * rows + i]);
  const eig = symEig(cy, rows);
  let total = 0;
  for (const v of eig.values) total += Math.max(v, 0);
  // their pull-back to z-space, rows in order of variance: a_i = v_i^T M
  const a = matmul(transpose(eig.vectors, rows, rows), m, rows, rows, dim);
  let maxNorm = 0;
  for (let i = 0; i < rows; i++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += a[i * dim + j] ** 2;
    maxNorm = Math.max(maxNorm, Math.sqrt(s));
  }
  const inf = orthonormalizeRows(a, rows, dim, 1e-9, maxNorm);
  const informative = Math.min(inf.kept.length, rank);
  let q: Mat;
  if (rank <= inf.kept.length) {
    q = inf.q.slice(0, rank * dim);
  } else {
    q = withBallast(inf.q, inf.kept.length, sigma, dim, rank);
  }
  // energy inside span(q) under Sigma: tr(M P Sigma P M^T) / tr(M Sigma M^T), P = q^T q
  const mq = matmul(m, transpose(q, rank, dim), rows, dim, rank); //  [rows, R]
  const qs = matmul(q, sigma, rank, dim, dim); //                      [R, dim]
  const qsq = matmul(qs, transpose(q, rank, dim), rank, dim, rank); // [R, R]
  let inside = 0;
  const t = matmul(mq, qsq, rows, rank, rank);
  for (let i = 0; i < rows * rank; i++) inside += t[i] * mq[i];
  const energy = total > 0 ? Math.min(1, inside / total) : 1;

  const b = inp.z ? leastSquaresUp(inp.z, n, dim, m, rows, q, rank, mq) : mq;
  return { q, b, rank, informative, energy };
}

/** Complete k orthonormal rows with the top eigenvectors of the remaining activation covariance, up to `rank` rows. */
function withBallast(q0: Mat, k: number, sigma: Mat, dim: number, rank: number): Mat {
  // P_perp Sigma P_perp, P_perp = I - q0^T q0
  const proj = new Float64Array(dim * dim);
  for (let i = 0; i < dim; i++) proj[i * dim + i] = 1;
  const g = gram(q0, k, dim);
  for (let i = 0; i < dim * dim; i++) proj[i] -= g[i];
  const rest = matmul(matmul(proj, sigma, dim, dim, dim), proj, dim, dim, dim);
  for (let i = 0; i < dim; i++) for (let j = 0; j < i; j++) rest[i * dim + j] = rest[j * dim + i] = 0.5 * (rest[i * dim + j] + rest[j * dim + i]);
  const eig = symEig(rest, dim);
  // candidates: q0's rows, then the complement's eigenvectors by variance, then the unit vectors (in case of ties)
  const cand = new Float64Array((k + 2 * dim) * dim);
  cand.set(q0.subarray(0, k * dim));
  for (let c = 0; c < dim; c++) for (let i = 0; i < dim; i++) cand[(k + c) * dim + i] = eig.vectors[i * dim + c];
  for (let c = 0; c < dim; c++) cand[(k + dim + c) * dim + c] = 1;
  const all = orthonormalizeRows(cand, k + 2 * dim, dim, 1e-8);
  if (all.q.length < rank * dim) throw new MlaError(`latent: could not complete ${rank} orthonormal directions`);
  return all.q.slice(0, rank * dim);
}

/** Weight of the pull toward the weights-only up-projection in leastSquaresUp, relative to the latents' energy. */
export const UP_RIDGE = 1e-3;

/**
 * B [rows, R] minimizing sum_t ||M z_t - B RMSNorm(q z_t)||^2 + lambda ||B - B0||^2 over the calibration samples:
 * the up-projection fitted to the latents as deepseek_v3 normalizes them, pulled slightly toward B0 = M q^T (exact
 * for unit-RMS latents) so that latent directions the samples do not visit keep the weights' answer.
 * lambda = UP_RIDGE tr(C^T C) / R.
 */
function leastSquaresUp(z: ArrayLike<number>, n: number, dim: number, m: ArrayLike<number>, rows: number, q: Mat, rank: number, b0: Mat): Mat {
  const c = matmul(z, transpose(q, rank, dim), n, dim, rank); // [n, R]
  for (let t = 0; t < n; t++) {
    let ss = 0;
    for (let j = 0; j < rank; j++) ss += c[t * rank + j] ** 2;
    const inv = 1 / Math.sqrt(ss / rank + LATENT_EPS);
    for (let j = 0; j < rank; j++) c[t * rank + j] *= inv;
  }
  const y = matmul(z, transpose(m, rows, dim), n, dim, rows); // [n, rows]
  const ctc = gram(c, n, rank);
  const cty = matmul(transpose(c, n, rank), y, rank, n, rows); // [R, rows]
  let tr = 0;
  for (let j = 0; j < rank; j++) tr += ctc[j * rank + j];
  const lambda = (UP_RIDGE * tr) / rank;
  for (let j = 0; j < rank; j++) {
    ctc[j * rank + j] += lambda;
    for (let i = 0; i < rows; i++) cty[j * rows + i] += lambda * b0[i * rank + j];
  }
  const bt = solveSpd(ctc, cty, rank, rows, 1e-12);
  return transpose(bt, rank, rows);
}
