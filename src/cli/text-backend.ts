import { MlaError } from "../errors.js";
import type { Ops } from "../backends/ops.js";
import type { WebGpuBackend } from "../backends/webgpu/backend.js";
import type { MlaMode } from "../attention/mla.js";
import type { SchedulerOptions } from "../generate/batch.js";
import { TextEngine } from "../generate/text.js";
import type { LoadProgress } from "../model/weights.js";

/** Where chat and serve run their model: the CPU kernels, or the WebGPU decoder. */
export type TextBackend = { readonly kind: "cpu"; readonly ops: Ops } | { readonly kind: "webgpu"; readonly gpu: WebGpuBackend };

export function textBackendName(b: TextBackend): string {
  return b.kind === "cpu" ? b.ops.name : b.gpu.name;
}

/** The GPU decoder always runs MLA absorbed: any other --attention form is an error. */
export function checkGpuMode(mode: MlaMode): void {
  if (mode !== "auto") throw new MlaError(`--attention ${mode}: the webgpu backend always runs MLA absorbed (leave --attention at auto)`);
}

/** A TextEngine for checkpoint folder `dir` on backend b. */
export async function openTextEngine(
  dir: string, b: TextBackend, opts: SchedulerOptions & { readonly name?: string; readonly onProgress?: LoadProgress; readonly mode: MlaMode },
): Promise<TextEngine> {
  if (b.kind === "cpu") return TextEngine.open(dir, { ...opts, ops: b.ops });
  checkGpuMode(opts.mode);
  const { GpuModel } = await import("../model/gpu/model.js");
  return TextEngine.withModel(dir, GpuModel.load(dir, b.gpu, { onProgress: opts.onProgress }), opts);
}
