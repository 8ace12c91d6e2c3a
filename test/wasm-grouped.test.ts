import { test, after } from "node:test";
import assert from "node:assert/strict";
import { WasmOps } from "../src/backends/wasm/ops.js";
import { cpuOps } from "../src/backends/ops.js";
import { fromF32, type Tensor } from "../src/tensor/tensor.js";
import type { DType } from "../src/tensor/dtype.js";
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
