import { test, after } from "node:test";
import assert from "node:assert/strict";
import { WasmOps } from "../src/backends/wasm/ops.js";
import { cpuOps } from "../src/backends/ops.js";
import { fromF32, type Tensor } from "../src/tensor/tensor.js";
import type { BlockDType, DType } from "../src/tensor/dtype.js";
import { quantizeTensor } from "../src/tensor/ggml-quantize.js";
import { randn, relErr } from "./helpers.js";

const ops = await WasmOps.create({ threads: 2, minParallelWork: 0 });
after(() => ops.close());

// Per-head products of absorbed MLA: G heads, each reading its own rows of one weight, with gaps between blocks.
for (const dt of ["F32", "BF16", "F16", "Q8"] as DType[]) {
  test(`linearGrouped ${dt} matches per-group scalar products (strided blocks, odd group count)`, () => {
    const G = 7, N = 40, K = 64, gs = 53, row0 = 5, xg = 70, og = 45;
    const rows = row0 + (G - 1) * gs + N;
    const src: Tensor = fromF32(randn(rows * K, 1234 + G, 0.2), dt, [rows, K]);
    const w = ops.prepare(src);
    const x = randn((G - 1) * xg + K, 99, 1);
    const out = new Float32Array((G - 1) * og + N).fill(7), ref = new Float32Array(out.length).fill(7);
    ops.linearGrouped(out, x, G, K, w, N, xg, og, row0, gs);
    cpuOps.linearGrouped(ref, x, G, K, src, N, xg, og, row0, gs);
    const e = relErr(out, ref);
    // Q8 one-token products quantize x to int16 per block of 32 (~1.5e-5 of the block's max |x|; measured 3.4e-6 here)
    assert.ok(e < (dt === "Q8" ? 1e-4 : 1e-5), `${dt}: rel err ${e}`);
    // the gaps between groups' outputs are left alone
    for (let g = 0; g < G - 1; g++) assert.equal(out[g * og + N], 7, `gap after group ${g}`);
  });
}

// Several tokens per group (absorbed MLA's batched decodes: one token per sequence, per head): every dtype's T > 1
// path (f32 tiles, Q8's few-token integer path and its tiles, the int8 K-quant tiles) against the scalar products.
const BLOCK_TYPES = ["Q4_0", "Q4_K", "Q6_K"] as const;
for (const dt of ["F32", "BF16", "Q8", ...BLOCK_TYPES] as DType[]) {
  for (const T of [3, 8]) {
    test(`linearGrouped ${dt}, T = ${T} tokens per group, matches the scalar products and leaves the gaps`, () => {
      const block = (BLOCK_TYPES as readonly string[]).includes(dt);
      const G = 5, N = 24, K = block ? 256 : 64, gs = 29, row0 = 3, xg = K + 6, og = N + 3;
      const xStride = G * xg + 11, outStride = G * og + 5;
      const rows = row0 + (G - 1) * gs + N;
      const f32 = fromF32(randn(rows * K, 4321 + T, 0.2), "F32", [rows, K]);
      // block dtypes packed on the host: the backend multiplies them as stored, the reference row by row dequantized
      const src: Tensor = block ? quantizeTensor(f32, dt as BlockDType) : dt === "F32" ? f32 : fromF32(f32.data as Float32Array, dt, [rows, K]);
      const qops = ops, w = qops.prepare(src), refW = src;
      const x = randn((T - 1) * xStride + (G - 1) * xg + K, 77 + T, 1);
      const out = new Float32Array((T - 1) * outStride + (G - 1) * og + N).fill(7), ref = new Float32Array(out.length).fill(7);
      qops.linearGrouped(out, x, G, K, w, N, xg, og, row0, gs, T, xStride, outStride);
      cpuOps.linearGrouped(ref, x, G, K, refW, N, xg, og, row0, gs, T, xStride, outStride);
      const e = relErr(out, ref);
      // int16 x (Q8 at T <= 6) ~1e-5; the int8 x of the relaxed build's K-quant tiles ~4e-3 (as llama.cpp's)
      assert.ok(e < (block ? 1e-2 : dt === "Q8" ? 1e-4 : 1e-5), `${dt} T=${T}: rel err ${e}`);
      for (let t = 0; t < T; t++) {
        for (let g = 0; g < G; g++) if (t < T - 1 || g < G - 1) assert.equal(out[t * outStride + g * og + N], 7, `gap after token ${t} group ${g}`);
      }
      // and each token equals a one-token call of its own
      for (let t = 0; t < T; t += T - 1) {
        const one = new Float32Array((G - 1) * og + N);
        qops.linearGrouped(one, x.subarray(t * xStride), G, K, w, N, xg, og, row0, gs);
        const mine = new Float32Array(one.length);
        for (let g = 0; g < G; g++) mine.set(out.subarray(t * outStride + g * og, t * outStride + g * og + N), g * og);
        for (let g = 0; g < G; g++) {
          const eg = relErr(mine.subarray(g * og, g * og + N), one.subarray(g * og, g * og + N));
          assert.ok(eg < (block ? 1e-2 : 1e-4), `${dt} T=${T} token ${t} group ${g}: ${eg} from the one-token call`);
        }
      }
    });
  }
}
