import { test } from "node:test";
import assert from "node:assert/strict";
import { TrainModel, denseMlaConfig, type DenseMlaSpec } from "../src/train/model.js";
import { crossEntropyLoss } from "../src/train/grad/index.js";
import { DeepseekModel } from "../src/model/deepseek-model.js";


import { f32Tensor } from "../src/tensor/tensor.js";
import { finiteDiff, randomizeParams, relErr, randomBatch } from "./helpers.js";
import { assemble, parseConfig } from "../src/model/families/index.js";

const SPEC: DenseMlaSpec = {
  vocabSize: 37, hiddenSize: 16, intermediateSize: 24, numLayers: 2, numHeads: 2,
  kvLoraRank: 8, qkNopeHeadDim: 4, qkRopeHeadDim: 4, vHeadDim: 6, rmsNormEps: 1e-5,
};

for (const qLoraRank of [null, 8]) {
  test(`train model (q_lora_rank ${qLoraRank}): every parameter's gradient matches float64 central differences`, (t) => {
    const m = new TrainModel(denseMlaConfig({ ...SPEC, qLoraRank }), { float64: true, seed: 3 });
    randomizeParams(m, 500);
    const { ids, targets } = randomBatch(2, 5, SPEC.vocabSize, 77);
    targets[1][2] = -100; // an ignored position
    m.zeroGrad();
    m.forward(ids, targets);
    m.backward();
    const loss = () => m.forward(ids, targets);
    const eps = 1e-5;
    let worst = 0;
    for (const [name, p] of m.params) {
      const g = m.grads.get(name)!;
      const fd = finiteDiff(p, loss, eps);
      const e = relErr(g, fd);
      worst = Math.max(worst, e);
      assert.ok(e < 1e-6, `${name}: relative error ${e.toExponential(2)}`);
    }
    t.diagnostic(`q_lora_rank ${qLoraRank}: ${m.numParams} parameters, worst per-tensor relative error ${worst.toExponential(2)}`);
  });

  test(`train model (q_lora_rank ${qLoraRank}): loss equals cross-entropy of the inference engine's logits`, () => {
    const json = denseMlaConfig({ ...SPEC, qLoraRank });
    const m = new TrainModel(json, { seed: 11, initStd: "fan-in" });
    const cfg = parseConfig(json);
    const weights = assemble(cfg, (name) => f32Tensor(m.shapes.get(name)!, m.params.get(name) as Float32Array));
    const engine = new DeepseekModel(cfg, weights);
    const B = 3, T = 7, V = SPEC.vocabSize;
    const { ids, targets } = randomBatch(B, T, V, 99);
    const loss = m.forward(ids, targets);
    const trainLogits = m.logits(ids);
    let sum = 0;
    for (let b = 0; b < B; b++) {
      for (const mode of ["naive", "absorb"] as const) {
        const lg = engine.forward(ids[b], engine.newState(), { allLogits: true, mode });
        assert.ok(relErr(trainLogits.subarray(b * T * V, (b + 1) * T * V), lg) < 1e-5, `logits of sequence ${b} (${mode})`);
        if (mode === "naive") sum += crossEntropyLoss(null, lg, targets[b], T, V).sum;
      }
    }
    const ref = sum / (B * T);
    assert.ok(Math.abs(loss - ref) / ref < 1e-5, `loss ${loss} vs engine ${ref}`);
    assert.ok(loss > 2 && loss < 6, `plausible initial loss ${loss} (ln 37 = ${Math.log(37).toFixed(2)})`);
  });
}

test("train model: deterministic init, norms are ones, gradient accumulation with a divisor sums to the batch mean", () => {
  const json = denseMlaConfig(SPEC);
  const a = new TrainModel(json, { seed: 5 }), b = new TrainModel(json, { seed: 5 }), c = new TrainModel(json, { seed: 6 });
  for (const [name, p] of a.params) {
    assert.deepEqual(p, b.params.get(name));
    if (a.shapes.get(name)!.length === 1) assert.ok(p.every((x) => x === 1), name);
  }
  assert.notDeepEqual(a.params.get("lm_head.weight"), c.params.get("lm_head.weight"));
  const std = Math.sqrt(Array.from(a.params.get("model.embed_tokens.weight")!).reduce((s, x) => s + x * x, 0) / (37 * 16));
  assert.ok(Math.abs(std - 0.02) < 0.003, `init std ${std}`);

  const m = new TrainModel(json, { seed: 5, float64: true, initStd: "fan-in" });
  const { ids, targets } = randomBatch(4, 6, 37, 123);
  m.zeroGrad();
  m.forward(ids, targets);
  m.backward();
  const full = new Map([...m.grads].map(([k, v]) => [k, v.slice()]));
  m.zeroGrad();
  for (let i = 0; i < 4; i += 2) {
    m.forward(ids.slice(i, i + 2), targets.slice(i, i + 2));
    m.backward(24);
  }
  for (const [k, v] of full) assert.ok(relErr(m.grads.get(k)!, v) < 1e-12, k);
  assert.throws(() => m.backward(), /forward/);
  assert.throws(() => new TrainModel({ ...json, n_routed_experts: 4, first_k_dense_replace: 0, num_experts_per_tok: 2, moe_intermediate_size: 8 }), /MoE/);
});
