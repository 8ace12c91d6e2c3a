/**
 * The browser side of test/webgpu-browser.test.ts: load a fixture over HTTP into the WebGPU model (navigator.gpu)
 * and return its logits.
 */
import { WebGpuBackend } from "../../src/backends/webgpu/backend.js";
import { GpuModel } from "../../src/model/gpu/model.js";
import { parseSafetensorsBuffer } from "../../src/io/safetensors-buffer.js";

async function run(base: string, ids: number[][]): Promise<{ adapter: string; logits: number[][] }> {
  const gpu = await WebGpuBackend.create();
  const config = (await (await fetch(`${base}/config.json`)).json()) as Record<string, unknown>;
  const bytes = new Uint8Array(await (await fetch(`${base}/model.safetensors`)).arrayBuffer());
  const model = GpuModel.fromTensors(config, parseSafetensorsBuffer(bytes), gpu);
  const logits: number[][] = [];
  for (const row of ids) logits.push(Array.from(await model.forward(row, model.newState(), { allLogits: true })));
  return { adapter: gpu.name, logits };
}

(globalThis as unknown as { mlaRun: typeof run }).mlaRun = run;
