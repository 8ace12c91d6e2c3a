// GGML's Q5_0 as a packed weight dtype (assembly/q5.ts: linear_q5_0, linear_grouped dt 8) against the plain
// reference, dequantizeGgml then the scalar f32 product, on raw random blocks: every fifth-bit pattern and level
// (q - 16 from -16 to 15), scales over a wide range, the real row width of DeepSeek-V2-Lite's ffn_down_exps (1408)
// and block counts that leave 1-3 blocks after the kernel's steps of 4.
// Tolerances as test/kquant.test.ts explains: T > 1 multiplies exactly the reference's f32 weights (summation order
// differs): 1e-5; T == 1 quantizes x per block of 32, to int16 (plain build: 1e-4) or to int8 (relaxed build, as
// llama.cpp's Q8_0 activations: checked against the rounding bound output by output, ~4e-3 relative).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { linear as refLinear } from "../src/backends/cpu/matmul.js";
import { WasmBackend, relaxedSimdAvailable } from "../src/backends/wasm/index.js";
import { f32ToF16 } from "../src/tensor/dtype.js";
import { dequantizeGgml, ggmlRowBytes } from "../src/tensor/ggml.js";
import { quantizeRows } from "../src/tensor/ggml-quantize.js";
import { f32Tensor, sliceRows, concatRows, rowF32, tensor, toF32, type Tensor } from "../src/tensor/tensor.js";
import { randn, relErr, SENTINEL, wasmLinear, checkOutputs } from "./helpers.js";

let seed = (Math.random() * 2 ** 30) | 0;

/** rows x K of raw Q5_0 blocks: random qh and nibbles, d = +-2^e (1 + m) with e in [-12, 2]. */
function randomQ5_0(rows: number, K: number): { q: Tensor; deq: Tensor } {
  const nb = (rows * K) / 32, bytes = new Uint8Array(nb * 22), r = randn(nb * 24, seed++);
  for (let b = 0; b < nb; b++) {
    const u = r.subarray(24 * b, 24 * b + 24), at = 22 * b;
    const d = Math.sign(u[0] || 1) * 2 ** Math.round(-5 + 7 * u[1]) * (1.5 + 0.5 * u[2]);
    const h = f32ToF16(d);
    bytes[at] = h & 255;
    bytes[at + 1] = h >> 8;
    for (let i = 2; i < 22; i++) bytes[at + i] = Math.floor((u[i + 2] * 0.5 + 0.5) * 256) & 255;
  }
  const deq = new Float32Array(rows * K), rb = ggmlRowBytes("Q5_0", K);
  for (let i = 0; i < rows; i++) dequantizeGgml("Q5_0", bytes, i * rb, K, deq, i * K);
  return { q: tensor("Q5_0", [rows, K], bytes), deq: f32Tensor([rows, K], deq) };
}

for (const relaxed of relaxedSimdAvailable() ? [false, true] : [false]) describe(`wasm products on Q5_0 blocks (${relaxed ? "relaxed" : "plain"} SIMD)`, () => {
  let be1: WasmBackend, be2: WasmBackend;
  before(async () => {
    be1 = await WasmBackend.create({ threads: 1, relaxed });
    be2 = await WasmBackend.create({ threads: 2, relaxed, minParallelWork: 0 });
  });
  after(async () => {
    await be1?.close();
    await be2?.close();
  });

  /**
   * T = 1 quantizes x per block of 32 to int16 (step max|x| / 32767) or, in the relaxed build, int8 (max|x| / 127):
   * each output may be off by at most sum over blocks of (step / 2) * sum |w| in the block. A relative tolerance is
   * flaky for a few short rows whose sums cancel (3 outputs of 32 weights), so the bound is checked output by output.
   */
  const LEVELS = relaxed ? 127 : 32767;
  /** The relaxed build's few-token path (assembly/q5.ts Q5M_MAX_T) quantizes each token's x as T = 1 does. */
  const FEW_T = 16;
  function checkXBound(what: string, got: Float32Array, ref: Float32Array, deq: Tensor, x: Float32Array, K: number, N: number): void {
    const w = toF32(deq);
    for (let n = 0; n < N; n++) {
      let bound = 1e-6 * Math.abs(ref[n]);
      for (let b = 0; b < K; b += 32) {
        let mx = 0, sw = 0;
        for (let k = b; k < b + 32; k++) mx = Math.max(mx, Math.abs(x[k])), sw += Math.abs(w[n * K + k]);
        bound += (mx / (2 * LEVELS)) * sw * 1.001;
      }
      assert.ok(Math.abs(got[n] - ref[n]) <= bound, `${what} (seed ${seed}) output ${n}: off by ${Math.abs(got[n] - ref[n])}, bound ${bound}`);
    }
  }

  const runLinear = wasmLinear;
  const check = (what: string, got: Float32Array, ref: Float32Array, tol: number): void => checkOutputs(what, got, ref, tol, seed);

  test("linear vs dequantized reference: K = 32 .. 1408, T = 1 .. 70, odd N, 1 and 2 threads identical", () => {
    for (const K of [32, 96, 160, 224, 1408]) {
      for (const N of [3, 37]) {
        const { q, deq } = randomQ5_0(N, K);
        for (const T of [1, 2, 5, 9, 16, 17, 70]) {
          const x = randn(T * K, seed++), ref = new Float32Array(T * N);
          refLinear(ref, x, T, K, deq, N);
          const a = runLinear(be1, q, x, T, K, N, 0, K, N, T * N), b = runLinear(be2, q, x, T, K, N, 0, K, N, T * N);
          if (T === 1 || (relaxed && T <= FEW_T)) {
            for (let t = 0; t < T; t++) checkXBound(`K=${K} N=${N} T=${T} token ${t}`, a.subarray(t * N, (t + 1) * N), ref.subarray(t * N, (t + 1) * N), deq, x.subarray(t * K, (t + 1) * K), K, N);
          } else check(`K=${K} N=${N} T=${T}`, a, ref, 1e-5);
          assert.deepEqual(b, a, `K=${K} N=${N} T=${T}: 2 threads differ from 1`);
        }
      }
    }
  });

  test("linear with row0, strided x and out", () => {
    const rows = 53, K = 224, N = 31, row0 = 19, xStride = K + 5, outStride = N + 3;
    const { q, deq } = randomQ5_0(rows, K);
    for (const T of [1, 3, 17]) {
      const x = randn(T * xStride, seed++), outLen = (T - 1) * outStride + N + 4;
      const ref = new Float32Array(outLen).fill(SENTINEL);
      refLinear(ref, x, T, K, deq, N, row0, xStride, outStride);
      for (const be of [be1, be2]) check(`T=${T} threads=${be.threads}`, runLinear(be, q, x, T, K, N, row0, xStride, outStride, outLen), ref, T === 1 || (relaxed && T <= FEW_T) ? (relaxed ? 2e-2 : 1e-4) : 1e-5);
    }
  });

  test("T = 1 float path (x with a tiny block) and a zero x", () => {
    const K = 160, N = 21;
    const { q, deq } = randomQ5_0(N, K);
    const x = randn(K, seed++);
    for (let i = 64; i < 96; i++) x[i] *= 1e-33;
    const ref = new Float32Array(N);
    refLinear(ref, x, 1, K, deq, N);
    for (const be of [be1, be2]) check(`tiny block threads=${be.threads}`, runLinear(be, q, x, 1, K, N, 0, K, N, N), ref, 1e-5);
    // three tokens, the second with the tiny block: the few-token path gives them all to the f32 tiles (exact weights)
    const x3 = randn(3 * K, seed++);
    x3.set(x, K);
    const ref3 = new Float32Array(3 * N);
    refLinear(ref3, x3, 3, K, deq, N);
    for (const be of [be1, be2]) check(`tiny block T=3 threads=${be.threads}`, runLinear(be, q, x3, 3, K, N, 0, K, N, 3 * N), ref3, 1e-5);
    const zero = runLinear(be1, q, new Float32Array(K), 1, K, N, 0, K, N, N);
    assert.ok(zero.every((v) => v === 0), `zero x gives ${zero.find((v) => v !== 0)}`);
  });

  test("linearGrouped (row blocks with a stride) vs the reference", () => {
    const G = 5, N = 9, gs = 11, row0 = 3, K = 96, xg = K + 4, og = N + 2;
    const rows = row0 + (G - 1) * gs + N + 2;
    const { q, deq } = randomQ5_0(rows, K);
    const x = randn((G - 1) * xg + K, seed++), outLen = (G - 1) * og + N;
    const ref = new Float32Array(outLen).fill(SENTINEL);
    for (let g = 0; g < G; g++) refLinear(ref.subarray(g * og), x.subarray(g * xg), 1, K, deq, N, row0 + g * gs);
    for (const be of [be1, be2]) {
      const mark = be.heap.mark();
      const ww = be.upload(q), xp = be.heap.putF32(x), o = be.heap.allocF32(outLen);
      o.view.fill(SENTINEL);
      be.linearGrouped(o.ptr, xp, G, K, ww, N, xg, og, row0, gs);
      check(`grouped threads=${be.threads}`, be.heap.f32(o.ptr, outLen).slice(), ref, relaxed ? 2e-2 : 1e-4);
      be.heap.release(mark);
    }
  });

  test("linear refuses K that is not a multiple of 32; uploadBlocks to Q5_0 takes the JS quantizer", () => {
    const { q } = randomQ5_0(4, 64);
    const ww = be1.upload(q);
    assert.throws(() => be1.linear(0, 0, 1, 48, { ...ww, cols: 48 }, 4), /multiple of 32/);
    const w = f32Tensor([3, 64], randn(192, seed++)), mark = be1.heap.mark();
    const up = be1.uploadBlocks(w, "Q5_0");
    const want = quantizeRows("Q5_0", 3, 64, (r) => (w.data as Float32Array).subarray(64 * r, 64 * r + 64));
    assert.deepEqual(new Uint8Array(be1.heap.buffer, up.ptr, want.length).slice(), want);
    be1.heap.release(mark);
  });
});

test("Q5_0 tensors: rowF32, sliceRows and concatRows on whole blocks", () => {
  const { q, deq } = randomQ5_0(7, 96), rb = ggmlRowBytes("Q5_0", 96);
  assert.equal(rb, 66);
  const d = deq.data as Float32Array;
  assert.deepEqual(rowF32(q, 4, 96, new Float32Array(96)), d.subarray(4 * 96, 5 * 96));
  const s = sliceRows(q, 2, 5);
  assert.deepEqual(s.shape, [3, 96]);
  assert.deepEqual(rowF32(s, 1, 96, new Float32Array(96)), d.subarray(3 * 96, 4 * 96));
  const c = concatRows(sliceRows(q, 0, 2), sliceRows(q, 2, 7));
  assert.deepEqual(c.data, q.data);
});
