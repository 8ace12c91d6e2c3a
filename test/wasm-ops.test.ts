import { test, after } from "node:test";
import assert from "node:assert/strict";
import { WasmOps } from "../src/backends/wasm/ops.js";
import { attendLatentEach, cpuOps } from "../src/backends/ops.js";
import { GroupedQueryAttention } from "../src/attention/gqa.js";
import { KvCache } from "../src/attention/cache.js";
import { RotaryEmbedding, DEFAULT_ROPE } from "../src/attention/rope.js";
import { f32Tensor } from "../src/tensor/tensor.js";
import { randn, relErr } from "./helpers.js";

const ops = await WasmOps.create({ threads: 2, minParallelWork: 0 });
after(() => ops.close());

// Decode attention with per-head K/V on the SIMD kernel against the scalar reference: MHA, GQA, MQA.
for (const [H, Hkv] of [[6, 6], [6, 2], [6, 1]]) {
  for (const L of [1, 9, 301]) {
    test(`attend, one token, H=${H} Hkv=${Hkv} L=${L}: SIMD = scalar`, () => {
      const dk = 20, dv = 12, pad = 3;
      const rowK = Hkv * dk + pad, rowV = Hkv * dv + pad; // strided rows, offset start
      const kd = randn(L * rowK + 5, 17 + L, 1), vd = randn(L * rowV + 7, 29 + L, 1);
      const q = randn(H * dk, 41 + H, 1);
      const k = { data: kd, offset: 5, rowStride: rowK, headStride: dk }, v = { data: vd, offset: 7, rowStride: rowV, headStride: dv };
      const out = new Float32Array(H * dv), ref = new Float32Array(H * dv);
      ops.attend(out, q, 1, H, dk, k, v, dv, Hkv, L, 0.3);
      cpuOps.attend(ref, q, 1, H, dk, k, v, dv, Hkv, L, 0.3);
      const e = relErr(out, ref);
      assert.ok(e < 1e-5, `rel err ${e}`);
    });
  }
}

test("GroupedQueryAttention on wasm: prefill and decode equal the scalar layer (GQA, RoPE)", () => {
  const D = 48, H = 6, G = 2, dk = 16, dv = 8;
  const w = (r: number, c: number, s: number) => f32Tensor([r, c], randn(r * c, s, 1 / Math.sqrt(c)));
  const weights = { q: w(H * dk, D, 1), k: w(G * dk, D, 2), v: w(G * dv, D, 3), o: w(D, H * dv, 4) };
  const rope = new RotaryEmbedding(DEFAULT_ROPE, 8);
  const dims = { hidden: D, nHeads: H, nKvHeads: G, headDim: dk, vHeadDim: dv, ropeDim: 8 };
  const prepared = { q: ops.prepare(weights.q), k: ops.prepare(weights.k), v: ops.prepare(weights.v), o: ops.prepare(weights.o) };
  const fast = new GroupedQueryAttention(dims, prepared, rope, 0.25, ops);
  const slow = new GroupedQueryAttention(dims, weights, rope, 0.25, cpuOps);
  const cf = new KvCache(G, dk, dv, 4, Infinity, (n) => ops.allocCache(n)), cs = new KvCache(G, dk, dv);
  const x = randn(11 * D, 5, 1);
  const a = [...fast.forward(x.subarray(0, 7 * D), 7, cf)], b = [...slow.forward(x.subarray(0, 7 * D), 7, cs)];
  for (let t = 7; t < 11; t++) {
    a.push(...fast.forward(x.subarray(t * D, (t + 1) * D), 1, cf));
    b.push(...slow.forward(x.subarray(t * D, (t + 1) * D), 1, cs));
  }
  const e = relErr(a, b);
  assert.ok(e < 1e-5, `rel err ${e}`);
});

test("rmsNorm and siluMul on wasm (sizes past the JS cut-off) equal the scalar kernels", () => {
  const T = 37, D = 1028, n = T * D;
  const x = randn(n, 3, 2), w = randn(D, 4, 1);
  const a = new Float32Array(n), b = new Float32Array(n);
  ops.rmsNorm(a, x, T, D, w, 1e-6);
  cpuOps.rmsNorm(b, x, T, D, w, 1e-6);
  const e1 = relErr(a, b);
  assert.ok(e1 < 1e-6, `rmsNorm rel err ${e1}`);
  const g = randn(n, 5, 4), u = randn(n, 6, 1);
  ops.siluMul(a, g, u, n);
  cpuOps.siluMul(b, g, u, n);
  const e2 = relErr(a, b);
  assert.ok(e2 < 1e-6, `siluMul rel err ${e2}`);
});

// Prefill products are blocked by tokens (tokenBlock in the kernels: 64 tokens when K = 1024): cross blocks.
test("linear with many tokens (several token blocks, odd remainder) equals the scalar kernel in every dtype", async () => {
  const { fromF32 } = await import("../src/tensor/tensor.js");
  const T = 150, K = 1024, N = 37;
  const x = randn(T * K, 77, 1);
  for (const dt of ["F32", "BF16", "F16", "Q8"] as const) {
    const src = fromF32(randn(N * K, 78, 0.05), dt, [N, K]);
    const out = new Float32Array(T * N), ref = new Float32Array(T * N);
    ops.linear(out, x, T, K, ops.prepare(src), N);
    cpuOps.linear(ref, x, T, K, src, N);
    const e = relErr(out, ref);
    assert.ok(e < 1e-5, `${dt}: rel err ${e}`);
  }
});

test("prefill attention (many queries after a cached prefix, several query blocks) equals the scalar kernel", () => {
  const T = 300, L = 310, H = 4, Hkv = 2, dk = 24, dv = 16;
  const q = randn(T * H * dk, 81, 1), kd = randn(L * Hkv * dk, 82, 1), vd = randn(L * Hkv * dv, 83, 1);
  const k = { data: kd, offset: 0, rowStride: Hkv * dk, headStride: dk }, v = { data: vd, offset: 0, rowStride: Hkv * dv, headStride: dv };
  const out = new Float32Array(T * H * dv), ref = new Float32Array(T * H * dv);
  ops.attend(out, q, T, H, dk, k, v, dv, Hkv, L, 0.2);
  cpuOps.attend(ref, q, T, H, dk, k, v, dv, Hkv, L, 0.2);
  const e = relErr(out, ref);
  assert.ok(e < 1e-5, `rel err ${e}`);
});

test("cache memory of dropped run states is reused (no growth over many sequences)", async () => {
  const { setFlagsFromString } = await import("node:v8");
  const { runInNewContext } = await import("node:vm");
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  const { LatentCache } = await import("../src/attention/cache.js");
  const cycle = () => {
    const caches = Array.from({ length: 4 }, () => new LatentCache(64, 16, 4096, Infinity, (n) => ops.allocCache(n)));
    for (const c of caches) c.append(randn(80, 9, 1), 1);
  };
  const settle = async () => {
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  for (let i = 0; i < 3; i++) cycle();
  await settle();
  const before = ops.be.heap.used;
  for (let i = 0; i < 20; i++) {
    cycle();
    await settle();
  }
  const grown = ops.be.heap.used - before;
  // without reuse each cycle takes 4 x 4096 x 80 floats (5.2 MB): 105 MB over 20 cycles
  assert.ok(grown < 4 * 4096 * 80 * 4 * 2, `heap grew by ${grown} bytes over 20 sequences`);
});

test("attendLatentMany (all decoding sequences in one call) equals attend per sequence, and the scalar kernel", () => {
  const H = 5, dc = 20, dr = 8, w = dc + dr;
  const lengths = [1, 37, 6, 130, 64, 3, 9];
  const caches = lengths.map((L, i) => {
    const data = ops.allocCache(w * (L + 4)); // capacity past the length: unused rows must not be read
    data.set(randn(w * (L + 4), 700 + i, 1));
    return { data, length: L, width: w };
  });
  const n = caches.length;
  const q = randn(n * H * w, 777, 1);
  const many = new Float32Array(n * H * dc), each = new Float32Array(n * H * dc), ref = new Float32Array(n * H * dc);
  ops.attendLatentMany(many, q, H, w, dc, caches, 0.21);
  attendLatentEach(ops, each, q, H, w, dc, caches, 0.21);
  attendLatentEach(cpuOps, ref, q, H, w, dc, caches, 0.21);
  assert.deepEqual(Array.from(many), Array.from(each), "the batched call computes each sequence as attend does");
  const e = relErr(many, ref);
  assert.ok(e < 1e-5, `rel err vs scalar ${e}`);
  // a cache outside wasm memory (plain JS) takes the per-sequence path with the same results
  const plain = caches.map((c) => ({ ...c, data: c.data.slice() }));
  const mixed = new Float32Array(n * H * dc);
  ops.attendLatentMany(mixed, q, H, w, dc, plain, 0.21);
  assert.ok(relErr(mixed, ref) < 1e-5);
});

test("the MoE router's gate is placed unquantized under --quantize and routes as the scalar product does", async () => {
  const qops = await WasmOps.create({ threads: 2, minParallelWork: 0, quantize: "Q4_K" });
  try {
    const E = 16, D = 256;
    const gate = f32Tensor([E, D], randn(E * D, 7, 0.05));
    assert.equal(qops.prepare(gate).dtype, "Q4_K", "an ordinary matrix is quantized");
    const exact = qops.prepareExact(gate);
    assert.equal(exact.dtype, "F32", "the gate is not");
    const x = randn(3 * D, 8, 1), got = new Float32Array(3 * E), ref = new Float32Array(3 * E);
    qops.linear(got, x, 3, D, exact, E);
    cpuOps.linear(ref, x, 3, D, gate, E);
    assert.ok(relErr(got, ref) < 1e-6, `router logits rel err ${relErr(got, ref)}`);
  } finally {
    await qops.close();
  }
});
