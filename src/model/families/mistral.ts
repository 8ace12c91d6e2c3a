/** mistral (MistralConfig): the Llama layout with sliding-window attention (4096 when the key is absent; null: off). */
import { posInt } from "../config.js";
import { llamaLayoutFamily } from "./llama-layout.js";

export const mistral = llamaLayoutFamily({
  modelType: "mistral",
  defaultContext: 4096 * 32,
  biases: (c) => ({ qkv: c.attention_bias === true, o: c.attention_bias === true }),
  slidingWindow: (c) => (c.sliding_window === null ? null : posInt(c, "sliding_window", 4096)),
});
