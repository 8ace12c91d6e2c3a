import { loadConfig } from "./config.js";
import { DeepseekModel } from "./decoder.js";
import { LlamaModel } from "./llama.js";
import type { CausalLM, LoadOptions } from "./causal-lm.js";

/** Load any supported checkpoint folder: DeepSeek-V2/V3 as DeepseekModel (MLA), llama/qwen2/mistral as LlamaModel. */
export function loadModel(dir: string, opts: LoadOptions = {}): CausalLM {
  return loadConfig(dir).attention === "mla" ? DeepseekModel.load(dir, opts) : LlamaModel.load(dir, opts);
}
