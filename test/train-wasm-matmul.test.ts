import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TrainModel, denseMlaConfig, type DenseMlaSpec } from "../src/train/model.js";
import { TrainMatmul } from "../src/train/wasm-matmul.js";
import { AdamW } from "../src/train/adamw.js";
import { runTraining } from "../src/train/trainer.js";
import { WasmBackend } from "../src/backends/wasm/index.js";
import { randn, randomBatch } from "./helpers.js";

// Every dimension a multiple of 8 (the kernel's K), and one where none is (the wrapper pads reduced dims).
const ALIGNED: DenseMlaSpec = {
  vocabSize: 64, hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 2,
  kvLoraRank: 16, qkNopeHeadDim: 8, qkRopeHeadDim: 8, vHeadDim: 8, rmsNormEps: 1e-5,
};
const RAGGED: DenseMlaSpec = {
  vocabSize: 37, hiddenSize: 20, intermediateSize: 27, numLayers: 2, numHeads: 3,
  kvLoraRank: 10, qkNopeHeadDim: 4, qkRopeHeadDim: 4, vHeadDim: 6, rmsNormEps: 1e-5,
};

let be: WasmBackend;
before(async () => {
  be = await WasmBackend.create({ threads: 3, minParallelWork: 1 }); // split even tiny products across workers
});
after(async () => {
  await be.close();
});

/** max |a - b| / max |b|: error relative to the tensor's scale. */
function relMax(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return den === 0 ? num : num / den;
}

test("TrainMatmul: the three products on wasm equal the scalar ones (ragged and aligned shapes, strides)", () => {
  const ref = new TrainMatmul(null), fast = new TrainMatmul(be);
  for (const [T, K, N] of [[13, 27, 11], [16, 32, 40], [1, 5, 3], [40, 8, 17]]) {
    const x = randn(T * (K + 3), T), W = randn(N * K, K + 100), dy = randn(T * N, N + 200);
    // forward with strided x and out
    const o1 = new Float32Array(T * (N + 2)).fill(7), o2 = new Float32Array(T * (N + 2)).fill(7);
    ref.forward(o1, x, T, K, W, N, K + 3, N + 2);
    fast.forward(o2, x, T, K, W, N, K + 3, N + 2);
    assert.ok(relMax(o2, o1) < 1e-6, `forward ${T}x${K}x${N}`);
    const xs = x.slice(0, T * K);
    for (const acc of [false, true]) {
      const d1 = randn(T * K, 9), d2 = d1.slice();
      ref.backwardInput(d1, dy, T, N, W, K, acc);
      fast.backwardInput(d2, dy, T, N, W, K, acc);
      assert.ok(relMax(d2, d1) < 1e-6, `backwardInput ${T}x${K}x${N} acc=${acc}`);
    }
    const g1 = randn(N * K, 10), g2 = g1.slice();
    ref.backwardWeight(g1, dy, xs, T, N, K);
    fast.backwardWeight(g2, dy, xs, T, N, K);
    assert.ok(relMax(g2, g1) < 1e-6, `backwardWeight ${T}x${K}x${N}`);
  }
});

for (const [label, spec] of [["aligned", ALIGNED], ["ragged", RAGGED]] as const) {
  for (const qLoraRank of [null, 8]) {
    test(`train model on wasm (${label}, q_lora_rank ${qLoraRank}): loss and every gradient equal the scalar path`, () => {
      const cfg = denseMlaConfig({ ...spec, qLoraRank });
      const ref = new TrainModel(cfg, { seed: 5, initStd: "fan-in" });
      const fast = new TrainModel(cfg, { seed: 5, initStd: "fan-in", backend: be });
      const { ids, targets } = randomBatch(3, 7, spec.vocabSize, 11); // 21 tokens: dW's reduced dim is padded to 24
      targets[2][4] = -100;
      for (const m of [ref, fast]) {
        m.zeroGrad();
        m.forward(ids, targets);
        m.backward();
      }
      const l1 = ref.forward(ids, targets), l2 = fast.forward(ids, targets);
      assert.ok(Math.abs(l2 - l1) / Math.abs(l1) < 1e-5, `loss ${l2} vs ${l1}`);
      let worst = 0, worstName = "";
      for (const [name, g] of ref.grads) {
        const e = relMax(fast.grads.get(name)!, g);
        if (e > worst) [worst, worstName] = [e, name];
      }
      assert.ok(worst < 1e-5, `worst gradient ${worstName}: ${worst}`);
    });
  }
}

test("train model on wasm: a few AdamW steps give the scalar path's losses", () => {
  const cfg = denseMlaConfig(ALIGNED);
  const losses: number[][] = [];
  for (const backend of [null, be]) {
    const m = new TrainModel(cfg, { seed: 1, backend });
    const opt = new AdamW(m.params, m.shapes, { weightDecay: 0.1, clipNorm: 1 });
    const ls: number[] = [];
    for (let step = 0; step < 5; step++) {
      const { ids, targets } = randomBatch(4, 8, ALIGNED.vocabSize, 100); // one batch, so the loss must fall
      m.zeroGrad();
      ls.push(m.forward(ids, targets));
      m.backward();
      opt.step(m.grads, 1e-2);
    }
    losses.push(ls);
  }
  for (let i = 0; i < losses[0].length; i++) {
    assert.ok(Math.abs(losses[1][i] - losses[0][i]) / losses[0][i] < 1e-5, `step ${i}: ${losses[1][i]} vs ${losses[0][i]}`);
  }
  assert.ok(losses[0][4] < losses[0][0], "the loss goes down");
});

test("train model: a wasm backend needs float32", () => {
  assert.throws(() => new TrainModel(denseMlaConfig(ALIGNED), { float64: true, backend: be }), /float32/);
});

test("runTraining --backend cpu and cpu-scalar: same losses on a small text", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mla-train-fast-"));
  try {
    const text = join(dir, "text.txt");
    writeFileSync(text, Array.from({ length: 400 }, (_, i) => `line ${i} the quick brown fox ${i % 7} jumps over ${i % 13} lazy dogs.`).join("\n"));
    const settings = { corpus: text, vocab: 300, layers: 1, hidden: 16, heads: 2, kvLoraRank: 8, nope: 8, rope: 4, v: 8, intermediate: 24, steps: 3, batch: 2, seq: 16, evalWindows: 2, warmup: 1 };
    const runs = [];
    for (const backend of ["cpu-scalar", "cpu"] as const) {
      runs.push(await runTraining({ out: join(dir, backend), settings, saveEvery: 10, evalEvery: 10, backend, threads: 2 }));
    }
    assert.ok(Math.abs(runs[1].lastLoss - runs[0].lastLoss) / runs[0].lastLoss < 1e-5, `${runs[1].lastLoss} vs ${runs[0].lastLoss}`);
    assert.ok(Math.abs(runs[1].valLoss - runs[0].valLoss) / runs[0].valLoss < 1e-5);
    await assert.rejects(runTraining({ out: join(dir, "bad"), settings, saveEvery: 10, evalEvery: 10, backend: "gpu" as never }), /--backend/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
