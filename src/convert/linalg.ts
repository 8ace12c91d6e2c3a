/**
 * Dense float64 linear algebra for the GQA/MHA -> MLA conversion (./convert.ts): the matrices there are at most a
 * few hundred wide (hidden size, 2 n_kv head_dim), so plain O(n^3) Jacobi methods are fast enough and exact to
 * rounding. Every matrix is a row-major Float64Array with its sizes passed beside it.
 *
 *   symEig      eigendecomposition of a symmetric matrix (cyclic Jacobi rotations)
 *   svd         thin singular value decomposition (one-sided Jacobi, Hestenes)
 *   orthonormalizeRows   Gram-Schmidt of rows in order (twice, for orthogonality to rounding), dropping dependent rows
 *   solveSpd    (A + ridge I) X = B for symmetric positive (semi)definite A (Cholesky)
 *   matmul, transpose, gram
 */
import { MlaError } from "../errors.js";

export type Mat = Float64Array;

/** C [m, n] = A [m, k] B [k, n]. */
export function matmul(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Mat {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    const ci = i * n;
    for (let p = 0; p < k; p++) {
      const aip = a[i * k + p];
      if (aip === 0) continue;
      const bp = p * n;
      for (let j = 0; j < n; j++) c[ci + j] += aip * b[bp + j];
    }
  }
  return c;
}

/** A^T [n, m] of A [m, n]. */
export function transpose(a: ArrayLike<number>, m: number, n: number): Mat {
  const t = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = a[i * n + j];
  return t;
}

/** A^T A [n, n] of A [m, n] (symmetric). */
export function gram(a: ArrayLike<number>, m: number, n: number): Mat {
  const g = new Float64Array(n * n);
  for (let r = 0; r < m; r++) {
    const o = r * n;
    for (let i = 0; i < n; i++) {
      const ai = a[o + i];
      if (ai === 0) continue;
      for (let j = i; j < n; j++) g[i * n + j] += ai * a[o + j];
    }
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) g[i * n + j] = g[j * n + i];
  return g;
}

export interface Eig {
  /** Eigenvalues, largest first. */
  readonly values: Float64Array;
  /** [n, n]: column k (vectors[i n + k], i = 0..n-1) is the unit eigenvector of values[k]. */
  readonly vectors: Mat;
}

/**
 * Eigendecomposition A = V diag(values) V^T of a symmetric n x n matrix by cyclic Jacobi rotations (each rotation
 * zeroes one off-diagonal pair; sweeps repeat until the off-diagonal mass is below 1e-30 of the total). Only the
 * upper triangle's symmetry is assumed, not checked beyond a rough test.
 */
export function symEig(aIn: ArrayLike<number>, n: number): Eig {
  if (aIn.length !== n * n) throw new MlaError(`symEig: expected ${n * n} values, got ${aIn.length}`);
  const a = Float64Array.from(aIn);
  let total = 0, asym = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    total += a[i * n + j] ** 2;
    asym += (a[i * n + j] - a[j * n + i]) ** 2;
  }
  if (asym > 1e-18 * total + 1e-300) throw new MlaError("symEig: the matrix is not symmetric");
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) off += a[i * n + j] ** 2;
    if (off <= 1e-30 * total || off === 0) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const app = a[p * n + p], aqq = a[q * n + q];
        // rotation angle that zeroes a[p][q] (Golub & Van Loan 8.5.2, the smaller root for stability)
        const tau = (aqq - app) / (2 * apq);
        const t = Math.sign(tau || 1) / (Math.abs(tau) + Math.sqrt(1 + tau * tau));
        const c = 1 / Math.sqrt(1 + t * t), s = t * c;
        for (let k = 0; k < n; k++) {
          // A <- A J (columns p, q)
          const akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          // A <- J^T A (rows p, q)
          const apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        a[p * n + q] = a[q * n + p] = 0;
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p], vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => a[y * n + y] - a[x * n + x]);
  const values = Float64Array.from(order, (i) => a[i * n + i]);
  const vectors = new Float64Array(n * n);
  order.forEach((src, k) => {
    for (let i = 0; i < n; i++) vectors[i * n + k] = v[i * n + src];
  });
  return { values, vectors };
}

export interface Svd {
  /** [m, k], orthonormal columns (k = min(m, n)); columns of zero singular values are zero. */
  readonly u: Mat;
  /** k singular values, largest first. */
  readonly s: Float64Array;
  /** [n, k], orthonormal columns. */
  readonly v: Mat;
  readonly k: number;
}

/**
 * Thin SVD A = U diag(s) V^T of A [m, n] by one-sided Jacobi (Hestenes): rotate pairs of columns of A until all
 * are orthogonal; their norms are the singular values, V accumulates the rotations. Works on A^T when m < n.
 * Accurate for small singular values too (no A^T A is formed).
 */
export function svd(a: ArrayLike<number>, m: number, n: number): Svd {
  if (a.length !== m * n) throw new MlaError(`svd: expected ${m * n} values, got ${a.length}`);
  if (m < n) {
    const t = svd(transpose(a, m, n), n, m);
    return { u: t.v, s: t.s, v: t.u, k: t.k };
  }
  // columns of A as rows of w (n rows of length m) for contiguous access
  const w = transpose(a, m, n);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        let alpha = 0, beta = 0, gamma = 0;
        const op = p * m, oq = q * m;
        for (let i = 0; i < m; i++) {
          alpha += w[op + i] * w[op + i];
          beta += w[oq + i] * w[oq + i];
          gamma += w[op + i] * w[oq + i];
        }
        if (gamma === 0 || Math.abs(gamma) <= 1e-15 * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t), s = c * t;
        for (let i = 0; i < m; i++) {
          const xp = w[op + i], xq = w[oq + i];
          w[op + i] = c * xp - s * xq;
          w[oq + i] = s * xp + c * xq;
        }
        for (let i = 0; i < n; i++) {
          const vp = v[p * n + i], vq = v[q * n + i];
          v[p * n + i] = c * vp - s * vq;
          v[q * n + i] = s * vp + c * vq;
        }
      }
    }
    if (!rotated) break;
  }
  // v rows are the right singular vectors (rotations were applied to rows of v = columns of V)
  const norms = Float64Array.from({ length: n }, (_, j) => {
    let ss = 0;
    for (let i = 0; i < m; i++) ss += w[j * m + i] ** 2;
    return Math.sqrt(ss);
  });
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => norms[y] - norms[x]);
  const k = n;
  const u = new Float64Array(m * k), vv = new Float64Array(n * k), s = new Float64Array(k);
  order.forEach((j, col) => {
    s[col] = norms[j];
    for (let i = 0; i < n; i++) vv[i * k + col] = v[j * n + i];
    if (norms[j] > 0) for (let i = 0; i < m; i++) u[i * k + col] = w[j * m + i] / norms[j];
  });
  return { u, s, v: vv, k };
}

/**
 * Orthonormal rows spanning, in order, the rows of A [rows, cols]: row i of the result spans (with the earlier ones)
 * the first rows of A that were kept. A row whose part orthogonal to the kept ones is below tol times its own norm
 * (or times `scale`, when given, to compare against the whole matrix) is dropped. Classical Gram-Schmidt applied
 * twice ("twice is enough"), float64. Returns the kept rows and their indices in A.
 */
export function orthonormalizeRows(a: ArrayLike<number>, rows: number, cols: number, tol = 1e-10, scale?: number): { q: Mat; kept: number[] } {
  const out: number[][] = [];
  const kept: number[] = [];
  const row = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) row[j] = a[r * cols + j];
    let n0 = 0;
    for (let j = 0; j < cols; j++) n0 += row[j] * row[j];
    n0 = Math.sqrt(n0);
    if (n0 === 0) continue;
    for (let pass = 0; pass < 2; pass++) {
      for (const b of out) {
        let d = 0;
        for (let j = 0; j < cols; j++) d += b[j] * row[j];
        for (let j = 0; j < cols; j++) row[j] -= d * b[j];
      }
    }
    let n1 = 0;
    for (let j = 0; j < cols; j++) n1 += row[j] * row[j];
    n1 = Math.sqrt(n1);
    if (n1 <= tol * (scale ?? n0)) continue;
    out.push(Array.from(row, (x) => x / n1));
    kept.push(r);
    if (out.length === cols) break;
  }
  const q = new Float64Array(out.length * cols);
  out.forEach((b, i) => q.set(b, i * cols));
  return { q, kept };
}

/**
 * X [n, k] with (A + ridge I) X = B, A [n, n] symmetric positive semidefinite, B [n, k], by Cholesky. `ridge` is
 * relative to the mean diagonal of A (default 1e-12: only guards exactly singular systems).
 */
export function solveSpd(a: ArrayLike<number>, b: ArrayLike<number>, n: number, k: number, ridge = 1e-12): Mat {
  let diag = 0;
  for (let i = 0; i < n; i++) diag += a[i * n + i];
  const lam = (diag / n) * ridge || 1e-300;
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * n + j] + (i === j ? lam : 0);
      for (let p = 0; p < j; p++) s -= l[i * n + p] * l[j * n + p];
      if (i === j) {
        if (!(s > 0)) throw new MlaError("solveSpd: the matrix is not positive definite");
        l[i * n + i] = Math.sqrt(s);
      } else {
        l[i * n + j] = s / l[j * n + j];
      }
    }
  }
  const x = Float64Array.from(b);
  for (let c = 0; c < k; c++) {
    for (let i = 0; i < n; i++) {
      let s = x[i * k + c];
      for (let p = 0; p < i; p++) s -= l[i * n + p] * x[p * k + c];
      x[i * k + c] = s / l[i * n + i];
    }
    for (let i = n - 1; i >= 0; i--) {
      let s = x[i * k + c];
      for (let p = i + 1; p < n; p++) s -= l[p * n + i] * x[p * k + c];
      x[i * k + c] = s / l[i * n + i];
    }
  }
  return x;
}
