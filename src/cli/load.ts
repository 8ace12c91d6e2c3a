import { MlaError } from "../errors.js";
import type { InferenceModel, Runtime } from "../model/inference.js";
import type { MlaMode } from "../attention/mla.js";
import { loadingBar } from "./progress.js";

/** Load a model of any supported type onto the runtime, with a progress bar on the terminal. */
export function loadModel(dir: string, runtime: Runtime): InferenceModel {
  const bar = loadingBar(runtime.kind === "webgpu" ? "uploading weights" : "loading weights");
  try {
    return runtime.load(dir, { onProgress: bar.onProgress });
  } finally {
    bar.stop();
  }
}

/** --attention picks a form of MLA; asking a GQA model for a specific form is a mistake worth saying so. */
export function checkAttentionForm(model: InferenceModel, mode: MlaMode): void {
  if (model.config.attention !== "mla" && mode !== "auto") {
    throw new MlaError(`--attention ${mode} applies to MLA models only; ${model.config.modelType} uses grouped-query attention (leave --attention at auto)`);
  }
}
