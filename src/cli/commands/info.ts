import { describeModel, type ModelInfo } from "../../model/info.js";
import type { ModelConfig } from "../../model/config.js";
import { fmtBytes, fmtCount, table } from "../format.js";

export interface InfoOptions {
  readonly model: string;
  readonly json?: boolean;
}

export function infoCommand(opts: InfoOptions): void {
  const info = describeModel(opts.model);
  process.stdout.write(opts.json ? JSON.stringify(infoJson(info), null, 2) + "\n" : infoText(info) + "\n");
}

export function infoJson(info: ModelInfo): object {
  const c = info.config;
  return {
    model: info.dir,
    modelType: c.modelType,
    attention: c.attention,
    architecture: {
      layers: c.numLayers, hiddenSize: c.hiddenSize, vocabSize: c.vocabSize, heads: c.numHeads,
      ...(c.attention === "mla" ? mlaArchitecture(c) : gqaArchitecture(c)),
      maxPositionEmbeddings: c.maxPositionEmbeddings, rope: c.rope,
      moe: c.nRoutedExperts
        ? { layers: info.moeLayers, routedExperts: c.nRoutedExperts, sharedExperts: c.nSharedExperts, expertsPerToken: c.numExpertsPerTok, groups: c.nGroup, topkGroup: c.topkGroup }
        : null,
    },
    parameters: info.parameters,
    activeParameters: info.activeParameters,
    parameterDtypes: info.dtypes,
    weightBytes: info.weightBytes,
    kvCache: info.kvCache,
  };
}

function mlaArchitecture(c: ModelConfig): object {
  return { qLoraRank: c.qLoraRank, kvLoraRank: c.kvLoraRank, qkNopeHeadDim: c.qkNopeHeadDim, qkRopeHeadDim: c.qkRopeHeadDim, vHeadDim: c.vHeadDim };
}

function gqaArchitecture(c: ModelConfig): object {
  return { kvHeads: c.numKvHeads, headDim: c.headDim, qkvBias: c.qkvBias, oBias: c.oBias, slidingWindow: c.slidingWindow };
}

/** The attention line of `mla info`. */
function attentionLine(c: ModelConfig): string {
  if (c.attention === "mla") {
    return `MLA: d_c ${c.kvLoraRank}, d_h^R ${c.qkRopeHeadDim}, d_h ${c.qkNopeHeadDim}, d_v ${c.vHeadDim}, ` +
      (c.qLoraRank ? `q compressed to ${c.qLoraRank}` : "q uncompressed");
  }
  const kind = c.numKvHeads === c.numHeads ? "MHA" : c.numKvHeads === 1 ? "MQA" : "GQA";
  const biases = c.oBias ? ", q/k/v/o biases" : c.qkvBias ? ", q/k/v biases" : "";
  const window = c.slidingWindow ? `, sliding window ${c.slidingWindow}` : "";
  return `${kind}: ${c.numKvHeads} K/V heads for ${c.numHeads} query heads, head_dim ${c.headDim}, RoPE by halves${biases}${window}`;
}

function ropeLine(c: ModelConfig): string {
  const r = c.rope;
  if (r.type === "yarn") return `YaRN x${r.factor} from ${r.originalMaxPositionEmbeddings}, theta ${r.theta}`;
  if (r.type === "llama3") return `llama3 x${r.factor} from ${r.originalMaxPositionEmbeddings} (low ${r.lowFreqFactor}, high ${r.highFreqFactor}), theta ${r.theta}`;
  if (r.type === "linear") return `linear x${r.factor}, theta ${r.theta}`;
  return `plain, theta ${r.theta}`;
}

export function infoText(info: ModelInfo): string {
  const c = info.config, kv = info.kvCache;
  const moe = c.nRoutedExperts
    ? `MoE in ${info.moeLayers} of ${c.numLayers} layers: ${c.nRoutedExperts} routed experts (top ${c.numExpertsPerTok}` +
      `${c.nGroup > 1 ? `, ${c.topkGroup} of ${c.nGroup} groups` : ""}), ${c.nSharedExperts} shared`
    : "dense SwiGLU";
  const lines = [
    `model        ${info.dir} (${c.modelType})`,
    `shape        ${c.numLayers} layers, hidden ${c.hiddenSize}, ${c.numHeads} heads, vocab ${c.vocabSize}, context ${c.maxPositionEmbeddings}`,
    `attention    ${attentionLine(c)}`,
    `rope         ${ropeLine(c)}`,
    `ffn          ${moe}`,
    `parameters   ${fmtCount(info.parameters)}${c.nRoutedExperts ? ` (${fmtCount(info.activeParameters)} active per token)` : ""}, ` +
      `${Object.entries(info.dtypes).map(([d, n]) => `${d} ${fmtCount(n)}`).join(", ")}, ${fmtBytes(info.weightBytes)}`,
    "",
    c.attention === "mla"
      ? `KV cache per token (${kv.dtype} cache, ${kv.layers} layers), MHA/GQA/MQA with the same heads and identical scores:`
      : `KV cache per token (${kv.dtype} cache, ${kv.layers} layers): this model caches K and V of ${kv.model.kvHeads} head(s), ` +
        `${kv.model.elementsPerTokenPerLayer} (${kv.model.formula}) numbers per layer, ${fmtBytes(kv.model.bytesPerToken)} per token; MHA/GQA/MQA with the same heads:`,
  ];
  return lines.join("\n") + "\n" + table(cacheRows(info));
}

/** MLA, MHA, GQA, MQA rows, each with its size relative to the cache this model keeps. */
function cacheRows(info: ModelInfo): string[][] {
  const kv = info.kvCache, mla = info.config.attention === "mla";
  const rows = [["", "cached heads", "elements/layer", "bytes/layer", "bytes/token (model)", mla ? "x MLA" : "x this model"]];
  for (const f of [kv.mla, kv.mha, kv.gqa, kv.mqa]) {
    if (!f) continue;
    rows.push([
      f.kind.toUpperCase(), f.kind === "mla" ? "latent" : String(f.kvHeads), `${f.elementsPerTokenPerLayer} (${f.formula})`,
      fmtBytes(f.bytesPerTokenPerLayer), fmtBytes(f.bytesPerToken),
      (f.elementsPerTokenPerLayer / kv.model.elementsPerTokenPerLayer).toFixed(1),
    ]);
  }
  return rows;
}
