/**
 * What `mla info` reports. Sizes come from the shapes the family registry gives for config.json alone (parameters,
 * active parameters per token, the MTP modules, weight bytes at common formats, cache per token), so a model can
 * be sized before its weights are downloaded. When weights are present their headers add the stored dtypes and
 * on-disk bytes; no tensor is read either way.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { MlaError } from "../errors.js";
import { numel } from "../tensor/tensor.js";
import { compareCaches, defaultGqaGroups, kvCacheFootprint, type CacheFootprint } from "../attention/accounting.js";
import type { DType } from "../tensor/dtype.js";
import { openCheckpoint } from "./checkpoint.js";
import { isMoeLayer, readConfigJson, type Json, type ModelConfig } from "./config.js";
import { ggufConfigJson, isGgufPath } from "./gguf/config.js";
import { expectedTensors, familyOf, parseConfig } from "./families/index.js";

/** Bits per weight of the formats `mla info` sizes the weights at (Q8_0: 32 int8 + an f16 scale per block; Q4_K: 4.5). */
export const WEIGHT_FORMATS = { BF16: 16, Q8_0: 8.5, Q4_K: 4.5 } as const;
export type WeightFormat = keyof typeof WEIGHT_FORMATS;

/** What `mla info` reports: computed from config.json's shapes; dtypes and on-disk bytes from the weight headers. */
export interface ModelInfo {
  readonly dir: string;
  /** "weights": safetensors or GGUF headers were read too; "config": config.json alone. */
  readonly source: "weights" | "config";
  readonly config: ModelConfig;
  /** Parameters of the decoder that runs (layers < num_hidden_layers), embedding and head included; MTP excluded. */
  readonly parameters: number;
  /**
   * Parameters a token multiplies with: all but the routed experts it is not sent to, and the input embedding
   * table (a token reads one row of it; a tied table is the head, so it counts). DeepSeek counts so: V3's 36.6B
   * activated parameters include the 0.9B head and not the 0.9B embedding (README_WEIGHTS.md).
   */
  readonly activeParameters: number;
  /** model.embed_tokens (num_embeddings x hidden_size). */
  readonly embeddingParameters: number;
  /** The multi-token-prediction modules (num_nextn_predict_layers); null when the config has none. */
  readonly mtp: MtpInfo | null;
  /** What a full checkpoint holds: parameters + MTP modules + the embedding/head copies stored with them. */
  readonly checkpointParameters: number;
  /** Parameter count by stored dtype ({} from config.json alone). */
  readonly dtypes: Record<string, number>;
  /** On-disk bytes of the tensors the decoder reads (null from config.json alone). */
  readonly weightBytes: number | null;
  /** The decoder's weights at each format, every parameter at the format's bits per weight. */
  readonly formatBytes: Record<WeightFormat, number>;
  readonly moeLayers: number;
  readonly kvCache: KvCacheInfo;
}

/**
 * DeepSeek-V3's MTP module (README_WEIGHTS.md; llama.cpp's NEXTN tensors): one more decoder layer, numbered after
 * the last, plus enorm and hnorm (RMSNorm of the embedding and of the hidden state), eh_proj [D, 2D] (their
 * concatenation back to D) and shared_head.norm. Its embedding and head are the main model's, but checkpoints store
 * a copy of each under the layer (embed_tokens, shared_head.head). mla-ts does not run these layers.
 */
export interface MtpInfo {
  readonly layers: number;
  /** Unique parameters of the modules (the shared embedding and head not counted). */
  readonly parameters: number;
  /** Of those, what one token's pass through them multiplies with (chosen experts only); the shared head runs too. */
  readonly activeParameters: number;
  /** The embed_tokens and shared_head.head copies the checkpoint stores per module. */
  readonly sharedCopies: number;
  /** Whether the checkpoint holds the modules (eh_proj of each); null from config.json alone. */
  readonly stored: boolean | null;
}

/**
 * The cache this model keeps per token (`model`) next to MHA/GQA/MQA with the same heads and scores; `mla` is the
 * latent cache of an MLA model, null for a GQA model (which has no latent to compare).
 */
export interface KvCacheInfo {
  readonly dtype: DType;
  readonly layers: number;
  readonly gqaGroups: number;
  readonly model: CacheFootprint;
  readonly mla: CacheFootprint | null;
  readonly mha: CacheFootprint;
  readonly gqa: CacheFootprint;
  readonly mqa: CacheFootprint;
  /** Tokens `bytesAtContext` is given for (default: max_position_embeddings). */
  readonly contextTokens: number;
  /** Bytes of each cache for one sequence of contextTokens tokens (mla null for a GQA model). */
  readonly bytesAtContext: { readonly model: number; readonly mla: number | null; readonly mha: number; readonly gqa: number; readonly mqa: number };
}

export interface DescribeOptions {
  /** Cache element type (default F32, the engine's default cache). */
  readonly cacheDtype?: DType;
  /** Sequence length the cache is sized for (default max_position_embeddings). */
  readonly context?: number;
}

/**
 * `mla info` of a model path: a checkpoint folder, a GGUF file (or a folder holding one), a folder with only
 * config.json, or a config.json path. The last two are sized from the shapes alone.
 */
export function describeModel(path: string, opts: DescribeOptions | DType = {}): ModelInfo {
  const o = typeof opts === "string" ? { cacheDtype: opts } : opts;
  const src = modelSource(path);
  const config = parseConfig(src.json);
  const sizes = describeConfig(config, { ...o, dir: path });
  return src.weights ? { ...sizes, ...storedWeights(path, config, sizes.mtp) } : sizes;
}

export interface DescribeConfigOptions extends DescribeOptions {
  /** What ModelInfo.dir says. */
  readonly dir?: string;
}

/** Everything `mla info` computes from a parsed config alone (source "config"). */
export function describeConfig(config: ModelConfig, opts: DescribeConfigOptions = {}): ModelInfo {
  const c = config, counts = countShapes(c, expectedTensors(c));
  const embedding = c.vocabSize * c.hiddenSize;
  // a token reads one row of an untied embedding table; a tied one is also the head, which reads all of it
  const active = counts.active - (c.tieWordEmbeddings ? 0 : embedding);
  const mtp = c.mtpLayers ? mtpInfo(c, c.mtpLayers) : null;
  const formatBytes = Object.fromEntries(
    Object.entries(WEIGHT_FORMATS).map(([f, bits]) => [f, Math.ceil((counts.total * bits) / 8)]),
  ) as Record<WeightFormat, number>;
  return {
    dir: opts.dir ?? "", source: "config", config: c,
    parameters: counts.total, activeParameters: active, embeddingParameters: embedding, mtp,
    checkpointParameters: counts.total + (mtp ? mtp.parameters + mtp.sharedCopies : 0),
    dtypes: {}, weightBytes: null, formatBytes,
    moeLayers: Array.from({ length: c.numLayers }, (_, i) => isMoeLayer(c, i)).filter(Boolean).length,
    kvCache: kvCacheInfo(c, opts.cacheDtype ?? "F32", opts.context),
  };
}

/** Total and per-token parameters of named shapes: a routed expert is active for k of its n_routed_experts tokens. */
function countShapes(c: ModelConfig, shapes: ReadonlyMap<string, readonly number[]>): { total: number; active: number } {
  let total = 0, routed = 0;
  for (const [name, shape] of shapes) {
    const n = numel(shape);
    total += n;
    if (name.includes(".mlp.experts.")) routed += n;
  }
  // each MoE layer has n_routed_experts experts of one size, so routed / n_routed_experts is exact: one expert per layer
  const idle = routed && (routed / c.nRoutedExperts) * (c.nRoutedExperts - c.numExpertsPerTok);
  return { total, active: total - idle };
}

/** The MTP modules' tensors (see MtpInfo): layers num_hidden_layers.. as the family lays a layer out, plus their own. */
export function mtpTensors(c: ModelConfig, layers: number): Map<string, number[]> {
  const m = new Map<string, number[]>(), f = familyOf(c.modelType), D = c.hiddenSize, L = c.numLayers;
  // a per-layer list (mlp_layer_types) stops at num_hidden_layers: an MTP layer is MoE when the model has experts
  // (DeepSeek-V3's and GLM-4.5's are)
  const cm = c.moeLayers ? { ...c, moeLayers: Array.from({ length: L + layers }, (_, i) => c.moeLayers?.[i] ?? c.nRoutedExperts > 0) } : c;
  for (let i = L; i < L + layers; i++) {
    f.layerTensors(cm, i, m);
    const p = `model.layers.${i}.`;
    m.set(`${p}enorm.weight`, [D]);
    m.set(`${p}hnorm.weight`, [D]);
    m.set(`${p}eh_proj.weight`, [D, 2 * D]);
    m.set(`${p}shared_head.norm.weight`, [D]);
  }
  return m;
}

function mtpInfo(c: ModelConfig, layers: number): MtpInfo {
  const counts = countShapes(c, mtpTensors(c, layers));
  // embed_tokens and shared_head.head, each [vocab_size, hidden_size], per module
  const sharedCopies = layers * 2 * c.vocabSize * c.hiddenSize;
  return { layers, parameters: counts.total, activeParameters: counts.active, sharedCopies, stored: null };
}

/** Cache per token of the model and of its MHA/GQA/MQA counterparts (2 n_kv head_dim per layer for llama models). */
export function kvCacheInfo(c: ModelConfig, dtype: DType, context = c.maxPositionEmbeddings): KvCacheInfo {
  if (!Number.isInteger(context) || context < 1) throw new MlaError(`context must be a positive integer, got ${context}`);
  const gqaGroups = c.numKvHeads < c.numHeads ? c.numKvHeads : defaultGqaGroups(c.numHeads);
  const caches = compareCaches({ ...c, nHeads: c.numHeads }, c.numLayers, dtype, gqaGroups);
  const kind = c.numKvHeads === c.numHeads ? "mha" : c.numKvHeads === 1 ? "mqa" : "gqa";
  const model = c.attention === "mla" ? caches.mla : kvCacheFootprint(kind, c.numKvHeads, c.headDim, c.headDim, c.numLayers, dtype);
  const mla = c.attention === "mla" ? caches.mla : null;
  const at = (f: CacheFootprint) => f.bytesPerToken * context;
  return {
    dtype, layers: c.numLayers, gqaGroups, model, mla, mha: caches.mha, gqa: caches.gqa, mqa: caches.mqa,
    contextTokens: context,
    bytesAtContext: { model: at(model), mla: mla && at(mla), mha: at(caches.mha), gqa: at(caches.gqa), mqa: at(caches.mqa) },
  };
}

interface ModelSource {
  readonly json: Json;
  /** Whether weight headers can be read (a GGUF, or a folder with safetensors files or their index). */
  readonly weights: boolean;
}

function modelSource(path: string): ModelSource {
  if (isGgufPath(path)) return { json: ggufConfigJson(path), weights: true };
  if (existsSync(path) && statSync(path).isFile()) return { json: readJsonFile(path), weights: false };
  const json = readConfigJson(path);
  return { json, weights: readdirSync(path).some((f) => f.endsWith(".safetensors") || f === "model.safetensors.index.json") };
}

/** A config.json given by its path. */
function readJsonFile(path: string): Json {
  if (!path.endsWith(".json")) throw new MlaError(`${path} is a file: give a model folder, a .gguf file or a config.json`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new MlaError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new MlaError(`${path} is not a JSON object`);
  return json as Json;
}

/** Stored dtypes and on-disk bytes of the tensors the decoder reads, from the checkpoint's headers. */
function storedWeights(path: string, c: ModelConfig, mtp: MtpInfo | null): Pick<ModelInfo, "source" | "dtypes" | "weightBytes" | "mtp"> {
  const ckpt = openCheckpoint(path);
  try {
    const dtypes: Record<string, number> = {};
    let weightBytes = 0;
    for (const name of expectedTensors(c).keys()) {
      if (!ckpt.has(name)) continue;
      const info = ckpt.info(name);
      weightBytes += info.end - info.begin;
      dtypes[info.fileDtype ?? info.dtype] = (dtypes[info.fileDtype ?? info.dtype] ?? 0) + numel(info.shape);
    }
    const stored = mtp && Array.from({ length: mtp.layers }, (_, j) => ckpt.has(`model.layers.${c.numLayers + j}.eh_proj.weight`)).every(Boolean);
    return { source: "weights", dtypes, weightBytes, mtp: mtp && { ...mtp, stored: stored === true } };
  } finally {
    ckpt.close();
  }
}
