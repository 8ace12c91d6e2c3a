// GGUF files as models: made with llama.cpp's own converter (scripts/make-gguf-fixtures.py) from the test
// fixtures, they must give transformers' reference logits; quantized files must equal their dequantized copies;
// the tokenizer and chat template come from the metadata; bad files fail with one line naming the problem.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MlaError } from "../src/errors.js";
import { loadModel } from "../src/model/load.js";
import { cpuOps, type Ops } from "../src/backends/ops.js";
import { WasmOps } from "../src/backends/wasm/ops.js";
import { openCheckpoint, Checkpoint } from "../src/model/checkpoint.js";
import { GgufCheckpoint } from "../src/model/gguf/checkpoint.js";
import { ggufConfigJson } from "../src/model/gguf/config.js";
import { openGgufModel } from "../src/model/gguf/files.js";
import { loadConfig } from "../src/model/families/index.js";
import {
  expertHfName, expertOf, ggufTensorName, hfTensorName, ropePermutationOrder, tryGgufTensorName, tryHfTensorName, GGUF_ARCHS,
} from "../src/model/gguf/names.js";
import { GGUF_PRE_TOKENIZERS, ggufTokenizer, ggufTokenizerJson } from "../src/tokenizer/gguf.js";
import { TextTokenizer } from "../src/tokenizer/tokenizer.js";
import { ChatTemplate } from "../src/tokenizer/chat.js";
import { writeSafetensors } from "../src/io/safetensors.js";
import { exportGguf } from "../src/convert/export-gguf.js";
import { toF32, type Tensor } from "../src/tensor/tensor.js";
import { FIXTURES, batchRow, loadReference, relErr, tempDirs } from "./helpers.js";

const GGUF = join(FIXTURES, "gguf");
/** The files scripts/make-gguf-fixtures.py --all adds (all committed: a missing one fails its test). */
const EXTRA = GGUF;
const TOL = 1e-4;
const freshDir = tempDirs("mla-gguf-", after);

const ops2 = await WasmOps.create({ threads: 2, minParallelWork: 0 });
after(() => ops2.close());
const BACKENDS: [string, Ops][] = [["cpu-scalar", cpuOps], ["wasm", ops2]];

function throwsOneLine(fn: () => unknown, ...parts: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof MlaError, `expected MlaError, got ${String(e)}`);
    assert.ok(!e.message.includes("\n"), `message is not one line: ${JSON.stringify(e.message)}`);
    for (const p of parts) assert.ok(e.message.includes(p), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(p)}`);
    return true;
  });
}

// ------------------------------------------------------------------------------------------------ names

test("names: GGUF <-> HF tensor names, both directions, every architecture", () => {
  const pairs: [string, string, string][] = [
    ["deepseek2", "token_embd.weight", "model.embed_tokens.weight"],
    ["deepseek2", "output.weight", "lm_head.weight"],
    ["deepseek2", "blk.3.attn_q_a.weight", "model.layers.3.self_attn.q_a_proj.weight"],
    ["deepseek2", "blk.3.attn_kv_a_mqa.weight", "model.layers.3.self_attn.kv_a_proj_with_mqa.weight"],
    ["deepseek2", "blk.3.attn_kv_b.weight", "model.layers.3.self_attn.kv_b_proj.weight"],
    ["deepseek2", "blk.3.attn_k_b.weight", "model.layers.3.self_attn.k_b_proj.weight"],
    ["deepseek2", "blk.0.exp_probs_b.bias", "model.layers.0.mlp.gate.e_score_correction_bias"],
    ["deepseek2", "blk.2.ffn_up_exps.weight", "model.layers.2.mlp.experts.up_proj.weight"],
    ["deepseek2", "blk.2.ffn_down_shexp.weight", "model.layers.2.mlp.shared_experts.down_proj.weight"],
    ["llama", "blk.1.attn_k.weight", "model.layers.1.self_attn.k_proj.weight"],
    ["qwen2", "blk.1.attn_v.bias", "model.layers.1.self_attn.v_proj.bias"],
    ["qwen2", "blk.0.ffn_norm.weight", "model.layers.0.post_attention_layernorm.weight"],
  ];
  for (const [arch, g, h] of pairs) {
    assert.equal(ggufTensorName(arch as never, h), g);
    assert.equal(hfTensorName(arch as never, g), h);
  }
  assert.equal(tryHfTensorName("llama", "rope_freqs.weight"), undefined);
  assert.equal(tryGgufTensorName("llama", "model.layers.0.self_attn.kv_b_proj.weight"), undefined);
  assert.deepEqual(expertOf("model.layers.4.mlp.experts.17.gate_proj.weight"), { gguf: "blk.4.ffn_gate_exps.weight", expert: 17 });
  assert.equal(expertHfName("blk.4.ffn_down_exps.weight", 3), "model.layers.4.mlp.experts.3.down_proj.weight");
  assert.deepEqual([...GGUF_ARCHS], ["deepseek2", "llama", "qwen2"]);
  // LlamaModel.permute for 2 heads of 4 rows: [h0: 0 2 1 3 | h1: 4 6 5 7]
  assert.deepEqual([...ropePermutationOrder(8, 2)], [0, 2, 1, 3, 4, 6, 5, 7]);
});

// ------------------------------------------------------------------------------------------------ parity

interface Case { file: string; fixture: string; mla: boolean }
const CASES: Case[] = [
  { file: join(GGUF, "tiny-deepseek-v3.gguf"), fixture: "tiny-deepseek-v3", mla: true },
  // V2 with expert groups (softmax, group max): llama.cpp would route it by V3's top-2 sum; mla-ts as transformers
  { file: join(GGUF, "tiny-deepseek-v2-groups.gguf"), fixture: "tiny-deepseek-v2-groups", mla: true },
  { file: join(GGUF, "tiny-mla-dense-kvb.gguf"), fixture: "tiny-mla-dense", mla: true },
  { file: join(GGUF, "tiny-llama.gguf"), fixture: "tiny-llama", mla: false },
  { file: join(GGUF, "tiny-qwen2.gguf"), fixture: "tiny-qwen2", mla: false },
  { file: join(GGUF, "tiny-mistral.gguf"), fixture: "tiny-mistral", mla: false },
  ...[
    ["tiny-mla-dense.gguf", "tiny-mla-dense"], ["tiny-deepseek-v2-lite.gguf", "tiny-deepseek-v2-lite"],
    ["tiny-deepseek-v2-lite-kvb.gguf", "tiny-deepseek-v2-lite"], ["tiny-deepseek-v3-kvb.gguf", "tiny-deepseek-v3"],
  ].map(([f, fixture]) => ({ file: join(EXTRA, f), fixture, mla: true })),
];

/** Reference logits rows: reference.safetensors for the MLA fixtures, reference.json for the llama family. */
function referenceRows(c: Case): { ids: number[]; logits: ArrayLike<number> }[] {
  if (c.mla) {
    const ref = loadReference(c.fixture);
    return ref.inputIds.map((ids, b) => ({ ids, logits: batchRow(ref.tensors.get("logits")!, b) }));
  }
  const ref = JSON.parse(readFileSync(join(FIXTURES, c.fixture, "reference.json"), "utf8")) as { input_ids: number[][]; logits: number[][][] };
  return ref.input_ids.map((ids, b) => ({ ids, logits: ref.logits[b].flat() }));
}

for (const c of CASES) {
  const name = c.file.slice(c.file.lastIndexOf("/") + 1);
  for (const [backend, ops] of BACKENDS) {
    test(`${name}: F32 GGUF gives transformers' logits (${backend})`, () => {
      const model = loadModel(c.file, { ops });
      for (const mode of c.mla ? (["naive", "absorb"] as const) : ([undefined] as const)) {
        referenceRows(c).forEach(({ ids, logits }, b) => {
          const got = model.forward(ids, model.newState(), { allLogits: true, ...(mode ? { mode } : {}) } as never);
          const e = relErr(got, logits);
          assert.ok(e < TOL, `${mode ?? ""} row ${b}: rel err ${e}`);
        });
      }
    });
  }
}

test("GGUF config: the family, router, RoPE and MLA widths from metadata (current and older layout)", () => {
  const v3 = loadConfig(join(GGUF, "tiny-deepseek-v3.gguf"));
  assert.equal(v3.modelType, "deepseek_v3");
  assert.equal(v3.topkMethod, "noaux_tc");
  assert.deepEqual({ ...v3.router }, { scoring: "sigmoid", choiceBias: true, experts: 8, topK: 2, groups: 4, topGroups: 2, groupScore: "top2", normalize: true, scaling: 2.5 });
  assert.deepEqual([v3.qLoraRank, v3.kvLoraRank, v3.qkNopeHeadDim, v3.qkRopeHeadDim, v3.vHeadDim, v3.numKvHeads], [32, 32, 16, 8, 16, 4]);
  assert.equal(v3.rope.type, "yarn");
  assert.deepEqual([v3.rope.factor, v3.rope.originalMaxPositionEmbeddings, v3.rope.mscale, v3.rope.mscaleAllDim], [4, 128, 1, 1]);
  assert.equal(v3.rmsNormEps, 1e-6); // stored as f32, read back as the decimal it was
  const dense = loadConfig(join(GGUF, "tiny-mla-dense-kvb.gguf"));
  assert.deepEqual([dense.qLoraRank, dense.kvLoraRank, dense.qkNopeHeadDim, dense.vHeadDim, dense.firstKDenseReplace], [null, 24, 16, 12, 2]);
  const llama = loadConfig(join(GGUF, "tiny-llama.gguf"));
  assert.equal(llama.rope.type, "longrope"); // llama3 scaling arrives as rope_freqs divisors
  assert.equal(loadConfig(join(GGUF, "tiny-mistral.gguf")).slidingWindow, 5);
  const qwen = loadConfig(join(GGUF, "tiny-qwen2.gguf"));
  assert.deepEqual([qwen.modelType, qwen.qkvBias, qwen.tieWordEmbeddings], ["qwen2", true, true]);
  const v2 = loadConfig(join(EXTRA, "tiny-deepseek-v2-lite.gguf"));
  assert.deepEqual([v2.modelType, v2.topkMethod, v2.router?.scoring, v2.router?.groupScore], ["deepseek_v2", "greedy", "softmax", "max"]);
});

test("GGUF tensors: HF names and shapes, values equal to the safetensors fixture (experts, kv_b_proj, unpermuted q/k)", () => {
  const pairs: [string, string, string[]][] = [
    ["tiny-deepseek-v3.gguf", "tiny-deepseek-v3", [
      "model.layers.1.mlp.experts.5.down_proj.weight", "model.layers.2.mlp.experts.0.gate_proj.weight",
      "model.layers.1.self_attn.kv_b_proj.weight", "model.layers.0.self_attn.q_b_proj.weight",
      "model.layers.1.mlp.gate.e_score_correction_bias", "model.embed_tokens.weight",
    ]],
    ["tiny-mla-dense-kvb.gguf", "tiny-mla-dense", ["model.layers.1.self_attn.kv_b_proj.weight", "model.layers.0.self_attn.q_proj.weight"]],
    ["tiny-llama.gguf", "tiny-llama", ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight"]],
    ["tiny-qwen2.gguf", "tiny-qwen2", ["model.layers.0.self_attn.q_proj.bias", "model.layers.1.self_attn.k_proj.weight"]],
  ];
  for (const [file, fixture, names] of pairs) {
    const g = openCheckpoint(join(GGUF, file)), s = Checkpoint.open(join(FIXTURES, fixture));
    for (const n of names) {
      const a = g.load(n), b = s.load(n);
      assert.deepEqual(a.shape, b.shape, n);
      assert.deepEqual(g.info(n).shape, b.shape, n);
      assert.deepEqual(toF32(a), toF32(b), `${file}: ${n}`);
    }
  }
  // the current layout also presents attn_k_b / attn_v_b as stored: (W^UK)^T per head, W^UV per head
  const g = openCheckpoint(join(GGUF, "tiny-deepseek-v3.gguf"));
  assert.deepEqual(g.info("model.layers.0.self_attn.k_b_proj.weight").shape, [4 * 32, 16]);
  assert.deepEqual(g.info("model.layers.0.self_attn.v_b_proj.weight").shape, [4 * 16, 32]);
});

test("GGUF paths: a folder holding one .gguf, and split parts name-0000i-of-0000N.gguf", () => {
  const dir = freshDir();
  writeFileSync(join(dir, "model.gguf"), readFileSync(join(GGUF, "tiny-mistral.gguf")));
  assert.equal(loadConfig(dir).modelType, "mistral");
  assert.ok(openCheckpoint(dir) instanceof GgufCheckpoint);
  const split = freshDir();
  writeFileSync(join(split, "m-00001-of-00002.gguf"), readFileSync(join(GGUF, "tiny-mistral.gguf")));
  throwsOneLine(() => openCheckpoint(join(split, "m-00001-of-00002.gguf")), "m-00002-of-00002.gguf is missing");
  const two = freshDir();
  for (const f of ["a.gguf", "b.gguf"]) writeFileSync(join(two, f), readFileSync(join(GGUF, "tiny-mistral.gguf")));
  throwsOneLine(() => openCheckpoint(two), "holds 2 .gguf files");
});

// ------------------------------------------------------------------------------------------------ quantized files

/** A safetensors copy of a GGUF model with every tensor dequantized to F32 (the reference dequantizer). */
function dequantizedCopy(file: string): string {
  const dir = freshDir();
  mkdirSync(dir, { recursive: true });
  const g = GgufCheckpoint.open(file);
  const tensors: Record<string, Tensor> = {};
  for (const n of g.names()) {
    if (/\.(k|v)_b_proj\.weight$/.test(n)) continue; // not HF names: the copy has kv_b_proj only
    const t = g.load(n);
    tensors[n] = { dtype: "F32", shape: t.shape, data: toF32(t) };
  }
  writeSafetensors(join(dir, "model.safetensors"), tensors);
  writeFileSync(join(dir, "config.json"), JSON.stringify(ggufConfigJson(file)));
  return dir;
}

for (const [file, fixture, backends] of [
  ["tiny-mistral-q8_0.gguf", "tiny-mistral", BACKENDS],
  ["mixed-quant.gguf", null, BACKENDS],
  [join(EXTRA, "tiny-deepseek-v3-q8_0.gguf"), "tiny-deepseek-v3", BACKENDS],
] as const) {
  const path = file.startsWith("/") ? file : join(GGUF, file);
  for (const [backend, ops] of backends) {
    test(`${file.slice(file.lastIndexOf("/") + 1)}: quantized weights load as stored and equal the dequantized copy (${backend})`, () => {
      const g = GgufCheckpoint.open(path);
      const dtypes = new Set(g.names().map((n) => g.info(n).dtype));
      assert.ok(dtypes.has("Q8"), [...dtypes].join(","));
      if (fixture === null) for (const d of ["Q4_0", "Q4_K", "Q5_K", "Q6_K"]) assert.ok(dtypes.has(d), `no ${d}`);
      const quant = loadModel(path, { ops }), plain = loadModel(dequantizedCopy(path), { ops });
      const ids = fixture ? JSON.parse(readFileSync(join(FIXTURES, fixture, "reference.json"), "utf8")).input_ids[0] as number[] : [0, 5, 9, 3, 17, 2, 40, 11];
      for (const mode of ["naive", "absorb"] as const) {
        const a = quant.forward(ids, quant.newState(), { allLogits: true, mode } as never);
        const b = plain.forward(ids, plain.newState(), { allLogits: true, mode } as never);
        const e = relErr(a, b);
        // the relaxed-SIMD build multiplies K-quant blocks with x quantized to int8 per 256 (llama.cpp's Q8_K):
        // ~4e-3 per product, compounded over this file's layers; the plain build and the scalar kernels keep x in f32.
        // Q8 products of 2..8 rows (a fixture's naive prefill) quantize x to int16 per 32 as decode does: ~1e-5
        const tol = ops instanceof WasmOps && ops.be.relaxed && fixture === null ? 3e-2 : ops instanceof WasmOps ? 1e-4 : 1e-5;
        assert.ok(e < tol, `${mode}: rel err ${e} (tolerance ${tol})`);
      }
    });
  }
}

// ------------------------------------------------------------------------------------------------ tokenizer

const TEXTS = [
  "hello world, this is a test.", "The quick brown fox!  Jumps 12345 over\n\nthe lazy dog", "  leading and trailing  ",
  "<eos>special<bos> tokens", "ünïcödé 😀 ok", "",
];

test("GGUF tokenizer: encodes and decodes as the tokenizer.json the file was made from", () => {
  for (const [file, tj] of [
    ["tiny-deepseek-v3.gguf", join(FIXTURES, "tokenizer-bpe512.json")],
    ["tiny-llama.gguf", join(GGUF, "tiny-llama.tokenizer.json")],
    ["tiny-qwen2.gguf", join(GGUF, "tiny-qwen2.tokenizer.json")],
    ["tiny-mistral.gguf", join(GGUF, "tiny-mistral.tokenizer.json")],
  ]) {
    const a = ggufTokenizer(join(GGUF, file)), b = TextTokenizer.fromJson(JSON.parse(readFileSync(tj, "utf8")));
    for (const t of TEXTS) {
      for (const special of [true, false]) assert.deepEqual(a.encode(t, special), b.encode(t, special), `${file}: ${JSON.stringify(t)}`);
      const ids = b.encode(t);
      if (ids.length) assert.equal(a.decode(ids), b.decode(ids));
    }
  }
  // add_bos_token: the DeepSeek fixture's BOS comes first; qwen2's file adds none
  assert.equal(ggufTokenizer(join(GGUF, "tiny-deepseek-v3.gguf")).encode("hi")[0], 0);
  assert.notEqual(ggufTokenizer(join(GGUF, "tiny-qwen2.gguf")).encode("hello")[0], 1);
});

test("GGUF tokenizer: every pre-tokenizer name builds and splits text; chat template renders", () => {
  const m = openGgufModel(join(GGUF, "tiny-deepseek-v3.gguf"));
  for (const pre of GGUF_PRE_TOKENIZERS) {
    const meta = new Map(m.metadata);
    meta.set("tokenizer.ggml.pre", pre);
    const { json, config } = ggufTokenizerJson({ ...m, metadata: meta });
    const tok = TextTokenizer.fromJson(json, config);
    const text = "Hello world 123 4567, it's\n\n  我想 ok!";
    assert.equal(tok.decode(tok.encode(text, false)), text, pre);
  }
  const tok = ggufTokenizer(join(GGUF, "tiny-qwen2.gguf"));
  const chat = ChatTemplate.load(join(GGUF, "tiny-qwen2.gguf"), tok);
  assert.equal(chat.isDefault, false);
  assert.equal(chat.render([{ role: "user", content: "hi" }]), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  const ds = ggufTokenizer(join(GGUF, "tiny-deepseek-v3.gguf"));
  assert.equal(ChatTemplate.load(join(GGUF, "tiny-deepseek-v3.gguf"), ds).render([{ role: "user", content: "hi" }]), "<bos>User: hi\n\nAssistant:");
});

test("GGUF tokenizer: SentencePiece and unknown pre-tokenizers are refused in one line", () => {
  const m = openGgufModel(join(GGUF, "tiny-mistral.gguf"));
  const spm = new Map(m.metadata);
  spm.set("tokenizer.ggml.model", "llama");
  throwsOneLine(() => ggufTokenizerJson({ ...m, metadata: spm }), "tokenizer.ggml.model \"llama\"", "SentencePiece");
  const pre = new Map(m.metadata);
  pre.set("tokenizer.ggml.pre", "made-up");
  throwsOneLine(() => ggufTokenizerJson({ ...m, metadata: pre }), "pre-tokenizer \"made-up\" is not supported");
});

// ------------------------------------------------------------------------------------------------ errors

test("GGUF errors are one line and name the problem", () => {
  throwsOneLine(() => loadConfig(join(GGUF, "bad-arch.gguf")), "GGUF architecture \"falcon\" is not supported", "deepseek2, llama, qwen2");
  throwsOneLine(() => loadModel(join(GGUF, "bad-arch.gguf")), "falcon");
  throwsOneLine(() => loadModel(join(GGUF, "bad-type.gguf")), "model.layers.0.mlp.down_proj.weight", "IQ4_NL");
  throwsOneLine(() => GgufCheckpoint.open(join(GGUF, "bad-type.gguf")).load("model.layers.0.mlp.down_proj.weight"), "blk.0.ffn_down.weight", "IQ4_NL");
  throwsOneLine(() => loadModel(join(GGUF, "bad-missing.gguf")), "model.layers.0.self_attn.k_proj.weight");
  throwsOneLine(() => loadModel(join(GGUF, "nowhere.gguf")), "not found");
});

// llama-quantize's fallbacks for K-type rows that are not whole 256-blocks (attn_k_b's 128-wide rows in a real
// Q4_K_M file of DeepSeek-V2): Q4_K -> Q5_0 (kept packed as the Q5_0 dtype), Q5_K -> Q5_1 (loads as F32, exactly).
for (const [type, ggml, dtype] of [["q4_k", "Q5_0", "Q5_0"], ["q5_k", "Q5_1", "F32"]] as const) {
  test(`llama.cpp's ${ggml} fallback (an export at ${type} of 64-wide rows) loads as ${dtype} and equals its dequantized copy`, () => {
    const file = join(freshDir(), `v3-${type}.gguf`);
    exportGguf(join(FIXTURES, "tiny-deepseek-v3"), file, { type, fallback: "llama.cpp" });
    const g = GgufCheckpoint.open(file);
    const name = "model.layers.0.self_attn.o_proj.weight";
    assert.equal(openGgufModel(file).tensors.get("blk.0.attn_output.weight")?.info.type, ggml);
    assert.equal(g.info(name).dtype, dtype);
    const quant = loadModel(file, { ops: cpuOps }), plain = loadModel(dequantizedCopy(file), { ops: cpuOps });
    const ids = [0, 5, 9, 3, 17, 2, 40, 11];
    const ref = plain.forward(ids, plain.newState(), { allLogits: true });
    const e = relErr(quant.forward(ids, quant.newState(), { allLogits: true }), ref);
    assert.ok(e < 1e-6, `rel err ${e}`);
    if (ggml !== "Q5_0") return;
    // the WebAssembly kernels on the packed blocks: products of several tokens widen them to the same f32 weights
    // (summation order differs); one-token products (decode, and an expert with one token in a prefill) quantize x
    // per 32 to int16, or to int8 in the relaxed build (as llama.cpp's Q8_0 activations; this tiny model has only
    // Q5_0 products, 2 blocks per row: measured 2.4e-3 on the prefill, 1.5e-2 on the decode, where every product is
    // one token)
    const wasm = loadModel(file, { ops: ops2 }), st = wasm.newState();
    const tol = ops2.be.relaxed ? 4e-2 : 1e-4;
    const ew = relErr(wasm.forward(ids, st, { allLogits: true }), ref);
    assert.ok(ew < tol, `wasm prefill rel err ${ew}`);
    const pst = plain.newState();
    plain.forward(ids, pst);
    const ed = relErr(wasm.forward([7], st), plain.forward([7], pst));
    assert.ok(ed < Math.max(tol, 1e-3), `wasm decode rel err ${ed}`);
  });
}
