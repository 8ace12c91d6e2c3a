// The GGUF exporter against llama.cpp itself: each model is exported, loaded by node-llama-cpp (its prebuilt CPU
// binaries, the llama.cpp a Node user gets from npm), and the next-token distribution after a fixed sequence is
// compared with mla-ts's logits from the safetensors. node-llama-cpp returns probabilities (a softmax of llama.cpp's
// float32 logits), so both sides are compared as log-probabilities centred to mean 0: the logits up to the
// constant that a softmax removes. A failure to load is a failure, never a skip.
//
// Bounds: F32 1e-4 (llama.cpp computes in float32 on the CPU, with the KV cache set to F32; measured 2e-7 to 5e-7).
// Q8_0 5e-2: llama.cpp quantizes the weights to Q8_0 and, on the CPU, each matmul's activations to Q8_0 too, and
// the 48-wide tiny-llama feels that most (measured 6.4e-3 on mla-brown, 1.75e-2 on tiny-llama). Q4_K 1e-1: on
// mla-brown (128 wide) every Q4_K row falls back to Q5_0, as llama-quantize does (measured 2.3e-2).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { centred, disposeLlama, llamaCppLogProbs, logSoftmax } from "./llama-cpp.js";
import { exportGguf, tensorType, type ExportType } from "../src/convert/export-gguf.js";
import { readGguf, readGgufTensor, type GgufValue } from "../src/io/gguf.js";
import { loadModel } from "../src/model/load.js";
import { convertCommand } from "../src/cli/commands/convert.js";
import { FIXTURES } from "./helpers.js";

const BROWN = join(FIXTURES, "../../models/mla-brown");
const dir = mkdtempSync(join(tmpdir(), "gguf-export-"));
after(async () => {
  await disposeLlama();
  rmSync(dir, { recursive: true, force: true });
});

const BOUND: Partial<Record<ExportType, number>> = { f32: 1e-4, q8_0: 5e-2, q4_k: 1e-1 };




/** An MLA model as `mla convert` writes it (deepseek_v3 layout), from the qwen2 fixture. */
async function converted(): Promise<string> {
  const out = join(dir, "converted-qwen2");
  await convertCommand({ model: join(FIXTURES, "tiny-qwen2"), out, kvRank: "24", ropeDim: "8", biases: "drop" });
  return out;
}

const CASES: { readonly name: string; readonly dir: string | (() => Promise<string>); readonly ids: number[]; readonly types: readonly ExportType[] }[] = [
  // deepseek2: MLA without q compression, the trained model with its tokenizer
  { name: "mla-brown", dir: BROWN, ids: [0, 5, 17, 200, 33, 1000, 7, 42, 99, 300, 12], types: ["f32", "q8_0", "q4_k"] },
  // llama: q/k rows permuted for llama.cpp's RoPE, GQA, llama3 RoPE scaling as rope_freqs
  { name: "tiny-llama", dir: join(FIXTURES, "tiny-llama"), ids: [1, 5, 17, 20, 33, 100, 7, 42, 99, 30, 12], types: ["f32", "q8_0"] },
  // qwen2: q/k/v biases, tied embeddings
  { name: "tiny-qwen2", dir: join(FIXTURES, "tiny-qwen2"), ids: [1, 5, 17, 20, 33, 100, 7, 42, 99, 30, 12], types: ["f32"] },
  // deepseek2: MoE (sigmoid router, groups, shared expert, e_score_correction_bias), q compression, YaRN
  { name: "tiny-deepseek-v3", dir: join(FIXTURES, "tiny-deepseek-v3"), ids: [0, 5, 17, 200, 33, 100, 7, 42, 99, 300, 12], types: ["f32"] },
  // deepseek2 from `mla convert` (GQA -> MLA)
  { name: "mla convert of tiny-qwen2", dir: converted, ids: [1, 5, 17, 20, 33, 100, 7, 42, 99, 30, 12], types: ["f32"] },
];

for (const c of CASES) {
  test(`gguf-export: ${c.name} runs in llama.cpp (node-llama-cpp) with mla-ts's logits (${c.types.join(", ")})`, async (t) => {
    const src = typeof c.dir === "string" ? c.dir : await c.dir();
    const m = loadModel(src);
    const ours = logSoftmax(m.forward(c.ids, m.newState()));
    for (const type of c.types) {
      const out = join(dir, `${c.name.replaceAll(" ", "-")}-${type}.gguf`);
      const s = exportGguf(src, out, { type });
      assert.deepEqual(s.warnings, []);
      const theirs = await llamaCppLogProbs(out, c.ids, ours.length);
      const a = centred(theirs), b = centred(ours);
      let num = 0, den = 0;
      for (let i = 0; i < a.length; i++) {
        num += (a[i] - b[i]) ** 2;
        den += b[i] ** 2;
      }
      const err = Math.sqrt(num / den);
      t.diagnostic(`${type}: relative error ${err.toExponential(2)}`);
      assert.ok(err <= BOUND[type]!, `${c.name} ${type}: relative error ${err} > ${BOUND[type]}`);
      assert.equal(theirs.indexOf(Math.max(...theirs)), ours.indexOf(Math.max(...ours)), `${c.name} ${type}: same argmax`);
    }
  });
}

test("gguf-export: deepseek2 layout and metadata as llama.cpp's converter writes them", () => {
  const out = join(dir, "brown-layout.gguf");
  exportGguf(BROWN, out, { type: "q8_0" });
  const g = readGguf(out), md = g.metadata, t = g.tensors;
  assert.equal(md.get("general.architecture"), "deepseek2");
  assert.equal(md.get("deepseek2.attention.head_count_kv"), 1, "MLA as MQA over the latent");
  assert.equal(md.get("deepseek2.attention.key_length"), 64 + 16);
  assert.equal(md.get("deepseek2.attention.value_length"), 64);
  assert.equal(md.get("deepseek2.attention.key_length_mla"), 32 + 16);
  assert.equal(md.get("deepseek2.attention.value_length_mla"), 32);
  assert.equal(md.get("deepseek2.attention.q_lora_rank"), 0, "no q compression: llama.cpp reads attn_q");
  assert.equal(md.get("tokenizer.ggml.model"), "gpt2");
  assert.equal(md.get("tokenizer.ggml.pre"), "gpt-2", "ByteLevel with use_regex splits with GPT-2's regex");
  assert.equal((md.get("tokenizer.ggml.tokens") as string[]).length, 2048);
  assert.equal(md.get("tokenizer.ggml.bos_token_id"), 0);
  assert.equal(md.get("tokenizer.ggml.add_bos_token"), true);
  assert.deepEqual(t.get("blk.0.attn_k_b.weight")?.shape, [4, 64, 32], "W^UK transposed per head: [n_head, d_c, d_h]");
  assert.deepEqual(t.get("blk.0.attn_v_b.weight")?.shape, [4, 32, 64]);
  assert.equal(t.has("blk.0.attn_kv_b.weight"), false);
  assert.equal(t.get("blk.0.attn_norm.weight")?.type, "F32");
  assert.equal(t.get("blk.0.attn_q.weight")?.type, "Q8_0");
  assert.equal(t.get("blk.0.ffn_down.weight")?.type, "F16", "344 columns: not whole Q8_0 blocks");
});

test("gguf-export: tensor types follow llama-quant.cpp", () => {
  assert.equal(tensorType("blk.0.attn_norm.weight", [128], "Q4_K"), "F32");
  assert.equal(tensorType("blk.0.attn_q.bias", [128], "Q8_0"), "F32");
  assert.equal(tensorType("blk.1.ffn_gate_inp.weight", [8, 1024], "Q4_K"), "F32", "the router gate");
  assert.equal(tensorType("blk.1.ffn_up_exps.weight", [8, 512, 1024], "Q4_K"), "Q4_K");
  assert.equal(tensorType("blk.0.attn_q_b.weight", [1536, 384], "Q4_K"), "Q5_0", "Q4_K falls back to Q5_0");
  assert.equal(tensorType("blk.0.attn_q_b.weight", [1536, 384], "Q5_K"), "Q5_1");
  assert.equal(tensorType("blk.0.attn_q_b.weight", [1536, 384], "Q6_K"), "Q8_0");
  assert.equal(tensorType("blk.0.attn_q_b.weight", [1536, 384], "Q4_K", "q8_0"), "Q8_0", "the fallback mla-ts reads");
  assert.equal(tensorType("blk.0.ffn_down.weight", [128, 344], "Q4_K"), "F16", "not even 32 divides");
  assert.equal(tensorType("blk.0.ffn_down.weight", [128, 344], "BF16"), "BF16");
});

/**
 * Metadata where the exporter and llama.cpp's converter legitimately differ (test/fixtures/gguf/*.gguf are the
 * converter's output, scripts/make-gguf-fixtures.py): keys the converter leaves to llama.cpp's defaults and this
 * exporter writes with the same value, and the mistral window the fixture script added by hand.
 */
const KNOWN_EXTRA: Readonly<Record<string, readonly string[]>> = {
  "tiny-qwen2": ["qwen2.vocab_size", "qwen2.attention.key_length", "qwen2.attention.value_length", "qwen2.rope.dimension_count"],
  // llama.cpp requires q_lora_rank for deepseek2 unless the model has 26 or 27 layers; absent gating means softmax
  "tiny-deepseek-v2-groups": ["deepseek2.attention.q_lora_rank", "deepseek2.expert_gating_func"],
  "tiny-deepseek-v2-lite": ["deepseek2.attention.q_lora_rank", "deepseek2.expert_gating_func"],
  "tiny-mla-dense": ["deepseek2.attention.q_lora_rank"],
};

const show = (v: GgufValue | undefined) => JSON.stringify(v, (_, x) => (typeof x === "bigint" ? String(x) : x));

test("gguf-export: F32 files are llama.cpp's converter's, tensor for tensor and bit for bit, and its hyperparameters", () => {
  const names = ["tiny-deepseek-v3", "tiny-deepseek-v2-lite", "tiny-deepseek-v2-groups", "tiny-mla-dense", "tiny-llama", "tiny-qwen2", "tiny-mistral"];
  for (const name of names) {
    const out = join(dir, `conv-${name}.gguf`);
    const s = exportGguf(join(FIXTURES, name), out, { type: "f32" });
    const ours = readGguf(out), theirs = readGguf(join(FIXTURES, "gguf", `${name}.gguf`));
    assert.deepEqual([...ours.tensors.keys()].sort(), [...theirs.tensors.keys()].sort(), `${name}: tensor names`);
    for (const [n, t] of theirs.tensors) {
      const o = ours.tensors.get(n)!;
      assert.deepEqual([o.type, o.shape], [t.type, t.shape], `${name} ${n}: type and shape`);
      assert.ok(Buffer.from(readGgufTensor(ours, n).data).equals(Buffer.from(readGgufTensor(theirs, n).data)), `${name} ${n}: bytes`);
    }
    const keys = new Set([...ours.metadata.keys(), ...theirs.metadata.keys()].filter((k) => !k.startsWith("general.") && !k.startsWith("tokenizer.")));
    for (const k of keys) {
      if (KNOWN_EXTRA[name]?.includes(k) && !theirs.metadata.has(k)) continue;
      assert.equal(show(ours.metadata.get(k)), show(theirs.metadata.get(k)), `${name} ${k}`);
    }
    if (name === "tiny-deepseek-v2-groups") assert.match(s.warnings.join(), /two best scores/, "V2 expert groups route by V3's rule in llama.cpp");
  }
});

test("gguf-export: Q8_0 files are the converter's, bit for bit", () => {
  const out = join(dir, "conv-tiny-mistral-q8_0.gguf");
  exportGguf(join(FIXTURES, "tiny-mistral"), out, { type: "q8_0" });
  const ours = readGguf(out), theirs = readGguf(join(FIXTURES, "gguf", "tiny-mistral-q8_0.gguf"));
  const types = new Set<string>();
  for (const [n, t] of theirs.tensors) {
    const o = ours.tensors.get(n);
    assert.equal(o?.type, t.type, `${n}: type`);
    assert.ok(Buffer.from(readGgufTensor(ours, n).data).equals(Buffer.from(readGgufTensor(theirs, n).data)), `${n}: bytes`);
    types.add(t.type);
  }
  assert.deepEqual([...types].sort(), ["F32", "Q8_0"]);
  assert.equal(ours.metadata.get("general.file_type"), theirs.metadata.get("general.file_type"));
});

test("gguf-export: mla-ts loads its own export with the safetensors' logits", () => {
  const ids = [1, 5, 17, 3, 9, 12, 40, 7, 2, 33];
  for (const [name, src] of [["mla-brown", BROWN], ["tiny-mistral", join(FIXTURES, "tiny-mistral")], ["tiny-llama", join(FIXTURES, "tiny-llama")]] as const) {
    const out = join(dir, `rt-${name}.gguf`);
    exportGguf(src, out, { type: "f32" });
    const a = loadModel(src), b = loadModel(out);
    const x = a.forward(ids, a.newState()), y = b.forward(ids, b.newState());
    let max = 0;
    for (let i = 0; i < x.length; i++) max = Math.max(max, Math.abs(x[i] - y[i]));
    // llama: RoPE from the rope_freqs tensor instead of config.json's llama3 parameters
    assert.ok(max <= 1e-6, `${name}: max |difference| ${max} (mistral: 10 tokens, past its window of 5)`);
  }
});
