// Q8 products at T = 2..8 (batched decode): x quantized to int16 per token and block of 32, each weight row met by
// every token (assembly/q8.ts q8m_rows; T <= 6 in the relaxed build, <= 8 in the plain one, else the f32 tiles).
// Checked against the f32 product with the dequantized weights, in both builds, on odd shapes with strides, and on
// edge-case blocks.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { linear as refLinear } from "../src/backends/cpu/matmul.js";
import { tensor } from "../src/tensor/tensor.js";
import { WasmBackend, quantizeQ8Data, dequantizeQ8Data, relaxedSimdAvailable } from "../src/backends/wasm/index.js";
import { randn, relErr } from "./helpers.js";

const SENT = 12345;
const backends: { name: string; be: WasmBackend; maxT: number }[] = [];
after(async () => { for (const b of backends) await b.be.close(); });

async function getBackends(): Promise<typeof backends> {
  if (backends.length) return backends;
  assert.ok(relaxedSimdAvailable(), "build/kernels-relaxed.wasm missing or not accepted by this engine");
  // maxT: the largest T on the integer path (Q8M_MAX_T)
  backends.push({ name: "plain 1 thread", be: await WasmBackend.create({ threads: 1, relaxed: false }), maxT: 8 });
  backends.push({ name: "plain 2 threads", be: await WasmBackend.create({ threads: 2, relaxed: false, minParallelWork: 0 }), maxT: 8 });
  backends.push({ name: "relaxed 1 thread", be: await WasmBackend.create({ threads: 1, relaxed: true }), maxT: 6 });
  backends.push({ name: "relaxed 2 threads", be: await WasmBackend.create({ threads: 2, relaxed: true, minParallelWork: 0 }), maxT: 6 });
  return backends;
}

function run(be: WasmBackend, q8: ReturnType<typeof quantizeQ8Data>, rows: number, x: Float32Array, T: number, K: number, N: number,
  row0: number, xStride: number, outStride: number, outLen: number): Float32Array {
  const mark = be.heap.mark();
  const w = be.uploadQ8Data(q8, rows, K);
  const xp = be.heap.putF32(x);
  const o = be.heap.allocF32(outLen);
  o.view.fill(SENT);
  be.linear(o.ptr, xp, T, K, w, N, row0, xStride, outStride);
  const res = be.heap.f32(o.ptr, outLen).slice();
  be.heap.release(mark);
  return res;
}

/** weights with an all-zero block, a tiny block and a huge block in the first rows */
function weights(rows: number, K: number, seed: number): Float32Array {
  const wf = randn(rows * K, seed);
  wf.fill(0, 0, 32);
  for (let i = K + 32; i < K + 64; i++) wf[i] *= 1e-30;
  for (let i = 2 * K; i < 2 * K + 32; i++) wf[i] *= 1e15;
  return wf;
}

test("Q8 T = 2..8: odd N, K % 256 != 0, strided x/out, row0, edge weight blocks; both builds vs dequantized f32", async (t) => {
  const bes = await getBackends();
  let seed = 900;
  const worst = new Map<string, number>();
  for (const [N, K] of [[37, 96], [101, 160], [23, 288]]) {
    for (let T = 2; T <= 8; T++) {
      const rows = N + 9, row0 = 5, xStride = K + 7, outStride = N + 3;
      const q8 = quantizeQ8Data(weights(rows, K, seed++), rows, K);
      const wref = tensor("F32", [rows, K], dequantizeQ8Data(q8, rows, K));
      const x = randn(T * xStride, seed++);
      x.fill(0, xStride, xStride + 32); // token 1: a zero block
      for (let i = 40; i < 64; i++) x[i] *= 1e3; // token 0: a wide block
      const outLen = (T - 1) * outStride + N + 4;
      const ref = new Float32Array(outLen).fill(SENT);
      refLinear(ref, x, T, K, wref, N, row0, xStride, outStride);
      for (const { name, be, maxT } of bes) {
        const got = run(be, q8, rows, x, T, K, N, row0, xStride, outStride, outLen);
        for (let i = 0; i < outLen; i++) if (ref[i] === SENT) assert.equal(got[i], SENT, `${name} T=${T}: wrote outside the outputs at ${i}`);
        // per token, so a token's error is not hidden by another's larger outputs
        let most = 0;
        for (let tk = 0; tk < T; tk++) {
          const g = got.subarray(tk * outStride, tk * outStride + N), r = ref.subarray(tk * outStride, tk * outStride + N);
          const e = relErr(g, r);
          most = Math.max(most, e);
          // int16 x: error ~1e-5 of the block's largest |x| (as T = 1); the f32 tiles ~1e-7
          assert.ok(e <= (T <= maxT ? 1e-4 : 1e-5), `${name} N=${N} K=${K} T=${T} token ${tk}: relErr ${e}`);
        }
        const key = `${name} T ${T <= maxT ? "<=" : ">"} ${maxT}`;
        worst.set(key, Math.max(worst.get(key) ?? 0, most));
        // the integer path ran (its x rounding shows), or the tiles did (f32 rounding only)
        if (T <= maxT) assert.ok(most > 1e-6, `${name} N=${N} K=${K} T=${T}: relErr ${most} too small for the int16 path`);
        else assert.ok(most < 1e-6, `${name} N=${N} K=${K} T=${T}: relErr ${most}: not the f32 tiles`);
      }
    }
  }
  for (const [name, e] of worst) t.diagnostic(`${name}: worst per-token relErr ${e.toExponential(2)}`);
});

test("Q8 T = 2..8: 1 and 2 threads give identical results", async () => {
  const bes = await getBackends();
  const N = 77, K = 160, T = 5;
  const q8 = quantizeQ8Data(randn(N * K, 31), N, K);
  const x = randn(T * K, 32);
  for (const pair of [[0, 1], [2, 3]]) {
    const a = run(bes[pair[0]].be, q8, N, x, T, K, N, 0, K, N, T * N);
    const b = run(bes[pair[1]].be, q8, N, x, T, K, N, 0, K, N, T * N);
    assert.deepEqual(b, a, bes[pair[0]].name);
  }
});

test("Q8 T = 2..8: non-finite and tiny x blocks fall back to the f32 tiles", async () => {
  const bes = await getBackends();
  const N = 41, K = 128, T = 4;
  const q8 = quantizeQ8Data(randn(N * K, 41), N, K);
  const wref = tensor("F32", [N, K], dequantizeQ8Data(q8, N, K));
  const cases: [string, (x: Float32Array) => void][] = [
    ["tiny block", (x) => { for (let i = K + 32; i < K + 64; i++) x[i] *= 1e-33; }],
    ["inf", (x) => { x[2 * K + 3] = Infinity; }],
    ["nan", (x) => { x[3 * K + 100] = NaN; }],
  ];
  for (const [what, edit] of cases) {
    const x = randn(T * K, 42);
    edit(x);
    const ref = new Float32Array(T * N);
    refLinear(ref, x, T, K, wref, N);
    for (const { name, be } of bes) {
      const got = run(be, q8, N, x, T, K, N, 0, K, N, T * N);
      for (let tk = 0; tk < T; tk++) {
        const g = got.subarray(tk * N, (tk + 1) * N), r = ref.subarray(tk * N, (tk + 1) * N);
        if (r.some((v) => !Number.isFinite(v))) {
          for (let i = 0; i < N; i++) assert.ok(Object.is(g[i], r[i]) || (Number.isNaN(g[i]) && Number.isNaN(r[i])), `${what} ${name}: token ${tk} [${i}] ${g[i]} vs ${r[i]}`);
        } else {
          // the f32 tiles (~1e-7), not the int16 path (~1e-5)
          const e = relErr(g, r);
          assert.ok(e <= 1e-6, `${what} ${name} token ${tk}: relErr ${e}`);
        }
      }
    }
  }
});
