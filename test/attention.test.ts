import { test } from "node:test";
import assert from "node:assert/strict";
import { compareCaches, defaultGqaGroups, kvCacheFootprint, latentCacheFootprint } from "../src/attention/accounting.js";
import { KvCache, LatentCache } from "../src/attention/cache.js";
import { GroupedQueryAttention } from "../src/attention/gqa.js";
import { MultiHeadLatentAttention, resolveMlaMode, type MlaDims, type MlaWeights } from "../src/attention/mla.js";
import { DEFAULT_ROPE, RotaryEmbedding, type RopeScaling } from "../src/attention/rope.js";
import { fromF32, type Tensor } from "../src/tensor/tensor.js";
import type { DType } from "../src/tensor/dtype.js";
import { MlaError } from "../src/errors.js";
import { randn, relErr } from "./helpers.js";

// ---------------------------------------------------------------------------------------------------------------
// (a) cache accounting

const V3 = { nHeads: 128, kvLoraRank: 512, qkNopeHeadDim: 128, qkRopeHeadDim: 64, vHeadDim: 128 };

test("compareCaches for DeepSeek-V3 shapes", () => {
  const c = compareCaches(V3, 61, "F32", 8);
  assert.equal(c.mla.elementsPerTokenPerLayer, 576);
  assert.equal(c.mha.elementsPerTokenPerLayer, 40960); // 128 * (192 + 128)
  assert.equal(c.mqa.elementsPerTokenPerLayer, 320);
  assert.equal(c.gqa.elementsPerTokenPerLayer, 2560);
  assert.equal(c.mla.kvHeads, 1);
  assert.equal(c.mha.kvHeads, 128);
  assert.equal(c.gqa.kvHeads, 8);
  assert.equal(c.mqa.kvHeads, 1);
  for (const kind of ["mla", "mha", "gqa", "mqa"] as const) {
    const f = c[kind];
    assert.equal(f.kind, kind);
    assert.equal(f.bytesPerTokenPerLayer, f.elementsPerTokenPerLayer * 4, kind);
    assert.equal(f.elementsPerToken, f.elementsPerTokenPerLayer * 61, kind);
    assert.equal(f.bytesPerToken, f.elementsPerTokenPerLayer * 4 * 61, kind);
  }
  assert.equal(c.mla.bytesPerToken, 576 * 4 * 61);
  // BF16 halves the bytes, not the elements
  const b = compareCaches(V3, 61, "BF16", 8);
  for (const kind of ["mla", "mha", "gqa", "mqa"] as const) {
    assert.equal(b[kind].elementsPerTokenPerLayer, c[kind].elementsPerTokenPerLayer);
    assert.equal(b[kind].bytesPerTokenPerLayer, c[kind].elementsPerTokenPerLayer * 2);
    assert.equal(b[kind].bytesPerToken, c[kind].elementsPerTokenPerLayer * 2 * 61);
  }
  // default groups for 128 heads: 8; default dtype F32
  const d = compareCaches(V3, 61);
  assert.equal(d.gqa.elementsPerTokenPerLayer, 2560);
  assert.equal(d.mha.bytesPerTokenPerLayer, 40960 * 4);
  // MHA with identical scores caches ~71x more than MLA
  assert.equal(Math.floor(c.mha.elementsPerTokenPerLayer / c.mla.elementsPerTokenPerLayer), 71);
  // one layer by default
  assert.equal(latentCacheFootprint(512, 64).elementsPerToken, 576);
  assert.equal(latentCacheFootprint(512, 64, 61, "F16").bytesPerToken, 576 * 2 * 61);
});

test("kvCacheFootprint matches the paper's table and the DeepSeek-V2 ratio", () => {
  for (const [nh, dh] of [[128, 128], [16, 128], [7, 13]]) {
    assert.equal(kvCacheFootprint("mha", nh, dh, dh).elementsPerTokenPerLayer, 2 * nh * dh);
    assert.equal(kvCacheFootprint("mqa", 1, dh, dh).elementsPerTokenPerLayer, 2 * dh);
    assert.equal(kvCacheFootprint("gqa", 4, dh, dh).elementsPerTokenPerLayer, 2 * 4 * dh);
  }
  assert.equal(kvCacheFootprint("mha", 128, 128, 128).elementsPerTokenPerLayer, 32768);
  // DeepSeek-V2: d_c = 4 d_h, d_h^R = d_h / 2  ->  4.5 d_h
  for (const dh of [128, 64, 10]) {
    const mla = latentCacheFootprint(4 * dh, dh / 2).elementsPerTokenPerLayer;
    assert.equal(mla / dh, 4.5);
  }
});

test("defaultGqaGroups: 8 when it divides, else the largest divisor below", () => {
  assert.equal(defaultGqaGroups(128), 8);
  assert.equal(defaultGqaGroups(16), 8);
  assert.equal(defaultGqaGroups(24), 8);
  assert.equal(defaultGqaGroups(12), 6);
  assert.equal(defaultGqaGroups(10), 5);
  assert.equal(defaultGqaGroups(6), 3);
  assert.equal(defaultGqaGroups(4), 2);
  assert.equal(defaultGqaGroups(7), 1);
  assert.equal(defaultGqaGroups(1), 1);
  for (let n = 1; n <= 64; n++) {
    const g = defaultGqaGroups(n);
    assert.equal(n % g, 0, `${n} heads, ${g} groups`);
    assert.ok(g <= 8 && (g < n || n === 1), "expected g <= 8 && (g < n || n === 1)");
  }
});

// ---------------------------------------------------------------------------------------------------------------
// float64 reference helpers (independent of src kernels)

function values(w: Tensor): Float64Array {
  const out = new Float64Array(w.data.length);
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  for (let i = 0; i < out.length; i++) {
    const v = w.data[i];
    if (w.dtype === "F32") out[i] = v;
    else if (w.dtype === "BF16") {
      u[0] = v << 16;
      out[i] = f[0];
    } else {
      const e = (v >> 10) & 31, m = v & 1023, s = v >> 15 ? -1 : 1;
      out[i] = e === 0 ? s * 2 ** -24 * m : s * 2 ** (e - 15) * (1 + m / 1024);
    }
  }
  return out;
}

/** y[n] = sum_k W[row0 + n, k] x[k] for n < N */
function matvec(W: Float64Array, K: number, x: ArrayLike<number>, N: number, row0 = 0): number[] {
  const y: number[] = [];
  for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += W[(row0 + n) * K + k] * x[k];
    y.push(s);
  }
  return y;
}

function rms(x: number[], w: ArrayLike<number>, eps: number): number[] {
  const ms = x.reduce((a, b) => a + b * b, 0) / x.length;
  return x.map((v, i) => (w[i] * v) / Math.sqrt(ms + eps));
}

/** Rotate interleaved pairs of v by pos * freq[j], scaled by amp (complex multiplication). */
function rotate(v: number[], pos: number, freq: ArrayLike<number>, amp: number): number[] {
  const out = v.slice();
  for (let j = 0; j < v.length / 2; j++) {
    const c = Math.cos(pos * freq[j]) * amp, s = Math.sin(pos * freq[j]) * amp;
    out[2 * j] = v[2 * j] * c - v[2 * j + 1] * s;
    out[2 * j + 1] = v[2 * j] * s + v[2 * j + 1] * c;
  }
  return out;
}

function plainFreq(dim: number, base = 10000): number[] {
  return Array.from({ length: dim / 2 }, (_, j) => base ** (-(2 * j) / dim));
}

function dot(a: number[], b: number[]): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** softmax-weighted sum over s = 0..t of vals[s] with the given scores */
function mix(scores: number[], vals: number[][]): number[] {
  const m = Math.max(...scores);
  const e = scores.map((x) => Math.exp(x - m));
  const z = e.reduce((a, b) => a + b, 0);
  const out = new Array(vals[0].length).fill(0);
  for (let s = 0; s < scores.length; s++) for (let i = 0; i < out.length; i++) out[i] += (e[s] / z) * vals[s][i];
  return out;
}

function rows(x: Float32Array, T: number, D: number): number[][] {
  return Array.from({ length: T }, (_, t) => Array.from(x.subarray(t * D, (t + 1) * D)));
}

// ---------------------------------------------------------------------------------------------------------------
// (b) GroupedQueryAttention

interface GqaCase {
  D: number;
  H: number;
  G: number;
  dk: number;
  dv: number;
  ropeDim: number; // 0: no RoPE
  dtype: DType;
}

function gqaRef(x: Float32Array, T: number, c: GqaCase, w: { q: Tensor; k: Tensor; v: Tensor; o: Tensor }, scale: number): number[] {
  const Wq = values(w.q), Wk = values(w.k), Wv = values(w.v), Wo = values(w.o);
  const freq = plainFreq(c.ropeDim || 2);
  const Q: number[][][] = [], K: number[][][] = [], V: number[][][] = [];
  const xs = rows(x, T, c.D);
  for (let t = 0; t < T; t++) {
    const q = matvec(Wq, c.D, xs[t], c.H * c.dk), k = matvec(Wk, c.D, xs[t], c.G * c.dk), v = matvec(Wv, c.D, xs[t], c.G * c.dv);
    const head = (a: number[], h: number, d: number) => a.slice(h * d, (h + 1) * d);
    const rope = (a: number[]) => (c.ropeDim ? [...a.slice(0, c.dk - c.ropeDim), ...rotate(a.slice(c.dk - c.ropeDim), t, freq, 1)] : a);
    Q.push(Array.from({ length: c.H }, (_, h) => rope(head(q, h, c.dk))));
    K.push(Array.from({ length: c.G }, (_, g) => rope(head(k, g, c.dk))));
    V.push(Array.from({ length: c.G }, (_, g) => head(v, g, c.dv)));
  }
  const out: number[] = [];
  for (let t = 0; t < T; t++) {
    const o: number[] = [];
    for (let h = 0; h < c.H; h++) {
      const g = Math.floor(h / (c.H / c.G));
      const sc: number[] = [], vals: number[][] = [];
      for (let s = 0; s <= t; s++) {
        sc.push(dot(Q[t][h], K[s][g]) * scale);
        vals.push(V[s][g]);
      }
      o.push(...mix(sc, vals));
    }
    out.push(...matvec(Wo, c.H * c.dv, o, c.D));
  }
  return out;
}

function makeGqa(c: GqaCase, seed: number) {
  const w = {
    q: fromF32(randn(c.H * c.dk * c.D, seed + 1, 0.4), c.dtype, [c.H * c.dk, c.D]),
    k: fromF32(randn(c.G * c.dk * c.D, seed + 2, 0.4), c.dtype, [c.G * c.dk, c.D]),
    v: fromF32(randn(c.G * c.dv * c.D, seed + 3, 0.4), c.dtype, [c.G * c.dv, c.D]),
    o: fromF32(randn(c.D * c.H * c.dv, seed + 4, 0.4), c.dtype, [c.D, c.H * c.dv]),
  };
  const rope = c.ropeDim ? new RotaryEmbedding({ ...DEFAULT_ROPE, theta: 10000 }, c.ropeDim) : null;
  const attn = new GroupedQueryAttention({ hidden: c.D, nHeads: c.H, nKvHeads: c.G, headDim: c.dk, vHeadDim: c.dv, ropeDim: c.ropeDim || undefined }, w, rope);
  return { attn, w };
}

for (const G of [6, 3, 1]) {
  for (const ropeDim of [0, 10, 4]) {
    const c: GqaCase = { D: 13, H: 6, G, dk: 10, dv: 7, ropeDim, dtype: G === 3 ? "BF16" : "F32" };
    test(`GroupedQueryAttention nKvHeads=${G} ropeDim=${ropeDim} (${c.dtype}) matches float64 reference; prefill == decode`, () => {
      const seed = 1000 + G * 37 + ropeDim;
      const { attn, w } = makeGqa(c, seed);
      assert.equal(attn.ropeDim, ropeDim);
      const T = 7;
      const x = randn(T * c.D, seed + 9);
      const cache = new KvCache(G, c.dk, c.dv, 2);
      const out = attn.forward(x, T, cache);
      const ref = gqaRef(x, T, c, w, 1 / Math.sqrt(c.dk));
      const e = relErr(out, ref);
      assert.ok(e < 1e-5, `rel err ${e}`);
      assert.equal(cache.length, T);
      assert.equal(cache.k.width, G * c.dk);
      assert.equal(cache.v.width, G * c.dv);
      assert.equal(cache.bytes, T * G * (c.dk + c.dv) * 4);

      // token by token with a cache
      const c2 = new KvCache(G, c.dk, c.dv, 1);
      const steps: number[] = [];
      for (let t = 0; t < T; t++) steps.push(...attn.forward(x.subarray(t * c.D, (t + 1) * c.D), 1, c2));
      assert.ok(relErr(steps, out) < 1e-6, `decode vs prefill rel err ${relErr(steps, out)}`);
      assert.equal(c2.length, T);
      // prefill 3, then 4 more in one call
      const c3 = new KvCache(G, c.dk, c.dv);
      const mixed = [...attn.forward(x.subarray(0, 3 * c.D), 3, c3), ...attn.forward(x.subarray(3 * c.D), 4, c3)];
      assert.ok(relErr(mixed, out) < 1e-6, "expected relErr(mixed, out) < 1e-6");
      // truncate and re-run the suffix
      c3.truncate(5);
      assert.equal(c3.length, 5);
      const again = attn.forward(x.subarray(5 * c.D), 2, c3);
      assert.ok(relErr(again, out.subarray(5 * c.D)) < 1e-6, "expected relErr(again, out.subarray(5 * c.D)) < 1e-6");
      // RoPE is really applied (the reference without it disagrees)
      if (ropeDim) assert.ok(relErr(out, gqaRef(x, T, { ...c, ropeDim: 0 }, w, 1 / Math.sqrt(c.dk))) > 1e-3, "expected relErr(out, gqaRef(x, T, { ...c, ropeDim: 0 }, w, 1 / Math.sqrt(c.dk))) > 1e-3");
    });
  }
}

test("GroupedQueryAttention rejects nHeads not a multiple of nKvHeads, RoPE of the wrong width", () => {
  const c: GqaCase = { D: 5, H: 6, G: 4, dk: 4, dv: 4, ropeDim: 0, dtype: "F32" };
  assert.throws(() => makeGqa(c, 1), MlaError);
  const ok = makeGqa({ ...c, G: 3 }, 2).w;
  assert.throws(() => new GroupedQueryAttention({ hidden: 5, nHeads: 6, nKvHeads: 3, headDim: 4 }, ok, new RotaryEmbedding(DEFAULT_ROPE, 2)), MlaError);
  assert.throws(() => new GroupedQueryAttention({ hidden: 5, nHeads: 6, nKvHeads: 3, headDim: 4, ropeDim: 4 }, ok, new RotaryEmbedding(DEFAULT_ROPE, 2)), MlaError);
});

test("KvCache / RowCache growth, bytes, truncate and maxLength", () => {
  const kv = new KvCache(3, 5, 7, 1, 9);
  const k = randn(4 * 15, 1101), v = randn(4 * 21, 1102);
  kv.k.append(k, 4);
  kv.v.append(v, 4);
  assert.equal(kv.length, 4);
  assert.equal(kv.bytes, 4 * (15 + 21) * 4);
  assert.deepEqual(Array.from(kv.k.data.subarray(0, 60)), Array.from(k));
  kv.truncate(2);
  assert.equal(kv.length, 2);
  assert.equal(kv.bytes, 2 * 36 * 4);
  assert.throws(() => kv.k.append(new Float32Array(15 * 8), 8), MlaError);
  // strided append takes the first `width` values of each source row
  const lc = new LatentCache(3, 2);
  assert.equal(lc.width, 5);
  const src = randn(3 * 8, 1103);
  lc.append(src, 3, 8, 1);
  for (let t = 0; t < 3; t++) assert.deepEqual(Array.from(lc.data.subarray(t * 5, t * 5 + 5)), Array.from(src.subarray(1 + t * 8, 1 + t * 8 + 5)));
});

// ---------------------------------------------------------------------------------------------------------------
// (c) MultiHeadLatentAttention

interface MlaCase {
  dims: MlaDims;
  dtype: DType;
  rope: RopeScaling;
}

function makeMla(c: MlaCase, seed: number) {
  const { hidden: D, nHeads: H, qLoraRank: qr, kvLoraRank: dc, qkNopeHeadDim: dn, qkRopeHeadDim: dr, vHeadDim: dv } = c.dims;
  const t = (n: number, shape: number[], s: number, scale = 0.4) => fromF32(randn(n, seed + s, scale), c.dtype, shape);
  const w: MlaWeights = {
    query: qr
      ? {
          kind: "lora",
          qA: t(qr * D, [qr, D], 1),
          qANorm: Float32Array.from(randn(qr, seed + 2, 0.5), (v) => 1 + v),
          qB: t(H * (dn + dr) * qr, [H * (dn + dr), qr], 3),
        }
      : { kind: "direct", q: t(H * (dn + dr) * D, [H * (dn + dr), D], 4) },
    kvA: t((dc + dr) * D, [dc + dr, D], 5),
    kvANorm: Float32Array.from(randn(dc, seed + 6, 0.5), (v) => 1 + v),
    kvB: t(H * (dn + dv) * dc, [H * (dn + dv), dc], 7),
    o: t(D * H * dv, [D, H * dv], 8),
  };
  const emb = new RotaryEmbedding(c.rope, dr);
  const scale = 1.3 / Math.sqrt(dn + dr);
  return { attn: new MultiHeadLatentAttention(c.dims, w, emb, scale), w, emb, scale };
}

/** The spec's naive formula in float64: returns the output rows and the latent rows [c_KV | k_rope]. */
function mlaRef(x: Float32Array, T: number, c: MlaCase, w: MlaWeights, freq: ArrayLike<number>, amp: number, scale: number) {
  const { hidden: D, nHeads: H, qLoraRank: qr, kvLoraRank: dc, qkNopeHeadDim: dn, qkRopeHeadDim: dr, vHeadDim: dv } = c.dims;
  const kvA = values(w.kvA), kvB = values(w.kvB), Wo = values(w.o);
  const xs = rows(x, T, D);
  const qN: number[][][] = [], qR: number[][][] = [], cKV: number[][] = [], kR: number[][] = [];
  for (let t = 0; t < T; t++) {
    let q: number[];
    const wq = w.query;
    if (wq.kind === "lora") q = matvec(values(wq.qB), qr!, rms(matvec(values(wq.qA), D, xs[t], qr!), wq.qANorm, 1e-6), H * (dn + dr));
    else q = matvec(values(wq.q), D, xs[t], H * (dn + dr));
    qN.push([]);
    qR.push([]);
    for (let h = 0; h < H; h++) {
      const qh = q.slice(h * (dn + dr), (h + 1) * (dn + dr));
      qN[t].push(qh.slice(0, dn));
      qR[t].push(rotate(qh.slice(dn), t, freq, amp));
    }
    const a = matvec(kvA, D, xs[t], dc + dr);
    cKV.push(rms(a.slice(0, dc), w.kvANorm, 1e-6));
    kR.push(rotate(a.slice(dc), t, freq, amp));
  }
  const out: number[] = [];
  for (let t = 0; t < T; t++) {
    const o: number[] = [];
    for (let h = 0; h < H; h++) {
      const sc: number[] = [], vals: number[][] = [];
      for (let s = 0; s <= t; s++) {
        const kNope = matvec(kvB, dc, cKV[s], dn, h * (dn + dv)); // W^UK_h c_KV
        const v = matvec(kvB, dc, cKV[s], dv, h * (dn + dv) + dn); // W^UV_h c_KV
        sc.push((dot(qN[t][h], kNope) + dot(qR[t][h], kR[s])) * scale);
        vals.push(v);
      }
      o.push(...mix(sc, vals));
    }
    out.push(...matvec(Wo, H * dv, o, D));
  }
  return { out, latent: cKV.map((ck, s) => [...ck, ...kR[s]]) };
}

const YARN: RopeScaling = {
  type: "yarn", theta: 10000, factor: 4, originalMaxPositionEmbeddings: 8, betaFast: 32, betaSlow: 1, mscale: 1, mscaleAllDim: 0.707,
};

const MLA_CASES: { name: string; c: MlaCase }[] = [
  { name: "q_lora_rank, F32, plain RoPE", c: { dtype: "F32", rope: DEFAULT_ROPE, dims: { hidden: 19, nHeads: 3, qLoraRank: 11, kvLoraRank: 9, qkNopeHeadDim: 7, qkRopeHeadDim: 4, vHeadDim: 5 } } },
  { name: "no q_lora_rank, F32, YaRN", c: { dtype: "F32", rope: YARN, dims: { hidden: 17, nHeads: 5, qLoraRank: null, kvLoraRank: 13, qkNopeHeadDim: 5, qkRopeHeadDim: 6, vHeadDim: 9 } } },
  { name: "q_lora_rank, BF16, YaRN", c: { dtype: "BF16", rope: YARN, dims: { hidden: 23, nHeads: 3, qLoraRank: 13, kvLoraRank: 11, qkNopeHeadDim: 9, qkRopeHeadDim: 8, vHeadDim: 7 } } },
  { name: "no q_lora_rank, BF16, plain RoPE", c: { dtype: "BF16", rope: DEFAULT_ROPE, dims: { hidden: 15, nHeads: 7, qLoraRank: null, kvLoraRank: 7, qkNopeHeadDim: 3, qkRopeHeadDim: 2, vHeadDim: 3 } } },
];

for (const [i, { name, c }] of MLA_CASES.entries()) {
  test(`MultiHeadLatentAttention (${name}): naive == absorb == float64 reference of the spec; latent cache rows`, () => {
    const seed = 2000 + 100 * i;
    const { attn, w, emb, scale } = makeMla(c, seed);
    const { hidden: D, kvLoraRank: dc, qkRopeHeadDim: dr } = c.dims;
    const T = 7;
    const x = randn(T * D, seed + 50);
    // RoPE frequencies for the reference: independent for plain RoPE; YaRN's are checked in rope.test.ts
    const freq = c.rope.type === "default" ? plainFreq(dr, c.rope.theta) : emb.invFreq;
    if (c.rope.type === "yarn") assert.ok(Math.abs(emb.attentionFactor - 1) > 0.01, "YaRN case should scale cos/sin");
    const ref = mlaRef(x, T, c, w, freq, emb.attentionFactor, scale);

    const outs: Record<string, Float32Array> = {};
    for (const mode of ["naive", "absorb", "auto"] as const) {
      const cache = new LatentCache(dc, dr, 2);
      outs[mode] = attn.forward(x, T, cache, mode);
      const e = relErr(outs[mode], ref.out);
      assert.ok(e < 1e-5, `${mode} vs reference: rel err ${e}`);
      // the cache holds exactly [c_KV | k_rope] per token
      assert.equal(cache.width, dc + dr);
      assert.equal(cache.length, T);
      assert.equal(cache.bytes, T * (dc + dr) * 4);
      const lat = Array.from(cache.data.subarray(0, T * (dc + dr)));
      const el = relErr(lat, ref.latent.flat());
      assert.ok(el < 1e-6, `${mode}: latent cache rel err ${el}`);
      // c_KV part alone equals RMSNorm(kv_a x) (after the norm, before any up-projection)
      const cOnly = ref.latent.map((r) => r.slice(0, dc)).flat();
      const ours = Array.from({ length: T }, (_, t) => Array.from(cache.data.subarray(t * (dc + dr), t * (dc + dr) + dc))).flat();
      assert.ok(relErr(ours, cOnly) < 1e-6, "expected relErr(ours, cOnly) < 1e-6");
    }
    const eNA = relErr(outs.absorb, outs.naive);
    assert.ok(eNA < 1e-5, `naive vs absorb rel err ${eNA}`);
    assert.ok(relErr(outs.auto, outs.naive) < 1e-7, "auto with T>1 should be naive");

    // prefill == token-by-token decode, in both modes, and a mixed prefill + decode
    for (const mode of ["naive", "absorb", "auto"] as const) {
      const cache = new LatentCache(dc, dr, 1);
      const steps: number[] = [];
      for (let t = 0; t < T; t++) steps.push(...attn.forward(x.subarray(t * D, (t + 1) * D), 1, cache, mode));
      const e = relErr(steps, ref.out);
      assert.ok(e < 1e-5, `${mode} token-by-token rel err ${e}`);
      assert.ok(relErr(steps, outs.naive) < 1e-5, "expected relErr(steps, outs.naive) < 1e-5");
      assert.equal(cache.length, T);
    }
    const cache = new LatentCache(dc, dr);
    const mixed = [...attn.forward(x.subarray(0, 4 * D), 4, cache, "naive"), ...attn.forward(x.subarray(4 * D, 5 * D), 1, cache, "absorb"), ...attn.forward(x.subarray(5 * D), 2, cache, "absorb")];
    assert.ok(relErr(mixed, ref.out) < 1e-5, `mixed rel err ${relErr(mixed, ref.out)}`);
  });
}

test("MLA reference is sensitive: wrong scale, missing RoPE position or missing latent norm are detected", () => {
  // guards against a reference that would agree with anything
  const { c } = MLA_CASES[0];
  const { attn, w, emb, scale } = makeMla(c, 2900);
  const T = 5, x = randn(T * c.dims.hidden, 2950);
  const out = attn.forward(x, T, new LatentCache(c.dims.kvLoraRank, c.dims.qkRopeHeadDim));
  const freq = plainFreq(c.dims.qkRopeHeadDim);
  assert.ok(relErr(out, mlaRef(x, T, c, w, freq, 1, scale).out) < 1e-5, "expected relErr(out, mlaRef(x, T, c, w, freq, 1, scale).out) < 1e-5");
  assert.ok(relErr(out, mlaRef(x, T, c, w, freq, 1, scale * 1.1).out) > 1e-4, "expected relErr(out, mlaRef(x, T, c, w, freq, 1, scale * 1.1).out) > 1e-4");
  assert.ok(relErr(out, mlaRef(x, T, c, w, freq.map((f) => f * 2), 1, scale).out) > 1e-4, "expected relErr(out, mlaRef(x, T, c, w, freq.map((f) => f * 2), 1, scale).out) > 1e-4");
  assert.ok(relErr(out, mlaRef(x, T, c, { ...w, kvANorm: w.kvANorm.map((v) => v * 1.05) }, freq, 1, scale).out) > 1e-4, "expected relErr(out, mlaRef(x, T, c, { ...w, kvANorm: w.kvANorm.map((v) => v * 1.05) }, freq, 1, scale).out) > 1e-4");
  assert.equal(emb.attentionFactor, 1);
});

test("MultiHeadLatentAttention rejects a RoPE table of the wrong width", () => {
  const { c } = MLA_CASES[0];
  const { w } = makeMla(c, 3000);
  assert.throws(() => new MultiHeadLatentAttention(c.dims, w, new RotaryEmbedding(DEFAULT_ROPE, 6), 0.1), MlaError);
});

test("resolveMlaMode: auto is naive for prefill, absorbed for decode; explicit modes stay", () => {
  assert.equal(resolveMlaMode("auto", 7), "naive");
  assert.equal(resolveMlaMode("auto", 2), "naive");
  assert.equal(resolveMlaMode("auto", 1), "absorb");
  for (const T of [1, 7]) {
    assert.equal(resolveMlaMode("naive", T), "naive");
    assert.equal(resolveMlaMode("absorb", T), "absorb");
  }
});
