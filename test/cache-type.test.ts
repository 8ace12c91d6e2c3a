import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { LatentCache } from "../src/attention/cache.js";
import { attend, attendLatent, type CacheDType, type LatentRows } from "../src/backends/cpu/index.js";
import { attendLatentEach, cpuOps } from "../src/backends/ops.js";
import { WasmOps } from "../src/backends/wasm/ops.js";
import { DeepseekModel } from "../src/model/deepseek-model.js";
import { loadModel } from "../src/model/load.js";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../src/tensor/dtype.js";
import { openRuntime } from "../src/cli/backend.js";
import { FIXTURES, loadReference, randn, relErr } from "./helpers.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
/** In the relaxed child run (the last test) the WASM backends use the relaxed-SIMD build. */
const RELAXED = process.env.MLA_WASM_RELAXED === "1";
const DTYPES16 = ["F16", "BF16"] as const;
const round = (dt: CacheDType, x: number): number => (dt === "BF16" ? bf16ToF32(f32ToBf16(x)) : dt === "F16" ? f16ToF32(f32ToF16(x)) : Math.fround(x));

const ops1 = await WasmOps.create({ threads: 1, relaxed: RELAXED });
const ops2 = await WasmOps.create({ threads: 2, relaxed: RELAXED, minParallelWork: 0 });
after(async () => {
  await Promise.all([ops1.close(), ops2.close()]);
});

test("a 16-bit latent cache rounds rows once (RNE), halves its bytes, and keeps rows through growth and truncation", { skip: RELAXED }, () => {
  const dc = 12, dr = 4, w = dc + dr, src = randn(7 * w, 4101, 3);
  for (const dt of DTYPES16) {
    const c = new LatentCache(dc, dr, 2, Infinity, undefined, dt), f = new LatentCache(dc, dr, 2);
    c.append(src, 3);
    c.append(src.subarray(3 * w), 4); // grows past capacity 2 twice
    f.append(src, 7);
    assert.ok(c.data instanceof Uint16Array);
    assert.equal(c.bytes * 2, f.bytes);
    assert.equal(c.rowBytes, w * 2);
    assert.deepEqual(Array.from(c.rowsF32()), Array.from(src, (x) => round(dt, x)), dt);
    c.truncate(5);
    c.append(src, 1); // row 5 overwritten by row 0
    assert.deepEqual(Array.from(c.rowsF32(5, 6)), Array.from(src.subarray(0, w), (x) => round(dt, x)));
  }
});

test("the scalar latent kernel on 16-bit rows equals attend on the widened rows", { skip: RELAXED }, () => {
  const H = 3, dc = 10, w = 13, L = 9, scale = 0.3;
  const q = randn(H * w, 4201, 1), src = randn(L * w, 4202, 1);
  for (const dt of DTYPES16) {
    const c = new LatentCache(dc, w - dc, L, Infinity, undefined, dt);
    c.append(src, L);
    const got = new Float32Array(H * dc), want = new Float32Array(H * dc);
    attendLatent(got, q, H, w, dc, c, scale);
    const view = { data: c.rowsF32(), offset: 0, rowStride: w, headStride: 0 };
    attend(want, q, 1, H, w, view, view, dc, 1, L, scale);
    assert.deepEqual(Array.from(got), Array.from(want), dt);
  }
});

/** Caches of the given lengths in wasm memory (capacity past the length: unused rows hold garbage that must not be read). */
function wasmCaches(ops: WasmOps, dt: CacheDType, lengths: readonly number[], w: number, seed: number): LatentRows[] {
  return lengths.map((L, i) => {
    const c = new LatentCache(w - 4, 4, L + 5, Infinity, (n, d) => ops.allocCache(n, d), dt);
    c.append(randn((L + 5) * w, seed + i, 2), L + 5);
    c.truncate(L);
    return c;
  });
}

test(`WASM latent kernels on F16/BF16 rows vs the scalar reference (1 and 2 threads${RELAXED ? ", relaxed build" : ""})`, () => {
  assert.equal(ops1.be.relaxed, RELAXED);
  // w % 8 == 4 (28, 44) exercises the kernels' 4-value tail; L past CHUNK (32) several online-softmax steps
  for (const [H, dc, w, seed] of [[5, 20, 28, 4301], [7, 36, 44, 4302], [4, 32, 40, 4303], [9, 64, 72, 4304]] as const) {
    for (const dt of DTYPES16) {
      for (const ops of [ops1, ops2]) {
        const lengths = [1, 37, 6, 130, 64, 3, 9];
        const rows = wasmCaches(ops, dt, lengths, w, seed);
        const n = rows.length, scale = 0.19;
        const q = randn(n * H * w, seed + 99, 1);
        const ref = new Float32Array(n * H * dc), many = new Float32Array(n * H * dc);
        attendLatentEach(cpuOps, ref, q, H, w, dc, rows, scale);
        ops.attendLatentMany(many, q, H, w, dc, rows, scale); // sequences split across threads
        const e = relErr(many, ref);
        assert.ok(e < 1e-5, `${dt} H=${H} w=${w} threads=${ops.threads}: batched rel err ${e}`);
        rows.forEach((r, i) => { // one sequence: its heads split across threads
          const one = new Float32Array(H * dc);
          ops.attendLatentMany(one, q.subarray(i * H * w, (i + 1) * H * w), H, w, dc, [r], scale);
          assert.deepEqual(Array.from(one), Array.from(many.subarray(i * H * dc, (i + 1) * H * dc)), `${dt} seq ${i}: alone = batched`);
        });
      }
    }
  }
});

/** Logits of every position, prefilled naive (the default) in one pass, on a model whose latent cache is `dt`. */
function logitsWith(ops: WasmOps | typeof cpuOps, dt: CacheDType, ids: number[]): Float32Array {
  const model = DeepseekModel.load(join(FIXTURES, "tiny-deepseek-v3"), { ops, cacheType: dt });
  return model.forward(ids, model.newState(), { mode: "naive", allLogits: true });
}

/** Token-by-token absorbed decode: the logits of each position, reading the cache through the decode kernels. */
function decodeEach(model: DeepseekModel, ids: readonly number[]): Float32Array {
  const state = model.newState(ids.length), V = model.config.vocabSize, out = new Float32Array(ids.length * V);
  ids.forEach((id, t) => out.set(model.forward([id], state, { mode: "absorb" }), t * V));
  return out;
}

test("tiny-deepseek-v3 with an F16/BF16 cache: logits close to the F32 cache's; decode after prefill = token-by-token decode", (t) => {
  const ref = loadReference("tiny-deepseek-v3"), ids = ref.inputIds[0], dir = join(FIXTURES, "tiny-deepseek-v3");
  for (const ops of [ops2, cpuOps]) {
    const f32 = decodeEach(DeepseekModel.load(dir, { ops }), ids);
    for (const dt of DTYPES16) {
      const model = DeepseekModel.load(dir, { ops, cacheType: dt });
      const each = decodeEach(model, ids);
      const e = relErr(each, f32);
      t.diagnostic(`${ops.name}, ${dt} cache: logits rel err vs F32 cache ${e.toExponential(2)} (${ids.length} positions)`);
      assert.ok(e < (dt === "F16" ? 1e-3 : 1e-2) && e > 0, `${dt}: rel err ${e}`);
      // prefill (naive, up-projecting the rounded rows) then absorbed decode of the rest, against decode throughout
      const P = 16, state = model.newState();
      const got = [...model.forward(ids.slice(0, P), state, { allLogits: true })];
      for (const id of ids.slice(P)) got.push(...model.forward([id], state));
      const ep = relErr(got, each);
      assert.ok(ep < 1e-5, `${dt}: prefill + decode vs token-by-token rel err ${ep}`);
      assert.equal(state.cacheBytes, ids.length * model.config.numLayers * (model.config.kvLoraRank + model.config.qkRopeHeadDim) * 2);
      assert.equal(model.cacheBytesPerToken * 2, DeepseekModel.load(dir, { ops }).cacheBytesPerToken);
    }
  }
  // the one-pass naive prefill reads the same rounded rows
  const naive = logitsWith(ops2, "BF16", ids);
  assert.ok(relErr(naive, decodeEach(DeepseekModel.load(dir, { ops: ops2, cacheType: "BF16" }), ids)) < 1e-5);
});

test("a batched decode step over 16-bit caches (the many-sequence kernel) equals each sequence's own step", () => {
  const model = DeepseekModel.load(join(FIXTURES, "tiny-deepseek-v3"), { ops: ops2, cacheType: "F16" });
  const prompts = [[5, 9, 40], [7], [100, 3, 3, 8, 200], [11, 12], [300, 1, 2, 4], [77, 66, 55]]; // 6 > H = 4: batched
  const states = () => prompts.map((p) => {
    const s = model.newState();
    model.forward(p, s);
    return s;
  });
  const a = states(), b = states();
  const batched = model.forwardBatch(prompts.map((p, i) => ({ ids: [p[0] + 1], state: a[i] })));
  const V = model.config.vocabSize;
  prompts.forEach((p, i) => {
    const one = model.forward([p[0] + 1], b[i]);
    const e = relErr(batched.subarray(i * V, (i + 1) * V), one);
    assert.ok(e < 1e-6, `sequence ${i}: rel err ${e}`);
  });
});

test("--cache-type: one-line errors for other values (webgpu too, before a device opens) and for GQA models on the cpu", { skip: RELAXED }, async () => {
  await assert.rejects(openRuntime({ backend: "cpu-scalar", cacheType: "q8" }), /--cache-type must be one of f32, f16, bf16, got "q8"/);
  await assert.rejects(openRuntime({ backend: "webgpu", cacheType: "q4" }), /--cache-type must be one of f32, f16, bf16, got "q4"/);
  assert.throws(() => loadModel(join(FIXTURES, "tiny-llama"), { cacheType: "F16" }), /applies to MLA models only/);
  const rt = await openRuntime({ backend: "cpu-scalar", cacheType: "BF16" });
  const model = rt.load(join(FIXTURES, "tiny-deepseek-v3"));
  const f32 = loadModel(join(FIXTURES, "tiny-deepseek-v3"));
  assert.equal(model.cacheBytesPerToken * 2, f32.cacheBytesPerToken);
});

test("relaxed-SIMD build passes the latent cache kernel tests (child process)", { skip: RELAXED ? "this is the relaxed child run itself" : false }, () => {
  const r = spawnSync(process.execPath, ["--experimental-wasm-relaxed-simd", "--import", "tsx", "--test", "test/cache-type.test.ts"], {
    cwd: ROOT, encoding: "utf8", timeout: 120000, env: { ...process.env, MLA_WASM_RELAXED: "1" },
  });
  assert.equal(r.status, 0, r.stdout.slice(-3000) + r.stderr.slice(-2000));
});
