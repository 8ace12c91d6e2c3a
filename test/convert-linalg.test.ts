import { test } from "node:test";
import assert from "node:assert/strict";
import { gram, matmul, orthonormalizeRows, solveSpd, svd, symEig, transpose } from "../src/convert/linalg.js";
import { randn, relErr } from "./helpers.js";

/** The textbook triple loop, the reference for every product below. */
function naiveMatmul(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let p = 0; p < k; p++) s += a[i * k + p] * b[p * n + j];
    c[i * n + j] = s;
  }
  return c;
}

function f64(n: number, seed: number): Float64Array {
  return Float64Array.from(randn(n, seed));
}

function symmetric(n: number, seed: number): Float64Array {
  const a = f64(n * n, seed);
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) a[i * n + j] = a[j * n + i];
  return a;
}

/** ||Q^T Q - I|| / sqrt(k) for Q [rows, k] (column-orthonormality). */
function orthErr(q: Float64Array, rows: number, k: number): number {
  const g = gram(q, rows, k);
  let s = 0;
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) s += (g[i * k + j] - (i === j ? 1 : 0)) ** 2;
  return Math.sqrt(s / k);
}

test("matmul, transpose and gram equal the triple loop on odd sizes", () => {
  const a = f64(7 * 5, 1), b = f64(5 * 9, 2);
  assert.ok(relErr(matmul(a, b, 7, 5, 9), naiveMatmul(a, b, 7, 5, 9)) < 1e-15, "matmul");
  const at = transpose(a, 7, 5);
  assert.equal(at[3 * 7 + 6], a[6 * 5 + 3], "transpose moves (6, 3) to (3, 6)");
  assert.ok(relErr(gram(a, 7, 5), naiveMatmul(at, a, 5, 7, 5)) < 1e-15, "gram is A^T A");
});

test("symEig: V diag(values) V^T rebuilds random symmetric matrices (odd sizes, a repeated eigenvalue), V orthonormal, values sorted", () => {
  for (const [n, seed] of [[1, 3], [7, 4], [13, 5], [24, 6]]) {
    const a = symmetric(n, seed);
    const { values, vectors } = symEig(a, n);
    const vd = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) vd[i * n + k] = vectors[i * n + k] * values[k];
    const rebuilt = naiveMatmul(vd, transpose(vectors, n, n), n, n, n);
    assert.ok(relErr(rebuilt, a) < 1e-13, `n=${n}: reconstruction error ${relErr(rebuilt, a)}`);
    assert.ok(orthErr(vectors, n, n) < 1e-13, `n=${n}: V^T V = I (error ${orthErr(vectors, n, n)})`);
    for (let k = 1; k < n; k++) assert.ok(values[k - 1] >= values[k], `n=${n}: eigenvalues sorted largest first`);
    let tr = 0, sum = 0;
    for (let i = 0; i < n; i++) (tr += a[i * n + i]), (sum += values[i]);
    assert.ok(Math.abs(tr - sum) < 1e-12 * (Math.abs(tr) + n), `n=${n}: trace ${tr} equals the eigenvalue sum ${sum}`);
  }
  // a projector: eigenvalue 1 three times, 0 twice
  const b = f64(5 * 3, 7);
  const q = orthonormalizeRows(transpose(b, 5, 3), 3, 5).q; // [3, 5]
  const p = gram(q, 3, 5);
  const e = symEig(p, 5);
  assert.ok(relErr(e.values, [1, 1, 1, 0, 0]) < 1e-13, `projector eigenvalues ${Array.from(e.values)}`);
  assert.throws(() => symEig([1, 2, 3, 4], 2), /not symmetric/, "a non-symmetric matrix is refused");
});

test("svd: U diag(s) V^T rebuilds tall, wide and rank-deficient matrices; s^2 equals eig(A^T A)", () => {
  const lowRank = naiveMatmul(f64(11 * 3, 8), f64(3 * 7, 9), 11, 3, 7);
  for (const [a, m, n, name] of [[f64(9 * 5, 10), 9, 5, "tall"], [f64(5 * 9, 11), 5, 9, "wide"], [lowRank, 11, 7, "rank 3"]] as const) {
    const { u, s, v, k } = svd(a, m, n);
    assert.equal(k, Math.min(m, n), `${name}: thin SVD has min(m, n) values`);
    const us = new Float64Array(m * k);
    for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) us[i * k + j] = u[i * k + j] * s[j];
    const rebuilt = naiveMatmul(us, transpose(v, n, k), m, k, n);
    assert.ok(relErr(rebuilt, a) < 1e-13, `${name}: reconstruction error ${relErr(rebuilt, a)}`);
    assert.ok(orthErr(v, n, k) < 1e-13, `${name}: V has orthonormal columns`);
    const ev = symEig(gram(a, m, n), n).values;
    // compared squared: sqrt of a rounding-level eigenvalue (rank-deficient case) is not a good reference
    const s2 = Array.from({ length: k }, (_, i) => s[i] * s[i]);
    assert.ok(relErr(s2, ev.subarray(0, k)) < 1e-12, `${name}: s^2 vs eig(A^T A): ${relErr(s2, ev.subarray(0, k))}`);
  }
  const { s } = svd(lowRank, 11, 7);
  assert.ok(s[3] < 1e-12 * s[0], `rank 3: the fourth singular value ${s[3]} is zero`);
});

test("orthonormalizeRows keeps the span in order and drops dependent rows", () => {
  const a = f64(4 * 9, 12);
  // rows: a0, a1, a0 + 2 a1 (dependent), a2, a3
  const rows = new Float64Array(5 * 9);
  rows.set(a.subarray(0, 18));
  for (let j = 0; j < 9; j++) rows[2 * 9 + j] = a[j] + 2 * a[9 + j];
  rows.set(a.subarray(18, 36), 27);
  const { q, kept } = orthonormalizeRows(rows, 5, 9);
  assert.deepEqual(kept, [0, 1, 3, 4], "the dependent third row is dropped");
  assert.ok(orthErr(transpose(q, 4, 9), 9, 4) < 1e-14, "rows are orthonormal");
  // each original row lies in the span: projecting onto q reproduces it
  const proj = naiveMatmul(naiveMatmul(rows, transpose(q, 4, 9), 5, 9, 4), q, 5, 4, 9);
  assert.ok(relErr(proj, rows) < 1e-14, `rows lie in span(q): ${relErr(proj, rows)}`);
  // nested: the first kept row is a0 normalized
  const n0 = Math.hypot(...a.subarray(0, 9));
  assert.ok(relErr(q.subarray(0, 9), Array.from(a.subarray(0, 9), (x) => x / n0)) < 1e-15, "the first row is a0 / |a0|");
});

test("solveSpd solves A X = B for a random positive definite A", () => {
  const n = 7, k = 3;
  const m = f64(11 * n, 13);
  const a = gram(m, 11, n);
  const b = f64(n * k, 14);
  const x = solveSpd(a, b, n, k, 0);
  assert.ok(relErr(naiveMatmul(a, x, n, n, k), b) < 1e-12, `residual ${relErr(naiveMatmul(a, x, n, n, k), b)}`);
  assert.throws(() => solveSpd([-1, 0, 0, -1], [1, 1], 2, 1, 0), /not positive definite/, "a negative definite matrix is refused");
});
