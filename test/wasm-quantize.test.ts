import { test, after } from "node:test";
import assert from "node:assert/strict";
import { WasmBackend } from "../src/backends/wasm/index.js";
import { fromF32, quantizeQ8, tensor, type Tensor } from "../src/tensor/tensor.js";
import { randn } from "./helpers.js";

// Load-time Q8 quantization runs on the worker pool (assembly/quantize.ts); it must give exactly what the JS
// reference (src/tensor/quant.ts, llama.cpp's quantize_row_q8_0_ref) gives, so a model is the same however it loads.

const be = await WasmBackend.create({ threads: 2, minParallelWork: 0 });
after(() => be.close());

function viaWasm(t: Tensor): { q: Int8Array; s: Float32Array } {
  const [rows, cols] = t.shape, mark = be.heap.mark();
  const w = be.uploadQ8(t);
  const out = { q: be.heap.i8(w.ptr, rows * cols).slice(), s: be.heap.f32(w.scalesPtr, (rows * cols) / 32).slice() };
  be.heap.release(mark);
  return out;
}

test("wasm Q8 quantization equals the JS reference bit for bit (F32, BF16, F16; odd rows; zeros, NaN, tiny and huge blocks)", () => {
  for (const [rows, cols, seed] of [[37, 96, 1], [5, 2048, 2], [130, 32, 3]] as const) {
    const x = randn(rows * cols, seed, 0.05);
    x.fill(0, 0, 32); // an all-zero block
    x[40] = NaN; // a block with NaN: zeros
    for (let i = 64; i < 96; i++) x[i] *= 1e-4; // a scale in f16's subnormal range
    for (let i = 96; i < 128 && i < x.length; i++) x[i] *= 3e6; // a scale past f16's range: inf
    for (let i = 128; i < 160 && i < x.length; i++) x[i] = (i % 5) - 2 + 0.5; // exact halves: rounding direction
    for (const dtype of ["F32", "BF16", "F16"] as const) {
      const t = dtype === "F32" ? tensor("F32", [rows, cols], x) : fromF32(x, dtype, [rows, cols]);
      const ref = quantizeQ8(t), got = viaWasm(t);
      assert.deepEqual(got.q, ref.data, `${dtype} ${rows}x${cols}: int8 values`);
      assert.deepEqual(got.s, ref.scales, `${dtype} ${rows}x${cols}: scales`);
    }
  }
});
