/**
 * kimi_k2 (Kimi-K2-Instruct, K2-Thinking: 1T parameters, 384 experts): DeepSeek-V3's structure and router under its
 * own model_type. transformers has no kimi_k2; the model repositories ship DeepSeek-V3's modeling_deepseek.py as
 * their remote code (architectures DeepseekV3ForCausalLM), which transformers' deepseek_v3 reproduces, so the family
 * is deepseek_v3's with another name.
 */
import { mlaFamily } from "./deepseek.js";
import { DEEPSEEK_V3 } from "./deepseek-v3.js";

export const kimiK2 = mlaFamily({ modelType: "kimi_k2", ...DEEPSEEK_V3 });
