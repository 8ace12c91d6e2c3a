import { test } from "node:test";
import assert from "node:assert/strict";
import { attend, linear, rmsNorm, ropeInterleaved, siluMul } from "../src/backends/cpu/index.js";
import { f32Tensor } from "../src/tensor/tensor.js";
import { LatentCache } from "../src/attention/cache.js";
import { MultiHeadLatentAttention, LATENT_NORM_EPS, type MlaDims } from "../src/attention/mla.js";
import { DEFAULT_ROPE, RotaryEmbedding, attentionScale, type RopeScaling } from "../src/attention/rope.js";
import {
  attendBackward, crossEntropyLoss, embeddingBackward, embeddingForward, linearBackward, linearBackwardInput,
  linearBackwardWeight, rmsNormBackward, ropeInterleavedBackward, siluMulBackward,
} from "../src/train/grad/index.js";
import { finiteDiff, randn, relErr } from "./helpers.js";

// ---------------------------------------------------------------------------------------------------------------
// Float64 forward references, written here independently of src (and checked against the CPU kernels below).

function rand64(n: number, seed: number, scale = 1): Float64Array {
  return Float64Array.from(randn(n, seed, scale));
}

/** y = x W^T, x [T, K], W [N, K]. */
function linear64(x: Float64Array, T: number, K: number, W: Float64Array, N: number): Float64Array {
  const y = new Float64Array(T * N);
  for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += x[t * K + k] * W[n * K + k];
    y[t * N + n] = s;
  }
  return y;
}

/** RMSNorm of T rows of width D read at stride xStride; output contiguous [T, D]. */
function rmsNorm64(x: Float64Array, T: number, D: number, w: Float64Array, eps: number, xStride = D): Float64Array {
  const y = new Float64Array(T * D);
  for (let t = 0; t < T; t++) {
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[t * xStride + i] ** 2;
    const r = 1 / Math.sqrt(ss / D + eps);
    for (let i = 0; i < D; i++) y[t * D + i] = w[i] * x[t * xStride + i] * r;
  }
  return y;
}

/** Interleaved RoPE, returning a rotated copy (same strided layout as the kernel). */
function rope64(
  x: Float64Array, T: number, heads: number, d: number, offset: number, rowStride: number, headStride: number,
  cos: ArrayLike<number>, sin: ArrayLike<number>,
): Float64Array {
  const y = Float64Array.from(x);
  const half = d / 2;
  for (let t = 0; t < T; t++) for (let h = 0; h < heads; h++) for (let j = 0; j < half; j++) {
    const o = t * rowStride + h * headStride + offset + 2 * j;
    const c = cos[t * half + j], s = sin[t * half + j];
    y[o] = x[o] * c - x[o + 1] * s;
    y[o + 1] = x[o] * s + x[o + 1] * c;
  }
  return y;
}

function siluMul64(g: Float64Array, u: Float64Array): Float64Array {
  return g.map((gi, i) => (gi / (1 + Math.exp(-gi))) * u[i]);
}

/** Causal attention, q [T, H, dk], k [T, Hkv, dk], v [T, Hkv, dv] -> [T, H, dv]. */
function attend64(
  q: Float64Array, k: Float64Array, v: Float64Array, T: number, H: number, Hkv: number, dk: number, dv: number, scale: number,
): Float64Array {
  const out = new Float64Array(T * H * dv);
  const per = H / Hkv;
  for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) {
    const g = Math.floor(h / per);
    const sc: number[] = [];
    for (let s = 0; s <= t; s++) {
      let dot = 0;
      for (let i = 0; i < dk; i++) dot += q[(t * H + h) * dk + i] * k[(s * Hkv + g) * dk + i];
      sc.push(dot * scale);
    }
    const m = Math.max(...sc);
    const e = sc.map((x) => Math.exp(x - m));
    const z = e.reduce((a, b) => a + b, 0);
    for (let s = 0; s <= t; s++) for (let i = 0; i < dv; i++) out[(t * H + h) * dv + i] += (e[s] / z) * v[(s * Hkv + g) * dv + i];
  }
  return out;
}

function crossEntropy64(logits: Float64Array, targets: number[], V: number): number {
  let sum = 0, n = 0;
  targets.forEach((y, t) => {
    if (y === -100) return;
    let z = 0;
    for (let j = 0; j < V; j++) z += Math.exp(logits[t * V + j]);
    sum += Math.log(z) - logits[t * V + y];
    n++;
  });
  return sum / n;
}

function dot64(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

const fd = (p: Float64Array, f: () => number, eps?: number) => finiteDiff(p, f, eps);

const TOL = 1e-6;
function close(name: string, g: ArrayLike<number>, ref: ArrayLike<number>, tol = TOL): void {
  const e = relErr(g, ref);
  assert.ok(e < tol, `${name}: relative error ${e.toExponential(2)} >= ${tol}`);
}

// ---------------------------------------------------------------------------------------------------------------
// The float64 references compute what the engine's F32 kernels compute.

test("float64 references agree with the CPU forward kernels", () => {
  const T = 5, K = 7, N = 11;
  const x = randn(T * K, 101), W = randn(N * K, 102);
  const y = new Float32Array(T * N);
  linear(y, x, T, K, f32Tensor([N, K], W), N);
  close("linear", y, linear64(Float64Array.from(x), T, K, Float64Array.from(W), N), 1e-6);

  const w = randn(K, 103);
  const yn = new Float32Array(T * K);
  rmsNorm(yn, x, T, K, w, 1e-5);
  close("rmsNorm", yn, rmsNorm64(Float64Array.from(x), T, K, Float64Array.from(w), 1e-5), 1e-6);

  const r = randn(T * 2 * 9, 104), cos = randn(T * 2, 105), sin = randn(T * 2, 106);
  const ref = rope64(Float64Array.from(r), T, 2, 4, 3, 18, 9, cos, sin);
  ropeInterleaved(r, T, 2, 4, 3, 18, 9, cos, sin);
  close("rope", r, ref, 1e-6);

  const g = randn(13, 107, 3), u = randn(13, 108), o = new Float32Array(13);
  siluMul(o, g, u, 13);
  close("siluMul", o, siluMul64(Float64Array.from(g), Float64Array.from(u)), 1e-6);

  for (const [H, Hkv] of [[3, 3], [3, 1], [6, 2]]) {
    const dk = 6, dv = 5, scale = 0.7;
    const q = randn(T * H * dk, 110 + H), k = randn(T * Hkv * dk, 120 + Hkv), v = randn(T * Hkv * dv, 130 + Hkv);
    const out = new Float32Array(T * H * dv);
    attend(out, q, T, H, dk, { data: k, offset: 0, rowStride: Hkv * dk, headStride: dk },
      { data: v, offset: 0, rowStride: Hkv * dv, headStride: dv }, dv, Hkv, T, scale);
    close(`attend H=${H} Hkv=${Hkv}`, out, attend64(Float64Array.from(q), Float64Array.from(k), Float64Array.from(v), T, H, Hkv, dk, dv, scale), 1e-6);
  }
});

// ---------------------------------------------------------------------------------------------------------------
// One op at a time against finite differences of sum(R * y) with a fixed random R.

test("linear backward: dx = dy W, dW += dy^T x", () => {
  const T = 5, K = 7, N = 11;
  const x = rand64(T * K, 201), W = rand64(N * K, 202), R = rand64(T * N, 203);
  const f = () => dot64(linear64(x, T, K, W, N), R);
  const dx = new Float64Array(T * K);
  const dW0 = rand64(N * K, 204), dW = Float64Array.from(dW0); // accumulates onto what is there
  linearBackward(dx, dW, x, T, K, W, N, R);
  close("dx", dx, fd(x, f));
  close("dW", dW.map((v, i) => v - dW0[i]), fd(W, f));

  // strided rows and accumulate: x and dy as column slices of wider buffers
  const xs = new Float64Array(T * (K + 3)), dys = new Float64Array(T * (N + 2));
  for (let t = 0; t < T; t++) {
    xs.set(x.subarray(t * K, t * K + K), t * (K + 3) + 1);
    dys.set(R.subarray(t * N, t * N + N), t * (N + 2));
  }
  const dxs = new Float64Array(T * (K + 3)).fill(1);
  linearBackwardInput(dxs.subarray(1), dys, T, N, W, K, true, N + 2, K + 3);
  const dWs = new Float64Array(N * K);
  linearBackwardWeight(dWs, dys, xs.subarray(1), T, N, K, N + 2, K + 3);
  for (let t = 0; t < T; t++) for (let k = 0; k < K + 3; k++) {
    const inside = k >= 1 && k <= K;
    const want = 1 + (inside ? dx[t * K + k - 1] : 0);
    assert.ok(Math.abs(dxs[t * (K + 3) + k] - want) < 1e-12, `strided dx at ${t},${k}`);
  }
  close("strided dW", dWs, dW.map((v, i) => v - dW0[i]), 1e-12);

  // F32 buffers work too (training precision)
  const dx32 = new Float32Array(T * K), dW32 = new Float32Array(N * K);
  linearBackward(dx32, dW32, Float32Array.from(x), T, K, Float32Array.from(W), N, Float32Array.from(R));
  close("dx f32", dx32, dx, 1e-6);
});

test("rmsNorm backward: dx and dw (strided rows)", () => {
  const T = 5, D = 7, S = 10, eps = 1e-5;
  const x = rand64(T * S, 301, 2), w = rand64(D, 302), R = rand64(T * D, 303);
  const f = () => dot64(rmsNorm64(x, T, D, w, eps, S), R);
  const dx = new Float64Array(T * S), dw0 = rand64(D, 304), dw = Float64Array.from(dw0);
  rmsNormBackward(dx, dw, x, w, R, T, D, eps, false, S, D, S);
  close("dx", dx, fd(x, f)); // entries outside the D-wide slices: 0 both ways
  close("dw", dw.map((v, i) => v - dw0[i]), fd(w, f));

  // accumulate, contiguous, dx aliasing dy
  const xc = rand64(T * D, 305), Rc = rand64(T * D, 306);
  const fc = () => dot64(rmsNorm64(xc, T, D, w, eps), Rc);
  const g = Float64Array.from(Rc);
  rmsNormBackward(g, null, xc, w, g, T, D, eps);
  close("dx aliasing dy", g, fd(xc, fc));
});

test("ropeInterleaved backward: the transpose of the forward on its strided layout", () => {
  const T = 5, heads = 3, headStride = 9, d = 6, offset = 2, rowStride = heads * headStride + 1;
  const x = rand64(T * rowStride, 401), R = rand64(T * rowStride, 402);
  // random cos/sin (not a pure rotation), so the test tells the transpose from the inverse
  const cos = rand64(T * d / 2, 403), sin = rand64(T * d / 2, 404);
  const f = () => dot64(rope64(x, T, heads, d, offset, rowStride, headStride, cos, sin), R);
  const g = Float64Array.from(R);
  ropeInterleavedBackward(g, T, heads, d, offset, rowStride, headStride, cos, sin);
  close("dx", g, fd(x, f));

  // with the real tables (unit rotation) the backward undoes the forward
  const rot = new RotaryEmbedding(DEFAULT_ROPE, d).table(3, T);
  const y = rope64(x, T, heads, d, offset, rowStride, headStride, rot.cos, rot.sin);
  ropeInterleavedBackward(y, T, heads, d, offset, rowStride, headStride, rot.cos, rot.sin);
  close("inverse", y, x, 1e-6);
});

test("siluMul backward: d gate, d up", () => {
  const n = 13;
  const g = rand64(n, 501, 4), u = rand64(n, 502), R = rand64(n, 503);
  const f = () => dot64(siluMul64(g, u), R);
  const dg = new Float64Array(n), du = new Float64Array(n);
  siluMulBackward(dg, du, g, u, R, n);
  close("dgate", dg, fd(g, f));
  close("dup", du, fd(u, f));
});

test("embedding backward: scatter-add with repeated ids", () => {
  const V = 9, D = 5, ids = [3, 0, 3, 8, 5, 3, 0], T = ids.length;
  const E = rand64(V * D, 601), R = rand64(T * D, 602);
  const f = () => {
    const out = new Float64Array(T * D);
    embeddingForward(out, E, ids, T, D);
    return dot64(out, R);
  };
  const dE = new Float64Array(V * D);
  embeddingBackward(dE, ids, R, T, D);
  close("dE", dE, fd(E, f));
});

for (const [H, Hkv] of [[3, 3], [3, 1], [6, 2]]) {
  const kind = Hkv === H ? "MHA" : Hkv === 1 ? "MQA" : "GQA";
  test(`causal attention backward (${kind}: H=${H}, Hkv=${Hkv}): dq, dk, dv`, () => {
    const T = 5, dk = 6, dv = 5, scale = 1.3 / Math.sqrt(dk);
    const seed = 700 + 10 * H + Hkv;
    const q = rand64(T * H * dk, seed), k = rand64(T * Hkv * dk, seed + 1), v = rand64(T * Hkv * dv, seed + 2);
    const R = rand64(T * H * dv, seed + 3);
    const f = () => dot64(attend64(q, k, v, T, H, Hkv, dk, dv, scale), R);
    const dQ = new Float64Array(q.length), dK = new Float64Array(k.length), dV = new Float64Array(v.length);
    attendBackward(dQ, dK, dV, q, k, v, R, T, H, Hkv, dk, dv, scale);
    close("dq", dQ, fd(q, f));
    close("dk", dK, fd(k, f));
    close("dv", dV, fd(v, f));
    // accumulate adds on top
    const a = new Float64Array(q.length).fill(0.5);
    attendBackward(a, new Float64Array(k.length), new Float64Array(v.length), q, k, v, R, T, H, Hkv, dk, dv, scale, true);
    close("accumulate", a.map((x) => x - 0.5), dQ, 1e-12);
  });
}

test("cross-entropy LM loss: mean over non-ignored targets and dlogits", () => {
  const T = 7, V = 11, targets = [4, -100, 0, 10, 4, -100, 7];
  const logits = rand64(T * V, 801, 3);
  const f = () => crossEntropy64(logits, targets, V);
  const dl = new Float64Array(T * V);
  const r = crossEntropyLoss(dl, logits, targets, T, V);
  assert.equal(r.count, 5);
  assert.ok(Math.abs(r.loss - f()) < 1e-12);
  assert.ok(Math.abs(r.sum - 5 * f()) < 1e-11);
  close("dlogits", dl, fd(logits, f));
  for (const t of [1, 5]) for (let j = 0; j < V; j++) assert.equal(dl[t * V + j], 0);

  // divisor: micro-batch gradients that sum to a bigger batch's mean; dlogits aliasing logits (F32)
  const l32 = Float32Array.from(logits);
  crossEntropyLoss(l32, l32, targets, T, V, -100, 20);
  close("divisor", l32, dl.map((x) => (x * 5) / 20), 1e-6);
  assert.throws(() => crossEntropyLoss(null, logits, [11, 0, 0, 0, 0, 0, 0], T, V));
  assert.deepEqual(crossEntropyLoss(null, logits, new Array(T).fill(-100), T, V), { loss: 0, sum: 0, count: 0 });
});

// ---------------------------------------------------------------------------------------------------------------
// A whole MLA block (naive form), forward in float64 here and backward assembled from the grad kernels:
//   out = h + o_proj(Attn(q(xn), kv_b(RMSNorm(kv_a(xn)[:dc])), RoPE(kv_a(xn)[dc:]))),  xn = RMSNorm(h)

interface Block {
  dims: MlaDims;
  T: number;
  eps: number;
  cos: Float32Array;
  sin: Float32Array;
  scale: number;
  p: Record<string, Float64Array>; // parameters and the input h
}

function makeBlock(qLoraRank: number | null, rope: RopeScaling, seed: number): Block {
  const dims: MlaDims = { hidden: 7, nHeads: 3, qLoraRank, kvLoraRank: 5, qkNopeHeadDim: 3, qkRopeHeadDim: 4, vHeadDim: 5 };
  const { hidden: D, nHeads: H, kvLoraRank: dc, qkNopeHeadDim: dn, qkRopeHeadDim: dr, vHeadDim: dv } = dims;
  const T = 5;
  const { cos, sin } = new RotaryEmbedding(rope, dr).table(0, T);
  const p: Record<string, Float64Array> = {
    h: rand64(T * D, seed),
    inNorm: rand64(D, seed + 1).map((x) => 1 + 0.3 * x),
    kvA: rand64((dc + dr) * D, seed + 2, 0.6),
    kvANorm: rand64(dc, seed + 3).map((x) => 1 + 0.3 * x),
    kvB: rand64(H * (dn + dv) * dc, seed + 4, 0.6),
    o: rand64(D * H * dv, seed + 5, 0.5),
  };
  if (qLoraRank) {
    p.qA = rand64(qLoraRank * D, seed + 6, 0.6);
    p.qANorm = rand64(qLoraRank, seed + 7).map((x) => 1 + 0.3 * x);
    p.qB = rand64(H * (dn + dr) * qLoraRank, seed + 8, 0.6);
  } else {
    p.q = rand64(H * (dn + dr) * D, seed + 6, 0.6);
  }
  return { dims, T, eps: 1e-5, cos, sin, scale: attentionScale(dn + dr, rope), p };
}

/** Forward with every intermediate the backward needs. */
function blockForward(b: Block) {
  const { dims, T, eps, cos, sin, scale, p } = b;
  const { hidden: D, nHeads: H, qLoraRank: qr, kvLoraRank: dc, qkNopeHeadDim: dn, qkRopeHeadDim: dr, vHeadDim: dv } = dims;
  const dqk = dn + dr;
  const xn = rmsNorm64(p.h, T, D, p.inNorm, eps);
  let cq: Float64Array | null = null, cqn: Float64Array | null = null, qPre: Float64Array;
  if (qr) {
    cq = linear64(xn, T, D, p.qA, qr);
    cqn = rmsNorm64(cq, T, qr, p.qANorm, LATENT_NORM_EPS);
    qPre = linear64(cqn, T, qr, p.qB, H * dqk);
  } else {
    qPre = linear64(xn, T, D, p.q, H * dqk);
  }
  const q = rope64(qPre, T, H, dr, dn, H * dqk, dqk, cos, sin);
  const a = linear64(xn, T, D, p.kvA, dc + dr);
  const ckv = rmsNorm64(a, T, dc, p.kvANorm, LATENT_NORM_EPS, dc + dr);
  const kr = rope64(a, T, 1, dr, dc, dc + dr, 0, cos, sin); // k_rope = kr[:, dc:]
  const kv = linear64(ckv, T, dc, p.kvB, H * (dn + dv));
  const k = new Float64Array(T * H * dqk), v = new Float64Array(T * H * dv);
  for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) {
    for (let i = 0; i < dn; i++) k[(t * H + h) * dqk + i] = kv[(t * H + h) * (dn + dv) + i];
    for (let i = 0; i < dr; i++) k[(t * H + h) * dqk + dn + i] = kr[t * (dc + dr) + dc + i];
    for (let i = 0; i < dv; i++) v[(t * H + h) * dv + i] = kv[(t * H + h) * (dn + dv) + dn + i];
  }
  const att = attend64(q, k, v, T, H, H, dqk, dv, scale);
  const y = linear64(att, T, H * dv, p.o, D);
  const out = p.h.map((x, i) => x + y[i]);
  return { xn, cq, cqn, q, a, ckv, k, v, att, y, out };
}

/** Gradients of sum(R * out) for every parameter and h, from the grad kernels only. */
function blockBackward(b: Block, R: Float64Array): Record<string, Float64Array> {
  const { dims, T, eps, cos, sin, scale, p } = b;
  const { hidden: D, nHeads: H, qLoraRank: qr, kvLoraRank: dc, qkNopeHeadDim: dn, qkRopeHeadDim: dr, vHeadDim: dv } = dims;
  const dqk = dn + dr;
  const f = blockForward(b);
  const g: Record<string, Float64Array> = {};
  for (const [name, v] of Object.entries(p)) g[name] = new Float64Array(v.length);

  g.h.set(R); // residual
  const dAtt = new Float64Array(T * H * dv);
  linearBackward(dAtt, g.o, f.att, T, H * dv, p.o, D, R);
  const dq = new Float64Array(T * H * dqk), dk = new Float64Array(T * H * dqk), dvv = new Float64Array(T * H * dv);
  attendBackward(dq, dk, dvv, f.q, f.k, f.v, dAtt, T, H, H, dqk, dv, scale);

  // split dk/dv back into kv_b's output rows and the shared k_rope (summed over heads)
  const dkv = new Float64Array(T * H * (dn + dv)), da = new Float64Array(T * (dc + dr));
  for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) {
    for (let i = 0; i < dn; i++) dkv[(t * H + h) * (dn + dv) + i] = dk[(t * H + h) * dqk + i];
    for (let i = 0; i < dv; i++) dkv[(t * H + h) * (dn + dv) + dn + i] = dvv[(t * H + h) * dv + i];
    for (let i = 0; i < dr; i++) da[t * (dc + dr) + dc + i] += dk[(t * H + h) * dqk + dn + i];
  }
  ropeInterleavedBackward(da, T, 1, dr, dc, dc + dr, 0, cos, sin);
  const dckv = new Float64Array(T * dc);
  linearBackward(dckv, g.kvB, f.ckv, T, dc, p.kvB, H * (dn + dv), dkv);
  rmsNormBackward(da, g.kvANorm, f.a, p.kvANorm, dckv, T, dc, LATENT_NORM_EPS, false, dc + dr, dc, dc + dr);

  ropeInterleavedBackward(dq, T, H, dr, dn, H * dqk, dqk, cos, sin);
  const dxn = new Float64Array(T * D);
  if (qr) {
    const dcqn = new Float64Array(T * qr), dcq = new Float64Array(T * qr);
    linearBackward(dcqn, g.qB, f.cqn!, T, qr, p.qB, H * dqk, dq);
    rmsNormBackward(dcq, g.qANorm, f.cq!, p.qANorm, dcqn, T, qr, LATENT_NORM_EPS);
    linearBackward(dxn, g.qA, f.xn, T, D, p.qA, qr, dcq);
  } else {
    linearBackward(dxn, g.q, f.xn, T, D, p.q, H * dqk, dq);
  }
  linearBackward(dxn, g.kvA, f.xn, T, D, p.kvA, dc + dr, da, true);
  rmsNormBackward(g.h, g.inNorm, p.h, p.inNorm, dxn, T, D, eps, true);
  return g;
}

const YARN: RopeScaling = {
  type: "yarn", theta: 10000, factor: 4, originalMaxPositionEmbeddings: 16,
  betaFast: 32, betaSlow: 1, mscale: 1, mscaleAllDim: 0.7,
};

for (const [label, qr, rope, seed] of [
  ["q_proj, plain RoPE", null, DEFAULT_ROPE, 900],
  ["q_a/q_b with query norm, YaRN (scaled cos/sin)", 9, YARN, 950],
] as const) {
  test(`MLA block (${label}): forward matches the engine, every parameter's gradient matches finite differences`, () => {
    const b = makeBlock(qr, rope, seed);
    const { dims, T, p } = b;
    const { hidden: D, nHeads: H, qkNopeHeadDim: dn, qkRopeHeadDim: dr, vHeadDim: dv, kvLoraRank: dc } = dims;
    const f = blockForward(b);

    // the float64 block is the engine's MLA (naive and absorbed) on the same weights
    const t32 = (name: string, shape: number[]) => f32Tensor(shape, Float32Array.from(p[name]));
    const rot = new RotaryEmbedding(rope, dr);
    const mla = new MultiHeadLatentAttention(dims, {
      kvA: t32("kvA", [dc + dr, D]), kvANorm: Float32Array.from(p.kvANorm), kvB: t32("kvB", [H * (dn + dv), dc]),
      o: t32("o", [D, H * dv]),
      query: qr ? { kind: "lora", qA: t32("qA", [qr, D]), qANorm: Float32Array.from(p.qANorm), qB: t32("qB", [H * (dn + dr), qr]) }
        : { kind: "direct", q: t32("q", [H * (dn + dr), D]) },
    }, rot, b.scale);
    for (const mode of ["naive", "absorb"] as const) {
      const y32 = mla.forward(Float32Array.from(f.xn), T, new LatentCache(dc, dr), mode);
      close(`engine ${mode}`, y32, f.y, 2e-6);
    }

    const R = rand64(T * D, seed + 99);
    const g = blockBackward(b, R);
    const loss = () => dot64(blockForward(b).out, R);
    for (const name of Object.keys(p)) close(`d${name}`, g[name], fd(p[name], loss));
  });
}
