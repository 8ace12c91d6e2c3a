import { DeepseekModel } from "../model/decoder.js";
import type { Ops } from "../backends/ops.js";
import { loadingBar } from "./progress.js";

/** Load a model with a progress bar on the terminal. */
export function loadModel(dir: string, ops?: Ops): DeepseekModel {
  const bar = loadingBar("loading weights");
  try {
    return DeepseekModel.load(dir, { onProgress: bar.onProgress, ops });
  } finally {
    bar.stop();
  }
}
