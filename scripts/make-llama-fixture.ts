/**
 * Tiny random llama-family checkpoints in Hugging Face layout, for the parity tests (test/llama.test.ts):
 *   tiny-llama    llama, GQA 4/2 heads, head_dim 16 != hidden/heads, llama3 rope scaling, untied
 *   tiny-qwen2    qwen2, GQA 6/2 heads, q/k/v biases, tied embeddings, transformers>=5 rope_parameters
 *   tiny-mistral  mistral, MQA, sliding window 5, linear rope scaling
 * Sizes are deliberately uneven (vocab 101, intermediate 72) so the SIMD kernels' fallbacks run too.
 * Then `/usr/bin/python3 scripts/llama_ref.py DIR` writes each folder's reference.json (float64 PyTorch).
 *
 *   node --import tsx scripts/make-llama-fixture.ts [OUT_ROOT]     (default test/fixtures)
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Rng } from "../src/tensor/rng.js";
import { writeSafetensors } from "../src/io/safetensors.js";


import { f32Tensor, numel, type Tensor } from "../src/tensor/tensor.js";
import { expectedTensors, parseConfig } from "../src/model/families/index.js";

type Json = Record<string, unknown>;

const COMMON: Json = { hidden_act: "silu", rms_norm_eps: 1e-5, bos_token_id: 1, eos_token_id: 2, mlp_bias: false, torch_dtype: "float32" };

const LLAMA_FIXTURES: Record<string, Json> = {
  "tiny-llama": {
    ...COMMON, model_type: "llama", architectures: ["LlamaForCausalLM"],
    vocab_size: 120, hidden_size: 48, intermediate_size: 96, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, max_position_embeddings: 128,
    rope_theta: 10000.0,
    rope_scaling: { rope_type: "llama3", factor: 4.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 32 },
    tie_word_embeddings: false, attention_bias: false,
  },
  "tiny-qwen2": {
    ...COMMON, model_type: "qwen2", architectures: ["Qwen2ForCausalLM"],
    vocab_size: 101, hidden_size: 48, intermediate_size: 72, num_hidden_layers: 2,
    num_attention_heads: 6, num_key_value_heads: 2, max_position_embeddings: 64,
    rope_parameters: { rope_type: "default", rope_theta: 1000000.0 },
    tie_word_embeddings: true, use_sliding_window: false, sliding_window: 4096, eos_token_id: [2, 3],
  },
  "tiny-mistral": {
    ...COMMON, model_type: "mistral", architectures: ["MistralForCausalLM"],
    vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 1, head_dim: 8, max_position_embeddings: 64,
    rope_theta: 10000.0, rope_scaling: { type: "linear", factor: 2.0 },
    sliding_window: 5, tie_word_embeddings: false,
  },
};

/** FNV-1a of the tensor name: each tensor's values depend only on its name. */
function nameSeed(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** Norm weights near 1 (not exactly: a skipped norm weight must show), biases N(0, 0.3^2), matrices N(0, 1/in). */
function randomTensor(name: string, shape: number[]): Tensor {
  const rng = new Rng(nameSeed(name)), n = numel(shape);
  const data = new Float32Array(n);
  const isNorm = name.endsWith("norm.weight"), isBias = name.endsWith(".bias");
  const scale = isNorm ? 0.1 : isBias ? 0.3 : shape[shape.length - 1] ** -0.5;
  for (let i = 0; i < n; i++) data[i] = (isNorm ? 1 : 0) + rng.normal() * scale;
  return f32Tensor(shape, data);
}

function writeLlamaFixture(dir: string, config: Json): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 1) + "\n");
  const tensors: Record<string, Tensor> = {};
  for (const [name, shape] of expectedTensors(parseConfig(config))) tensors[name] = randomTensor(name, shape);
  writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" });
}

const root = process.argv[2] ?? join(import.meta.dirname, "..", "test", "fixtures");
for (const [name, config] of Object.entries(LLAMA_FIXTURES)) {
  writeLlamaFixture(join(root, name), config);
  console.log(`wrote ${join(root, name)}`);
}
