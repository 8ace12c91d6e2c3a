import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_ROPE, RotaryEmbedding, ropeInvFreq, type RopeScaling } from "../src/attention/rope.js";
import { ropeHalves } from "../src/backends/cpu/rope.js";
import { checkRopeFrequencies, representableStrides, ropeChoice, selectRope } from "../src/convert/rope-select.js";
import { sharedRopeKey } from "../src/convert/shared-rope.js";
import { attentionDistances, meanRotation } from "../src/convert/nope-rotation.js";
import { randn, relErr } from "./helpers.js";

test("rope-select: every representable stride keeps pairs whose deepseek frequencies equal the source's", () => {
  for (const [d, r] of [[16, 8], [16, 4], [10, 6], [6, 2], [6, 6]]) {
    const strides = representableStrides(d, r);
    assert.ok(strides.length >= 1 && strides[0] === 1, `d=${d} r=${r}: stride 1 always fits`);
    for (const k of strides) {
      const c = ropeChoice(10000, d, r, k);
      assert.ok(c.pairs[c.pairs.length - 1] < d / 2, `d=${d} r=${r} k=${k}: pairs inside the head`);
      const src = ropeInvFreq(DEFAULT_ROPE, d), dst = ropeInvFreq({ ...DEFAULT_ROPE, theta: c.theta }, r);
      const kept = c.pairs.map((j) => src[j]);
      assert.ok(relErr(dst, kept) < 1e-14, `d=${d} r=${r} k=${k}: frequencies differ by ${relErr(dst, kept)}`);
      checkRopeFrequencies(DEFAULT_ROPE, d, r, c);
    }
    const max = strides[strides.length - 1];
    assert.ok((r / 2 - 1) * (max + 1) > d / 2 - 1 || r === 2, `d=${d} r=${r}: stride ${max + 1} would not fit`);
  }
  assert.deepEqual(selectRope(10000, 16, 8, "high").pairs, [0, 1, 2, 3], "high keeps the fastest pairs");
  assert.deepEqual(selectRope(10000, 16, 8, "uniform").pairs, [0, 2, 4, 6], "uniform keeps every d/r-th pair");
  const scores = [5, 0, 4, 0, 4, 0, 4, 0];
  assert.equal(selectRope(10000, 16, 8, "norm", scores).stride, 2, "norm picks the stride with the largest score sum");
  assert.throws(() => selectRope(10000, 16, 8, "norm"), /one score per RoPE pair/, "norm needs scores");
  assert.throws(() => ropeChoice(10000, 16, 7, 1), /even integer/, "odd rope dim");
  assert.throws(() => ropeChoice(10000, 16, 18, 1), /exceeds the source's head_dim 16/, "rope dim above head_dim");
  assert.throws(() => ropeChoice(10000, 16, 8, 3), /does not fit/, "a stride past the head");
});

test("rope-select: llama3 scaling passes when only its unscaled fast pairs are kept and fails otherwise; linear always fails", () => {
  const llama3: RopeScaling = { ...DEFAULT_ROPE, type: "llama3", factor: 4, originalMaxPositionEmbeddings: 32, lowFreqFactor: 1, highFreqFactor: 4 };
  // wavelengths 2 pi / theta_j below 32 / 4 are unscaled: with d = 16, base 1e4, only pair 0 (2 pi < 8)
  checkRopeFrequencies(llama3, 16, 2, selectRope(10000, 16, 2, "high"));
  assert.throws(() => checkRopeFrequencies(llama3, 16, 4, selectRope(10000, 16, 4, "high")), /pair 1 .*cannot reproduce/, "llama3 scales pair 1 and up");
  const linear: RopeScaling = { ...DEFAULT_ROPE, type: "linear", factor: 2 };
  assert.throws(() => checkRopeFrequencies(linear, 8, 2, selectRope(10000, 8, 2, "high")), /linear.*cannot reproduce/, "linear scales every pair");
});

/** Top eigenvector of a small symmetric matrix by power iteration (the reference for sharedRopeKey). */
function powerIteration(c: Float64Array, n: number): { v: Float64Array; lambda: number } {
  let v = Float64Array.from({ length: n }, (_, i) => 1 + i * 0.1);
  let lambda = 0;
  for (let it = 0; it < 5000; it++) {
    const w = new Float64Array(n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) w[i] += c[i * n + j] * v[j];
    lambda = Math.hypot(...w);
    v = w.map((x) => x / lambda);
  }
  return { v, lambda };
}

test("sharedRopeKey: u is the top eigenvector of each kept pair's cross-head key covariance (power iteration); proportional heads are captured exactly", () => {
  const G = 3, d = 6, D = 7, pairs = [0, 2];
  const wk = randn(G * d * D, 21);
  const m = Float64Array.from(randn(D * D, 22));
  const sigma = new Float64Array(D * D); // m m^T: positive definite
  for (let a = 0; a < D; a++) for (let b = 0; b < D; b++) for (let k = 0; k < D; k++) sigma[a * D + b] += m[a * D + k] * m[b * D + k];
  const { u, captured } = sharedRopeKey(wk, sigma, G, d, D, pairs);
  pairs.forEach((j, pi) => {
    const c = new Float64Array(G * G);
    for (const dim of [j, j + d / 2]) for (let g = 0; g < G; g++) for (let h = 0; h < G; h++) {
      for (let a = 0; a < D; a++) for (let b = 0; b < D; b++) c[g * G + h] += wk[(g * d + dim) * D + a] * sigma[a * D + b] * wk[(h * d + dim) * D + b];
    }
    const ref = powerIteration(c, G);
    const got = u.subarray(pi * G, (pi + 1) * G);
    const sign = Math.sign(got[0] * ref.v[0]);
    assert.ok(relErr(got.map((x) => x * sign), ref.v) < 1e-9, `pair ${j}: u differs from the power-iteration vector by ${relErr(got.map((x) => x * sign), ref.v)}`);
    const tr = c[0] + c[G + 1] + c[2 * G + 2];
    assert.ok(Math.abs(captured[pi] - ref.lambda / tr) < 1e-9, `pair ${j}: captured ${captured[pi]} vs ${ref.lambda / tr}`);
  });
  // heads proportional per pair (factors f_g): the shared key holds everything, u ~ f / |f|
  const prop = wk.slice();
  const f = [1, -0.5, 2];
  for (let g = 1; g < G; g++) for (const dim of [0, 3]) for (let x = 0; x < D; x++) prop[(g * d + dim) * D + x] = f[g] * wk[dim * D + x];
  const p = sharedRopeKey(prop, sigma, G, d, D, [0]);
  const nf = Math.hypot(...f), sgn = Math.sign(p.u[2]); // largest |component| (f = 2) is positive
  assert.ok(Math.abs(p.captured[0] - 1) < 1e-12, `proportional heads: captured ${p.captured[0]}`);
  assert.ok(relErr(Array.from(p.u), f.map((x) => (sgn * x) / nf)) < 1e-12, "proportional heads: u = f / |f|");
});

test("meanRotation: q' = M^T q gives q'.k = E over the distances of (R(theta t) q).(R(theta (t - Delta)) k), RoPE by halves", () => {
  const theta = 0.37, maxLen = 9;
  const dist = Float64Array.from(randn(maxLen, 31), (x) => Math.abs(x));
  const tot = dist.reduce((a, b) => a + b, 0);
  for (let i = 0; i < maxLen; i++) dist[i] /= tot;
  const [qa, qb, ka, kb] = randn(4, 32);
  const rot = (a: number, b: number, ang: number) => [a * Math.cos(ang) - b * Math.sin(ang), b * Math.cos(ang) + a * Math.sin(ang)];
  const t = 11;
  let ref = 0;
  for (let delta = 0; delta < maxLen; delta++) {
    const [q0, q1] = rot(qa, qb, theta * t), [k0, k1] = rot(ka, kb, theta * (t - delta));
    ref += dist[delta] * (q0 * k0 + q1 * k1);
  }
  const { c, s } = meanRotation(dist, 0, maxLen, theta);
  const got = (c * qa - s * qb) * ka + (s * qa + c * qb) * kb; // as convert.ts writes the query rows
  assert.ok(Math.abs(got - ref) < 1e-12 * (Math.abs(ref) + 1), `mean-rotation score ${got} vs ${ref}`);
});

test("attentionDistances equals a direct causal-softmax histogram (ropeHalves kernel), rows sum to 1", () => {
  const H = 4, G = 2, d = 6, D = 5, windows = [7, 4];
  const wq = randn(H * d * D, 41), wk = randn(G * d * D, 42), gamma = randn(D, 43).map((x) => 1 + 0.2 * x);
  const n = windows[0] + windows[1];
  const z = randn(n * D, 44);
  const rope: RopeScaling = { ...DEFAULT_ROPE, theta: 100 };
  const { dist, maxLen } = attentionDistances({ wq, wk, gamma, z, windows, H, G, d, D, rope });
  assert.equal(maxLen, 7, "histogram over the longest window");
  const ref = new Float64Array(H * maxLen);
  const table = new RotaryEmbedding(rope, d).table(0, maxLen);
  let row0 = 0;
  for (const T of windows) {
    const q = new Float32Array(T * H * d), k = new Float32Array(T * G * d);
    for (let t = 0; t < T; t++) for (let x = 0; x < D; x++) {
      const xv = gamma[x] * z[(row0 + t) * D + x];
      for (let o = 0; o < H * d; o++) q[t * H * d + o] += wq[o * D + x] * xv;
      for (let o = 0; o < G * d; o++) k[t * G * d + o] += wk[o * D + x] * xv;
    }
    ropeHalves(q, T, H, d, 0, H * d, d, table.cos, table.sin);
    ropeHalves(k, T, G, d, 0, G * d, d, table.cos, table.sin);
    for (let h = 0; h < H; h++) for (let t = 0; t < T; t++) {
      const sc: number[] = [];
      for (let s = 0; s <= t; s++) {
        let dot = 0;
        for (let c = 0; c < d; c++) dot += q[(t * H + h) * d + c] * k[(s * G + Math.floor(h / 2)) * d + c];
        sc.push(dot / Math.sqrt(d));
      }
      const mx = Math.max(...sc), e = sc.map((v) => Math.exp(v - mx)), sum = e.reduce((a, b) => a + b, 0);
      for (let s = 0; s <= t; s++) ref[h * maxLen + t - s] += e[s] / sum / n;
    }
    row0 += T;
  }
  assert.ok(relErr(dist, ref) < 1e-5, `histogram differs by ${relErr(dist, ref)}`);
  for (let h = 0; h < H; h++) {
    const s = dist.subarray(h * maxLen, (h + 1) * maxLen).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(s - 1) < 1e-12, `head ${h}: mass ${s}`);
  }
});
