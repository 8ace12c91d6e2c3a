import { test, after } from "node:test";
import assert from "node:assert/strict";
import { GpuTrainMatmul } from "../src/train/gpu-matmul.js";
import { TrainModel, denseMlaConfig, llamaConfig } from "../src/train/model.js";
import { randomBatch, relErr } from "./helpers.js";
import { useSwiftShaderIfNoGpu } from "./gpu-env.js";

// Training's products on WebGPU (issue 4: "on WebGPU when available"), on SwiftShader where no GPU is present.
useSwiftShaderIfNoGpu();
const gpu = await GpuTrainMatmul.create();
after(() => gpu.close());

test("webgpu training: loss and every gradient equal the scalar products' (MLA and GQA models)", (t) => {
  const configs = [
    denseMlaConfig({ vocabSize: 41, hiddenSize: 24, intermediateSize: 36, numLayers: 1, numHeads: 2, kvLoraRank: 12, qkNopeHeadDim: 6, qkRopeHeadDim: 4, vHeadDim: 5, qLoraRank: 10 }),
    llamaConfig({ vocabSize: 41, hiddenSize: 24, intermediateSize: 36, numLayers: 1, numHeads: 4, numKvHeads: 2, headDim: 6 }),
  ];
  for (const cfg of configs) {
    const ref = new TrainModel(cfg, { seed: 4 }), onGpu = new TrainModel(cfg, { seed: 4, matmul: gpu });
    const { ids, targets } = randomBatch(2, 7, 41, 12);
    ref.zeroGrad();
    onGpu.zeroGrad();
    const l0 = ref.forward(ids, targets), l1 = onGpu.forward(ids, targets);
    ref.backward();
    onGpu.backward();
    assert.ok(Math.abs(l0 - l1) < 1e-5 * l0, `loss ${l1} vs ${l0}`);
    for (const [name, g] of ref.grads) {
      const e = relErr(onGpu.grads.get(name)!, g);
      assert.ok(e < 1e-4, `${cfg.model_type} ${name}: rel err ${e}`);
    }
  }
  t.diagnostic(`adapter: ${gpu.adapter}`);
});

test("mla train --backend webgpu: the same per-step losses as --backend cpu-scalar", async () => {
  const { spawnSync } = await import("node:child_process");
  const { mkdtempSync, readFileSync, rmSync, writeFileSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const { fileURLToPath } = await import("node:url");
  const root = fileURLToPath(new URL("..", import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), "mla-gpu-train-"));
  try {
    const text = join(dir, "text.txt");
    writeFileSync(text, "The cat sat on the mat. A dog ran in the park and the children laughed. ".repeat(80));
    const losses = (backend: string) => {
      const out = join(dir, backend);
      const r = spawnSync(process.execPath, ["--import", "tsx", "src/cli/main.ts", "train", "--out", out, "--text", text, "--vocab", "300",
        "--layers", "1", "--hidden", "32", "--heads", "2", "--kv-lora-rank", "16", "--nope", "8", "--rope", "8", "--v", "8", "--intermediate", "48",
        "--batch", "2", "--seq", "16", "--steps", "4", "--backend", backend, "--json"], { cwd: root, encoding: "utf8", timeout: 120_000 });
      assert.equal(r.status, 0, r.stderr);
      return readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((m) => "loss" in m).map((m) => m.loss as number);
    };
    const gpuLosses = losses("webgpu"), cpuLosses = losses("cpu-scalar");
    assert.equal(gpuLosses.length, 4);
    gpuLosses.forEach((l, i) => assert.ok(Math.abs(l - cpuLosses[i]) < 1e-4 * cpuLosses[i], `step ${i + 1}: ${l} vs ${cpuLosses[i]}`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
