import { numel } from "../tensor/tensor.js";
import { compareCaches, defaultGqaGroups, kvCacheFootprint, type CacheFootprint } from "../attention/accounting.js";
import type { DType } from "../tensor/dtype.js";
import { openCheckpoint } from "./checkpoint.js";
import { isMoeLayer, type ModelConfig } from "./config.js";
import { expectedTensors, loadConfig } from "./families/index.js";


/** What `mla info` reports: read from config.json and the safetensors headers only (no weights are loaded). */
export interface ModelInfo {
  readonly dir: string;
  readonly config: ModelConfig;
  /** Parameters the decoder uses (layers beyond num_hidden_layers, e.g. V3's MTP module, excluded). */
  readonly parameters: number;
  /** Parameters touched per token: everything but the routed experts a token is not sent to. */
  readonly activeParameters: number;
  /** Parameter count by stored dtype. */
  readonly dtypes: Record<string, number>;
  readonly weightBytes: number;
  readonly moeLayers: number;
  readonly kvCache: KvCacheInfo;
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
}

export function describeModel(dir: string, cacheDtype: DType = "F32"): ModelInfo {
  const config = loadConfig(dir);
  const ckpt = openCheckpoint(dir);
  try {
    const expected = expectedTensors(config);
    const dtypes: Record<string, number> = {};
    let parameters = 0, expertParams = 0, weightBytes = 0;
    for (const name of expected.keys()) {
      if (!ckpt.has(name)) continue;
      const info = ckpt.info(name);
      const n = numel(info.shape);
      parameters += n;
      weightBytes += info.end - info.begin;
      dtypes[info.dtype] = (dtypes[info.dtype] ?? 0) + n;
      if (name.includes(".mlp.experts.")) expertParams += n;
    }
    const c = config;
    const active = c.nRoutedExperts ? parameters - expertParams + (expertParams * c.numExpertsPerTok) / c.nRoutedExperts : parameters;
    return {
      dir, config, parameters, activeParameters: Math.round(active), dtypes, weightBytes,
      moeLayers: Array.from({ length: c.numLayers }, (_, i) => isMoeLayer(c, i)).filter(Boolean).length,
      kvCache: kvCacheInfo(c, cacheDtype),
    };
  } finally {
    ckpt.close();
  }
}

/** Cache per token of the model and of its MHA/GQA/MQA counterparts (2 n_kv head_dim per layer for llama models). */
export function kvCacheInfo(c: ModelConfig, dtype: DType): KvCacheInfo {
  const gqaGroups = c.numKvHeads < c.numHeads ? c.numKvHeads : defaultGqaGroups(c.numHeads);
  const caches = compareCaches({ ...c, nHeads: c.numHeads }, c.numLayers, dtype, gqaGroups);
  if (c.attention === "mla") return { dtype, layers: c.numLayers, gqaGroups, model: caches.mla, ...caches };
  const kind = c.numKvHeads === c.numHeads ? "mha" : c.numKvHeads === 1 ? "mqa" : "gqa";
  const model = kvCacheFootprint(kind, c.numKvHeads, c.headDim, c.headDim, c.numLayers, dtype);
  return { dtype, layers: c.numLayers, gqaGroups, model, ...caches, mla: null };
}
