import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import { linear as refLinear } from "../src/backends/cpu/matmul.js";
import { rmsNorm, siluMul, softmax as refSoftmax, attend } from "../src/backends/cpu/index.js";
import { fromF32, tensor, toF32, type Tensor } from "../src/tensor/tensor.js";
import {
  KERNEL, POOL_KERNELS, WasmBackend, WorkerPool, defaultWasmDir, loadKernelBytes, quantizeQ8Data, dequantizeQ8Data,
  relaxedSimdAvailable, type WasmWeight,
} from "../src/backends/wasm/index.js";
import { WasmHeap } from "../src/backends/wasm/memory.js";
import { randn, relErr } from "./helpers.js";

const BUILT = existsSync(join(defaultWasmDir(), "kernels.wasm"));
// The kernels are built by `npm run build` (npm ci runs it): missing .wasm files are a failure, not a skip.
test("the WebAssembly kernels are built", () => {
  assert.ok(BUILT, "build/kernels.wasm missing: run `npm run asbuild`");
  assert.ok(existsSync(join(defaultWasmDir(), "kernels-relaxed.wasm")), "build/kernels-relaxed.wasm missing: run `npm run asbuild`");
});
const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
/** In the relaxed child run (see the last test) every backend uses the relaxed-SIMD build. */
const RELAXED = process.env.MLA_WASM_RELAXED === "1";

type Dt = "F32" | "BF16" | "F16";
const DTYPES: Dt[] = ["F32", "BF16", "F16"];

describe("wasm kernels", () => {
  let be1: WasmBackend, be2: WasmBackend, be3: WasmBackend;
  before(async () => {
    const relaxed = RELAXED ? true : false;
    // minParallelWork 0: even these small test shapes are split across the workers
    be1 = await WasmBackend.create({ threads: 1, relaxed });
    be2 = await WasmBackend.create({ threads: 2, relaxed, minParallelWork: 0 });
    be3 = await WasmBackend.create({ threads: 3, relaxed, minParallelWork: 0 });
  });
  after(async () => {
    await be1?.close();
    await be2?.close();
    await be3?.close();
  });

  function upload(be: WasmBackend, t: Tensor | { q8: ReturnType<typeof quantizeQ8Data>; rows: number; cols: number }): WasmWeight {
    return "q8" in t ? be.uploadQ8Data(t.q8, t.rows, t.cols) : be.upload(t);
  }

  /** Run the wasm linear on a fresh copy of everything; out is pre-filled with a sentinel to catch stray writes. */
  function runLinear(
    be: WasmBackend, wsrc: Tensor | { q8: ReturnType<typeof quantizeQ8Data>; rows: number; cols: number }, x: Float32Array,
    T: number, K: number, N: number, row0: number, xStride: number, outStride: number, outLen: number,
  ): Float32Array {
    const mark = be.heap.mark();
    const w = upload(be, wsrc);
    const xp = be.heap.putF32(x);
    const o = be.heap.allocF32(outLen);
    o.view.fill(12345);
    be.linear(o.ptr, xp, T, K, w, N, row0, xStride, outStride);
    const res = be.heap.f32(o.ptr, outLen).slice();
    be.heap.release(mark);
    return res;
  }

  test("linear F32/BF16/F16 vs the scalar reference, 1/2/3 threads identical", () => {
    let seed = 100;
    for (const dt of DTYPES) {
      for (const [N, K] of [[37, 96], [101, 160], [64, 40]]) {
        for (const T of [1, 3, 7, 8, 13, 70]) {
          const wt = fromF32(randn(N * K, seed++), dt, [N, K]);
          const x = randn(T * K, seed++);
          const ref = new Float32Array(T * N).fill(12345);
          refLinear(ref, x, T, K, wt, N);
          const a = runLinear(be1, wt, x, T, K, N, 0, K, N, T * N);
          const b = runLinear(be2, wt, x, T, K, N, 0, K, N, T * N);
          const c = runLinear(be3, wt, x, T, K, N, 0, K, N, T * N);
          const e = relErr(a, ref);
          assert.ok(e <= 1e-5, `${dt} N=${N} K=${K} T=${T}: relErr ${e}`);
          assert.deepEqual(b, a, `${dt} N=${N} K=${K} T=${T}: 2 threads differ from 1`);
          assert.deepEqual(c, a, `${dt} N=${N} K=${K} T=${T}: 3 threads differ from 1`);
        }
      }
    }
  });

  test("linear with row0, strided x and out (nothing outside the outputs is written)", () => {
    let seed = 300;
    for (const dt of [...DTYPES, "Q8" as const]) {
      for (const T of [1, 3, 7, 8, 13, 70]) {
        const rows = 150, K = 96, N = 101, row0 = 29, xStride = K + 3, outStride = N + 7;
        const wf = randn(rows * K, seed++);
        const x = randn(T * xStride, seed++);
        const outLen = (T - 1) * outStride + N + 5;
        let wsrc: Tensor | { q8: ReturnType<typeof quantizeQ8Data>; rows: number; cols: number };
        let wref: Tensor;
        if (dt === "Q8") {
          const q8 = quantizeQ8Data(wf, rows, K);
          wsrc = { q8, rows, cols: K };
          wref = tensor("F32", [rows, K], dequantizeQ8Data(q8, rows, K));
        } else {
          wsrc = wref = fromF32(wf, dt, [rows, K]);
        }
        const ref = new Float32Array(outLen).fill(12345);
        refLinear(ref, x, T, K, wref, N, row0, xStride, outStride);
        for (const be of [be1, be2]) {
          const got = runLinear(be, wsrc, x, T, K, N, row0, xStride, outStride, outLen);
          for (let i = 0; i < outLen; i++) {
            if (ref[i] === 12345) assert.equal(got[i], 12345, `${dt} T=${T}: wrote outside the outputs at ${i}`);
          }
          const e = relErr(got, ref);
          // Q8 at T <= 8 quantizes x to int16 per block (see "linear Q8 vs the dequantized weights")
          assert.ok(e <= (dt === "Q8" && T <= 8 ? 1e-4 : 1e-5), `${dt} T=${T} threads=${be.threads}: relErr ${e}`);
        }
      }
    }
  });

  test("linear Q8 vs the dequantized weights, and the quantization error vs F32", (t) => {
    let seed = 500;
    for (const [N, K] of [[37, 96], [101, 160], [250, 1024]]) {
      for (const T of [1, 3, 7, 8, 13, 70]) {
        const wf = randn(N * K, seed++);
        const x = randn(T * K, seed++);
        const q8 = quantizeQ8Data(wf, N, K);
        const deq = dequantizeQ8Data(q8, N, K);
        const ref = new Float32Array(T * N);
        refLinear(ref, x, T, K, tensor("F32", [N, K], deq), N);
        const exact = new Float32Array(T * N);
        refLinear(exact, x, T, K, tensor("F32", [N, K], wf), N);
        const a = runLinear(be1, { q8, rows: N, cols: K }, x, T, K, N, 0, K, N, T * N);
        const b = runLinear(be2, { q8, rows: N, cols: K }, x, T, K, N, 0, K, N, T * N);
        const e = relErr(a, ref);
        // T <= 6 (relaxed build) or 8 (plain) quantizes x to int16 per block of 32 (error ~1.5e-5 of the block's max
        // |x|, far below the ~4e-3 of the int8 weights themselves); larger T multiplies dequantized weights in f32
        assert.ok(e <= (T <= 8 ? 1e-4 : 1e-5), `Q8 N=${N} K=${K} T=${T}: relErr vs dequantized ${e}`);
        assert.deepEqual(b, a);
        const qe = relErr(a, exact);
        if (T === 1) t.diagnostic(`Q8 N=${N} K=${K}: output relErr vs F32 weights ${qe.toExponential(2)}, weights ${relErr(deq, wf).toExponential(2)}`);
        assert.ok(qe < 1e-2, `Q8 quantization error ${qe}`);
      }
    }
  });

  test("linear Q8 at T=1: x with zero, tiny, huge-range and non-finite blocks", () => {
    const N = 37, K = 128;
    const wf = randn(N * K, 600);
    const q8 = quantizeQ8Data(wf, N, K);
    const wref = tensor("F32", [N, K], dequantizeQ8Data(q8, N, K));
    const cases: [string, (x: Float32Array) => void][] = [
      ["zero block", (x) => x.fill(0, 0, 32)],
      ["wide range in a block", (x) => { x[40] = 3e4; x[41] = -1e-6; x[70] = 1e-30; }],
      ["tiny block (float path)", (x) => { for (let i = 32; i < 64; i++) x[i] *= 1e-33; }],
      ["huge values", (x) => { for (let i = 0; i < 32; i++) x[i] *= 1e30; }],
      ["inf (float path)", (x) => { x[3] = Infinity; }],
      ["nan (float path)", (x) => { x[100] = NaN; }],
    ];
    for (const [what, edit] of cases) {
      const x = randn(K, 601);
      edit(x);
      const ref = new Float32Array(N);
      refLinear(ref, x, 1, K, wref, N);
      for (const be of [be1, be2]) {
        const got = runLinear(be, { q8, rows: N, cols: K }, x, 1, K, N, 0, K, N, N);
        if (ref.some((v) => !Number.isFinite(v))) {
          assertSame(got, ref, `${what} threads=${be.threads}`);
        } else {
          const e = relErr(got, ref);
          // x quantized to int16 per block at T = 1 (see the test above); the float path is exact to ~1e-7
          assert.ok(e <= 1e-4, `${what} threads=${be.threads}: relErr ${e}`);
        }
      }
    }
  });

  test("Q8 quantizer: |q| <= 127, per-weight error <= scale/2 (plus the f16 rounding of the scale), from BF16/F16 tensors too", () => {
    const N = 13, K = 64;
    const wf = randn(N * K, 77, 3);
    wf[5] = 0; for (let i = 32; i < 64; i++) wf[i] = 0; // an all-zero block
    for (const dt of DTYPES) {
      const t = fromF32(wf, dt, [N, K]);
      const d = quantizeQ8Data(t, N, K);
      const src = toF32(t);
      for (let r = 0; r < N; r++) for (let k = 0; k < K; k++) {
        const q = d.q[r * K + k], s = d.scales[r * (K / 32) + (k >> 5)];
        assert.ok(Math.abs(q) <= 127);
        // q is rounded against the exact scale d and rebuilt with f16(d) (Q8_0 as llama.cpp stores it): |d - f16(d)| <= 2^-11 d
        assert.ok(Math.abs(q * s - src[r * K + k]) <= s / 2 + Math.abs(q) * s * 2 ** -10 + 1e-7 * Math.abs(src[r * K + k]), `r=${r} k=${k}`);
      }
      assert.equal(d.scales[1], 0);
    }
  });

  test("F16 and BF16: every 16-bit pattern converts exactly (subnormals, inf, NaN), T=1 and T>1", () => {
    const K = 8, N = 65536 / K;
    const words = new Uint16Array(65536);
    for (let i = 0; i < 65536; i++) words[i] = i;
    for (const dt of ["F16", "BF16"] as const) {
      const wt = tensor(dt, [N, K], words);
      const T = 8;
      const x = eye(K); // token t = e_t: out[t, n] = W[n, t] (+ 0 * the others: NaN when one of them is inf/NaN)
      const ref = new Float32Array(T * N);
      refLinear(ref, x, T, K, wt, N);
      for (const be of [be1, be2]) {
        const all = runLinear(be, wt, x, T, K, N, 0, K, N, T * N);
        assertSame(all, ref, `${dt} T=8 threads=${be.threads}`);
        for (let t = 0; t < T; t++) {
          const one = runLinear(be, wt, x.subarray(t * K, (t + 1) * K), 1, K, N, 0, K, N, N);
          assertSame(one, ref.subarray(t * N, (t + 1) * N), `${dt} T=1 token ${t} threads=${be.threads}`);
        }
      }
    }
  });

  test("rmsnorm, silu_mul, softmax vs the scalar reference", () => {
    for (const be of [be1, be2]) {
      for (const [T, D] of [[1, 64], [3, 100], [5, 1024]]) {
        const xStride = D + 5, outStride = D + 2;
        const x = randn(T * xStride, 900 + D, 3);
        const w = randn(D, 901 + D);
        const ref = new Float32Array(T * outStride);
        rmsNorm(ref, x, T, D, w, 1e-6, xStride, outStride);
        const mark = be.heap.mark();
        const xp = be.heap.putF32(x), wp = be.heap.putF32(w);
        const o = be.heap.allocF32(T * outStride);
        o.view.fill(0); // the gaps between strided rows are compared too
        be.rmsnorm(o.ptr, xp, T, D, wp, 1e-6, xStride, outStride);
        const e = relErr(be.heap.f32(o.ptr, T * outStride), ref);
        assert.ok(e <= 1e-5, `rmsnorm T=${T} D=${D}: ${e}`);
        // in place
        be.rmsnorm(xp, xp, T, D, wp, 1e-6, xStride, xStride);
        const inPlace = be.heap.f32(xp, T * xStride);
        for (let t = 0; t < T; t++) for (let i = 0; i < D; i++) {
          assert.ok(Math.abs(inPlace[t * xStride + i] - ref[t * outStride + i]) <= 1e-5 * (1 + Math.abs(ref[t * outStride + i])));
        }
        be.heap.release(mark);
      }
      for (const n of [1, 7, 1001, 40000]) {
        const g = randn(n, 1000 + n, 20), u = randn(n, 2000 + n);
        g[0] = 100; if (n > 1) g[1] = -100; if (n > 2) g[2] = 0;
        const ref = new Float32Array(n);
        siluMul(ref, g, u, n);
        const mark = be.heap.mark();
        const gp = be.heap.putF32(g), up = be.heap.putF32(u);
        const o = be.heap.allocF32(n);
        be.siluMul(o.ptr, gp, up, n);
        const got = be.heap.f32(o.ptr, n);
        assert.ok(relErr(got, ref) <= 1e-6, `silu n=${n}: ${relErr(got, ref)}`);
        for (let i = 0; i < n; i++) assert.ok(Math.abs(got[i] - ref[i]) <= 2e-6 * Math.abs(ref[i]) + 1e-30, `silu i=${i}: ${got[i]} vs ${ref[i]}`);
        be.siluMul(gp, gp, up, n); // in place
        assert.deepEqual(be.heap.f32(gp, n), got);
        be.heap.release(mark);

        const s = randn(n, 3000 + n, 30);
        if (n > 3) s[3] = -Infinity;
        const sref = Float64Array.from(s);
        refSoftmax(sref, 0, n);
        const sp = be.heap.putF32(s);
        be.softmax(sp, n);
        const sg = be.heap.f32(sp, n);
        assert.ok(relErr(sg, sref) <= 1e-5, `softmax n=${n}: ${relErr(sg, sref)}`);
        if (n > 3) assert.equal(sg[3], 0);
        be.heap.release(mark);
      }
    }
  });

  test("attend_latent vs the scalar MQA attention, L in {1, 7, 300}", () => {
    let seed = 4000;
    for (const [H, dc, dr] of [[8, 32, 16], [5, 36, 8], [16, 64, 16], [1, 8, 4]]) {
      const w = dc + dr;
      for (const L of [1, 7, 300]) {
        for (const [qScale, cStride] of [[1, w], [4, w + 4]]) {
          const q = randn(H * w, seed++, qScale);
          const cache = randn(L * cStride, seed++);
          const scale = 1 / Math.sqrt(w);
          const ref = new Float32Array(H * dc);
          const view = { data: cache, offset: 0, rowStride: cStride, headStride: 0 };
          attend(ref, q, 1, H, w, view, view, dc, 1, L, scale);
          const outs: Float32Array[] = [];
          for (const be of [be1, be2, be3]) {
            const mark = be.heap.mark();
            const qp = be.heap.putF32(q), cp = be.heap.putF32(cache);
            const o = be.heap.allocF32(H * dc + 16);
            o.view.fill(12345);
            be.attendLatent(o.ptr, qp, H, cp, L, w, dc, scale, cStride);
            const got = be.heap.f32(o.ptr, H * dc + 16).slice();
            be.heap.release(mark);
            for (let i = H * dc; i < H * dc + 16; i++) assert.equal(got[i], 12345, "wrote past out");
            const e = relErr(got.subarray(0, H * dc), ref);
            assert.ok(e <= 1e-5, `H=${H} dc=${dc} dr=${dr} L=${L} qScale=${qScale} threads=${be.threads}: relErr ${e}`);
            outs.push(got);
          }
          assert.deepEqual(outs[1], outs[0], "2 threads differ from 1");
          assert.deepEqual(outs[2], outs[0], "3 threads differ from 1");
        }
      }
    }
  });

  test("kernels keep working on memory allocated after a grow", () => {
    const be = be2;
    const before = be.heap.size;
    const mark = be.heap.mark();
    const big = be.heap.alloc(before + (8 << 20)); // forces memory.grow
    assert.ok(be.heap.size > before);
    const N = 64, K = 64;
    const wt = fromF32(randn(N * K, 5), "F32", [N, K]);
    const x = randn(K, 6);
    const ref = new Float32Array(N);
    refLinear(ref, x, 1, K, wt, N);
    const got = runLinear(be, wt, x, 1, K, N, 0, K, N, N);
    assert.ok(relErr(got, ref) <= 1e-5);
    assert.ok(big > 0);
    be.heap.release(mark);
  });
});

describe("wasm memory and loading", () => {
  test("bump allocator: 64-byte alignment, arena reset, views after grow", () => {
    const heap = WasmHeap.create(1 << 17);
    const a = heap.alloc(3), b = heap.alloc(100);
    assert.equal(a % 64, 0);
    assert.equal(b % 64, 0);
    assert.ok(b >= a + 3);
    const v = heap.allocF32(10);
    v.view.fill(7);
    const big = heap.allocF32((1 << 20) / 4 * 5); // grows
    big.view[big.view.length - 1] = 3;
    assert.equal(heap.f32(big.ptr, big.view.length)[big.view.length - 1], 3);
    assert.equal(v.view[9], 7); // an old view is still valid after grow
    const ar = heap.arena(4096);
    const p = ar.alloc(1000);
    ar.allocF32(10);
    assert.ok(ar.used > 1000);
    ar.reset();
    assert.equal(ar.alloc(1000), p);
    assert.throws(() => ar.alloc(5000), /arena full/);
  });

  test("a missing kernels.wasm says how to build it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mla-wasm-"));
    await assert.rejects(WasmBackend.create({ wasmDir: dir, threads: 1 }), /npm run asbuild/);
  });

  test("an unclosed backend does not keep the process alive", () => {
    const code = `
      import { WasmBackend } from "./src/backends/wasm/index.ts";
      const be = await WasmBackend.create({ threads: 2 });
      console.log("threads", be.threads);
    `;
    const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], { cwd: ROOT, encoding: "utf8", timeout: 20000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /threads 2/);
  });

  test("relaxed-SIMD build passes the kernel tests (child process with --experimental-wasm-relaxed-simd)", { skip: RELAXED ? "this is the relaxed child run itself" : false }, () => {
    const r = spawnSync(process.execPath, ["--experimental-wasm-relaxed-simd", "--import", "tsx", "--test", "test/wasm.test.ts"], {
      cwd: ROOT, encoding: "utf8", timeout: 120000, env: { ...process.env, MLA_WASM_RELAXED: "1" },
    });
    assert.equal(r.status, 0, r.stdout.slice(-3000) + r.stderr.slice(-2000));
  });

  test("relaxed: 'auto' picks the relaxed build exactly when the engine validates it", async () => {
    const be = await WasmBackend.create({ threads: 1 });
    assert.equal(be.relaxed, relaxedSimdAvailable());
    await be.close();
  });
});

describe("wasm kernel descriptions (src/backends/wasm/kernels.ts)", () => {
  /** The exports of one build, instantiated on a fresh memory. */
  async function exportsOf(relaxed: boolean): Promise<{ module: WebAssembly.Module; memory: WebAssembly.Memory; exports: WebAssembly.Exports }> {
    const module = await WebAssembly.compile(loadKernelBytes(relaxed));
    const memory = new WebAssembly.Memory({ initial: 2, maximum: 65536, shared: true });
    return { module, memory, exports: (await WebAssembly.instantiate(module, { env: { memory } })).exports };
  }

  for (const relaxed of [false, true]) {
    test(`each description lists as many parameters as its export takes (${relaxed ? "relaxed" : "plain"} SIMD build)`, async (t) => {
      if (relaxed && !relaxedSimdAvailable()) return t.skip("this engine does not validate the relaxed-SIMD build");
      const { exports } = await exportsOf(relaxed);
      for (const k of POOL_KERNELS) {
        const f = exports[k.name];
        assert.equal(typeof f, "function", `kernels.wasm exports ${k.name}`);
        // a wasm function's length is its parameter count
        assert.equal((f as (...a: number[]) => void).length, k.params.length, `${k.name}(${k.params.join(", ")})`);
        assert.ok(k.range.every((r) => k.params.includes(r)), `${k.name}: its range parameters are parameters`);
      }
      // the exports WasmBackend calls directly (KernelExports), and nothing else
      const direct: Record<string, number> = { linear_scratch: 1, softmax: 2, attend_latent_scratch: 2, attend_latent_16_scratch: 3, attend_heads_scratch: 1, heap_base: 0, prep_x: 4, kq8_chunk_bytes: 1, kq8_chunk_tokens: 0, prep_x_bytes: 2 };
      for (const [name, n] of Object.entries(direct)) assert.equal((exports[name] as (...a: number[]) => number).length, n, name);
      const functions = Object.keys(exports).filter((n) => typeof exports[n] === "function").sort();
      assert.deepEqual(functions, [...POOL_KERNELS.map((k) => k.name), ...Object.keys(direct)].sort());
    });
  }

  test("a pool refuses a description that disagrees with its export", async () => {
    const { module, memory, exports } = await exportsOf(false);
    const stale = { name: "rmsnorm", params: ["out", "x", "D", "w", "eps", "t0", "t1", "xStride"], range: ["t0", "t1"] as const };
    await assert.rejects(WorkerPool.create(module, memory, 16384, exports, [stale], { threads: 1 }), /rmsnorm takes 9 parameters/);
  });

  test("a call without one of its named arguments fails instead of passing a zero", async () => {
    const be = await WasmBackend.create({ threads: 1 });
    // as a JavaScript caller could (the types rule it out)
    assert.throws(() => be.pool.run(KERNEL.silu_mul, { out: 64, gate: 64 } as never, 4), /silu_mul: argument up is missing/);
    await be.close();
  });
});

/** Compile-time checks (never called; tsc checks them): a pool call names exactly its kernel's arguments. */
function namedArgumentsTypeCheck(pool: WorkerPool): void {
  pool.run(KERNEL.rmsnorm, { out: 0, x: 0, D: 1, w: 0, eps: 1e-6, xStride: 1, outStride: 1 }, 1);
  // @ts-expect-error: eps is missing
  pool.run(KERNEL.rmsnorm, { out: 0, x: 0, D: 1, w: 0, xStride: 1, outStride: 1 }, 1);
  // @ts-expect-error: rmsnorm has no parameter "stride"
  pool.run(KERNEL.rmsnorm, { out: 0, x: 0, D: 1, w: 0, eps: 1e-6, xStride: 1, outStride: 1, stride: 1 }, 1);
  // @ts-expect-error: the row range is the pool's to fill
  pool.run(KERNEL.silu_mul, { out: 0, gate: 0, up: 0, i0: 0 }, 1);
  // @ts-expect-error: so is the scratch pointer
  pool.run(KERNEL.softmax_causal, { s: 0, Lp: 8, first: 0, scratch: 0 }, 1);
}
void namedArgumentsTypeCheck;

/** Identity [K, K] as T=K one-hot tokens. */
function eye(K: number): Float32Array {
  const x = new Float32Array(K * K);
  for (let i = 0; i < K; i++) x[i * K + i] = 1;
  return x;
}

/** Equal as numbers, NaN matching NaN. */
function assertSame(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length);
  for (let i = 0; i < got.length; i++) {
    const g = got[i], w = want[i];
    if (!(g === w || (Number.isNaN(g) && Number.isNaN(w)))) assert.fail(`${what}: element ${i}: ${g} vs ${w}`);
  }
}
