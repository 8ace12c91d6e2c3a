import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { MlaError } from "../src/errors.js";
import { loadModel } from "../src/model/load.js";
import { LlamaModel, KvRunState } from "../src/model/llama.js";
import { DeepseekModel } from "../src/model/deepseek-model.js";

import { generate } from "../src/generate/generate.js";
import { describeModel } from "../src/model/info.js";
import { readHeader, readTensor, writeSafetensors } from "../src/io/safetensors.js";
import { cpuOps, cpuOpsQ8, type Ops } from "../src/backends/ops.js";
import { WasmOps } from "../src/backends/wasm/ops.js";
import type { Tensor } from "../src/tensor/tensor.js";
import { FIXTURES, relErr, tempDirs } from "./helpers.js";
import { parseConfig } from "../src/model/families/index.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const NAMES = ["tiny-llama", "tiny-qwen2", "tiny-mistral"];
const TOL = 1e-4;
const freshDir = tempDirs("mla-llama-", after);

// minParallelWork 0: even these tiny products are split across both threads.
const ops2 = await WasmOps.create({ threads: 2, minParallelWork: 0 });
const ops1 = await WasmOps.create({ threads: 1 });
const q8 = await WasmOps.create({ threads: 2, quantize: "q8" });
after(async () => {
  await Promise.all([ops1.close(), ops2.close(), q8.close()]);
});
const BACKENDS: [string, Ops][] = [["cpu-scalar", cpuOps], ["wasm 1 thread", ops1], ["wasm 2 threads", ops2]];

interface LlamaReference {
  readonly input_ids: number[][];
  readonly logits: number[][][];
  readonly generate: { prompt: number[]; greedy_tokens: number[] };
}

function reference(name: string): LlamaReference {
  return JSON.parse(readFileSync(join(FIXTURES, name, "reference.json"), "utf8"));
}

function throwsMla(fn: () => unknown, ...parts: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof MlaError, `expected MlaError, got ${String(e)}`);
    for (const p of parts) assert.ok(e.message.includes(p), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(p)}`);
    return true;
  });
}

function mla(...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, ["--import", "tsx", join(ROOT, "src/cli/main.ts"), ...args], { cwd: ROOT, encoding: "utf8" });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

/** A copy of a fixture whose checkpoint lacks `drop` (a tensor name). */
function withoutTensor(name: string, drop: string): string {
  const dir = freshDir();
  cpSync(join(FIXTURES, name), dir, { recursive: true });
  const path = join(dir, "model.safetensors");
  const kept: Record<string, Tensor> = {};
  for (const [k, info] of readHeader(path).tensors) if (k !== drop) kept[k] = readTensor(info);
  writeSafetensors(path, kept);
  return dir;
}

const worst = new Map<string, number>();
after(() => {
  for (const [k, e] of worst) process.stdout.write(`max rel err ${k}: ${e.toExponential(2)}\n`);
});

for (const name of NAMES) {
  const ref = reference(name);

  for (const [label, ops] of BACKENDS) {
    test(`${name} on ${label}: logits match the float64 PyTorch reference`, () => {
      const model = loadModel(join(FIXTURES, name), { ops });
      assert.ok(model instanceof LlamaModel, "loadModel picks LlamaModel for the llama family");
      ref.input_ids.forEach((ids, b) => {
        const e = relErr(model.forward(ids, model.newState(), { allLogits: true }), ref.logits[b].flat());
        worst.set(`${name} ${label}`, Math.max(worst.get(`${name} ${label}`) ?? 0, e));
        assert.ok(e < TOL, `row ${b}: rel err ${e}`);
      });
    });

    test(`${name} on ${label}: prefill then token-by-token decode (and a multi-token chunk) equal the full sequence`, () => {
      const model = loadModel(join(FIXTURES, name), { ops });
      const ids = ref.input_ids[1];
      const full = model.forward(ids, model.newState(), { allLogits: true });
      const state = model.newState(2);
      const steps = Array.from(model.forward(ids.slice(0, 3), state, { allLogits: true }));
      for (const id of ids.slice(3)) steps.push(...model.forward([id], state));
      const e = relErr(steps, full);
      assert.ok(e < 1e-5, `decode vs full: rel err ${e}`);
      // a later chunk of several tokens (for mistral: rows past the sliding window inside one call)
      const chunked = model.newState();
      const parts = [...model.forward(ids.slice(0, 4), chunked, { allLogits: true }), ...model.forward(ids.slice(4), chunked, { allLogits: true })];
      const ec = relErr(parts, full);
      assert.ok(ec < 1e-5, `chunked vs full: rel err ${ec}`);
      assert.equal(chunked.position, ids.length);
    });
  }

  test(`${name}: greedy generate gives the reference tokens; MLA's mode option changes nothing`, async () => {
    const model = loadModel(join(FIXTURES, name), { ops: ops2 });
    const { prompt, greedy_tokens } = ref.generate;
    const r = await generate(model, prompt, { greedy: true, maxNewTokens: greedy_tokens.length, eosTokenIds: [] });
    assert.deepEqual(r.tokens, greedy_tokens);
    const ids = ref.input_ids[0];
    const auto = model.forward(ids, model.newState(), { allLogits: true });
    for (const mode of ["naive", "absorb"] as const) {
      assert.deepEqual(model.forward(ids, model.newState(), { mode, allLogits: true }), auto, `mode ${mode}`);
    }
  });

  test(`${name} with q8 weights (scalar and wasm): close to the reference, the same on both backends`, () => {
    const wasm = loadModel(join(FIXTURES, name), { ops: q8 }), scalar = loadModel(join(FIXTURES, name), { ops: cpuOpsQ8 });
    assert.ok(wasm instanceof LlamaModel, "a LlamaModel");
    const dtypes = new Set(wasm.weights.layers.flatMap((l) => [l.attn.q.dtype, l.attn.o.dtype, l.mlp.down.dtype]));
    if (name !== "tiny-qwen2") assert.ok(dtypes.has("Q8"), `some matrices are int8 (rows of 32k), got ${[...dtypes]}`);
    ref.input_ids.forEach((ids, b) => {
      const a = wasm.forward(ids, wasm.newState(), { allLogits: true });
      const e = relErr(a, ref.logits[b].flat());
      assert.ok(e < 5e-2, `q8 vs reference row ${b}: rel err ${e}`);
      const es = relErr(a, scalar.forward(ids, scalar.newState(), { allLogits: true }));
      assert.ok(es < 1e-4, `wasm q8 vs scalar q8 row ${b}: rel err ${es}`);
    });
  });
}

test("the K/V cache lives in the backend's memory and holds 2 n_kv head_dim floats per token and layer", () => {
  const model = LlamaModel.load(join(FIXTURES, "tiny-llama"), { ops: ops1 });
  const c = model.config;
  const state = model.newState(4);
  model.forward([1, 2, 3, 4, 5, 6], state); // past the reserved capacity: the caches grow through allocCache
  assert.equal(state.position, 6);
  assert.equal(state.cacheBytes, 6 * c.numLayers * 2 * c.numKvHeads * c.headDim * 4);
  assert.equal(state.rowCaches.length, 2 * c.numLayers);
  const heap = ops1.be.heap.buffer;
  for (const rc of state.rowCaches) assert.ok(rc.data.buffer === heap, "cache rows are views of wasm memory (ops.allocCache)");
  state.truncate(2);
  assert.equal(state.position, 2);
});

test("config: llama defaults, qwen2 biases and window switch, mistral window default, both rope spellings", () => {
  const base = { vocab_size: 10, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 4 };
  const llama = parseConfig({ ...base, model_type: "llama", rope_scaling: null, rope_theta: 500000 });
  assert.equal(llama.attention, "gqa");
  assert.equal(llama.headDim, 8);
  assert.equal(llama.numKvHeads, 4);
  assert.equal(llama.rope.theta, 500000);
  assert.equal(llama.slidingWindow, null);
  assert.equal(llama.qkvBias || llama.oBias, false);
  assert.equal(parseConfig({ ...base, model_type: "llama", rope_parameters: { rope_type: "default", rope_theta: 7 } }).rope.theta, 7);
  const biased = parseConfig({ ...base, model_type: "llama", attention_bias: true });
  assert.ok(biased.qkvBias && biased.oBias, "llama attention_bias: q/k/v and o biases");
  const qwen = parseConfig({ ...base, model_type: "qwen2", sliding_window: 4 });
  assert.ok(qwen.qkvBias && !qwen.oBias, "qwen2: q/k/v biases, o_proj none");
  assert.equal(qwen.slidingWindow, null, "qwen2 ignores sliding_window unless use_sliding_window");
  assert.equal(parseConfig({ ...base, model_type: "qwen2", use_sliding_window: true, sliding_window: 4 }).slidingWindow, 4);
  assert.equal(parseConfig({ ...base, model_type: "mistral" }).slidingWindow, 4096, "MistralConfig's default");
  assert.equal(parseConfig({ ...base, model_type: "mistral", sliding_window: null }).slidingWindow, null);
  const l3 = parseConfig({ ...base, model_type: "llama", rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } });
  assert.equal(l3.rope.type, "llama3");
  assert.equal(l3.rope.highFreqFactor, 4);
});

test("config errors: unknown model_type lists the supported ones; unsupported rope, mlp_bias, bad heads", () => {
  const base = { vocab_size: 10, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 4 };
  throwsMla(() => parseConfig({ ...base, model_type: "gpt2" }), `"gpt2" is not supported`, "deepseek_v2, deepseek_v3, llama, qwen2, mistral");
  throwsMla(() => parseConfig({ ...base, model_type: "llama", rope_scaling: { type: "yarn", factor: 4 } }), `"yarn"`, "default, linear, llama3");
  throwsMla(() => parseConfig({ ...base, model_type: "llama", rope_scaling: { type: "dynamic", factor: 4 } }), `"dynamic"`);
  throwsMla(() => parseConfig({ ...base, model_type: "llama", mlp_bias: true }), "mlp_bias");
  throwsMla(() => parseConfig({ ...base, model_type: "llama", num_key_value_heads: 3 }), "num_key_value_heads 3");
  throwsMla(() => parseConfig({ ...base, model_type: "llama", num_attention_heads: 5 }), "head_dim");
});

test("missing tensors are named; a model class refuses the other family's checkpoint", () => {
  throwsMla(() => loadModel(withoutTensor("tiny-llama", "model.layers.1.self_attn.k_proj.weight")), "missing 1 tensor", "model.layers.1.self_attn.k_proj.weight");
  throwsMla(() => loadModel(withoutTensor("tiny-qwen2", "model.layers.0.self_attn.v_proj.bias")), "model.layers.0.self_attn.v_proj.bias");
  throwsMla(() => loadModel(withoutTensor("tiny-mistral", "lm_head.weight")), "lm_head.weight");
  throwsMla(() => DeepseekModel.load(join(FIXTURES, "tiny-llama")), "llama", "loadModel");
  throwsMla(() => LlamaModel.load(join(FIXTURES, "tiny-deepseek-v3")), "deepseek_v3", "loadModel");
  const llama = loadModel(join(FIXTURES, "tiny-llama"));
  const v3 = loadModel(join(FIXTURES, "tiny-deepseek-v3"));
  throwsMla(() => llama.forward([1], v3.newState()), "another kind of model");
  assert.ok(llama.newState() instanceof KvRunState, "a GQA model's state is a KvRunState");
});

test("token ids and context length are checked before the cache is touched", () => {
  const dir = freshDir();
  cpSync(join(FIXTURES, "tiny-qwen2"), dir, { recursive: true });
  const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfg, max_position_embeddings: 8 }));
  const model = loadModel(dir), state = model.newState();
  throwsMla(() => model.forward([1, 101], state), "token id 101", "out of range");
  throwsMla(() => model.forward([1, 2, 3, 4, 5, 6, 7, 8, 9], state), "9 tokens", "context length 8");
  assert.equal(state.position, 0, "a rejected call must not touch the cache");
});

test("mla info on a llama model: its own K/V cache per token, no MLA row", () => {
  const info = describeModel(join(FIXTURES, "tiny-llama"));
  assert.equal(info.kvCache.model.elementsPerTokenPerLayer, 2 * 2 * 16);
  assert.equal(info.kvCache.model.kind, "gqa");
  assert.equal(info.kvCache.mla, null);
  assert.equal(info.kvCache.mha.elementsPerTokenPerLayer, 2 * 4 * 16);
  const r = mla("info", "--model", join(FIXTURES, "tiny-llama"));
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /GQA: 2 K\/V heads for 4 query heads, head_dim 16/);
  assert.match(r.out, /llama3 x4/);
  assert.doesNotMatch(r.out, /^MLA/m);
  const j = JSON.parse(mla("info", "--model", join(FIXTURES, "tiny-mistral"), "--json").out);
  assert.equal(j.attention, "gqa");
  assert.equal(j.kvCache.model.elementsPerTokenPerLayer, 2 * 1 * 8);
  assert.equal(j.architecture.slidingWindow, 5);
});

test("CLI: generate and logits run llama-family checkpoints on both backends; --attention naive is refused", () => {
  for (const [name, backend] of [["tiny-llama", "cpu"], ["tiny-mistral", "cpu-scalar"]]) {
    const { prompt, greedy_tokens } = reference(name).generate;
    const r = mla("generate", "--model", join(FIXTURES, name), "--backend", backend, "--prompt-ids", prompt.join(","),
      "--max-new-tokens", String(greedy_tokens.length), "--json");
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(JSON.parse(r.out).tokens, greedy_tokens, `${name} on ${backend}`);
  }
  const ref = reference("tiny-qwen2");
  const l = mla("logits", "--model", join(FIXTURES, "tiny-qwen2"), "--ids", ref.input_ids[0].join(","), "--quantize", "q8", "--json");
  assert.equal(l.code, 0, l.err);
  const e = relErr((JSON.parse(l.out).logits as number[][]).flat(), ref.logits[0].flat());
  assert.ok(e < 5e-2, `q8 logits via the CLI: rel err ${e}`);
  const bad = mla("generate", "--model", join(FIXTURES, "tiny-llama"), "--prompt-ids", "1,2", "--attention", "naive");
  assert.notEqual(bad.code, 0, "naive MLA on a GQA model must fail");
  assert.match(bad.err.trim(), /^error: --attention naive applies to MLA models only; llama uses grouped-query attention/);
});
