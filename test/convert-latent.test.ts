import { test } from "node:test";
import assert from "node:assert/strict";
import { COVARIANCE_SHRINK, LATENT_EPS, UP_RIDGE, covariance, fitLatent } from "../src/convert/latent.js";
import { gram, matmul, svd, transpose } from "../src/convert/linalg.js";
import { randn, relErr } from "./helpers.js";

function f64(n: number, seed: number): Float64Array {
  return Float64Array.from(randn(n, seed));
}

/** Row-orthonormality error ||Q Q^T - I|| of q [rows, cols]. */
function rowOrthErr(q: Float64Array, rows: number, cols: number): number {
  const g = matmul(q, transpose(q, rows, cols), rows, cols, rows);
  let s = 0;
  for (let i = 0; i < rows; i++) for (let j = 0; j < rows; j++) s += (g[i * rows + j] - (i === j ? 1 : 0)) ** 2;
  return Math.sqrt(s);
}

/** Samples of z with unit RMS rows (what calibrate() produces), anisotropic. */
function unitRmsSamples(n: number, dim: number, seed: number): Float64Array {
  const z = f64(n * dim, seed);
  for (let t = 0; t < n; t++) {
    for (let j = 0; j < dim; j++) z[t * dim + j] *= 1 + j * 0.3;
    let ss = 0;
    for (let j = 0; j < dim; j++) ss += z[t * dim + j] ** 2;
    const inv = 1 / Math.sqrt(ss / dim);
    for (let j = 0; j < dim; j++) z[t * dim + j] *= inv;
  }
  return z;
}

test("covariance is Z^T Z / n (the identity without samples)", () => {
  const z = f64(9 * 5, 1);
  const ref = new Float64Array(25);
  for (let t = 0; t < 9; t++) for (let a = 0; a < 5; a++) for (let b = 0; b < 5; b++) ref[a * 5 + b] += (z[t * 5 + a] * z[t * 5 + b]) / 9;
  assert.ok(relErr(covariance(z, 9, 5), ref) < 1e-15, "Z^T Z / n");
  assert.ok(relErr(covariance(null, 0, 3), [1, 0, 0, 0, 1, 0, 0, 0, 1]) < 1e-15, "identity");
  const s = COVARIANCE_SHRINK, tr = ref[0] + ref[6] + ref[12] + ref[18] + ref[24];
  const shrunk = ref.map((v, i) => (1 - s) * v + (i % 6 === 0 ? (s * tr) / 5 : 0));
  assert.ok(relErr(covariance(z, 9, 5, s), shrunk) < 1e-15, "shrunk toward tr/dim I");
});

test("fitLatent without data: full rank is exact (B Q = M, Q orthonormal); rank R gives the truncated SVD of M", () => {
  const rows = 11, dim = 7;
  const m = f64(rows * dim, 2);
  const full = fitLatent({ m, rows, dim, rank: dim });
  assert.ok(rowOrthErr(full.q, dim, dim) < 1e-13, "Q is orthogonal");
  assert.ok(relErr(matmul(full.b, full.q, rows, dim, dim), m) < 1e-13, `B Q = M: ${relErr(matmul(full.b, full.q, rows, dim, dim), m)}`);
  assert.ok(Math.abs(full.energy - 1) < 1e-13 && full.informative === dim, "all energy, all dims informative");
  const R = 3, { u, s, v } = svd(m, rows, dim);
  const best = new Float64Array(rows * dim); // U_R S_R V_R^T
  for (let i = 0; i < rows; i++) for (let j = 0; j < dim; j++) for (let k = 0; k < R; k++) best[i * dim + j] += u[i * dim + k] * s[k] * v[j * dim + k];
  const low = fitLatent({ m, rows, dim, rank: R });
  assert.ok(relErr(matmul(low.b, low.q, rows, R, dim), best) < 1e-12, `rank ${R}: B Q equals the truncated SVD (${relErr(matmul(low.b, low.q, rows, R, dim), best)})`);
  const e = (s[0] ** 2 + s[1] ** 2 + s[2] ** 2) / s.reduce((a, x) => a + x * x, 0);
  assert.ok(Math.abs(low.energy - e) < 1e-12, `energy ${low.energy} vs sum of the top singular values squared ${e}`);
  assert.throws(() => fitLatent({ m, rows, dim, rank: dim + 1 }), /1\.\.7/, "rank above dim");
});

test("fitLatent: past the rank of M the extra dims are orthonormal ballast and B Q = M stays exact", () => {
  const rows = 6, dim = 9;
  const m = matmul(f64(rows * 2, 3), f64(2 * dim, 4), rows, 2, dim); // rank 2
  const z = unitRmsSamples(40, dim, 5);
  for (const rank of [2, 5, 9]) {
    const lat = fitLatent({ m, rows, dim, rank });
    assert.equal(lat.informative, 2, `rank ${rank}: two informative dims`);
    assert.ok(rowOrthErr(lat.q, rank, dim) < 1e-12, `rank ${rank}: Q orthonormal`);
    assert.ok(relErr(matmul(lat.b, lat.q, rows, rank, dim), m) < 1e-12, `rank ${rank}: B Q = M`);
    const withData = fitLatent({ m, rows, dim, rank, z, n: 40 });
    assert.ok(rowOrthErr(withData.q, rank, dim) < 1e-12, `rank ${rank} with data: Q orthonormal`);
  }
});

test("fitLatent with data: B is the (lightly ridged) least-squares fit to the RMS-normalized latents; at full rank it is exact for unit-RMS inputs", () => {
  const rows = 10, dim = 6, n = 50;
  const m = f64(rows * dim, 6), z = unitRmsSamples(n, dim, 7);
  const norm = (q: Float64Array, R: number) => {
    const c = matmul(z, transpose(q, R, dim), n, dim, R);
    for (let t = 0; t < n; t++) {
      let ss = 0;
      for (let j = 0; j < R; j++) ss += c[t * R + j] ** 2;
      for (let j = 0; j < R; j++) c[t * R + j] /= Math.sqrt(ss / R + LATENT_EPS);
    }
    return c;
  };
  const y = matmul(z, transpose(m, rows, dim), n, dim, rows);
  const full = fitLatent({ m, rows, dim, rank: dim, z, n });
  const yHat = matmul(norm(full.q, dim), transpose(full.b, rows, dim), n, dim, rows);
  assert.ok(relErr(yHat, y) < 1e-6, `full rank through the latent norm: ${relErr(yHat, y)}`);
  const R = 3, low = fitLatent({ m, rows, dim, rank: R, z, n });
  const c = norm(low.q, R);
  const resid = matmul(c, transpose(low.b, rows, R), n, R, rows).map((v, i) => y[i] - v);
  // normal equations of the ridge toward B0 = M Q^T: C^T (Y - C B^T) = lambda (B - B0)^T, lambda = UP_RIDGE tr(C^T C) / R
  const grad = matmul(transpose(c, n, R), resid, R, n, rows);
  const ctc = gram(c, n, R);
  const lambda = (UP_RIDGE * (ctc[0] + ctc[R + 1] + ctc[2 * R + 2])) / R;
  const b0 = matmul(m, transpose(low.q, R, dim), rows, dim, R);
  const rhs = new Float64Array(R * rows);
  for (let j = 0; j < R; j++) for (let i = 0; i < rows; i++) rhs[j * rows + i] = lambda * (low.b[i * R + j] - b0[i * R + j]);
  assert.ok(relErr(grad, rhs) < 1e-8, `normal equations hold: ${relErr(grad, rhs)}`);
  // energy: tr(M P S P M^T) / tr(M S M^T), P the projection onto span(Q), S the (shrunk) sample covariance
  const S = covariance(z, n, dim, COVARIANCE_SHRINK), P = gram(low.q, R, dim);
  const tr = (a: Float64Array) => Array.from({ length: rows }, (_, i) => a[i * rows + i]).reduce((x, v) => x + v, 0);
  const mt = transpose(m, rows, dim);
  const num = tr(matmul(matmul(matmul(matmul(m, P, rows, dim, dim), S, rows, dim, dim), P, rows, dim, dim), mt, rows, dim, rows));
  const den = tr(matmul(matmul(m, S, rows, dim, dim), mt, rows, dim, rows));
  assert.ok(Math.abs(low.energy - num / den) < 1e-12, `energy ${low.energy} vs ${num / den}`);
});
