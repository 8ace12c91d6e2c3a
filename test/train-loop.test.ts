import { test } from "node:test";
import assert from "node:assert/strict";
import { TrainModel, denseMlaConfig } from "../src/train/model.js";
import { sampleBatch, train } from "../src/train/loop.js";
import { Rng } from "../src/tensor/rng.js";

const json = denseMlaConfig({
  vocabSize: 37, hiddenSize: 16, intermediateSize: 24, numLayers: 2, numHeads: 2, kvLoraRank: 8,
  qkNopeHeadDim: 4, qkRopeHeadDim: 4, vHeadDim: 6, maxPositionEmbeddings: 64,
});
// a repetitive sequence: a period-7 pattern over 7 distinct tokens
const pattern = [3, 14, 15, 9, 26, 5, 35];
const tokens = Array.from({ length: 700 }, (_, i) => pattern[i % pattern.length]);

test("training loop: loss on a repetitive sequence falls by more than half within 100 steps, deterministically", (t) => {
  const run = () => {
    const m = new TrainModel(json, { seed: 1 });
    return train(m, tokens, { steps: 100, batchSize: 4, seqLen: 16, maxLr: 1e-2, warmupSteps: 10, seed: 7, microBatches: 2 });
  };
  const t0 = Date.now();
  const h = run();
  const ms = Date.now() - t0;
  const first = h[0], last = h.slice(-5).reduce((a, b) => a + b, 0) / 5;
  t.diagnostic(`loss ${first.toFixed(3)} -> ${last.toFixed(3)} in 100 steps (${ms} ms)`);
  assert.ok(Math.abs(first - Math.log(37)) < 0.1, `initial loss ${first} near ln 37`);
  assert.ok(last < first / 2, `final loss ${last} vs initial ${first}`);
  assert.deepEqual(run(), h);
});

test("sampleBatch: windows are consecutive tokens with targets shifted by one, fixed by the seed", () => {
  const toks = Array.from({ length: 50 }, (_, i) => i);
  const a = sampleBatch(toks, 3, 8, new Rng(4)), b = sampleBatch(toks, 3, 8, new Rng(4));
  assert.deepEqual(a, b);
  for (let i = 0; i < 3; i++) {
    for (let t = 0; t < 8; t++) {
      assert.equal(a.targets[i][t], a.ids[i][t] + 1);
      if (t) assert.equal(a.ids[i][t], a.ids[i][t - 1] + 1);
    }
  }
  assert.throws(() => sampleBatch(toks, 1, 50, new Rng(0)), /too few/);
});
