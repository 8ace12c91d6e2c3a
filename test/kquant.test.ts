// The WebAssembly products on GGML's packed blocks (assembly/kquant.ts; linear_q4_0/q4_k/q5_k/q6_k and
// linear_grouped) against the plain reference: dequantizeGgml, then the scalar f32 product.
//
// Tolerances (relative error ||out - ref|| / ||ref||): T > 1 widens the rows to exactly the reference's f32 weights,
// so only the summation order differs: 1e-5. T == 1 quantizes x to int16 per block of 32 (error <= max|x_block| /
// 65534 per element, ~1e-5 of a typical dot product, more where terms cancel) and applies the scales per
// sub-block in f32: 1e-4, as the Q8 kernel's test (wasm.test.ts) allows (measured 1.5e-5 for every type on
// 64 x 1024 uniform data; T = 17: 6e-7).
// The relaxed-SIMD build quantizes x to int8 per block of 256 for the K-quants, T = 1 and T > 1 alike (GGML's Q8_K:
// x rounded to 1/254 of its block's largest |x|, the levels meet it in relaxed_dot_i8x16_i7x16): each x element is
// off by up to 1/254 of its block's max, ~3-5e-3 of a dot product of random data (measured 2.8e-3 to 4.6e-3 for
// Q4_K, Q5_K, Q6_K at K = 768, 1024, T = 1 to 70), as llama.cpp's CPU products: 1e-2. Q4_0 keeps int16 x there too.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { linear as refLinear } from "../src/backends/cpu/matmul.js";
import { WasmBackend, type WasmWeight } from "../src/backends/wasm/index.js";
import { WasmOps } from "../src/backends/wasm/ops.js";
import { cpuOpsQuant } from "../src/backends/ops.js";
import { BLOCK_DTYPES, type BlockDType } from "../src/tensor/dtype.js";
import { dequantizeGgml, ggmlRowBytes } from "../src/tensor/ggml.js";
import { quantizeRows } from "../src/tensor/ggml-quantize.js";
import { f32Tensor, tensor, type Tensor } from "../src/tensor/tensor.js";
import { randn, relErr, SENTINEL, wasmLinear, checkOutputs } from "./helpers.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
/** In the relaxed child run (see the last test) every backend uses the relaxed-SIMD build. */
const RELAXED = process.env.MLA_WASM_RELAXED === "1";
const BLOCK: Record<BlockDType, number> = { Q4_0: 32, Q4_K: 256, Q5_K: 256, Q6_K: 256, Q5_0: 32 };

/** Tolerance of a product of `type` at T tokens in this run's build (see the header). */
function tolFor(type: BlockDType, T: number): number {
  if (RELAXED && type !== "Q4_0" && type !== "Q5_0") return 1e-2;
  return T === 1 ? 1e-4 : 1e-5;
}

let seed = (Math.random() * 2 ** 30) | 0;

/** A random [rows, K] block tensor and its dequantized f32 twin. */
function randomWeight(type: BlockDType, rows: number, K: number): { q: Tensor; deq: Tensor } {
  const s = seed++;
  const wf = randn(rows * K, s);
  // sub-blocks of different magnitudes, so the per-sub-block scales and mins matter
  for (let i = 0; i < wf.length; i++) wf[i] *= 1 + ((i >> 5) % 7);
  const bytes = quantizeRows(type, rows, K, (r) => wf.subarray(r * K, (r + 1) * K));
  const deq = new Float32Array(rows * K), rb = ggmlRowBytes(type, K);
  for (let r = 0; r < rows; r++) dequantizeGgml(type, bytes, r * rb, K, deq, r * K);
  return { q: tensor(type, [rows, K], bytes), deq: f32Tensor([rows, K], deq) };
}

describe("wasm products on GGML blocks", () => {
  let be1: WasmBackend, be2: WasmBackend;
  before(async () => {
    be1 = await WasmBackend.create({ threads: 1, relaxed: RELAXED });
    be2 = await WasmBackend.create({ threads: 2, relaxed: RELAXED, minParallelWork: 0 });
  });
  after(async () => {
    await be1?.close();
    await be2?.close();
  });

  const runLinear = wasmLinear;
  const check = (what: string, got: Float32Array, ref: Float32Array, tol: number): void => checkOutputs(what, got, ref, tol, seed);

  for (const type of BLOCK_DTYPES) {
    test(`${type}: linear vs dequantized reference, T = 1..4, 17, odd N, 1 and 2 threads identical`, () => {
      for (const K of [BLOCK[type], 3 * BLOCK[type]]) {
        for (const N of [5, 37]) {
          const { q, deq } = randomWeight(type, N, K);
          // T = 2..4: the relaxed build's few-token path for Q4_K/Q5_K (linear_rows_xt); 17: the int8 tiles
          for (const T of [1, 2, 3, 4, 17]) {
            const x = randn(T * K, seed++);
            const ref = new Float32Array(T * N);
            refLinear(ref, x, T, K, deq, N);
            const a = runLinear(be1, q, x, T, K, N, 0, K, N, T * N), b = runLinear(be2, q, x, T, K, N, 0, K, N, T * N);
            check(`${type} K=${K} N=${N} T=${T}`, a, ref, tolFor(type, T));
            assert.deepEqual(b, a, `${type} K=${K} N=${N} T=${T}: 2 threads differ from 1`);
          }
        }
      }
    });

    test(`${type}: linear with row0, strided x and out`, () => {
      const rows = 53, K = 2 * BLOCK[type], N = 31, row0 = 19, xStride = K + 5, outStride = N + 3;
      const { q, deq } = randomWeight(type, rows, K);
      for (const T of [1, 3, 17]) {
        const x = randn(T * xStride, seed++);
        const outLen = (T - 1) * outStride + N + 4;
        const ref = new Float32Array(outLen).fill(SENTINEL);
        refLinear(ref, x, T, K, deq, N, row0, xStride, outStride);
        for (const be of [be1, be2]) check(`${type} T=${T} threads=${be.threads}`, runLinear(be, q, x, T, K, N, row0, xStride, outStride, outLen), ref, tolFor(type, T));
      }
    });

    test(`${type}: T = 1 float path (x with a tiny block) and a zero x`, () => {
      const K = 2 * BLOCK[type], N = 21;
      const { q, deq } = randomWeight(type, N, K);
      const x = randn(K, seed++);
      // a whole block of x tiny (the int8 x of the relaxed K-quants has one factor per 256, the int16 x per 32)
      for (let i = BLOCK[type]; i < 2 * BLOCK[type]; i++) x[i] *= 1e-33;
      const ref = new Float32Array(N);
      refLinear(ref, x, 1, K, deq, N);
      for (const be of [be1, be2]) check(`${type} tiny block threads=${be.threads}`, runLinear(be, q, x, 1, K, N, 0, K, N, N), ref, 1e-5);
      // two tokens, the second with the tiny block: the few-token path hands both to the tiles or the float path
      const x2 = randn(2 * K, seed++);
      x2.set(x, K);
      const ref2 = new Float32Array(2 * N);
      refLinear(ref2, x2, 2, K, deq, N);
      for (const be of [be1, be2]) check(`${type} tiny block T=2 threads=${be.threads}`, runLinear(be, q, x2, 2, K, N, 0, K, N, 2 * N), ref2, tolFor(type, 2));
      const zero = runLinear(be1, q, new Float32Array(K), 1, K, N, 0, K, N, N);
      assert.ok(zero.every((v) => v === 0), `${type}: zero x gives ${zero.find((v) => v !== 0)}`);
    });

    test(`${type}: T = 150 (three chunks of tokens, one of them needing the float path), strided, 1 and 2 threads identical`, () => {
      // the relaxed build quantizes the tokens once per product in chunks of 64 (kq8_prep) and every thread's rows
      // read them (linear_kq8); a chunk with a tiny block goes through the f32 tiles, the others stay on int8
      const K = 2 * BLOCK[type], N = 37, T = 150, xStride = K + 3, outStride = N + 2;
      const { q, deq } = randomWeight(type, N, K);
      const x = randn(T * xStride, seed++);
      for (let i = 0; i < BLOCK[type]; i++) x[100 * xStride + i] *= 1e-33; // token 100: chunk 1
      const outLen = (T - 1) * outStride + N;
      const ref = new Float32Array(outLen).fill(SENTINEL);
      refLinear(ref, x, T, K, deq, N, 0, xStride, outStride);
      const a = runLinear(be1, q, x, T, K, N, 0, xStride, outStride, outLen), b = runLinear(be2, q, x, T, K, N, 0, xStride, outStride, outLen);
      check(`${type} T=${T}`, a, ref, tolFor(type, T));
      assert.deepEqual(b, a, `${type} T=${T}: 2 threads differ from 1`);
      // the float-path chunk multiplies the dequantized weights exactly (1e-5); its neighbours carry int8 x
      const rows = (t0: number, t1: number, v: Float32Array) => Array.from({ length: t1 - t0 }, (_, i) => v.subarray((t0 + i) * outStride, (t0 + i) * outStride + N));
      const cat = (r: Float32Array[]) => Float32Array.from(r.flatMap((v) => Array.from(v)));
      check(`${type} T=${T} float-path chunk`, cat(rows(64, 128, a)), cat(rows(64, 128, ref)), 1e-5);
    });

    test(`${type}: linearGrouped (row blocks with a stride) vs the reference`, () => {
      const G = 5, N = 9, gs = 11, row0 = 3, K = BLOCK[type] * 2, xg = K + 4, og = N + 2;
      const rows = row0 + (G - 1) * gs + N + 2;
      const { q, deq } = randomWeight(type, rows, K);
      const x = randn((G - 1) * xg + K, seed++);
      const outLen = (G - 1) * og + N;
      const ref = new Float32Array(outLen).fill(SENTINEL);
      for (let g = 0; g < G; g++) refLinear(ref.subarray(g * og), x.subarray(g * xg), 1, K, deq, N, row0 + g * gs);
      for (const be of [be1, be2]) {
        const mark = be.heap.mark();
        const ww: WasmWeight = be.upload(q);
        const xp = be.heap.putF32(x), o = be.heap.allocF32(outLen);
        o.view.fill(SENTINEL);
        be.linearGrouped(o.ptr, xp, G, K, ww, N, xg, og, row0, gs);
        check(`${type} grouped threads=${be.threads}`, be.heap.f32(o.ptr, outLen).slice(), ref, Math.max(1e-4, tolFor(type, 1)));
        be.heap.release(mark);
      }
    });
  }

  test("linear refuses K that is not a multiple of the block", () => {
    const { q } = randomWeight("Q4_K", 4, 256);
    const ww = be1.upload(q);
    assert.throws(() => be1.linear(0, 0, 1, 128, { ...ww, cols: 128 }, 4), /multiple of 256/);
  });
});

test("WasmOps quantize Q4_K: blocks where rows divide 256, Q8 where 32, else kept; products match cpuOpsQuant", async () => {
  const ops = await WasmOps.create({ threads: 2, relaxed: RELAXED, quantize: "Q4_K" });
  try {
    const cpu = cpuOpsQuant("Q4_K");
    for (const [K, want] of [[512, "Q4_K"], [96, "Q8"], [40, "F32"]] as const) {
      const N = 13, w = f32Tensor([N, K], randn(N * K, seed++));
      const t = ops.prepare(w), c = cpu.prepare(w);
      assert.equal(t.dtype, want, `K=${K}`);
      assert.equal(c.dtype, want, `K=${K} (cpu)`);
      assert.deepEqual(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), new Uint8Array(c.data.buffer, c.data.byteOffset, c.data.byteLength));
      for (const T of [1, 5]) {
        const x = randn(T * K, seed++), a = new Float32Array(T * N), b = new Float32Array(T * N);
        ops.linear(a, x, T, K, t, N);
        cpu.linear(b, x, T, K, c, N);
        // Q8 products of up to 8 rows quantize x to int16 per 32, as T = 1 does (~1e-5)
        const tol = want === "Q4_K" ? tolFor(want, T) : (want === "Q8" ? T <= 8 : T === 1) ? 1e-4 : 1e-5;
        assert.ok(relErr(a, b) <= tol, `K=${K} T=${T}: ${relErr(a, b)}`);
      }
    }
  } finally {
    await ops.close();
  }
});

test("relaxed-SIMD build passes these tests (child process with --experimental-wasm-relaxed-simd)", { skip: RELAXED ? "this is the relaxed child run itself" : false }, () => {
  const r = spawnSync(process.execPath, ["--experimental-wasm-relaxed-simd", "--import", "tsx", "--test", "test/kquant.test.ts"], {
    cwd: ROOT, encoding: "utf8", timeout: 240000, env: { ...process.env, MLA_WASM_RELAXED: "1" },
  });
  assert.equal(r.status, 0, r.stdout.slice(-3000) + r.stderr.slice(-2000));
});
