import { describeModel, WEIGHT_FORMATS, type ModelInfo, type MtpInfo } from "../../model/info.js";
import type { ModelConfig } from "../../model/config.js";
import { parseInt10 } from "../args.js";
import { parseCacheType } from "../backend.js";
import { fmtBytes, fmtCount, table } from "../format.js";

export interface InfoOptions {
  readonly model: string;
  readonly json?: boolean;
  /** --context: the sequence length the cache is sized for (default max_position_embeddings). */
  readonly context?: string;
  /** --cache-type: f32 (default), f16 or bf16. */
  readonly cacheType?: string;
}

export function infoCommand(opts: InfoOptions): void {
  const context = opts.context === undefined ? undefined : parseInt10(opts.context, "--context", 1);
  const info = describeModel(opts.model, { cacheDtype: parseCacheType(opts.cacheType), context });
  process.stdout.write(opts.json ? JSON.stringify(infoJson(info), null, 2) + "\n" : infoText(info) + "\n");
}

export function infoJson(info: ModelInfo): object {
  const c = info.config;
  return {
    model: info.dir,
    source: info.source,
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
    embeddingParameters: info.embeddingParameters,
    mtp: info.mtp,
    checkpointParameters: info.checkpointParameters,
    parameterDtypes: info.dtypes,
    weightBytes: info.weightBytes,
    formatBytes: info.formatBytes,
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
    `model        ${info.dir} (${c.modelType})${info.source === "config" ? ", sized from config.json alone (no weights read)" : ""}`,
    `shape        ${c.numLayers} layers, hidden ${c.hiddenSize}, ${c.numHeads} heads, vocab ${c.vocabSize}, context ${c.maxPositionEmbeddings}`,
    `attention    ${attentionLine(c)}`,
    `rope         ${ropeLine(c)}`,
    `ffn          ${moe}`,
    parametersLine(info),
    ...(info.mtp ? [mtpLine(info.mtp, info.checkpointParameters)] : []),
    `weights      ${Object.entries(info.formatBytes).map(([f, b]) => `${f} ${fmtBytes(b)}`).join(", ")} (every parameter at ${Object.values(WEIGHT_FORMATS).join(", ")} bits)`,
    ...(info.weightBytes === null ? [] : [
      `stored       ${Object.entries(info.dtypes).map(([d, n]) => `${d} ${fmtCount(n)}`).join(", ")}, ${fmtBytes(info.weightBytes)} on disk`,
    ]),
    "",
    c.attention === "mla"
      ? `KV cache per token (${kv.dtype} cache, ${kv.layers} layers), MHA/GQA/MQA with the same heads and identical scores:`
      : `KV cache per token (${kv.dtype} cache, ${kv.layers} layers): this model caches K and V of ${kv.model.kvHeads} head(s), ` +
        `${kv.model.elementsPerTokenPerLayer} (${kv.model.formula}) numbers per layer, ${fmtBytes(kv.model.bytesPerToken)} per token; MHA/GQA/MQA with the same heads:`,
  ];
  return lines.join("\n") + "\n" + table(cacheRows(info));
}

/** Total and active parameters; the embedding table is not active (a token reads one row of it). */
function parametersLine(info: ModelInfo): string {
  const tied = info.config.tieWordEmbeddings;
  return `parameters   ${fmtCount(info.parameters)}, ${fmtCount(info.activeParameters)} active per token ` +
    (tied ? "(the tied embedding counts as the head)" : `(the ${fmtCount(info.embeddingParameters)} embedding table not counted)`);
}

function mtpLine(m: MtpInfo, checkpointParameters: number): string {
  const stored = m.stored === null ? "" : m.stored ? ", present in these weights" : ", absent from these weights";
  return `mtp          ${m.layers} layer${m.layers > 1 ? "s" : ""} (num_nextn_predict_layers, not run): ${fmtCount(m.parameters)}, ` +
    `${fmtCount(m.activeParameters)} per token; with the embedding/head copies checkpoints store, ${fmtCount(checkpointParameters)} in all${stored}`;
}

/** MLA, MHA, GQA, MQA rows, each with its size relative to the cache this model keeps, and at the context length. */
function cacheRows(info: ModelInfo): string[][] {
  const kv = info.kvCache, mla = info.config.attention === "mla";
  const rows = [["", "cached heads", "elements/layer", "bytes/layer", "bytes/token (model)", mla ? "x MLA" : "x this model", `${kv.contextTokens} tokens`]];
  for (const f of [kv.mla, kv.mha, kv.gqa, kv.mqa]) {
    if (!f) continue;
    rows.push([
      f.kind.toUpperCase(), f.kind === "mla" ? "latent" : String(f.kvHeads), `${f.elementsPerTokenPerLayer} (${f.formula})`,
      fmtBytes(f.bytesPerTokenPerLayer), fmtBytes(f.bytesPerToken),
      (f.elementsPerTokenPerLayer / kv.model.elementsPerTokenPerLayer).toFixed(1), fmtBytes(f.bytesPerToken * kv.contextTokens),
    ]);
  }
  return rows;
}
