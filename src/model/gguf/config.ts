/**
 * config.json from a GGUF file's metadata: the object a Hugging Face checkpoint of the same model would carry, so
 * the family registry parses it (families/index.ts parseConfig) and nothing downstream knows the file was GGUF.
 * The key mapping and what llama.cpp's converter writes are in ./names.ts.
 */
import { MlaError } from "../../errors.js";
import { readGgufTensor, type GgufValue } from "../../io/gguf.js";
import type { Json } from "../config.js";
import { openGgufModel, type GgufModel } from "./files.js";
import { EXPERT_GATING_FUNC, GGUF_KEYS, METADATA_FIELDS, archKey, checkGgufArch, type GgufArch } from "./names.js";

export { isGgufPath } from "./files.js";

/** The shortest decimal that rounds to the same f32 (metadata floats are f32: 1e-6 is stored as 9.99999997e-7). */
export function f32Decimal(v: number): number {
  if (!Number.isFinite(v) || Math.fround(v) !== v) return v;
  for (let p = 1; p <= 9; p++) {
    const d = Number(v.toPrecision(p));
    if (Math.fround(d) === v) return d;
  }
  return v;
}

/** Metadata of one model, read by key with `{arch}` filled in. */
class Meta {
  constructor(readonly m: GgufModel, readonly arch: GgufArch) {}

  get(key: string): GgufValue | undefined {
    return this.m.metadata.get(archKey(this.arch, key));
  }

  num(key: string): number | undefined {
    const v = this.get(key);
    if (v === undefined) return undefined;
    if (typeof v !== "number") throw new MlaError(`${this.m.path}: GGUF metadata ${archKey(this.arch, key)} must be a number, got ${JSON.stringify(String(v))}`);
    return f32Decimal(v);
  }

  need(key: string): number {
    const v = this.num(key);
    if (v === undefined) throw new MlaError(`${this.m.path}: GGUF metadata ${archKey(this.arch, key)} is missing`);
    return v;
  }

  hasTensor(name: string): boolean {
    return this.m.tensors.has(name);
  }
}

/** The config.json object of a GGUF model (a path, or headers already read). */
export function ggufConfigJson(model: string | GgufModel): Json {
  const m = typeof model === "string" ? openGgufModel(model) : model;
  const meta = new Meta(m, checkGgufArch(m.metadata.get(GGUF_KEYS.architecture)));
  const json: Json = {};
  for (const f of METADATA_FIELDS) {
    if (f.archs && !f.archs.includes(meta.arch)) continue;
    const v = meta.num(f.key);
    if (v !== undefined) json[f.hf] = v;
  }
  const tokens = m.metadata.get(GGUF_KEYS.tokens);
  json.vocab_size ??= Array.isArray(tokens) ? tokens.length : m.tensors.get("token_embd.weight")?.info.shape[0];
  json.tie_word_embeddings = !meta.hasTensor("output.weight");
  json.hidden_act = "silu";
  const bos = m.metadata.get(GGUF_KEYS.bosId);
  if (typeof bos === "number") json.bos_token_id = bos;
  // end of generation: EOS, and the end-of-turn token chat models stop at (llama.cpp's EOT; HF keeps it in
  // generation_config.json's eos_token_id list)
  const eos = [GGUF_KEYS.eosId, GGUF_KEYS.eotId].map((k) => m.metadata.get(k)).filter((v): v is number => typeof v === "number");
  if (eos.length) json.eos_token_id = [...new Set(eos)];
  Object.assign(json, meta.arch === "deepseek2" ? deepseek2(meta) : llamaLike(meta));
  json.rope_parameters = rope(meta);
  delete json.rope_theta;
  return json;
}

/** deepseek2: the router by expert_gating_func, MLA head widths by the (current or older) key lengths. */
function deepseek2(meta: Meta): Json {
  const ropeDim = meta.need(GGUF_KEYS.ropeDims);
  const mla = meta.num(GGUF_KEYS.keyLengthMla) !== undefined;
  const kLen = meta.need(mla ? GGUF_KEYS.keyLengthMla : GGUF_KEYS.keyLength);
  const vLen = meta.need(mla ? GGUF_KEYS.valueLengthMla : GGUF_KEYS.valueLength);
  const qLora = meta.num(GGUF_KEYS.qLoraRank);
  const v3 = isSigmoid(meta);
  const groups = meta.num("{arch}.expert_group_count") ?? 1;
  // llama.cpp writes GLM-4.7-Flash's (and DeepSeek-V3's, when asked) multi-token-prediction layers as the last
  // blocks, counted in block_count: the decoder is the blocks before them (ModelConfig.mtpLayers)
  const nextn = meta.num(GGUF_KEYS.nextnPredictLayers) ?? 0;
  const blocks = meta.need("{arch}.block_count");
  if (!Number.isInteger(nextn) || nextn < 0 || nextn >= blocks) throw new MlaError(`${meta.m.path}: ${archKey(meta.arch, GGUF_KEYS.nextnPredictLayers)} ${nextn} does not fit block_count ${blocks}`);
  return {
    num_hidden_layers: blocks - nextn,
    num_nextn_predict_layers: nextn,
    model_type: v3 ? "deepseek_v3" : "deepseek_v2",
    topk_method: v3 ? "noaux_tc" : groups > 1 ? "group_limited_greedy" : "greedy",
    scoring_func: v3 ? "sigmoid" : "softmax",
    num_key_value_heads: meta.need("{arch}.attention.head_count"), // the file's 1 is MLA written as MQA
    q_lora_rank: qLora ? qLora : null,
    qk_rope_head_dim: ropeDim,
    qk_nope_head_dim: kLen - ropeDim,
    v_head_dim: vLen,
    norm_topk_prob: meta.get(GGUF_KEYS.expertWeightsNorm) === true,
    first_k_dense_replace: meta.num("{arch}.leading_dense_block_count") ?? 0,
  };
}

/**
 * Sigmoid gating is DeepSeek-V3's router (noaux_tc); softmax V2's. llama.cpp reads an absent key as softmax (V2 files
 * before the key existed); V3 files made before it have the exp_probs_b bias, which only V3's router has.
 */
function isSigmoid(meta: Meta): boolean {
  const g = meta.num(GGUF_KEYS.expertGatingFunc);
  if (g === EXPERT_GATING_FUNC.sigmoid) return true;
  if (g === EXPERT_GATING_FUNC.softmax) return false;
  if (g !== undefined) throw new MlaError(`${meta.m.path}: expert_gating_func ${g} is not supported (1 softmax, 2 sigmoid)`);
  return [...meta.m.tensors.keys()].some((n) => n.endsWith(".exp_probs_b.bias"));
}

/** llama, qwen2 (and mistral: arch llama with a sliding window). */
function llamaLike(meta: Meta): Json {
  const heads = meta.need("{arch}.attention.head_count");
  const window = meta.num(GGUF_KEYS.slidingWindow);
  const json: Json = {
    model_type: meta.arch === "qwen2" ? "qwen2" : window ? "mistral" : "llama",
    num_key_value_heads: meta.num(GGUF_KEYS.headCountKv) ?? heads,
    head_dim: meta.num(GGUF_KEYS.keyLength) ?? meta.need("{arch}.embedding_length") / heads,
  };
  if (meta.arch === "llama") json.attention_bias = meta.hasTensor("blk.0.attn_q.bias");
  if (window) Object.assign(json, { sliding_window: window, use_sliding_window: true });
  else if (meta.arch === "llama") json.sliding_window = null;
  return json;
}

/**
 * rope_parameters: theta, and the scaling llama.cpp keeps (none, linear, yarn). llama3 scaling is no metadata: the
 * converter writes its per-pair divisors as rope_freqs.weight, which is longrope with those factors and factor 1
 * (attention factor 1), the same frequencies transformers' llama3 computes.
 */
function rope(meta: Meta): Json {
  const theta = meta.num("{arch}.rope.freq_base") ?? 10000;
  const type = meta.get(GGUF_KEYS.ropeScalingType);
  const factor = meta.num(GGUF_KEYS.ropeScalingFactor);
  if (meta.hasTensor("rope_freqs.weight")) return { rope_type: "longrope", rope_theta: theta, factor: 1, short_factor: ropeFreqs(meta), long_factor: ropeFreqs(meta), attention_factor: 1 };
  if (type === undefined || type === "none" || factor === undefined || factor === 1 && type !== "yarn") return { rope_type: "default", rope_theta: theta };
  if (type === "linear") return { rope_type: "linear", rope_theta: theta, factor };
  if (type !== "yarn") throw new MlaError(`${meta.m.path}: RoPE scaling ${JSON.stringify(type)} is not supported (none, linear, yarn)`);
  const out: Json = {
    rope_type: "yarn", rope_theta: theta, factor,
    original_max_position_embeddings: meta.need(GGUF_KEYS.ropeScalingOrigCtx),
    beta_fast: meta.num(GGUF_KEYS.ropeYarnBetaFast) ?? 32,
    beta_slow: meta.num(GGUF_KEYS.ropeYarnBetaSlow) ?? 1,
  };
  const logMul = meta.num(GGUF_KEYS.ropeYarnLogMul);
  if (logMul !== undefined && meta.arch === "deepseek2") {
    // conversion/deepseek.py writes 0.1 * mscale_all_dim; llama.cpp applies mscale = mscale_all_dim (their ratio,
    // the cos/sin factor, is 1 as in every DeepSeek release)
    const all = shortestSource(logMul, (x) => 0.1 * x);
    out.mscale = all;
    out.mscale_all_dim = all;
  }
  return out;
}

/** The shortest decimal x whose f(x), stored as f32, is `stored` (undoing a converter's arithmetic exactly). */
function shortestSource(stored: number, f: (x: number) => number): number {
  const s = Math.fround(stored);
  for (let p = 1; p <= 9; p++) {
    const x = Number((s / f(1)).toPrecision(p));
    if (Math.fround(f(x)) === s) return x;
  }
  return s / f(1);
}

function ropeFreqs(meta: Meta): number[] {
  const t = meta.m.tensors.get("rope_freqs.weight")!;
  if (t.info.type !== "F32") throw new MlaError(`${meta.m.path}: rope_freqs.weight has type ${t.info.type}, expected F32`);
  const { data } = readGgufTensor(t.file, "rope_freqs.weight");
  return Array.from(new Float32Array(data.buffer, data.byteOffset, data.byteLength / 4), f32Decimal);
}
