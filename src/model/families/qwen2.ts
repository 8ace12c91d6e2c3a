/**
 * qwen2 (Qwen2Config): the Llama layout with q/k/v biases always and none on o_proj (Qwen2Attention), and a sliding
 * window only with use_sliding_window, applied to every layer then (stricter than max_window_layers, never looser).
 */
import { posInt } from "../config.js";
import { llamaLayoutFamily } from "./llama-layout.js";

export const qwen2 = llamaLayoutFamily({
  modelType: "qwen2",
  defaultContext: 32768,
  biases: () => ({ qkv: true, o: false }),
  slidingWindow: (c) => (c.use_sliding_window !== true || c.sliding_window === null ? null : posInt(c, "sliding_window", 4096)),
});
