import { test } from "node:test";
import assert from "node:assert/strict";
import { attend, axpy, linear, linearT, rmsNorm, ropeInterleaved, siluMul, softmax, weightRow } from "../src/backends/cpu/index.js";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, type DType } from "../src/tensor/dtype.js";
import { fromF32, type Tensor } from "../src/tensor/tensor.js";
import { randn, relErr } from "./helpers.js";

// ---------------------------------------------------------------------------------------------------------------
// Independent helpers: bit casts and 16-bit decoding written here, not taken from src.

function bitsToF32(b: number): number {
  return new Float32Array(new Uint32Array([b >>> 0]).buffer)[0];
}
function f32Bits(x: number): number {
  return new Uint32Array(new Float32Array([x]).buffer)[0];
}
/** Decode a half by its definition: (-1)^s 2^(e-15) (1 + m/1024), subnormals 2^-14 m/1024. */
function halfValue(h: number): number {
  const sign = h >> 15 ? -1 : 1;
  const e = (h >> 10) & 31, m = h & 1023;
  if (e === 31) return m ? NaN : sign * Infinity;
  if (e === 0) return sign * Math.pow(2, -14) * (m / 1024);
  return sign * Math.pow(2, e - 15) * (1 + m / 1024);
}
/** The values a kernel must see for a weight tensor: F32 as is, 16-bit words decoded independently. */
function weightValues(w: Tensor): Float64Array {
  const out = new Float64Array(w.data.length);
  for (let i = 0; i < out.length; i++) {
    const v = w.data[i];
    out[i] = w.dtype === "F32" ? v : w.dtype === "BF16" ? bitsToF32(v << 16) : halfValue(v);
  }
  return out;
}

const DTYPES: DType[] = ["F32", "BF16", "F16"];
const SENTINEL = 12345.5;

// ---------------------------------------------------------------------------------------------------------------
// linear / linearT / weightRow

for (const dtype of DTYPES) {
  test(`linear (x W^T) matches float64 reference, ${dtype} weights`, () => {
    const T = 7, K = 37, N = 13;
    const x = randn(T * K, 101);
    const w = fromF32(randn(N * K, 102, 0.5), dtype, [N, K]);
    const W = weightValues(w);
    const out = new Float32Array(T * N);
    linear(out, x, T, K, w, N);
    const ref = new Float64Array(T * N);
    for (let t = 0; t < T; t++)
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += x[t * K + k] * W[n * K + k];
        ref[t * N + n] = s;
      }
    const e = relErr(out, ref);
    assert.ok(e < 1e-6, `rel err ${e}`);
  });

  test(`linear with row0 / xStride / outStride, ${dtype} weights`, () => {
    const T = 5, K = 13, R = 23, N = 7, row0 = 9, xStride = K + 6, outStride = N + 4;
    const x = randn(T * xStride, 111);
    const w = fromF32(randn(R * K, 112), dtype, [R, K]);
    const W = weightValues(w);
    const out = new Float32Array(T * outStride).fill(SENTINEL);
    linear(out, x, T, K, w, N, row0, xStride, outStride);
    const got: number[] = [], ref: number[] = [];
    for (let t = 0; t < T; t++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += x[t * xStride + k] * W[(row0 + n) * K + k];
        ref.push(s);
        got.push(out[t * outStride + n]);
      }
      for (let n = N; n < outStride; n++) assert.equal(out[t * outStride + n], SENTINEL, "padding of out was written");
    }
    const e = relErr(got, ref);
    assert.ok(e < 1e-6, `rel err ${e}`);
  });

  test(`linearT (x W) matches float64 reference incl. row0 / strides, ${dtype} weights`, () => {
    for (const [T, N, K, R, row0, xStride, outStride] of [
      [7, 13, 37, 13, 0, 13, 37],
      [3, 11, 17, 29, 7, 19, 23],
      [1, 5, 9, 31, 20, 5, 9],
    ]) {
      const x = randn(T * xStride, 120 + T + row0);
      const w = fromF32(randn(R * K, 130 + row0, 0.7), dtype, [R, K]);
      const W = weightValues(w);
      const out = new Float32Array(T * outStride).fill(SENTINEL);
      linearT(out, x, T, N, w, K, row0, xStride, outStride);
      const got: number[] = [], ref: number[] = [];
      for (let t = 0; t < T; t++) {
        for (let k = 0; k < K; k++) {
          let s = 0;
          for (let n = 0; n < N; n++) s += x[t * xStride + n] * W[(row0 + n) * K + k];
          ref.push(s);
          got.push(out[t * outStride + k]);
        }
        for (let k = K; k < outStride; k++) assert.equal(out[t * outStride + k], SENTINEL, "padding of out was written");
      }
      const e = relErr(got, ref);
      assert.ok(e < 1e-6, `T=${T} N=${N} K=${K} row0=${row0}: rel err ${e}`);
    }
  });

  test(`weightRow returns row r widened, ${dtype}`, () => {
    const R = 7, K = 13;
    const src = randn(R * K, 140);
    const w = fromF32(src, dtype, [R, K]);
    const W = weightValues(w);
    const scratch = new Float32Array(K);
    for (const r of [0, 3, 6]) {
      const row = weightRow(w, r, K, scratch);
      assert.equal(row.length, K);
      for (let k = 0; k < K; k++) assert.equal(row[k], W[r * K + k], `row ${r} col ${k}`);
      // the rounded values stay close to the originals (bf16: 8 bits, f16: 11 bits of mantissa)
      const tol = dtype === "F32" ? 0 : dtype === "BF16" ? 2 ** -8 : 2 ** -11;
      for (let k = 0; k < K; k++) assert.ok(Math.abs(row[k] - src[r * K + k]) <= tol * Math.abs(src[r * K + k]), "expected Math.abs(row[k] - src[r * K + k]) <= tol * Math.abs(src[r * K + k])");
    }
  });
}

test("fromF32 rounding is visible to linear (reference with rounded values differs from unrounded)", () => {
  // guards against a reference that would accidentally use the F32 originals: BF16 error must be ~1e-3, not 0
  const T = 3, K = 37, N = 5;
  const x = randn(T * K, 150);
  const src = randn(N * K, 151);
  const out = new Float32Array(T * N), outF = new Float32Array(T * N);
  linear(out, x, T, K, fromF32(src, "BF16", [N, K]), N);
  linear(outF, x, T, K, fromF32(src, "F32", [N, K]), N);
  const e = relErr(out, outF);
  assert.ok(e > 1e-5 && e < 1e-2, `bf16 vs f32 rel err ${e}`);
});

// ---------------------------------------------------------------------------------------------------------------
// rmsNorm

function rmsNormRef(x: ArrayLike<number>, off: number, D: number, w: ArrayLike<number>, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < D; i++) ss += x[off + i] ** 2;
  const r = 1 / Math.sqrt(ss / D + eps);
  const out = new Float64Array(D);
  for (let i = 0; i < D; i++) out[i] = w[i] * x[off + i] * r;
  return out;
}

test("rmsNorm matches reference (contiguous, strided rows, aliasing out = x)", () => {
  const T = 7, D = 37, eps = 1e-6;
  const w = randn(D, 201, 2);
  // contiguous
  const x = randn(T * D, 202, 3);
  const out = new Float32Array(T * D);
  rmsNorm(out, x, T, D, w, eps);
  const ref: number[] = [];
  for (let t = 0; t < T; t++) ref.push(...rmsNormRef(x, t * D, D, w, eps));
  assert.ok(relErr(out, ref) < 1e-6, `contiguous rel err ${relErr(out, ref)}`);

  // strided input and output rows (e.g. the c_KV prefix of [c_KV | k_rope] rows)
  const xs = 45, os = 41;
  const xStr = randn(T * xs, 203);
  const outStr = new Float32Array(T * os).fill(SENTINEL);
  rmsNorm(outStr, xStr, T, D, w, eps, xs, os);
  const got: number[] = [], refS: number[] = [];
  for (let t = 0; t < T; t++) {
    refS.push(...rmsNormRef(xStr, t * xs, D, w, eps));
    for (let i = 0; i < D; i++) got.push(outStr[t * os + i]);
    for (let i = D; i < os; i++) assert.equal(outStr[t * os + i], SENTINEL);
  }
  assert.ok(relErr(got, refS) < 1e-6, `strided rel err ${relErr(got, refS)}`);

  // in place with a stride: the tail of each row must stay untouched
  const y = Float32Array.from(xStr);
  rmsNorm(y, y, T, D, w, eps, xs, xs);
  const gotA: number[] = [];
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < D; i++) gotA.push(y[t * xs + i]);
    for (let i = D; i < xs; i++) assert.equal(y[t * xs + i], xStr[t * xs + i], "tail of row changed");
  }
  assert.ok(relErr(gotA, refS) < 1e-6, `aliased rel err ${relErr(gotA, refS)}`);

  // eps matters for small inputs
  const tiny = randn(D, 204, 1e-4);
  const a = new Float32Array(D), b = new Float32Array(D);
  rmsNorm(a, tiny, 1, D, w, 1e-6);
  rmsNorm(b, tiny, 1, D, w, 1e-12);
  assert.ok(relErr(a, rmsNormRef(tiny, 0, D, w, 1e-6)) < 1e-6, "expected relErr(a, rmsNormRef(tiny, 0, D, w, 1e-6)) < 1e-6");
  assert.ok(relErr(a, b) > 1e-3, "eps had no effect");
});

// ---------------------------------------------------------------------------------------------------------------
// ropeInterleaved

test("ropeInterleaved equals complex rotation of interleaved pairs (heads, offset, strides)", () => {
  const T = 5, heads = 3, d = 14, offset = 7, headStride = 23, rowStride = heads * headStride + 5;
  const half = d / 2;
  const x = randn(T * rowStride, 301);
  const orig = Float32Array.from(x);
  const pos = [3, 4, 5, 6, 7];
  const theta = Array.from({ length: half }, (_, j) => Math.pow(10000, (-2 * j) / d));
  const amp = 0.93; // tables may carry an attention factor
  const cos = new Float32Array(T * half), sin = new Float32Array(T * half);
  for (let t = 0; t < T; t++)
    for (let j = 0; j < half; j++) {
      cos[t * half + j] = Math.cos(pos[t] * theta[j]) * amp;
      sin[t * half + j] = Math.sin(pos[t] * theta[j]) * amp;
    }
  ropeInterleaved(x, T, heads, d, offset, rowStride, headStride, cos, sin);

  const touched = new Set<number>();
  const got: number[] = [], ref: number[] = [];
  for (let t = 0; t < T; t++)
    for (let h = 0; h < heads; h++) {
      const o = t * rowStride + h * headStride + offset;
      for (let j = 0; j < half; j++) {
        // (a + ib) * amp * e^{i p theta_j}
        const a = orig[o + 2 * j], b = orig[o + 2 * j + 1];
        const ang = pos[t] * theta[j];
        const re = amp * (a * Math.cos(ang) - b * Math.sin(ang));
        const im = amp * (a * Math.sin(ang) + b * Math.cos(ang));
        ref.push(re, im);
        got.push(x[o + 2 * j], x[o + 2 * j + 1]);
        touched.add(o + 2 * j).add(o + 2 * j + 1);
      }
    }
  const e = relErr(got, ref);
  assert.ok(e < 1e-6, `rel err ${e}`);
  for (let i = 0; i < x.length; i++) if (!touched.has(i)) assert.equal(x[i], orig[i], `element ${i} outside the slices changed`);
  // a rotation (amp 1) keeps the norm of each pair: check the kernel is not rotating halves instead of pairs
  const y = Float32Array.from(orig);
  const c1 = cos.map((v) => v / amp), s1 = sin.map((v) => v / amp);
  ropeInterleaved(y, T, heads, d, offset, rowStride, headStride, c1, s1);
  for (let t = 0; t < T; t++)
    for (let h = 0; h < heads; h++) {
      const o = t * rowStride + h * headStride + offset;
      for (let j = 0; j < half; j++) {
        const n0 = Math.hypot(orig[o + 2 * j], orig[o + 2 * j + 1]), n1 = Math.hypot(y[o + 2 * j], y[o + 2 * j + 1]);
        assert.ok(Math.abs(n0 - n1) < 1e-5 * Math.max(1, n0), "expected Math.abs(n0 - n1) < 1e-5 * Math.max(1, n0)");
      }
    }
});

// ---------------------------------------------------------------------------------------------------------------
// softmax / siluMul / axpy

test("softmax matches reference (Float32 and Float64, offset, large logits)", () => {
  for (const [n, off, scale, seed] of [[37, 0, 3, 401], [13, 5, 80, 402], [1, 2, 1, 403]]) {
    const src = randn(n + off + 3, seed, scale);
    for (const arr of [Float32Array.from(src), Float64Array.from(src)]) {
      softmax(arr, off, n);
      let m = -Infinity;
      for (let i = 0; i < n; i++) m = Math.max(m, src[off + i]);
      let s = 0;
      const ref: number[] = [];
      for (let i = 0; i < n; i++) s += Math.exp(src[off + i] - m);
      for (let i = 0; i < n; i++) ref.push(Math.exp(src[off + i] - m) / s);
      const got = Array.from(arr.subarray(off, off + n));
      assert.ok(relErr(got, ref) < 1e-6, `n=${n}: rel err ${relErr(got, ref)}`);
      for (let i = 0; i < off; i++) assert.equal(arr[i], src[i]);
      for (let i = off + n; i < arr.length; i++) assert.equal(arr[i], src[i]);
    }
  }
  const big = new Float32Array([1000, 999, -1000]);
  softmax(big, 0, 3);
  assert.ok(Number.isFinite(big[0]) && Math.abs(big[0] - 1 / (1 + Math.exp(-1))) < 1e-6, "expected Number.isFinite(big[0]) && Math.abs(big[0] - 1 / (1 + Math.exp(-1))) < 1e-6");
});

test("siluMul matches reference (incl. out aliasing gate) and axpy", () => {
  const n = 37;
  const gate = randn(n, 501, 6), up = randn(n, 502, 2);
  const ref = Array.from(gate, (g, i) => (g / (1 + Math.exp(-g))) * up[i]);
  const out = new Float32Array(n);
  siluMul(out, gate, up, n);
  assert.ok(relErr(out, ref) < 1e-6, `rel err ${relErr(out, ref)}`);
  const g2 = Float32Array.from(gate);
  siluMul(g2, g2, up, n);
  assert.ok(relErr(g2, ref) < 1e-6, "expected relErr(g2, ref) < 1e-6");

  const acc = randn(n + 4, 503), x = randn(n + 3, 504);
  const accRef = Array.from(acc);
  for (let i = 0; i < n - 2; i++) accRef[2 + i] += -0.37 * x[3 + i];
  axpy(acc, -0.37, x, n - 2, 2, 3);
  assert.ok(relErr(acc, accRef) < 1e-6, "expected relErr(acc, accRef) < 1e-6");
});

// ---------------------------------------------------------------------------------------------------------------
// attend

interface ViewSpec {
  data: Float32Array;
  offset: number;
  rowStride: number;
  headStride: number;
}

/** Naive attention with an explicit [T, L] causal mask (0 / -inf) and explicit gathered K/V. */
function attendRef(q: Float32Array, T: number, H: number, dk: number, k: ViewSpec, v: ViewSpec, dv: number, Hkv: number, L: number, scale: number): Float64Array {
  const mask: number[][] = [];
  for (let t = 0; t < T; t++) {
    const row: number[] = [];
    const pos = L - T + t; // absolute position of query t
    for (let s = 0; s < L; s++) row.push(s <= pos ? 0 : -Infinity);
    mask.push(row);
  }
  const K = (s: number, g: number, i: number) => k.data[k.offset + s * k.rowStride + g * k.headStride + i];
  const V = (s: number, g: number, i: number) => v.data[v.offset + s * v.rowStride + g * v.headStride + i];
  const out = new Float64Array(T * H * dv);
  const perGroup = H / Hkv;
  for (let t = 0; t < T; t++)
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / perGroup);
      const sc: number[] = [];
      for (let s = 0; s < L; s++) {
        let dot = 0;
        for (let i = 0; i < dk; i++) dot += q[(t * H + h) * dk + i] * K(s, g, i);
        sc.push(dot * scale + mask[t][s]);
      }
      const m = Math.max(...sc);
      const e = sc.map((z) => Math.exp(z - m));
      const z = e.reduce((a, b) => a + b, 0);
      for (let i = 0; i < dv; i++) {
        let acc = 0;
        for (let s = 0; s < L; s++) acc += (e[s] / z) * V(s, g, i);
        out[(t * H + h) * dv + i] = acc;
      }
    }
  return out;
}

for (const [name, H, Hkv] of [["MHA", 6, 6], ["GQA", 6, 2], ["MQA", 6, 1]] as const) {
  test(`attend matches naive masked attention: ${name} (H=${H}, Hkv=${Hkv}), T new tokens after a cached prefix`, () => {
    for (const [T, L] of [[5, 13], [1, 13], [7, 7], [3, 4]]) {
      const dk = 11, dv = 9, scale = 1 / Math.sqrt(dk);
      const seed = 600 + H * 10 + Hkv + T * 100 + L;
      const q = randn(T * H * dk, seed, 2);
      // K and V live in padded rows with an offset, as slices of a bigger cache would
      const kOff = 3, kHead = dk + 2, kRow = Hkv * kHead + 5;
      const vOff = 1, vHead = dv + 1, vRow = Hkv * vHead + 4;
      const k: ViewSpec = { data: randn(kOff + L * kRow, seed + 1, 2), offset: kOff, rowStride: kRow, headStride: kHead };
      const v: ViewSpec = { data: randn(vOff + L * vRow, seed + 2), offset: vOff, rowStride: vRow, headStride: vHead };
      const out = new Float32Array(T * H * dv);
      attend(out, q, T, H, dk, k, v, dv, Hkv, L, scale);
      const ref = attendRef(q, T, H, dk, k, v, dv, Hkv, L, scale);
      const e = relErr(out, ref);
      assert.ok(e < 1e-6, `T=${T} L=${L}: rel err ${e}`);

      // the mask matters: with T > 1 the first new token must not see the later ones
      if (T > 1) {
        // row 0 recomputed with all L positions visible must differ from ours
        const full = attendRef(q.subarray(0, H * dk), 1, H, dk, k, v, dv, Hkv, L, scale);
        assert.ok(relErr(out.subarray(0, H * dv), full) > 1e-3, "first new token attended to future tokens");
      }
    }
  });
}

test("attend with headStride 0 (shared key/value for all heads, absorbed-MLA layout)", () => {
  const T = 3, H = 6, L = 13, dc = 9, dr = 4, w = dc + dr, scale = 0.3;
  const rows = randn(L * w, 701, 1.5);
  const q = randn(T * H * w, 702);
  const view = { data: rows, offset: 0, rowStride: w, headStride: 0 };
  const out = new Float32Array(T * H * dc);
  attend(out, q, T, H, w, view, view, dc, 1, L, scale);
  const ref = attendRef(q, T, H, w, view, view, dc, 1, L, scale);
  assert.ok(relErr(out, ref) < 1e-6, `rel err ${relErr(out, ref)}`);

  // headStride 0 with Hkv = 3 groups reads the same rows for every group: identical to Hkv = 1
  const out3 = new Float32Array(T * H * dc);
  attend(out3, q, T, H, w, view, view, dc, 3, L, scale);
  assert.ok(relErr(out3, ref) < 1e-6, "expected relErr(out3, ref) < 1e-6");

  // and is NOT what a per-group layout would give (so headStride is actually used)
  const view2 = { data: rows, offset: 0, rowStride: w, headStride: 1 };
  const out4 = new Float32Array(T * H * dc);
  attend(out4, q, T, H, w, view2, view2, dc, 3, L - 1, scale);
  const ref4 = attendRef(q, T, H, w, view2, view2, dc, 3, L - 1, scale);
  assert.ok(relErr(out4, ref4) < 1e-6, "expected relErr(out4, ref4) < 1e-6");
  assert.ok(relErr(out4, ref) > 1e-3, "expected relErr(out4, ref) > 1e-3");
});

// ---------------------------------------------------------------------------------------------------------------
// dtype conversions

test("f32ToBf16 rounds to nearest even on known bit patterns", () => {
  const cases: [number, number][] = [
    [0x3f800000, 0x3f80], // 1.0
    [0xbf800000, 0xbf80], // -1.0
    [0x3f807fff, 0x3f80], // just below half: down
    [0x3f808000, 0x3f80], // exactly half, even below: down
    [0x3f808001, 0x3f81], // just above half: up
    [0x3f818000, 0x3f82], // exactly half, odd below: up to even
    [0x3f81ffff, 0x3f82],
    [0x40490fdb, 0x4049], // pi
    [0x7f7fffff, 0x7f80], // FLT_MAX rounds to +inf
    [0x7f800000, 0x7f80], // +inf
    [0xff800000, 0xff80], // -inf
    [0x80000000, 0x8000], // -0
    [0x00000000, 0x0000],
    [0x00018000, 0x0002], // subnormal tie, odd below: up
    [0x00008000, 0x0000], // subnormal tie, even below: down
  ];
  for (const [bits, want] of cases) {
    const got = f32ToBf16(bitsToF32(bits));
    assert.equal(got, want, `0x${bits.toString(16)} -> 0x${got.toString(16)}, want 0x${want.toString(16)}`);
  }
  for (const nanBits of [0x7fc00000, 0x7f800001, 0xffc00001, 0x7f8000ff]) {
    const h = f32ToBf16(bitsToF32(nanBits));
    assert.ok(Number.isNaN(bf16ToF32(h)), `NaN 0x${nanBits.toString(16)} became 0x${h.toString(16)}`);
  }
  assert.equal(bf16ToF32(0x3f80), 1);
  assert.equal(bf16ToF32(0xc049), -3.140625);
});

test("f32ToBf16 picks the nearer bf16 neighbour on random values (ties to even)", () => {
  const xs = randn(5000, 801, 1e4);
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i] * (i % 7 === 0 ? 1e-30 : 1);
    const fx = bitsToF32(f32Bits(x)); // the float32 value
    const lo = f32Bits(fx) >>> 16; // truncation (toward zero)
    const vLo = bitsToF32(lo << 16), vHi = bitsToF32((lo + 1) << 16);
    const dLo = Math.abs(fx - vLo), dHi = Math.abs(fx - vHi);
    const want = dLo < dHi ? lo : dHi < dLo ? lo + 1 : lo % 2 === 0 ? lo : lo + 1;
    assert.equal(f32ToBf16(fx), want, `x=${fx}`);
  }
});

test("f16ToF32 of known values", () => {
  const cases: [number, number][] = [
    [0x3c00, 1], [0xbc00, -1], [0x4000, 2], [0xc000, -2], [0x3800, 0.5], [0x3555, 0.333251953125],
    [0x7bff, 65504], [0xfbff, -65504], [0x0400, 2 ** -14], [0x0001, 2 ** -24], [0x03ff, 1023 * 2 ** -24],
    [0x8001, -(2 ** -24)], [0x4248, 3.140625], [0x0000, 0], [0x7c00, Infinity], [0xfc00, -Infinity],
  ];
  for (const [h, want] of cases) assert.equal(f16ToF32(h), want, `0x${h.toString(16)}`);
  assert.ok(Object.is(f16ToF32(0x8000), -0), "expected Object.is(f16ToF32(0x8000), -0)");
  for (const h of [0x7e00, 0x7c01, 0xfe00, 0x7fff]) assert.ok(Number.isNaN(f16ToF32(h)), `0x${h.toString(16)}`);
  // every half value agrees with the definition
  for (let h = 0; h < 65536; h++) {
    const a = f16ToF32(h), b = halfValue(h);
    assert.ok(Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b)) || a === b, `0x${h.toString(16)}: ${a} vs ${b}`);
  }
});

test("f32ToF16 round trips every half (normal, subnormal, inf, nan) and rounds to nearest even", () => {
  for (let h = 0; h < 65536; h++) {
    const v = f16ToF32(h);
    const back = f32ToF16(v);
    if (Number.isNaN(v)) assert.ok(Number.isNaN(f16ToF32(back)), `NaN 0x${h.toString(16)} -> 0x${back.toString(16)}`);
    else assert.equal(back, h, `0x${h.toString(16)} (${v}) -> 0x${back.toString(16)}`);
  }
  const cases: [number, number][] = [
    [1 + 2 ** -11, 0x3c00], // tie, even below: down
    [1 + 3 * 2 ** -11, 0x3c02], // tie, odd below: up
    [1 + 2 ** -11 + 2 ** -20, 0x3c01],
    [65519, 0x7bff], // below the overflow tie
    [65520, 0x7c00], // tie between 65504 and 2^16: to even = inf
    [1e6, 0x7c00], [-1e6, 0xfc00],
    [2 ** -25, 0x0000], // tie between 0 and the smallest subnormal: to even
    [2 ** -25 * 1.0001, 0x0001],
    [3 * 2 ** -25, 0x0002], // subnormal tie, odd below: up
    [2 ** -14 - 2 ** -26, 0x0400], // rounds up from the subnormals into the first normal
    [1e-10, 0x0000], [-1e-10, 0x8000], [-0, 0x8000],
  ];
  for (const [x, want] of cases) {
    const got = f32ToF16(x);
    assert.equal(got, want, `${x} -> 0x${got.toString(16)}, want 0x${want.toString(16)}`);
  }
  // random values: the result is a nearest half, ties to even
  const xs = randn(5000, 802, 70000);
  for (let i = 0; i < xs.length; i++) {
    const x = Math.fround(xs[i] * (i % 5 === 0 ? 1e-4 : 1) * (i % 11 === 0 ? 1e-2 : 1));
    const h = f32ToF16(x);
    const v = f16ToF32(h);
    if (!Number.isFinite(v)) {
      assert.ok(Math.abs(x) >= 65520, `${x} overflowed`);
      continue;
    }
    const mag = h & 0x7fff, sign = h & 0x8000;
    const d = Math.abs(x - v);
    for (const nb of [mag - 1, mag + 1]) {
      if (nb < 0 || nb > 0x7bff) continue;
      const dn = Math.abs(x - f16ToF32(sign | nb));
      assert.ok(d < dn || (d === dn && (mag & 1) === 0), `${x} -> 0x${h.toString(16)} but 0x${(sign | nb).toString(16)} is nearer`);
    }
  }
});
