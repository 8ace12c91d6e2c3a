import { test } from "node:test";
import assert from "node:assert/strict";
import { TrainModel, llamaConfig, type LlamaSpec } from "../src/train/model.js";
import { ropeHalves } from "../src/backends/cpu/rope.js";
import { ropeHalvesBackward } from "../src/train/grad/index.js";
import { finiteDiff, randn, randomizeParams, relErr, randomBatch } from "./helpers.js";

const SPEC: LlamaSpec = {
  vocabSize: 31, hiddenSize: 15, intermediateSize: 22, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 6, rmsNormEps: 1e-5,
};

test("ropeHalves equals x*cos + rotate_half(x)*sin with cos/sin repeated over both halves (transformers' Llama)", () => {
  const T = 3, H = 5, d = 10, half = d / 2;
  const x = randn(T * H * d, 41), cos = randn(T * half, 42), sin = randn(T * half, 43);
  const out = x.slice();
  ropeHalves(out, T, H, d, 0, H * d, d, cos, sin);
  const ref = new Float64Array(x.length);
  for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) for (let i = 0; i < d; i++) {
    const o = (t * H + h) * d, j = i % half;
    const rot = i < half ? -x[o + i + half] : x[o + i - half];
    ref[o + i] = x[o + i] * cos[t * half + j] + rot * sin[t * half + j];
  }
  assert.ok(relErr(out, ref) < 1e-6, `relative error (float32 storage) ${relErr(out, ref)}`);
  // backward: <ropeHalves(a), b> = <a, ropeHalvesBackward(b)>
  const a = randn(T * H * d, 44), b = randn(T * H * d, 45);
  const fa = a.slice(), gb = b.slice();
  ropeHalves(fa, T, H, d, 0, H * d, d, cos, sin);
  ropeHalvesBackward(gb, T, H, d, 0, H * d, d, cos, sin);
  let l = 0, r = 0;
  for (let i = 0; i < a.length; i++) {
    l += fa[i] * b[i];
    r += a[i] * gb[i];
  }
  assert.ok(Math.abs(l - r) < 1e-5 * Math.abs(l), `adjoint identity ${l} vs ${r}`);
});

for (const [label, kv] of [["MHA", 4], ["GQA", 2], ["MQA", 1]] as const) {
  test(`train llama model (${label}, ${kv} KV heads): every parameter's gradient matches float64 central differences`, (t) => {
    const m = new TrainModel(llamaConfig({ ...SPEC, numKvHeads: kv }), { float64: true, seed: 3 });
    randomizeParams(m, 900 + kv);
    const { ids, targets } = randomBatch(2, 5, SPEC.vocabSize, 70 + kv);
    targets[0][3] = -100;
    m.zeroGrad();
    m.forward(ids, targets);
    m.backward();
    const loss = () => m.forward(ids, targets);
    let worst = 0;
    for (const [name, p] of m.params) {
      const e = relErr(m.grads.get(name)!, finiteDiff(p, loss, 1e-5));
      worst = Math.max(worst, e);
      assert.ok(e < 1e-6, `${name}: relative error ${e.toExponential(2)}`);
    }
    assert.equal(m.attention.cachePerToken, 2 * kv * SPEC.headDim);
    t.diagnostic(`${label}: ${m.numParams} parameters, worst per-tensor relative error ${worst.toExponential(2)}`);
  });
}

test("train llama model: config errors are clear", () => {
  assert.throws(() => new TrainModel(llamaConfig({ ...SPEC, numKvHeads: 3 })), /multiple of num_key_value_heads/);
  assert.throws(() => new TrainModel({ ...llamaConfig(SPEC), attention_bias: true }), /biases/);
  assert.throws(() => new TrainModel({ ...llamaConfig(SPEC), head_dim: 7 }), /even/);
});

test("train llama model: logits equal the inference engine's LlamaModel on the same weights (MHA, GQA, MQA)", async () => {
  const { parseConfig, assembleLlama } = await import("../src/model/families/index.js");
  const { LlamaModel } = await import("../src/model/llama.js");
  const { f32Tensor } = await import("../src/tensor/tensor.js");
  for (const kv of [4, 2, 1]) {
    const json = llamaConfig({ ...SPEC, numKvHeads: kv });
    const m = new TrainModel(json, { seed: 21 + kv, initStd: "fan-in" });
    const cfg = parseConfig(json);
    const engine = new LlamaModel(cfg, assembleLlama(cfg, (name) => f32Tensor(m.shapes.get(name)!, m.params.get(name) as Float32Array)));
    const B = 2, T = 9, V = SPEC.vocabSize;
    const { ids } = randomBatch(B, T, V, 300 + kv);
    const lt = m.logits(ids);
    for (let b = 0; b < B; b++) {
      const le = engine.forward(ids[b], engine.newState(), { allLogits: true });
      const e = relErr(lt.subarray(b * T * V, (b + 1) * T * V), le);
      assert.ok(e < 1e-5, `${kv} KV heads, sequence ${b}: rel err ${e}`);
    }
  }
});
