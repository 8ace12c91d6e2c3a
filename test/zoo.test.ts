import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { MlaError } from "../src/errors.js";
import { parseConfig } from "../src/model/families/index.js";
import { isMoeLayer, mtpNote, type Json, type ModelConfig } from "../src/model/config.js";
import { ropeAttentionFactor } from "../src/attention/rope.js";
import { FIXTURES } from "./helpers.js";

// The config.json of every published MLA model in test/fixtures/zoo (copies of shared/zoo; see its README for
// provenance): which the engine accepts, with what it reads from them, and which it refuses, with the reason.
const ZOO = join(FIXTURES, "zoo");
const zoo = (name: string): Json => JSON.parse(readFileSync(join(ZOO, name, "config.json"), "utf8")) as Json;

const refused = (json: Json, re: RegExp) =>
  assert.throws(() => parseConfig(json), (e: unknown) => e instanceof MlaError && re.test(e.message) && !e.message.includes("\n"), `expected ${re}`);

type Expect = { accept: (c: ModelConfig) => void } | { refuse: RegExp };

const MOE = (c: ModelConfig) => Array.from({ length: c.numLayers }, (_, i) => isMoeLayer(c, i));

const EXPECT: Record<string, Expect> = {
  "DeepSeek-V2": { accept: (c) => {
    assert.equal(c.router?.scoring, "softmax");
    assert.equal(c.router?.topGroups, 3);
    assert.equal(c.ropeStyle, "interleaved");
  } },
  "DeepSeek-V2-Lite": { accept: (c) => {
    assert.equal(c.qLoraRank, null);
    assert.deepEqual(MOE(c).slice(0, 3), [false, true, true]);
  } },
  "DeepSeek-V3": { accept: (c) => {
    assert.equal(c.router?.scoring, "sigmoid");
    assert.equal(c.mtpLayers, 1, "num_nextn_predict_layers: the MTP layer is reported, not run");
    assert.equal(MOE(c).filter(Boolean).length, 58);
  } },
  "DeepSeek-R1": { accept: (c) => assert.equal(c.mtpLayers, 1) },
  "DeepSeek-V3.1": { accept: (c) => assert.equal(c.rope.type, "yarn") },
  "Moonlight-16B-A3B-Instruct": { accept: (c) => {
    assert.equal(c.qLoraRank, null);
    assert.equal(c.mtpLayers, 0);
  } },
  "Kimi-K2-Instruct": { accept: (c) => {
    assert.equal(c.modelType, "kimi_k2");
    assert.equal(c.router?.experts, 384);
    assert.equal(c.router?.scoring, "sigmoid");
    assert.equal(c.router?.choiceBias, true);
    assert.equal(c.rope.betaFast, 1);
  } },
  "GLM-4.7-Flash": { accept: (c) => {
    assert.equal(c.modelType, "glm4_moe_lite");
    assert.deepEqual([c.qkNopeHeadDim, c.qkRopeHeadDim, c.vHeadDim, c.numHeads], [192, 64, 256, 20]);
    assert.deepEqual(MOE(c), [false, ...Array<boolean>(46).fill(true)], "mlp_layer_types default: one dense layer");
    assert.equal(c.mtpLayers, 1);
    assert.equal(c.router?.scaling, 1.8);
    assert.equal(c.rmsNormEps, 1e-5);
    assert.deepEqual(c.eosTokenIds, [154820, 154827, 154829]);
  } },
  "Youtu-LLM-2B": { accept: (c) => {
    assert.equal(c.tieWordEmbeddings, true);
    assert.equal(c.nRoutedExperts, 0);
    assert.equal(c.ropeStyle, "interleaved");
  } },
  "MiniCPM3-4B": { accept: (c) => {
    assert.equal(c.ropeStyle, "halves");
    assert.equal(c.vHeadDim, 64, "v_head_dim absent: hidden_size / num_attention_heads");
    assert.equal(c.tieWordEmbeddings, true, "MiniCPM3Config's default");
    assert.equal(c.embedScale, 12);
    assert.ok(Math.abs(c.residualScale - 1.4 / Math.sqrt(62)) < 1e-15);
    assert.equal(c.logitScale, 256 / 2560);
    assert.equal(c.rope.type, "longrope");
    assert.equal(c.rope.factor, 1, "max_position_embeddings / original_max_position_embeddings");
    assert.equal(ropeAttentionFactor(c.rope), 1);
  } },
  "DeepSeek-V3.2-Exp": { refuse: /deepseek_v32.*indexer/ },
  "DeepSeek-V4-Pro": { refuse: /deepseek_v4/ },
  // refused by quantization_config (INT4 compressed-tensors), which src/model/quantization.ts reads: the message
  // is that file's, so only the refusal is asserted here
  "Kimi-K2-Thinking": { refuse: /./ },
  "Kimi-Linear-48B-A3B-Base": { refuse: /kimi_linear.*linear attention/ },
  "LongCat-Flash-Chat": { refuse: /longcat_flash.*zero-computation experts/ },
  "PLM-1.8B-Instruct": { refuse: /plm.*ReLU/ },
  "Youtu-LLM-2B-Base-DSA": { refuse: /index_topk.*indexer/ },
};

test("every zoo config is listed here (accepted or refused)", () => {
  const dirs = readdirSync(ZOO, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  assert.deepEqual(dirs, Object.keys(EXPECT).sort());
});

for (const [name, e] of Object.entries(EXPECT)) {
  test(`zoo ${name}: ${"accept" in e ? "accepted" : "refused"}`, () => {
    if ("refuse" in e) return refused(zoo(name), e.refuse);
    e.accept(parseConfig(zoo(name)));
  });
}

// Config keys of the MLA families, one by one, on real configs with one key changed.
const withKeys = (name: string, keys: Json): Json => ({ ...zoo(name), ...keys });

test("scoring_func must agree with the family's router", () => {
  refused(withKeys("DeepSeek-V2-Lite", { scoring_func: "sigmoid" }), /scoring_func "sigmoid" does not match deepseek_v2's router \(softmax\)/);
  refused(withKeys("Moonlight-16B-A3B-Instruct", { scoring_func: "softmax" }), /does not match deepseek_v3's router \(sigmoid\)/);
  refused(withKeys("GLM-4.7-Flash", { scoring_func: "softmax" }), /glm4_moe_lite's router \(sigmoid\)/);
  refused(withKeys("Kimi-K2-Instruct", { scoring_func: "sqrtsoftplus" }), /scoring_func "sqrtsoftplus" does not match kimi_k2's router/);
  assert.equal(parseConfig(withKeys("DeepSeek-V2-Lite", { scoring_func: undefined })).router?.scoring, "softmax");
});

test("topk_method: only the family's router", () => {
  refused(withKeys("DeepSeek-V3", { topk_method: "greedy" }), /topk_method "greedy" is not supported for deepseek_v3 \(noaux_tc\)/);
  refused(withKeys("DeepSeek-V2-Lite", { topk_method: "noaux_tc" }), /not supported for deepseek_v2/);
  assert.equal(parseConfig(withKeys("GLM-4.7-Flash", { topk_method: undefined })).topkMethod, "noaux_tc");
});

test("norm_topk_prob: read; absent takes the family's default (V2 false, V3-likes true)", () => {
  assert.equal(parseConfig(withKeys("DeepSeek-V3", { norm_topk_prob: false })).router?.normalize, false);
  assert.equal(parseConfig(withKeys("DeepSeek-V3", { norm_topk_prob: undefined })).router?.normalize, true);
  assert.equal(parseConfig(withKeys("Kimi-K2-Instruct", { norm_topk_prob: undefined })).router?.normalize, true);
  assert.equal(parseConfig(withKeys("DeepSeek-V2", { norm_topk_prob: undefined })).normTopkProb, false);
  // V2 normalises only with k > 1 (DeepSeek-V2's modeling code)
  assert.equal(parseConfig(withKeys("DeepSeek-V2", { norm_topk_prob: true })).router?.normalize, true);
});

test("moe_layer_freq: layer i is MoE when i % freq == 0; 0 cannot run with experts, and is ignored without them", () => {
  const c = parseConfig(withKeys("DeepSeek-V2-Lite", { moe_layer_freq: 2 }));
  assert.deepEqual(MOE(c).slice(0, 5), [false, false, true, false, true]);
  refused(withKeys("DeepSeek-V2-Lite", { moe_layer_freq: 0 }), /moe_layer_freq 0 with routed experts is invalid/);
  const dense = parseConfig(withKeys("Youtu-LLM-2B-Base-DSA", { index_absorb: undefined, index_head_dim: undefined, index_n_heads: undefined, index_topk: undefined, index_weights: undefined }));
  assert.equal(dense.nRoutedExperts, 0, "Youtu-LLM-2B-Base-DSA without its indexer: dense, moe_layer_freq 0 unused");
});

test("attention_bias and mlp_bias true are refused by name", () => {
  for (const name of ["DeepSeek-V3", "GLM-4.7-Flash", "Youtu-LLM-2B", "MiniCPM3-4B", "Kimi-K2-Instruct"]) {
    refused(withKeys(name, { attention_bias: true }), /attention_bias true is not supported/);
    refused(withKeys(name, { mlp_bias: true }), /mlp_bias true/);
  }
});

test("rope_interleave: read by the V3-likes (default true); V2 and MiniCPM3 have a fixed pairing that it must not contradict", () => {
  assert.equal(parseConfig(withKeys("DeepSeek-V3", { rope_interleave: false })).ropeStyle, "halves");
  assert.equal(parseConfig(withKeys("GLM-4.7-Flash", { rope_interleave: false })).ropeStyle, "halves");
  assert.equal(parseConfig(withKeys("Youtu-LLM-2B", { rope_interleave: undefined })).ropeStyle, "interleaved");
  assert.equal(parseConfig(withKeys("DeepSeek-V2", { rope_interleave: true })).ropeStyle, "interleaved");
  refused(withKeys("DeepSeek-V2", { rope_interleave: false }), /rope_interleave false is not supported for deepseek_v2, whose modeling code always rotates interleaved pairs/);
  refused(withKeys("MiniCPM3-4B", { rope_interleave: true }), /rope_interleave true is not supported for minicpm3.*by halves/);
  refused(withKeys("DeepSeek-V3", { rope_interleave: "yes" }), /"rope_interleave" must be true or false/);
});

test("partial_rotary_factor other than 1 is refused (top level or in rope_parameters)", () => {
  assert.equal(parseConfig(withKeys("GLM-4.7-Flash", { partial_rotary_factor: 1 })).qkRopeHeadDim, 64);
  refused(withKeys("GLM-4.7-Flash", { partial_rotary_factor: 0.5 }), /partial_rotary_factor 0.5 is not supported/);
  refused(withKeys("Youtu-LLM-2B", { rope_parameters: { rope_type: "default", rope_theta: 1e5, partial_rotary_factor: 0.5 } }), /rope_parameters\.partial_rotary_factor 0.5/);
});

test("num_nextn_predict_layers: the MTP layers are counted (mtpLayers), never read", () => {
  assert.equal(parseConfig(withKeys("DeepSeek-V3", { num_nextn_predict_layers: 0 })).mtpLayers, 0);
  assert.equal(parseConfig(withKeys("GLM-4.7-Flash", { num_nextn_predict_layers: 2 })).mtpLayers, 2);
  refused(withKeys("GLM-4.7-Flash", { num_nextn_predict_layers: -1 }), /num_nextn_predict_layers/);
});

test("index_* keys (DeepSeek Sparse Attention) are refused on any MLA model_type", () => {
  for (const name of ["DeepSeek-V3", "GLM-4.7-Flash", "Kimi-K2-Instruct", "Youtu-LLM-2B"]) {
    refused(withKeys(name, { index_topk: 2048, index_n_heads: 64, index_head_dim: 128 }), /index_topk.*lightning indexer/);
  }
});

test("glm4_moe_lite: mlp_layer_types decides dense or MoE; first_k_dense_replace alone must agree with its default", () => {
  const types = ["dense", "dense", "sparse", ...Array<string>(44).fill("sparse")];
  assert.deepEqual(MOE(parseConfig(withKeys("GLM-4.7-Flash", { mlp_layer_types: types, first_k_dense_replace: 1 }))).slice(0, 3), [false, false, true]);
  assert.deepEqual(MOE(parseConfig(withKeys("GLM-4.7-Flash", { first_k_dense_replace: undefined }))).slice(0, 2), [false, true]);
  refused(withKeys("GLM-4.7-Flash", { first_k_dense_replace: 2 }), /first_k_dense_replace 2 without mlp_layer_types.*disagree/);
  refused(withKeys("GLM-4.7-Flash", { mlp_layer_types: ["dense", "sparse"] }), /mlp_layer_types must list "dense" or "sparse" for each of the 47 layers/);
  refused(withKeys("GLM-4.7-Flash", { mlp_layer_types: types.map((t) => (t === "sparse" ? "moe" : t)) }), /mlp_layer_types/);
});

test("youtu: its config class has no expert keys, so they are not read", () => {
  const c = parseConfig(withKeys("Youtu-LLM-2B", { n_routed_experts: 64, num_experts_per_tok: 8, moe_intermediate_size: 512 }));
  assert.equal(c.nRoutedExperts, 0);
  assert.equal(c.router, null);
});

test("minicpm3: the multipliers are required; v_head_dim absent only where both references agree", () => {
  for (const k of ["scale_emb", "scale_depth", "dim_model_base"]) refused(withKeys("MiniCPM3-4B", { [k]: undefined }), new RegExp(`minicpm3 needs "${k}"`));
  refused(withKeys("MiniCPM3-4B", { qk_nope_head_dim: 32 }), /without "v_head_dim".*differ/);
  assert.equal(parseConfig(withKeys("MiniCPM3-4B", { qk_nope_head_dim: 32, v_head_dim: 48 })).vHeadDim, 48);
});

test("longrope: different long_factor only where transformers never switches to it; transformers' default attention factor", () => {
  const base = zoo("MiniCPM3-4B"), rs = base.rope_scaling as Json;
  const long = (rs.long_factor as number[]).map((x) => x * 2);
  // MiniCPM3-4B: original_max_position_embeddings = max_position_embeddings, so long_factor is never used
  const c = parseConfig({ ...base, rope_scaling: { ...rs, long_factor: long } });
  assert.deepEqual(c.rope.extFactors, rs.short_factor, "short_factor is what runs");
  // a context longer than the original: transformers would switch, changing cached keys
  refused({ ...base, max_position_embeddings: 65536, rope_scaling: { ...rs, long_factor: long } }, /different short_factor and long_factor.*65536.*32768/);
  // equal factors and a longer context: attention factor sqrt(1 + ln(s) / ln(L0)), s = 65536 / 32768
  const ext = parseConfig({ ...base, max_position_embeddings: 65536 });
  assert.equal(ext.rope.factor, 2);
  assert.ok(Math.abs(ropeAttentionFactor(ext.rope) - Math.sqrt(1 + Math.log(2) / Math.log(32768))) < 1e-15);
  assert.equal(ropeAttentionFactor(parseConfig({ ...base, rope_scaling: { ...rs, factor: 4, attention_factor: 1.25 } }).rope), 1.25);
});

test("refused model_types say why; unknown ones list the supported types", () => {
  refused({ model_type: "deepseek_v32" }, /deepseek_v32.*lightning indexer/);
  refused({ model_type: "longcat_flash" }, /zero-computation experts/);
  refused({ model_type: "falcon" }, /model_type "falcon" is not supported \(supported: deepseek_v2, deepseek_v3, llama, qwen2, mistral, glm4_moe_lite, kimi_k2, youtu, minicpm3\)/);
});

test("mtpNote says what a loader or mla info reports of the MTP layers", () => {
  assert.equal(mtpNote(parseConfig(zoo("GLM-4.7-Flash"))), "1 multi-token-prediction layer declared (num_nextn_predict_layers), not run");
  assert.equal(mtpNote(parseConfig(zoo("Kimi-K2-Instruct"))), null);
});
