import { MlaError } from "../errors.js";
import { loadModel as loadAnyModel } from "../model/load.js";
import type { CausalLM } from "../model/causal-lm.js";
import type { MlaMode } from "../attention/mla.js";
import type { Ops } from "../backends/ops.js";
import { loadingBar } from "./progress.js";

/** Load a model of any supported type with a progress bar on the terminal. */
export function loadModel(dir: string, ops?: Ops): CausalLM {
  const bar = loadingBar("loading weights");
  try {
    return loadAnyModel(dir, { onProgress: bar.onProgress, ops });
  } finally {
    bar.stop();
  }
}

/** --attention picks a form of MLA; asking a GQA model for a specific form is a mistake worth saying so. */
export function checkAttentionForm(model: CausalLM, mode: MlaMode): void {
  if (model.config.attention !== "mla" && mode !== "auto") {
    throw new MlaError(`--attention ${mode} applies to MLA models only; ${model.config.modelType} uses grouped-query attention (leave --attention at auto)`);
  }
}
