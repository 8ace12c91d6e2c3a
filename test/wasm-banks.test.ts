import { test, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { WasmBackend } from "../src/backends/wasm/index.js";
import { WasmOps } from "../src/backends/wasm/ops.js";
import { DeepseekModel } from "../src/model/deepseek-model.js";
import { fromF32, type Tensor } from "../src/tensor/tensor.js";
import { linear as refLinear } from "../src/backends/cpu/matmul.js";
import { FIXTURES, loadReference, randn, relErr } from "./helpers.js";

// Weights past wasm32's 4 GiB live in further memories ("banks", docs/architecture.md): every bank runs the same
// kernels, on every thread. These tests spread weights over banks with tiny bank sizes, so CI checks the machinery
// without gigabytes of memory.

const be = await WasmBackend.create({ threads: 2, minParallelWork: 0 });
after(() => be.close());

/** out = x W^T computed in bank `bank` (x and out placed there too). */
function productIn(bank: number, w: Tensor, x: Float32Array, T: number): Float32Array {
  const [N, K] = w.shape, heap = be.heaps[bank], mark = heap.mark();
  const ww = be.upload(w, bank);
  assert.equal(ww.bank, bank);
  const xp = heap.putF32(x), o = heap.allocF32(T * N);
  be.linear(o.ptr, xp, T, K, ww, N);
  const out = o.view.slice();
  heap.release(mark);
  return out;
}

test("a product gives the same result in every bank, on both threads", () => {
  const b1 = be.addBank(), b2 = be.addBank();
  assert.deepEqual([b1, b2], [1, 2]);
  assert.equal(be.pool.banks, 3);
  const N = 37, K = 96;
  for (const dtype of ["F32", "BF16", "Q8"] as const) {
    const w = fromF32(randn(N * K, 11), dtype, [N, K]);
    for (const T of [1, 5]) {
      const x = randn(T * K, 12 + T);
      const ref = new Float32Array(T * N);
      refLinear(ref, x, T, K, w, N);
      const r0 = productIn(0, w, x, T);
      // Q8 decode quantizes x to int16 per block (error ~1e-5 of the block's largest |x|)
      const tol = dtype === "Q8" ? 1e-4 : 1e-5;
      assert.ok(relErr(r0, ref) < tol, `${dtype} T=${T}: bank 0 vs reference ${relErr(r0, ref)}`);
      for (const bank of [b1, b2]) assert.deepEqual(productIn(bank, w, x, T), r0, `${dtype} T=${T}: bank ${bank} differs from bank 0`);
    }
  }
});

test("a model spread over many banks gives the logits it gives in one", async () => {
  const name = "tiny-deepseek-v3", ref = loadReference(name), ids = ref.inputIds[0];
  const one = await WasmOps.create({ threads: 2, minParallelWork: 0 });
  const many = await WasmOps.create({ threads: 2, minParallelWork: 0, bank0Weights: 0, bankWeights: 64 << 10 });
  try {
    const a = DeepseekModel.load(join(FIXTURES, name), { ops: one });
    const b = DeepseekModel.load(join(FIXTURES, name), { ops: many });
    assert.equal(one.be.heaps.length, 1);
    assert.ok(many.be.heaps.length >= 4, `only ${many.be.heaps.length} banks`);
    for (const mode of ["naive", "absorb"] as const) {
      const la = a.forward(ids, a.newState(), { mode, allLogits: true });
      const lb = b.forward(ids, b.newState(), { mode, allLogits: true });
      assert.deepEqual(lb, la, mode);
    }
  } finally {
    await Promise.all([one.close(), many.close()]);
  }
});

test("a weight larger than one bank is refused with its size", async () => {
  const ops = await WasmOps.create({ threads: 1, bank0Weights: 0 });
  try {
    // a fake 5 GiB tensor: prepare must refuse it before touching the data
    const huge = { dtype: "F32", shape: [5 * 2 ** 28, 8], data: { byteLength: 5 * 2 ** 30, length: 5 * 2 ** 28 * 8 } } as unknown as Tensor;
    assert.throws(() => ops.prepare(huge), /5\.00 GiB is larger than one WebAssembly memory/);
  } finally {
    await ops.close();
  }
});
