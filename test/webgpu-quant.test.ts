// Quantized weights on the GPU (GGML's blocks kept packed, wgsl-quant.ts) and weights split across buffers, on
// SwiftShader where no GPU is present: every block type's products (decode T <= 4, tiled T > 4), embedding rows,
// expert slots and the absorbed kv_b products against plain float64 sums over the reference dequantization
// (dequantizeGgml), a forced split equal to the unsplit result, and whole models: a fixture quantized at load and
// GGUF files against the scalar CPU backend on the same weights.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { exitAfterTests, gpuBackend } from "./gpu-env.js";
import { MlaError } from "../src/errors.js";
import { WebGpuBackend, kernels as K, type GpuWeight } from "../src/backends/webgpu/backend.js";
import * as S from "../src/backends/webgpu/wgsl.js";
import { linear } from "../src/backends/cpu/index.js";
import { cpuOps, cpuOpsQuant } from "../src/backends/ops.js";
import { quantizeTensor } from "../src/tensor/ggml-quantize.js";
import { f32Tensor, fromF32, toF32, type Tensor } from "../src/tensor/tensor.js";
import type { BlockDType } from "../src/tensor/dtype.js";
import { GpuModel } from "../src/model/gpu/model.js";
import { uploadWeights } from "../src/model/gpu/weights.js";
import { loadConfig, loadWeights, loadLlamaWeights } from "../src/model/families/index.js";
import { openCheckpoint } from "../src/model/checkpoint.js";
import { loadModel } from "../src/model/load.js";
import { exportGguf } from "../src/convert/export-gguf.js";
import { FIXTURES, randn, relErr, tempDirs } from "./helpers.js";

exitAfterTests();
const gpu = await gpuBackend();
/** The same device kind with a tiny buffer limit: every weight below is split into several parts. */
const small = await WebGpuBackend.create({ maxBufferBytes: 4096 });
const freshDir = tempDirs("mla-webgpu-quant-", after);

/** CPU dtype, GPU type, block width. */
const TYPES = [["Q8", "Q8_0", 32], ["Q4_0", "Q4_0", 32], ["Q5_0", "Q5_0", 32], ["Q4_K", "Q4_K", 256], ["Q5_K", "Q5_K", 256], ["Q6_K", "Q6_K", 256]] as const;
/** f32 sums of exactly dequantized weights (the GPU folds a group's scale after its dot product: ~1e-7 apart). */
const TOL = 1e-5;

/** A random [rows, cols] matrix quantized with the reference quantizers; rows get different offsets and spreads. */
function quantMatrix(type: "Q8" | BlockDType, rows: number, cols: number, seed: number): Tensor {
  const x = randn(rows * cols, seed);
  for (let r = 0; r < rows; r++) for (let k = 0; k < cols; k++) x[r * cols + k] = x[r * cols + k] * (0.5 + (r % 5) / 4) + ((r % 3) - 1) * 0.3;
  return quantizeTensor(f32Tensor([rows, cols], x), type);
}

function oneLineMlaError(fn: () => unknown, ...parts: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof MlaError, `expected MlaError, got ${String(e)}`);
    assert.ok(!e.message.includes("\n"), "one line");
    for (const p of parts) assert.ok(e.message.includes(p), `${JSON.stringify(e.message)} lacks ${JSON.stringify(p)}`);
    return true;
  });
}

/** Run linear at T = 1..5 and 37 (row offset 3, strided x and out, overwrite and accumulate) on backend g. */
async function products(g: WebGpuBackend, w: Tensor, Kd: number, N: number, seed: number): Promise<{ got: Float32Array[]; want: Float32Array[] }> {
  const wb = g.uploadWeight(w, "w");
  const got: Float32Array[] = [], want: Float32Array[] = [];
  const p = g.pass(), outs: [GPUBuffer, number][] = [];
  for (const T of [1, 2, 3, 4, 5, 37]) {
    const xs = Kd + 5, os = N + 2;
    const x = randn(T * xs, seed + T), base = randn(T * os, seed + 100 + T);
    const prod = new Float32Array(T * os);
    linear(prod, x, T, Kd, w, N, 3, xs, os);
    const ref = base.slice(), acc = base.slice();
    for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) {
      ref[t * os + n] = prod[t * os + n];
      acc[t * os + n] += prod[t * os + n];
    }
    const xb = g.uploadF32(x), ob = g.uploadF32(base), ab = g.uploadF32(base);
    K.linear(p, ob, xb, T, Kd, wb, N, { row0: 3, xs, os });
    K.linear(p, ab, xb, T, Kd, wb, N, { row0: 3, xs, os, accumulate: true });
    outs.push([ob, T * os], [ab, T * os]);
    want.push(ref, acc);
  }
  p.submit();
  for (const [b, n] of outs) got.push(await g.readF32(b, n));
  return { got, want };
}

for (const [cpuType, gpuType, block] of TYPES) {
  test(`webgpu ${gpuType} (packed blocks): linear at T = 1..5 and 37, embedding rows, expert slots, absorbed kv_b equal float64 sums of the dequantized weights; split across buffers equals unsplit`, async (t) => {
    const seed = 7000 + block + gpuType.charCodeAt(1) * 31 + gpuType.length;
    // K: blocks per row not a multiple of 16 (threads per row), rows of Q8_0/Q4_0/Q5_0/Q6_K not 4-byte aligned
    const Kd = block === 32 ? 352 : 768, N = 45;
    const w = quantMatrix(cpuType, N + 3, Kd, seed);
    const { got, want } = await products(gpu, w, Kd, N, seed);
    got.forEach((g, i) => assert.ok(relErr(g, want[i]) < TOL, `linear #${i}: rel err ${relErr(g, want[i])}`));
    t.diagnostic(`${gpuType}: worst linear rel err ${Math.max(...got.map((g, i) => relErr(g, want[i]))).toExponential(2)}`);
    const split = await products(small, w, Kd, N, seed);
    assert.ok(small.uploadWeight(w).parts.length > 1, "the small backend splits the weight");
    split.got.forEach((g, i) => assert.deepEqual(g, got[i], `split linear #${i} equals unsplit`));

    // embedding rows (ids spread over the table, so over the parts of the split one)
    const V = 37, D = Kd, table = quantMatrix(cpuType, V, D, seed + 1), tf = toF32(table);
    const ids = new Uint32Array([5, 0, 36, 5, 17, 30]);
    const eref = new Float32Array(ids.length * D);
    ids.forEach((id, j) => eref.set(tf.subarray(id * D, id * D + D), j * D));
    const embedOn = async (g: WebGpuBackend) => {
      const ib = g.buffer(ids.byteLength), ob = g.buffer(eref.byteLength);
      g.write(ib, ids);
      const p = g.pass();
      K.embed(p, ob, g.uploadWeight(table), ib, ids.length, D);
      p.submit();
      return g.readF32(ob, eref.length);
    };
    const emb = await embedOn(gpu);
    assert.ok(relErr(emb, eref) < 1e-6, `embed: rel err ${relErr(emb, eref)}`);
    assert.deepEqual(await embedOn(small), emb, "split embed equals unsplit");

    // experts stacked (uploadStacked), slots of 3 tokens x 2 experts, and the prefill path (linear at expert rows)
    const E = 5, R = 5, experts = Array.from({ length: E }, (_, e) => quantMatrix(cpuType, R, Kd, seed + 10 + e));
    const slotE = new Uint32Array([3, 0, 4, 4, 1, 2]), xdiv = 2, T = 3;
    const x = randn(T * Kd, seed + 20);
    const sref = new Float32Array(slotE.length * R);
    slotE.forEach((e, s) => linear(sref.subarray(s * R), x.subarray(Math.floor(s / xdiv) * Kd), 1, Kd, experts[e], R));
    const pref = new Float32Array(T * R);
    linear(pref, x, T, Kd, experts[2], R);
    const slotsOn = async (g: WebGpuBackend) => {
      const sw = g.uploadStacked(experts, "experts");
      const eb = g.buffer(slotE.byteLength), xb = g.uploadF32(x), ob = g.buffer(sref.byteLength), pb = g.buffer(pref.byteLength);
      g.write(eb, slotE);
      const p = g.pass();
      K.slotLinear(p, ob, xb, eb, slotE.length, Kd, sw, R, R, xdiv);
      K.linear(p, pb, xb, T, Kd, sw, R, { row0: 2 * R });
      p.submit();
      return { parts: sw.parts.length, slots: await g.readF32(ob, sref.length), prefill: await g.readF32(pb, pref.length) };
    };
    const one = await slotsOn(gpu), many = await slotsOn(small);
    assert.equal(one.parts, 1);
    assert.ok(many.parts > 1, `split stacked experts: ${many.parts} parts`);
    assert.ok(relErr(one.slots, sref) < TOL, `slotLinear: rel err ${relErr(one.slots, sref)}`);
    assert.ok(relErr(one.prefill, pref) < TOL, `linear at expert rows: rel err ${relErr(one.prefill, pref)}`);
    assert.deepEqual(many.slots, one.slots, "split slotLinear equals unsplit");
    assert.deepEqual(many.prefill, one.prefill, "split linear at expert rows equals unsplit");

    // absorbed MLA's products with a quantized kv_b_proj [H (dn + dv), dc]: W_UK^T q_nope and W_UV lat
    const H = 3, dn = 6, dv = 10, dc = block === 32 ? 96 : 256, dqk = dn + 4, Ta = 2;
    const kvb = quantMatrix(cpuType, H * (dn + dv), dc, seed + 30), kf = toF32(kvb);
    const q = randn(Ta * H * dqk, seed + 31), lat = randn(Ta * H * dc, seed + 32);
    const qcRef = new Float32Array(Ta * H * dc), ovRef = new Float32Array(Ta * H * dv);
    for (let t = 0; t < Ta; t++) for (let h = 0; h < H; h++) {
      for (let c = 0; c < dc; c++) {
        let s = 0;
        for (let i = 0; i < dn; i++) s += q[(t * H + h) * dqk + i] * kf[(h * (dn + dv) + i) * dc + c];
        qcRef[(t * H + h) * dc + c] = s;
      }
      linear(ovRef.subarray((t * H + h) * dv), lat.subarray((t * H + h) * dc), 1, dc, kvb, dv, h * (dn + dv) + dn);
    }
    const kb = gpu.uploadWeight(kvb), qb = gpu.uploadF32(q), lb = gpu.uploadF32(lat);
    const qcb = gpu.buffer(qcRef.byteLength), ovb = gpu.buffer(ovRef.byteLength);
    const p = gpu.pass();
    K.absorbQuery(p, qcb, qb, kb, Ta, H, dn, dv, dc, dqk);
    K.absorbOutput(p, ovb, lb, kb, Ta, H, dn, dv, dc);
    p.submit();
    const qc = await gpu.readF32(qcb, qcRef.length), ov = await gpu.readF32(ovb, ovRef.length);
    assert.ok(relErr(qc, qcRef) < TOL, `absorbQuery: rel err ${relErr(qc, qcRef)}`);
    assert.ok(relErr(ov, ovRef) < TOL, `absorbOutput: rel err ${relErr(ov, ovRef)}`);
  });
}

test("webgpu split weights: 16-bit rows of odd width (2-byte aligned parts), a Q8 matrix converted to Q8_0 in several chunks", async () => {
  for (const dtype of ["F32", "BF16", "F16"] as const) {
    const t = fromF32(randn(160 * 37, 91), dtype, [160, 37]);
    const a = await products(gpu, t, 37, 45, 92), b = await products(small, t, 37, 45, 92);
    assert.ok(small.uploadWeight(t).parts.length > 1, `${dtype} split`);
    a.got.forEach((g, i) => assert.ok(relErr(g, a.want[i]) < TOL, `${dtype} #${i}: rel err ${relErr(g, a.want[i])}`));
    b.got.forEach((g, i) => assert.deepEqual(g, a.got[i], `${dtype} split #${i}`));
  }
  // 1100 rows of 1088 bytes: the conversion goes in chunks of the 1 MiB staging array, rows on both sides checked
  const big = quantMatrix("Q8", 1100, 1024, 93), bf = toF32(big);
  const ids = new Uint32Array([0, 962, 963, 964, 1099]);
  const ib = gpu.buffer(ids.byteLength), ob = gpu.buffer(ids.length * 1024 * 4);
  gpu.write(ib, ids);
  const wb = gpu.uploadWeight(big);
  assert.deepEqual([wb.dtype, wb.parts.length], ["Q8_0", 1]);
  const p = gpu.pass();
  K.embed(p, ob, wb, ib, ids.length, 1024);
  p.submit();
  const got = await gpu.readF32(ob, ids.length * 1024);
  const ref = new Float32Array(ids.length * 1024);
  ids.forEach((id, j) => ref.set(bf.subarray(id * 1024, id * 1024 + 1024), j * 1024));
  assert.deepEqual(got, ref, "Q8 -> Q8_0 rows (d q with an f16 d: exact)");
});

test("webgpu split weights: refusals are one-line MlaErrors naming the size", async () => {
  const kvb = quantMatrix("Q4_0", 400, 64, 95); // 14,400 bytes > 4096
  const kb = small.uploadWeight(kvb);
  assert.ok(kb.parts.length > 1, "kv_b split");
  const b = small.buffer(64);
  oneLineMlaError(() => K.absorbQuery(small.pass(), b, b, kb, 1, 25, 8, 8, 64, 8), "kv_b_proj", "bytes", "tens of MiB");
  oneLineMlaError(() => small.uploadStacked([quantMatrix("Q4_0", 300, 64, 96)], "experts.gate"), "experts.gate", "10800 bytes", "4096-byte");
  // a split plain weight used as stacked experts of 7 rows: its parts do not hold whole experts
  const w = small.uploadWeight(quantMatrix("Q8", 301, 64, 97));
  oneLineMlaError(() => K.slotLinear(small.pass(), b, b, b, 1, 64, w, 7, 7, 1), "whole experts of 7 rows");
  oneLineMlaError(() => gpu.uploadWeight({ dtype: "Q4_1" as never, shape: [1, 32], data: new Uint8Array(20) }), "Q4_1", "not supported");
  oneLineMlaError(() => gpu.buffer(gpu.ctx.limits.maxStorageBufferBindingSize + 16, "cache"), "cache", "binding limit");
});

test("webgpu block-type kernels: every shader reads its parameters by name", () => {
  for (const [, t] of TYPES) {
    for (const k of [S.matmulTiled(t), S.matvec(t), S.embed(t), S.absorbQuery(t), S.absorbOutput(t), S.slotMatvec(t)] as { params: { wgsl: string; names: readonly string[] }; source: () => string }[]) {
      const src = k.source();
      assert.ok(src.startsWith(k.params.wgsl));
      for (const [, name] of src.matchAll(/\bP\.(\w+)/g)) assert.ok(k.params.names.includes(name), `P.${name}`);
    }
  }
});

/** A checkpoint's weights through `prepare` (the CPU's quantization at load), uploaded onto backend g. */
function gpuModel(dir: string, g: WebGpuBackend, prepare?: (w: Tensor) => Tensor): GpuModel {
  const config = loadConfig(dir), ckpt = openCheckpoint(dir);
  try {
    const w = config.attention === "mla" ? loadWeights(config, ckpt, undefined, prepare) : loadLlamaWeights(config, ckpt, undefined, prepare);
    return new GpuModel(config, uploadWeights(g, w), g);
  } finally {
    ckpt.close();
  }
}

const weightTypes = (m: GpuModel): Set<string> => {
  const out = new Set<string>();
  const walk = (o: unknown): void => {
    if (!o || typeof o !== "object") return;
    const w = o as Partial<GpuWeight>;
    if (w.parts && w.dtype) out.add(w.dtype);
    else for (const v of Object.values(o)) walk(v);
  };
  walk(m.weights);
  return out;
};

/** Prefill logits of every position, then 3 decode steps (T = 1: the group-wise products, MoE slots on the GPU). */
async function gpuLogits(m: GpuModel, ids: number[]): Promise<number[]> {
  const st = m.newState();
  const out = Array.from(await m.forward(ids, st, { allLogits: true }));
  for (const id of [7, 3, 11]) out.push(...(await m.forward([id], st)));
  return out;
}

function cpuLogits(m: ReturnType<typeof loadModel>, ids: number[]): number[] {
  const st = m.newState();
  const out = Array.from(m.forward(ids, st, { allLogits: true }));
  for (const id of [7, 3, 11]) out.push(...m.forward([id], st));
  return out;
}

const IDS = [0, 5, 9, 3, 17, 2, 40, 11];

test("webgpu model quantized at load (tiny-deepseek-v3 at Q4_0, kv_b included) equals the scalar CPU backend on the same weights; split across buffers equals unsplit", async (t) => {
  const dir = join(FIXTURES, "tiny-deepseek-v3"), ops = cpuOpsQuant("Q4_0");
  const m = gpuModel(dir, gpu, ops.prepare);
  assert.ok(weightTypes(m).has("Q4_0"), [...weightTypes(m)].join(","));
  const want = cpuLogits(loadModel(dir, { ops }), IDS);
  const got = await gpuLogits(m, IDS);
  const e = relErr(got, want);
  t.diagnostic(`tiny-deepseek-v3 Q4_0: rel err ${e.toExponential(2)}`);
  assert.ok(e < TOL, `rel err ${e}`);
  const ms = gpuModel(dir, small, ops.prepare);
  assert.ok(ms.weights.embed.parts.length > 1 && ms.weights.layers.some((l) => l.ffn.kind === "moe" && l.ffn.moe.gates.parts.length > 1), "split");
  assert.deepEqual(await gpuLogits(ms, IDS), got, "split model equals unsplit");
});

for (const [file, types] of [
  ["mixed-quant.gguf", ["Q4_0", "Q4_K", "Q5_K", "Q6_K", "Q8_0"]],
  ["tiny-deepseek-v3-q8_0.gguf", ["Q8_0"]],
] as const) {
  test(`webgpu GGUF ${file}: GpuModel.load keeps ${types.join(", ")} packed and equals the scalar CPU backend`, async (t) => {
    const path = join(FIXTURES, "gguf", file);
    const m = GpuModel.load(path, gpu);
    for (const ty of types) assert.ok(weightTypes(m).has(ty), `${ty} in ${[...weightTypes(m)].join(",")}`);
    const e = relErr(await gpuLogits(m, IDS), cpuLogits(loadModel(path, { ops: cpuOps }), IDS));
    t.diagnostic(`${file}: rel err ${e.toExponential(2)}`);
    assert.ok(e < TOL, `rel err ${e}`);
  });
}

test("webgpu GGUF with llama.cpp's Q5_0 fallback (tiny-deepseek-v3 exported at q4_k) equals the scalar CPU backend", async (t) => {
  const file = join(freshDir(), "v3-q4_k.gguf");
  exportGguf(join(FIXTURES, "tiny-deepseek-v3"), file, { type: "q4_k", fallback: "llama.cpp" });
  const m = GpuModel.load(file, gpu);
  assert.ok(weightTypes(m).has("Q5_0"), [...weightTypes(m)].join(","));
  const e = relErr(await gpuLogits(m, IDS), cpuLogits(loadModel(file, { ops: cpuOps }), IDS));
  t.diagnostic(`Q5_0 fallback: rel err ${e.toExponential(2)}`);
  assert.ok(e < TOL, `rel err ${e}`);
});
