import { test, after } from "node:test";
import assert from "node:assert/strict";
import { WasmBackend } from "../src/backends/wasm/index.js";
import { WasmOps } from "../src/backends/wasm/ops.js";
import { fromF32, quantizeQ8, tensor, type Tensor } from "../src/tensor/tensor.js";
import { quantizeTensor } from "../src/tensor/ggml-quantize.js";
import { ggmlRowBytes } from "../src/tensor/ggml.js";
import { randn } from "./helpers.js";

// Load-time Q8 quantization runs on the worker pool (assembly/quantize.ts); it must give exactly what the JS
// reference (src/tensor/quant.ts, llama.cpp's quantize_row_q8_0_ref) gives, so a model is the same however it loads.

const be = await WasmBackend.create({ threads: 2, minParallelWork: 0 });
const be1 = await WasmBackend.create({ threads: 1, minParallelWork: 0 });
after(() => Promise.all([be.close(), be1.close()]));

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

// GGML's block types (Q4_0, Q4_K, Q5_K, Q6_K) through the pool (assembly/quantize.ts quantize_blocks): the same
// bytes as ggml-quantize.ts's quantizeRows, the reference checked against llama.cpp's C code.

const BLOCK_TYPES = ["Q4_0", "Q4_K", "Q5_K", "Q6_K"] as const;

/** Rows of random values with blocks that take the quantizers' edge paths, one kind per 256 values. */
function edgeRows(rows: number, cols: number, seed: number): Float32Array {
  const x = randn(rows * cols, seed, 0.05);
  const block = (k: number, fill: (i: number) => number) => {
    for (let i = 256 * k; i < 256 * (k + 1) && i < x.length; i++) x[i] = fill(i);
  };
  block(0, () => 0); // all zeros
  block(1, (i) => (i === 300 ? NaN : x[i])); // a NaN: the block as zeros
  block(2, (i) => (i === 600 ? -Infinity : x[i])); // an infinity
  block(3, (i) => x[i] * 1e-39); // subnormal: 1 / range overflows to inf, NaN levels
  block(4, (i) => x[i] * 1e-17); // under GROUP_MAX_EPS (Q6_K's zero block)
  block(5, (i) => x[i] * 3e7); // scales past f16's range
  block(6, (i) => (i % 7) - 3 + 0.5); // exact halves: rounding direction
  block(7, () => 0.25); // constant (max == min)
  block(8, (i) => Math.abs(x[i]) + 0.01); // all positive (min clamped to 0)
  block(9, (i) => -Math.abs(x[i]) - 0.01); // all negative
  block(10, (i) => (i % 32 < 16 ? 0 : x[i] * 100)); // half zero, half large: sub-block scales 0
  block(11, (i) => (i % 3 ? 0.01 : i % 2 ? -0.3 : 0.3)); // ties in magnitude: the first one's sign sets the scale
  block(12, () => -0); // negative zeros
  return x;
}

function viaWasmBlocks(b: WasmBackend, t: Tensor, type: (typeof BLOCK_TYPES)[number]): Uint8Array {
  const mark = b.heap.mark();
  const w = b.uploadBlocks(t, type);
  const out = b.heap.u8(w.ptr, t.shape[0] * ggmlRowBytes(type, t.shape[1])).slice();
  b.heap.release(mark);
  return out;
}

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return -2;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

test("wasm block quantization equals quantizeRows byte for byte (every type; F32, BF16, F16; 1 and 2 threads; edge blocks)", () => {
  for (const [rows, cols, seed] of [[7, 3584, 11], [13, 512, 12], [3, 256, 13]] as const) {
    const x = edgeRows(rows, cols, seed);
    for (const dtype of ["F32", "BF16", "F16"] as const) {
      const t = dtype === "F32" ? tensor("F32", [rows, cols], x) : fromF32(x, dtype, [rows, cols]);
      for (const type of BLOCK_TYPES) {
        const ref = quantizeTensor(t, type).data as Uint8Array;
        for (const b of [be1, be]) {
          const got = viaWasmBlocks(b, t, type), at = firstDiff(got, ref);
          assert.equal(at, -1, `${type} from ${dtype} ${rows}x${cols}, ${b.threads} thread(s): first differing byte ${at}`);
        }
      }
    }
  }
});

test("wasm Q4_0 quantization on rows of 32 and 96 (odd block counts)", () => {
  for (const [rows, cols, seed] of [[37, 96, 21], [129, 32, 22]] as const) {
    const x = randn(rows * cols, seed, 0.05);
    x.fill(0, 0, 32);
    for (let i = 32; i < 64; i++) x[i] *= 1e-39;
    x[70] = Infinity;
    for (const dtype of ["F32", "BF16", "F16"] as const) {
      const t = dtype === "F32" ? tensor("F32", [rows, cols], x) : fromF32(x, dtype, [rows, cols]);
      const ref = quantizeTensor(t, "Q4_0").data as Uint8Array;
      for (const b of [be1, be]) assert.equal(firstDiff(viaWasmBlocks(b, t, "Q4_0"), ref), -1, `${dtype} ${rows}x${cols}, ${b.threads} thread(s)`);
    }
  }
});

test("WasmOps.prepare quantizes float weights to the --quantize block type on the pool, as quantizeTensor", async () => {
  for (const type of BLOCK_TYPES) {
    const ops = await WasmOps.create({ threads: 2, minParallelWork: 0, quantize: type });
    try {
      const w = fromF32(randn(9 * 512, 31, 0.05), "BF16", [9, 512]);
      const got = ops.prepare(w);
      assert.equal(got.dtype, type);
      assert.equal(firstDiff(got.data as Uint8Array, quantizeTensor(w, type).data as Uint8Array), -1, type);
    } finally {
      await ops.close();
    }
  }
});

test("quantizeBlocksToHost (the GGUF exporter's pool path) gives quantizeTensor's bytes, in one slice or many", () => {
  for (const type of ["Q4_0", "Q4_K", "Q5_K", "Q6_K", "Q5_0"] as const) {
    const rows = 37, cols = 512, x = randn(rows * cols, 900 + rows);
    const want = quantizeTensor(tensor("F32", [rows, cols], x), type).data as Uint8Array;
    const rb = ggmlRowBytes(type, cols), before = be.heap.mark();
    for (const slice of [2 ** 26, 3 * rb, 1]) {
      const got = be.quantizeBlocksToHost(x, rows, cols, type, slice);
      assert.equal(got.length, rows * rb, type);
      assert.ok(Buffer.from(got).equals(Buffer.from(want)), `${type}, slices of ${slice} bytes`);
    }
    assert.equal(be.heap.mark(), before, "the wasm memory used for slices is given back");
  }
});
