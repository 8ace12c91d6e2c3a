/** llama (LlamaConfig): GQA or MHA, RoPE by halves (default, linear, llama3 scaling), o_proj bias with attention_bias. */
import { llamaLayoutFamily } from "./llama-layout.js";

export const llama = llamaLayoutFamily({
  modelType: "llama",
  defaultContext: 2048,
  biases: (c) => ({ qkv: c.attention_bias === true, o: c.attention_bias === true }),
  slidingWindow: () => null,
});
