import { test } from "node:test";
import assert from "node:assert/strict";
import { exitAfterTests, gpuBackend } from "./gpu-env.js";
import { kernels as K, type Pass, type WebGpuBackend } from "../src/backends/webgpu/backend.js";
import { layout } from "../src/backends/webgpu/params.js";
import * as S from "../src/backends/webgpu/wgsl.js";
import { attend, linear, rmsNorm, ropeHalves, ropeInterleaved } from "../src/backends/cpu/index.js";
import { fromF32, f32Tensor, toF32 } from "../src/tensor/tensor.js";
import { randn, relErr } from "./helpers.js";
import type { RouterSpec } from "../src/model/router.js";

let gpu: WebGpuBackend;
exitAfterTests();

test("webgpu: an adapter is found (SwiftShader on CPU-only machines)", async (t) => {
  gpu = await gpuBackend();
  t.diagnostic(gpu.name);
  assert.ok(gpu.device, "device");
});

for (const dtype of ["F32", "BF16", "F16"] as const) {
  for (const [T, K_, N] of [[1, 67, 45], [3, 130, 29], [70, 37, 131], [1, 136, 45], [4, 264, 33]]) {
    test(`webgpu linear ${dtype} T=${T} K=${K_} N=${N}: equals the CPU kernel (row offset, strides, accumulate)`, async () => {
      gpu ??= await gpuBackend();
      const seed = T * 1000 + K_ + N;
      const w = fromF32(randn((N + 3) * K_, seed), dtype, [N + 3, K_]);
      const xs = K_ + 5, os = N + 2;
      const x = randn(T * xs, seed + 1), base = randn(T * os, seed + 2);
      const prod = new Float32Array(T * os);
      linear(prod, x, T, K_, w, N, 3, xs, os);
      const ref = base.slice(), acc = base.slice();
      for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) {
        ref[t * os + n] = prod[t * os + n];
        acc[t * os + n] += prod[t * os + n];
      }
      const wb = gpu.uploadWeight(w), xb = gpu.uploadF32(x), ob = gpu.uploadF32(base), ab = gpu.uploadF32(base);
      const p = gpu.pass();
      K.linear(p, ob, xb, T, K_, wb, N, { row0: 3, xs, os });
      K.linear(p, ab, xb, T, K_, wb, N, { row0: 3, xs, os, accumulate: true });
      p.submit();
      const out = await gpu.readF32(ob, T * os), outAcc = await gpu.readF32(ab, T * os);
      assert.ok(relErr(out, ref) < 1e-5, `relative error ${relErr(out, ref)}`);
      assert.ok(relErr(outAcc, acc) < 1e-5, `accumulate: relative error ${relErr(outAcc, acc)}`);
    });
  }
}

test("webgpu rmsNorm, rope (interleaved and halves), siluMul, axpy, gather, embed, argmax equal the CPU kernels", async () => {
  gpu ??= await gpuBackend();
  const T = 5, D = 301, eps = 1e-5;
  const x = randn(T * (D + 3), 11), w = randn(D, 12);
  const ref = new Float32Array(T * D);
  rmsNorm(ref, x, T, D, w, eps, D + 3, D);
  const xb = gpu.uploadF32(x), wb = gpu.uploadF32(w), ob = gpu.buffer(T * D * 4);
  // rope on 3 heads of 10 dims at offset 4 in rows of 37
  const H = 3, d = 10, rs = 37, q = randn(T * rs, 13), cos = randn(T * d / 2, 14), sin = randn(T * d / 2, 15);
  const cs = new Float32Array(T * d);
  for (let t = 0; t < T; t++) {
    cs.set(cos.subarray(t * d / 2, (t + 1) * d / 2), t * d);
    cs.set(sin.subarray(t * d / 2, (t + 1) * d / 2), t * d + d / 2);
  }
  const qi = q.slice(), qh = q.slice();
  ropeInterleaved(qi, T, H, d, 4, rs, 11, cos, sin);
  ropeHalves(qh, T, H, d, 4, rs, 11, cos, sin);
  const qib = gpu.uploadF32(q), qhb = gpu.uploadF32(q), csb = gpu.uploadF32(cs);
  const F = 77, g = randn(T * F, 16), u = randn(T * F, 17), gb = gpu.uploadF32(g), ub = gpu.uploadF32(u), sb = gpu.buffer(T * F * 4);
  const y = randn(T * D, 18), yb = gpu.uploadF32(y), yb2 = gpu.uploadF32(y);
  const idx = new Uint32Array([4, 0, 2]), wt = new Float32Array([0.5, -2, 3]);
  const idxb = gpu.buffer(12), wtb = gpu.uploadF32(wt);
  gpu.write(idxb, idx);
  const gathered = gpu.buffer(3 * D * 4);
  const emb = fromF32(randn(9 * D, 19), "BF16", [9, D]), embb = gpu.uploadWeight(emb), eo = gpu.buffer(3 * D * 4);
  const am = randn(1000, 20); am[613] = 50; am[917] = 50;
  const amb = gpu.uploadF32(am), amo = gpu.buffer(4);
  const p = gpu.pass();
  K.rmsNorm(p, ob, xb, T, D, wb, eps, { xs: D + 3 });
  K.rope(p, qib, csb, T, H, d, 4, rs, 11, false);
  K.rope(p, qhb, csb, T, H, d, 4, rs, 11, true);
  K.siluMul(p, sb, gb, ub, T, F);
  K.axpy(p, yb, xb, T, D, 1); // rows of x at stride D (its first T*D values)
  K.axpy(p, yb2, yb, 3, D, 1, idxb, wtb); // reads yb's first 3 rows after the first axpy
  K.gather(p, gathered, xb, idxb, 3, D);
  K.embed(p, eo, embb, idxb, 3, D);
  K.argmax(p, amo, amb, 1000);
  p.submit();
  assert.ok(relErr(await gpu.readF32(ob, T * D), ref) < 1e-5, "rmsNorm");
  assert.ok(relErr(await gpu.readF32(qib, T * rs), qi) < 1e-6, "rope interleaved");
  assert.ok(relErr(await gpu.readF32(qhb, T * rs), qh) < 1e-6, "rope halves");
  const s = new Float32Array(T * F);
  for (let i = 0; i < s.length; i++) s[i] = (g[i] / (1 + Math.exp(-g[i]))) * u[i];
  assert.ok(relErr(await gpu.readF32(sb, T * F), s) < 1e-6, "siluMul");
  const y1 = y.slice();
  for (let i = 0; i < T * D; i++) y1[i] += x[i];
  assert.ok(relErr(await gpu.readF32(yb, T * D), y1) < 1e-6, "axpy");
  const y2 = y.slice();
  for (let j = 0; j < 3; j++) for (let i = 0; i < D; i++) y2[idx[j] * D + i] += wt[j] * y1[j * D + i];
  assert.ok(relErr(await gpu.readF32(yb2, T * D), y2) < 1e-6, "indexed axpy (MoE scatter)");
  const gref = new Float32Array(3 * D), eref = new Float32Array(3 * D), ef = toF32(emb);
  for (let j = 0; j < 3; j++) {
    gref.set(x.subarray(idx[j] * D, idx[j] * D + D), j * D);
    eref.set(ef.subarray(idx[j] * D, idx[j] * D + D), j * D);
  }
  assert.deepEqual(await gpu.readF32(gathered, 3 * D), gref, "gather");
  assert.deepEqual(await gpu.readF32(eo, 3 * D), eref, "embed (BF16 widened exactly)");
  assert.equal(new Uint32Array(await gpu.read(amo, 4))[0], 613, "argmax takes the first of two equal maxima");
});

for (const [T, L, H, dc, dr, chunk] of [[1, 1, 3, 40, 8, 64], [1, 300, 11, 64, 16, 37], [6, 45, 5, 24, 4, 1000], [4, 200, 9, 72, 8, 16], [1, 37, 10, 512, 64, 16]]) {
  test(`webgpu absorbed MLA attention T=${T} L=${L} H=${H} d_c=${dc} d_h^R=${dr} (chunk ${chunk}): equals the CPU attend over the latent cache`, async () => {
    gpu ??= await gpuBackend();
    const dn = 6, dv = 10, dqk = dn + dr, seed = L + H + dc;
    const kvb = fromF32(randn(H * (dn + dv) * dc, seed, 0.3), "BF16", [H * (dn + dv), dc]);
    const kvbF = toF32(kvb);
    const q = randn(T * H * dqk, seed + 1), cache = randn(L * (dc + dr), seed + 2);
    const scale = 0.37;
    // reference: absorb on the CPU, attend over [c_KV | k_rope] rows, then W^UV
    const qa = new Float32Array(T * H * (dc + dr));
    for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) {
      for (let c = 0; c < dc; c++) {
        let s = 0;
        for (let i = 0; i < dn; i++) s += q[(t * H + h) * dqk + i] * kvbF[(h * (dn + dv) + i) * dc + c];
        qa[(t * H + h) * (dc + dr) + c] = s;
      }
      for (let j = 0; j < dr; j++) qa[(t * H + h) * (dc + dr) + dc + j] = q[(t * H + h) * dqk + dn + j];
    }
    const lat = new Float32Array(T * H * dc);
    attend(lat, qa, T, H, dc + dr, { data: cache, offset: 0, rowStride: dc + dr, headStride: 0 }, { data: cache, offset: 0, rowStride: dc + dr, headStride: 0 }, dc, 1, L, scale);
    const ref = new Float32Array(T * H * dv);
    for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) linear(ref.subarray((t * H + h) * dv), lat.subarray((t * H + h) * dc), 1, dc, f32Tensor([H * (dn + dv), dc], kvbF), dv, h * (dn + dv) + dn);
    const nSplit = Math.ceil(L / chunk);
    const kb = gpu.uploadWeight(kvb), qb = gpu.uploadF32(q), cb = gpu.uploadF32(cache);
    const qcb = gpu.buffer(T * H * dc * 4), part = gpu.buffer(T * nSplit * H * dc * 4), ml = gpu.buffer(T * nSplit * H * 2 * 4);
    const latb = gpu.buffer(T * H * dc * 4), ob = gpu.buffer(T * H * dv * 4);
    const p = gpu.pass();
    K.absorbQuery(p, qcb, qb, kb, T, H, dn, dv, dc, dqk);
    K.latentAttend(p, part, ml, qcb, qb, cb, T, H, dc, dr, dqk, dn, L - T, chunk, nSplit, scale);
    K.latentCombine(p, latb, part, ml, T, H, dc, nSplit);
    K.absorbOutput(p, ob, latb, kb, T, H, dn, dv, dc);
    p.submit();
    const gotLat = await gpu.readF32(latb, T * H * dc);
    assert.ok(relErr(gotLat, lat) < 1e-5, `latent: relative error ${relErr(gotLat, lat)}`);
    const got = await gpu.readF32(ob, T * H * dv);
    assert.ok(relErr(got, ref) < 1e-5, `output: relative error ${relErr(got, ref)}`);
  });
}

for (const [T, L, H, G, dk, dv] of [[1, 1, 4, 4, 8, 8], [1, 150, 6, 2, 16, 12], [7, 70, 4, 1, 10, 130], [3, 3, 8, 4, 64, 64]]) {
  test(`webgpu GQA attention T=${T} L=${L} H=${H} G=${G} dk=${dk} dv=${dv}: equals the CPU attend`, async () => {
    gpu ??= await gpuBackend();
    const seed = T * 7 + L + H * 3 + G;
    const q = randn(T * H * dk, seed), k = randn(L * G * dk, seed + 1), v = randn(L * G * dv, seed + 2), scale = 1 / Math.sqrt(dk);
    const ref = new Float32Array(T * H * dv);
    attend(ref, q, T, H, dk, { data: k, offset: 0, rowStride: G * dk, headStride: dk }, { data: v, offset: 0, rowStride: G * dv, headStride: dv }, dv, G, L, scale);
    const ob = gpu.buffer(ref.byteLength);
    const p = gpu.pass();
    K.gqaAttend(p, ob, gpu.uploadF32(q), gpu.uploadF32(k), gpu.uploadF32(v), T, H, G, dk, dv, L - T, scale);
    p.submit();
    const got = await gpu.readF32(ob, ref.length);
    assert.ok(relErr(got, ref) < 1e-5, `relative error ${relErr(got, ref)}`);
  });
}

test("webgpu MoE routing equals src/model/router.ts (V3 sigmoid-grouped with bias, V2 greedy and group-limited)", async () => {
  gpu ??= await gpuBackend();
  const { routeTokens } = await import("../src/model/router.js");
  const T = 7, E = 24, k = 5;
  const logits = randn(T * E, 77, 2), bias = randn(E, 78, 0.3);
  // one RouterSpec, read by both backends: the CPU router (routeTokens) is the reference
  const cases: RouterSpec[] = [
    { scoring: "sigmoid", choiceBias: true, experts: E, topK: k, groups: 4, topGroups: 2, groupScore: "top2", normalize: true, scaling: 2.5 },
    { scoring: "softmax", choiceBias: false, experts: E, topK: k, groups: 1, topGroups: 1, groupScore: "max", normalize: false, scaling: 1 },
    { scoring: "softmax", choiceBias: false, experts: E, topK: k, groups: 6, topGroups: 3, groupScore: "max", normalize: true, scaling: 16 },
  ];
  for (const spec of cases) {
    const method = spec.scoring;
    const ref = routeTokens(spec, logits, T, bias);
    const lb = gpu.uploadF32(logits), bb = gpu.uploadF32(bias), eb = gpu.buffer(T * k * 4), wb = gpu.buffer(T * k * 4);
    const p = gpu.pass();
    K.route(p, eb, wb, lb, spec.choiceBias ? bb : null, T, spec);
    p.submit();
    const experts = new Uint32Array(await gpu.read(eb, T * k * 4)), weights = await gpu.readF32(wb, T * k);
    assert.deepEqual(Array.from(experts), Array.from(ref.experts), `method ${method}: experts`);
    assert.ok(relErr(weights, ref.weights) < 1e-5, `method ${method}: weights rel err ${relErr(weights, ref.weights)}`);
  }
});

test("kernel parameters: one named layout gives the WGSL struct and packs values by name (floats bit-cast, bools 1/0)", () => {
  const L = layout({ T: "u32", eps: "f32", on: "bool", n: "u32" });
  assert.match(L.wgsl, /struct Params \{\s*T: u32,\s*eps: f32,\s*on: u32,\s*n: u32,\s*\};/);
  assert.match(L.wgsl, /@group\(0\) @binding\(0\) var<uniform> P: Params;/);
  const words = new Uint32Array(6).fill(7);
  L.write({ n: 9, on: true, eps: 1e-5, T: 5 }, words, 1); // in any order: the layout's order decides
  assert.deepEqual(Array.from(words), [7, 5, new Uint32Array(new Float32Array([1e-5]).buffer)[0], 1, 9, 7]);
  assert.throws(() => layout(Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`p${i}`, "u32"]))), /max 16/);
  assert.throws(() => L.write({ T: 5, eps: 1e-5, on: true } as never, words, 1), /parameter n is missing/);
});

test("kernel parameters: every shader reads its parameters by name, from the struct its layout generates", () => {
  const kernels: { params: { wgsl: string; names: readonly string[] }; source: () => string }[] = [S.RMSNORM, S.ROPE, S.SILU_MUL, S.AXPY, S.BIAS, S.GATHER, S.COPY_ROWS, S.LATENT_COMBINE,
    S.GQA_ATTEND, S.ARGMAX, S.ROUTE, S.MOE_COMBINE, S.latentAttend(64, 16, S.latentTiles(80, 16384))];
  for (const t of ["F32", "BF16", "F16"] as const) {
    kernels.push(S.matmulTiled(t), S.matvec(t), S.matvecWide(t), S.embed(t), S.absorbQuery(t), S.absorbOutput(t), S.slotMatvec(t));
  }
  for (const k of kernels) {
    const src = k.source();
    assert.ok(src.startsWith(k.params.wgsl), "the layout's struct heads the shader");
    assert.doesNotMatch(src, /\bp[uf]\(/, "no positional parameter reads");
    for (const [, name] of src.matchAll(/\bP\.(\w+)/g)) assert.ok(k.params.names.includes(name), `P.${name} is a field of the layout`);
  }
});

/** Compile-time checks (never called; tsc checks them): a dispatch names exactly its kernel's parameters. */
function namedParamsTypeCheck(p: Pass, b: GPUBuffer): void {
  p.dispatch("rmsnorm", S.RMSNORM, [b, b, b], { T: 1, D: 8, xs: 8, os: 8, xo: 0, oo: 0, eps: 1e-6 }, [1, 1, 1]);
  // @ts-expect-error: eps is missing
  p.dispatch("rmsnorm", S.RMSNORM, [b, b, b], { T: 1, D: 8, xs: 8, os: 8, xo: 0, oo: 0 }, [1, 1, 1]);
  // @ts-expect-error: RMSNORM has no parameter "scale"
  p.dispatch("rmsnorm", S.RMSNORM, [b, b, b], { T: 1, D: 8, xs: 8, os: 8, xo: 0, oo: 0, eps: 1e-6, scale: 1 }, [1, 1, 1]);
  // @ts-expect-error: a bool parameter takes a boolean
  p.dispatch("rope", S.ROPE, [b, b], { T: 1, heads: 1, d: 8, offset: 0, rowStride: 8, headStride: 8, xo: 0, halves: 1 }, [1, 1, 1]);
}
void namedParamsTypeCheck;
