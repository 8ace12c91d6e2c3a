import type { Ops } from "../backends/ops.js";
import type { CacheDType } from "../attention/cache.js";

import { DeepseekModel } from "./deepseek-model.js";
import { LlamaModel } from "./llama.js";
import type { CpuDecoder, LoadOptions, ModelState } from "./causal-lm.js";
import type { Runtime } from "./inference.js";
import { loadConfig } from "./families/index.js";

/** Load any supported checkpoint folder: DeepSeek-V2/V3 as DeepseekModel (MLA), llama/qwen2/mistral as LlamaModel. */
export function loadModel(dir: string, opts: LoadOptions = {}): CpuDecoder<ModelState> {
  return loadConfig(dir).attention === "mla" ? DeepseekModel.load(dir, opts) : LlamaModel.load(dir, opts);
}

/** The CPU backend on a kernel set: models load with their weights prepared for `ops`, MLA caches as `cacheType`. */
export function cpuRuntime(ops: Ops, kind = "cpu", close: () => Promise<void> = async () => {}, cacheType?: CacheDType): Runtime {
  return { kind, name: ops.name, threads: ops.threads, load: (dir, o) => loadModel(dir, { ops, onProgress: o?.onProgress, cacheType }), close };
}
