import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TrainModel, denseMlaConfig } from "../src/train/model.js";
import { atomicWrite, saveCheckpoint, writeFileAtomic } from "../src/train/save.js";
import { DeepseekModel } from "../src/model/deepseek-model.js";

import { relErr } from "./helpers.js";
import { loadConfig } from "../src/model/families/index.js";

for (const qLoraRank of [null, 8]) {
  test(`saved checkpoint (q_lora_rank ${qLoraRank}) loads in the engine with the trainer's logits`, () => {
    const dir = mkdtempSync(join(tmpdir(), "mla-train-save-"));
    try {
      const json = denseMlaConfig({
        vocabSize: 37, hiddenSize: 16, intermediateSize: 24, numLayers: 2, numHeads: 2, kvLoraRank: 8, qLoraRank,
        qkNopeHeadDim: 4, qkRopeHeadDim: 4, vHeadDim: 6, maxPositionEmbeddings: 64,
      });
      const m = new TrainModel(json, { seed: 21, initStd: "fan-in" });
      saveCheckpoint(dir, m, { step: "0" });
      // overwriting an existing checkpoint works and leaves no temporary files
      saveCheckpoint(dir, m, { step: "1" });
      assert.deepEqual(readdirSync(dir).sort(), ["config.json", "model.safetensors"]);

      const cfg = loadConfig(dir);
      assert.equal(cfg.modelType, "deepseek_v3");
      assert.equal(cfg.nRoutedExperts, 0);
      assert.equal(cfg.qLoraRank, qLoraRank);
      assert.equal(cfg.rope.type, "default");
      const saved = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
      assert.equal(saved.first_k_dense_replace, 2);
      assert.equal(saved.rope_theta, 10000);

      const engine = DeepseekModel.load(dir);
      const ids = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5];
      const got = engine.forward(ids, engine.newState(), { allLogits: true });
      const want = m.logits([ids]);
      const e = relErr(got, want);
      assert.ok(e < 1e-5, `relative error ${e}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("writeFileAtomic replaces the file and a failed write leaves the old one and no temporary", () => {
  const dir = mkdtempSync(join(tmpdir(), "mla-train-atomic-"));
  try {
    const p = join(dir, "a.json");
    writeFileSync(p, "old");
    writeFileAtomic(p, "new");
    assert.equal(readFileSync(p, "utf8"), "new");
    assert.throws(() => atomicWrite(p, (tmp) => {
      writeFileSync(tmp, "partial");
      throw new Error("killed mid-write");
    }), /killed/);
    assert.equal(readFileSync(p, "utf8"), "new");
    assert.deepEqual(readdirSync(dir), ["a.json"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
