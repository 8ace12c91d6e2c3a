/**
 * The family registry: every model_type the engine loads, each described by one module of this folder. Loaders,
 * `mla info`, the WebGPU model and training ask here (config, tensor names, weights, router, cache layout) instead
 * of switching on model_type. docs/architecture.md says, step by step, how a family is added.
 */
import { MlaError } from "../../errors.js";
import type { Tensor } from "../../tensor/tensor.js";
import type { TensorStore } from "../tensor-store.js";
import { ggufConfigJson, isGgufPath } from "../gguf/config.js";
import { checkActivation, readConfigJson, type Json, type ModelConfig } from "../config.js";
import { checkQuantization } from "../quantization.js";
import { decoderWeights, readTensors, type LayerWeights, type LlamaLayerWeights, type LlamaWeights, type LoadProgress, type ModelWeights, type ReadTensors } from "../weights.js";
import type { ModelFamily } from "./family.js";
import { deepseekV2 } from "./deepseek-v2.js";
import { deepseekV3 } from "./deepseek-v3.js";
import { llama } from "./llama.js";
import { qwen2 } from "./qwen2.js";
import { mistral } from "./mistral.js";
import { glm4MoeLite } from "./glm4-moe-lite.js";
import { kimiK2 } from "./kimi-k2.js";
import { youtu } from "./youtu.js";
import { minicpm3 } from "./minicpm3.js";

export type { ModelFamily, TensorSource } from "./family.js";

/** Every family, in the order error messages list them. */
const FAMILIES: readonly ModelFamily[] = [deepseekV2, deepseekV3, llama, qwen2, mistral, glm4MoeLite, kimiK2, youtu, minicpm3];

/** MLA relatives the engine knows and does not run, with the reason (the registry's error lists the others). */
const REFUSED: Readonly<Record<string, string>> = {
  deepseek_v32: "DeepSeek-V3.2's sparse attention (a lightning indexer picks index_topk keys per query) is not supported",
  deepseek_v4: "DeepSeek-V4 is another architecture (compressed sparse attention, hyper-connections, hash-routed layers), not supported",
  kimi_linear: "Kimi Linear interleaves Kimi Delta Attention (linear attention) layers with its MLA layers; linear attention is not supported",
  longcat_flash: "LongCat-Flash has zero-computation experts (zero_expert_num) and its own layer layout, not supported",
  plm: "PLM's feed-forward is a ReLU² MLP (hidden_act relu2), not SwiGLU; not supported",
};

/** Every model_type mla-ts loads. */
export const MODEL_TYPES: readonly string[] = FAMILIES.map((f) => f.modelType);

/** The family of a model_type (of a parsed config, or of config.json's string). */
export function familyOf(modelType: string): ModelFamily {
  const f = FAMILIES.find((x) => x.modelType === modelType);
  if (!f && Object.hasOwn(REFUSED, modelType)) throw new MlaError(`config.json: model_type ${JSON.stringify(modelType)}: ${REFUSED[modelType]}`);
  if (!f) throw new MlaError(`config.json: model_type ${JSON.stringify(modelType)} is not supported (supported: ${MODEL_TYPES.join(", ")})`);
  return f;
}

/** Parse any supported config.json: its model_type picks the family that reads it. */
export function parseConfig(json: Json): ModelConfig {
  const modelType = json.model_type;
  const family = familyOf(typeof modelType === "string" ? modelType : JSON.stringify(modelType));
  checkActivation(json);
  checkQuantization(json);
  return family.parseConfig(json);
}

/** config.json of a checkpoint folder (or, for a GGUF path, the config its metadata describes), parsed by its family. */
export function loadConfig(dir: string): ModelConfig {
  return parseConfig(isGgufPath(dir) ? ggufConfigJson(dir) : readConfigJson(dir));
}

/**
 * The tensors this config needs, with their shapes: only layers < num_hidden_layers, so the multi-token-prediction
 * layers DeepSeek-V3 and GLM-4.7-Flash store after them (ModelConfig.mtpLayers) are never read.
 */
export function expectedTensors(c: ModelConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  m.set("model.embed_tokens.weight", [c.vocabSize, c.hiddenSize]);
  m.set("model.norm.weight", [c.hiddenSize]);
  if (!c.tieWordEmbeddings) m.set("lm_head.weight", [c.vocabSize, c.hiddenSize]);
  const f = familyOf(c.modelType);
  for (let i = 0; i < c.numLayers; i++) f.layerTensors(c, i, m);
  return m;
}

/** The expected tensors, and the family's optional ones that this checkpoint has. */
function tensorsToRead(c: ModelConfig, ckpt: TensorStore): Map<string, number[]> {
  const m = expectedTensors(c), f = familyOf(c.modelType), opt = new Map<string, number[]>();
  for (let i = 0; i < c.numLayers; i++) f.optionalTensors?.(c, i, opt);
  for (const [name, shape] of opt) if (ckpt.has(name)) m.set(name, shape);
  // a tied model whose checkpoint stores lm_head.weight anyway runs with it, as transformers does (decoderWeights)
  if (c.tieWordEmbeddings && ckpt.has("lm_head.weight")) m.set("lm_head.weight", [c.vocabSize, c.hiddenSize]);
  return m;
}

/** Matrices a backend may stack, for every layer (first -> second). */
function stackedPairs(c: ModelConfig): Map<string, string> {
  const pairs = new Map<string, string>(), f = familyOf(c.modelType);
  for (let i = 0; i < c.numLayers; i++) f.stackedPairs(c, i, pairs);
  return pairs;
}

/** A decoder's weights from named tensors, its layers as its family reads them. */
function assembleAny<L>(c: ModelConfig, t: ReadTensors): { embed: Tensor; layers: readonly L[]; norm: Float32Array; lmHead: Tensor } {
  const f = familyOf(c.modelType) as ModelFamily<L>;
  return decoderWeights(c, t, Array.from({ length: c.numLayers }, (_, i) => f.layer(c, i, t)));
}

function expectAttention(c: ModelConfig, attention: "mla" | "gqa", fn: string): void {
  if (c.attention !== attention) {
    throw new MlaError(attention === "mla"
      ? `${fn} reads MLA checkpoints (${FAMILIES.filter((x) => x.attention === "mla").map((x) => x.modelType).join(", ")}), not ${c.modelType} (use ${fn === "loadWeights" ? "loadLlamaWeights" : "assembleLlama"})`
      : `${fn} reads GQA checkpoints (${FAMILIES.filter((x) => x.attention === "gqa").map((x) => x.modelType).join(", ")}), not ${c.modelType} (use ${fn === "loadLlamaWeights" ? "loadWeights" : "assemble"})`);
  }
}

/** MLA weights from named tensors already in memory (`get`; stacked matrices when the loader made them). */
export function assemble(c: ModelConfig, get: (name: string) => Tensor, stacked: (first: string) => Tensor | undefined = () => undefined): ModelWeights {
  expectAttention(c, "mla", "assemble");
  return assembleAny<LayerWeights>(c, { get, has: () => false, stacked });
}

/** GQA (llama-layout) weights from named tensors already in memory. */
export function assembleLlama(c: ModelConfig, get: (name: string) => Tensor, stacked: (first: string) => Tensor | undefined = () => undefined): LlamaWeights {
  expectAttention(c, "gqa", "assembleLlama");
  return assembleAny<LlamaLayerWeights>(c, { get, has: () => false, stacked });
}

/** Check that every needed tensor of an MLA checkpoint is present with the right shape, then read them all. */
export function loadWeights(c: ModelConfig, ckpt: TensorStore, onProgress?: LoadProgress, prepare?: (w: Tensor) => Tensor): ModelWeights {
  expectAttention(c, "mla", "loadWeights");
  return assembleAny<LayerWeights>(c, readTensors(c, ckpt, tensorsToRead(c, ckpt), stackedPairs(c), onProgress, prepare));
}

/** The same for a GQA (llama-layout) checkpoint. */
export function loadLlamaWeights(c: ModelConfig, ckpt: TensorStore, onProgress?: LoadProgress, prepare?: (w: Tensor) => Tensor): LlamaWeights {
  expectAttention(c, "gqa", "loadLlamaWeights");
  return assembleAny<LlamaLayerWeights>(c, readTensors(c, ckpt, tensorsToRead(c, ckpt), stackedPairs(c), onProgress, prepare));
}

/** Floats per token and layer of each cache the model's decoder keeps. */
export function cacheWidths(c: ModelConfig): readonly number[] {
  return familyOf(c.modelType).cacheWidths(c);
}
