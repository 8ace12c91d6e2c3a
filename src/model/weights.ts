import { MlaError } from "../errors.js";
import { concatRows, sliceRows, toF32, type Tensor } from "../tensor/tensor.js";
import type { Checkpoint } from "./checkpoint.js";
import { isMoeLayer, type ModelConfig } from "./config.js";
import type { MlaWeights } from "../attention/mla.js";
import type { GqaWeights } from "../attention/gqa.js";
import type { MlpWeights } from "./mlp.js";
import type { MoeWeights } from "./moe.js";

/** One DeepSeek decoder layer's weights. Norm vectors are widened to F32; matrices keep their stored dtype. */
export interface LayerWeights {
  readonly inputNorm: Float32Array; // input_layernorm
  readonly postNorm: Float32Array; //  post_attention_layernorm
  readonly attn: MlaWeights;
  readonly mlp: MlpWeights | null; // dense layers
  readonly moe: MoeWeights | null; // MoE layers
}

/** One llama-family decoder layer: GQA attention (biases widened to F32) and a dense SwiGLU MLP. */
export interface LlamaLayerWeights {
  readonly inputNorm: Float32Array;
  readonly postNorm: Float32Array;
  readonly attn: GqaWeights;
  readonly mlp: MlpWeights;
}

/** Every weight of a decoder in one struct (llama2.c style); L is the family's layer. */
export interface DecoderWeights<L> {
  readonly embed: Tensor; // model.embed_tokens [V, D]
  readonly layers: readonly L[];
  readonly norm: Float32Array; // model.norm
  readonly lmHead: Tensor; // lm_head [V, D] (the embedding when tied)
}

/** A DeepSeek-V2/V3 model's weights. */
export type ModelWeights = DecoderWeights<LayerWeights>;
/** A llama/qwen2/mistral model's weights. */
export type LlamaWeights = DecoderWeights<LlamaLayerWeights>;

export interface LoadProgress {
  (doneBytes: number, totalBytes: number, name: string): void;
}

/** The tensors this config needs, with their expected shapes (only layers < num_hidden_layers: V3's MTP layer is skipped). */
export function expectedTensors(c: ModelConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  m.set("model.embed_tokens.weight", [c.vocabSize, c.hiddenSize]);
  m.set("model.norm.weight", [c.hiddenSize]);
  if (!c.tieWordEmbeddings) m.set("lm_head.weight", [c.vocabSize, c.hiddenSize]);
  if (c.attention === "gqa") llamaLayerTensors(c, m);
  else deepseekLayerTensors(c, m);
  return m;
}

/** gate_proj, up_proj, down_proj of a SwiGLU MLP of width F under prefix p. */
function mlpTensors(m: Map<string, number[]>, p: string, D: number, F: number): void {
  m.set(`${p}gate_proj.weight`, [F, D]);
  m.set(`${p}up_proj.weight`, [F, D]);
  m.set(`${p}down_proj.weight`, [D, F]);
}

/** LlamaDecoderLayer's tensors (Qwen2 and Mistral use the same names; biases as the config says). */
function llamaLayerTensors(c: ModelConfig, m: Map<string, number[]>): void {
  const D = c.hiddenSize, qDim = c.numHeads * c.headDim, kvDim = c.numKvHeads * c.headDim;
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}.`, a = `${p}self_attn.`;
    m.set(`${p}input_layernorm.weight`, [D]);
    m.set(`${p}post_attention_layernorm.weight`, [D]);
    for (const [proj, rows] of [["q", qDim], ["k", kvDim], ["v", kvDim]] as const) {
      m.set(`${a}${proj}_proj.weight`, [rows, D]);
      if (c.qkvBias) m.set(`${a}${proj}_proj.bias`, [rows]);
    }
    m.set(`${a}o_proj.weight`, [D, qDim]);
    if (c.oBias) m.set(`${a}o_proj.bias`, [D]);
    mlpTensors(m, `${p}mlp.`, D, c.intermediateSize);
  }
}

function deepseekLayerTensors(c: ModelConfig, m: Map<string, number[]>): void {
  const D = c.hiddenSize, H = c.numHeads, dqk = c.qkNopeHeadDim + c.qkRopeHeadDim;
  const mlp = (p: string, F: number) => mlpTensors(m, p, D, F);
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}.`;
    m.set(`${p}input_layernorm.weight`, [D]);
    m.set(`${p}post_attention_layernorm.weight`, [D]);
    const a = `${p}self_attn.`;
    if (c.qLoraRank) {
      m.set(`${a}q_a_proj.weight`, [c.qLoraRank, D]);
      m.set(`${a}q_a_layernorm.weight`, [c.qLoraRank]);
      m.set(`${a}q_b_proj.weight`, [H * dqk, c.qLoraRank]);
    } else {
      m.set(`${a}q_proj.weight`, [H * dqk, D]);
    }
    m.set(`${a}kv_a_proj_with_mqa.weight`, [c.kvLoraRank + c.qkRopeHeadDim, D]);
    m.set(`${a}kv_a_layernorm.weight`, [c.kvLoraRank]);
    m.set(`${a}kv_b_proj.weight`, [H * (c.qkNopeHeadDim + c.vHeadDim), c.kvLoraRank]);
    m.set(`${a}o_proj.weight`, [D, H * c.vHeadDim]);
    if (isMoeLayer(c, i)) {
      m.set(`${p}mlp.gate.weight`, [c.nRoutedExperts, D]);
      if (c.modelType === "deepseek_v3") m.set(`${p}mlp.gate.e_score_correction_bias`, [c.nRoutedExperts]);
      for (let e = 0; e < c.nRoutedExperts; e++) mlp(`${p}mlp.experts.${e}.`, c.moeIntermediateSize);
      if (c.nSharedExperts) mlp(`${p}mlp.shared_experts.`, c.nSharedExperts * c.moeIntermediateSize);
    } else {
      mlp(`${p}mlp.`, c.intermediateSize);
    }
  }
}

/** Matrices the kernels multiply with (the embedding only when it doubles as lm_head; the router runs in F32). */
function isMatmulWeight(c: ModelConfig, name: string): boolean {
  if (name === "model.embed_tokens.weight") return c.tieWordEmbeddings;
  return name.endsWith("_proj.weight") || name === "lm_head.weight" || name.endsWith("kv_a_proj_with_mqa.weight");
}

const LOADABLE_DTYPES = new Set(["F32", "BF16", "F16", "F64"]);

function listNames(names: string[], max = 5): string {
  return names.slice(0, max).join(", ") + (names.length > max ? ` and ${names.length - max} more` : "");
}

/** Check that every needed tensor of a DeepSeek checkpoint is present with the right shape, then read them all. */
export function loadWeights(c: ModelConfig, ckpt: Checkpoint, onProgress?: LoadProgress, prepare?: (w: Tensor) => Tensor): ModelWeights {
  if (c.attention !== "mla") throw new MlaError(`loadWeights reads deepseek_v2/deepseek_v3 checkpoints, not ${c.modelType} (use loadLlamaWeights)`);
  const { get, stacked } = readTensors(c, ckpt, onProgress, prepare);
  return assemble(c, get, stacked);
}

/** The same for a llama/qwen2/mistral checkpoint. */
export function loadLlamaWeights(c: ModelConfig, ckpt: Checkpoint, onProgress?: LoadProgress, prepare?: (w: Tensor) => Tensor): LlamaWeights {
  if (c.attention !== "gqa") throw new MlaError(`loadLlamaWeights reads llama, qwen2 and mistral checkpoints, not ${c.modelType} (use loadWeights)`);
  const { get, stacked } = readTensors(c, ckpt, onProgress, prepare);
  return assembleLlama(c, get, stacked);
}

/** Every tensor's presence, dtype and shape, checked before any is read (so a bad checkpoint fails fast). */
function checkTensors(expected: Map<string, number[]>, ckpt: Checkpoint): void {
  const missing = ckpt.missing([...expected.keys()]);
  if (missing.length) throw new MlaError(`checkpoint ${ckpt.dir} is missing ${missing.length} tensor(s): ${listNames(missing)}`);
  for (const [name, shape] of expected) {
    const { dtype, shape: got } = ckpt.info(name);
    if (!LOADABLE_DTYPES.has(dtype)) {
      const hint = dtype.startsWith("F8") ? " (an FP8 release: convert it to BF16 first, e.g. with DeepSeek's fp8_cast_bf16.py)" : "";
      throw new MlaError(`tensor ${name} has dtype ${dtype}, which mla-ts does not support (F32, BF16, F16, F64)${hint}`);
    }
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new MlaError(`tensor ${name} has shape [${got.join(", ")}] but config.json implies [${shape.join(", ")}]`);
    }
  }
}

interface ReadTensors {
  readonly get: (name: string) => Tensor;
  /** The stacked matrix whose first part is `first`, when the backend stacked it. */
  readonly stacked: (first: string) => Tensor | undefined;
}

/** Read every expected tensor, matrices through `prepare` (the backend's upload/quantization hook). */
function readTensors(c: ModelConfig, ckpt: Checkpoint, onProgress?: LoadProgress, prepare?: (w: Tensor) => Tensor): ReadTensors {
  const expected = expectedTensors(c);
  checkTensors(expected, ckpt);
  const names = [...expected.keys()];
  // One tensor at a time, so a backend that copies or quantizes weights never holds two copies of the model.
  const total = ckpt.totalBytes(names);
  const t = new Map<string, Tensor>();
  const stacked = new Map<string, Tensor>();
  const pairs = prepare ? stackedPairs(c) : new Map<string, string>();
  const second = new Set(pairs.values());
  let done = 0;
  const progress = (name: string) => {
    done += ckpt.info(name).end - ckpt.info(name).begin;
    onProgress?.(done, total, name);
  };
  for (const name of names) {
    if (second.has(name)) continue; // loaded with its partner
    const w = ckpt.load(name);
    const partner = pairs.get(name);
    if (partner && ckpt.info(partner).dtype === ckpt.info(name).dtype) {
      // Two matrices that read the same input are stacked into one, so a decode step streams them in one call.
      const both = prepare!(concatRows(w, ckpt.load(partner)));
      const rows = w.shape[0];
      stacked.set(name, both);
      t.set(name, sliceRows(both, 0, rows));
      t.set(partner, sliceRows(both, rows, both.shape[0]));
      progress(name);
      progress(partner);
      continue;
    }
    t.set(name, prepare && isMatmulWeight(c, name) ? prepare(w) : w);
    progress(name);
    if (partner) {
      t.set(partner, prepare!(ckpt.load(partner)));
      progress(partner);
    }
  }
  return { get: (name) => t.get(name)!, stacked: (name) => stacked.get(name) };
}

/**
 * Matrices applied to the same input, which a backend may stack: the query and latent down-projections
 * (q_a_proj or q_proj with kv_a_proj_with_mqa) and every MLP's gate_proj with up_proj. first -> second.
 * (GQA's q/k/v are three products of different widths; only its MLP pair is stacked.)
 */
function stackedPairs(c: ModelConfig): Map<string, string> {
  const pairs = new Map<string, string>();
  const mlp = (p: string) => pairs.set(`${p}gate_proj.weight`, `${p}up_proj.weight`);
  if (c.attention === "gqa") {
    for (let i = 0; i < c.numLayers; i++) mlp(`model.layers.${i}.mlp.`);
    return pairs;
  }
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}.`, a = `${p}self_attn.`;
    pairs.set(c.qLoraRank ? `${a}q_a_proj.weight` : `${a}q_proj.weight`, `${a}kv_a_proj_with_mqa.weight`);
    if (!isMoeLayer(c, i)) mlp(`${p}mlp.`);
    else {
      for (let e = 0; e < c.nRoutedExperts; e++) mlp(`${p}mlp.experts.${e}.`);
      if (c.nSharedExperts) mlp(`${p}mlp.shared_experts.`);
    }
  }
  return pairs;
}

/** A SwiGLU MLP's weights under prefix p (gate/up stacked when the loader stacked them). */
function mlpWeights(p: string, get: (name: string) => Tensor, stacked: (first: string) => Tensor | undefined): MlpWeights {
  return {
    gate: get(`${p}gate_proj.weight`), up: get(`${p}up_proj.weight`), down: get(`${p}down_proj.weight`),
    gateUp: stacked(`${p}gate_proj.weight`),
  };
}

/** The final norm, embedding and lm_head (the embedding when tied) around a family's layers. */
function decoderWeights<L>(c: ModelConfig, get: (name: string) => Tensor, layers: L[]): DecoderWeights<L> {
  const embed = get("model.embed_tokens.weight");
  return { embed, layers, norm: toF32(get("model.norm.weight")), lmHead: c.tieWordEmbeddings ? embed : get("lm_head.weight") };
}

/** Llama-family weights from named tensors (`get` as loaded; biases widened to F32). */
export function assembleLlama(c: ModelConfig, get: (name: string) => Tensor, stacked: (first: string) => Tensor | undefined = () => undefined): LlamaWeights {
  const bias = (name: string, on: boolean) => (on ? toF32(get(name)) : undefined);
  const layers: LlamaLayerWeights[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}.`, a = `${p}self_attn.`;
    layers.push({
      inputNorm: toF32(get(`${p}input_layernorm.weight`)),
      postNorm: toF32(get(`${p}post_attention_layernorm.weight`)),
      attn: {
        q: get(`${a}q_proj.weight`), k: get(`${a}k_proj.weight`), v: get(`${a}v_proj.weight`), o: get(`${a}o_proj.weight`),
        qBias: bias(`${a}q_proj.bias`, c.qkvBias), kBias: bias(`${a}k_proj.bias`, c.qkvBias),
        vBias: bias(`${a}v_proj.bias`, c.qkvBias), oBias: bias(`${a}o_proj.bias`, c.oBias),
      },
      mlp: mlpWeights(`${p}mlp.`, get, stacked),
    });
  }
  return decoderWeights(c, get, layers);
}

/** DeepSeek weights from named tensors. */
export function assemble(c: ModelConfig, get: (name: string) => Tensor, stacked: (first: string) => Tensor | undefined = () => undefined): ModelWeights {
  const mlp = (p: string): MlpWeights => mlpWeights(p, get, stacked);
  const layers: LayerWeights[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}.`, a = `${p}self_attn.`;
    const attn: MlaWeights = c.qLoraRank
      ? { qA: get(`${a}q_a_proj.weight`), qANorm: toF32(get(`${a}q_a_layernorm.weight`)), qB: get(`${a}q_b_proj.weight`), qkvA: stacked(`${a}q_a_proj.weight`), ...kv(a) }
      : { q: get(`${a}q_proj.weight`), qkvA: stacked(`${a}q_proj.weight`), ...kv(a) };
    const moe = isMoeLayer(c, i);
    layers.push({
      inputNorm: toF32(get(`${p}input_layernorm.weight`)),
      postNorm: toF32(get(`${p}post_attention_layernorm.weight`)),
      attn,
      mlp: moe ? null : mlp(`${p}mlp.`),
      moe: moe
        ? {
            gate: toF32(get(`${p}mlp.gate.weight`)),
            scoreBias: c.modelType === "deepseek_v3" ? toF32(get(`${p}mlp.gate.e_score_correction_bias`)) : null,
            experts: Array.from({ length: c.nRoutedExperts }, (_, e) => mlp(`${p}mlp.experts.${e}.`)),
            shared: c.nSharedExperts ? mlp(`${p}mlp.shared_experts.`) : null,
          }
        : null,
    });
  }
  function kv(a: string) {
    return {
      kvA: get(`${a}kv_a_proj_with_mqa.weight`),
      kvANorm: toF32(get(`${a}kv_a_layernorm.weight`)),
      kvB: get(`${a}kv_b_proj.weight`),
      o: get(`${a}o_proj.weight`),
    };
  }
  return decoderWeights(c, get, layers);
}
