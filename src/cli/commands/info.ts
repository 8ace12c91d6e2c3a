import { describeModel, type ModelInfo } from "../../model/info.js";
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
    architecture: {
      layers: c.numLayers, hiddenSize: c.hiddenSize, vocabSize: c.vocabSize, heads: c.numHeads,
      qLoraRank: c.qLoraRank, kvLoraRank: c.kvLoraRank, qkNopeHeadDim: c.qkNopeHeadDim, qkRopeHeadDim: c.qkRopeHeadDim,
      vHeadDim: c.vHeadDim, maxPositionEmbeddings: c.maxPositionEmbeddings, rope: c.rope,
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

export function infoText(info: ModelInfo): string {
  const c = info.config, kv = info.kvCache;
  const moe = c.nRoutedExperts
    ? `MoE in ${info.moeLayers} of ${c.numLayers} layers: ${c.nRoutedExperts} routed experts (top ${c.numExpertsPerTok}` +
      `${c.nGroup > 1 ? `, ${c.topkGroup} of ${c.nGroup} groups` : ""}), ${c.nSharedExperts} shared`
    : "dense SwiGLU";
  const rope = c.rope.type === "yarn"
    ? `YaRN x${c.rope.factor} from ${c.rope.originalMaxPositionEmbeddings}, theta ${c.rope.theta}` : `plain, theta ${c.rope.theta}`;
  const lines = [
    `model        ${info.dir} (${c.modelType})`,
    `shape        ${c.numLayers} layers, hidden ${c.hiddenSize}, ${c.numHeads} heads, vocab ${c.vocabSize}, context ${c.maxPositionEmbeddings}`,
    `attention    MLA: d_c ${c.kvLoraRank}, d_h^R ${c.qkRopeHeadDim}, d_h ${c.qkNopeHeadDim}, d_v ${c.vHeadDim}, ` +
      (c.qLoraRank ? `q compressed to ${c.qLoraRank}` : "q uncompressed"),
    `rope         ${rope}`,
    `ffn          ${moe}`,
    `parameters   ${fmtCount(info.parameters)}${c.nRoutedExperts ? ` (${fmtCount(info.activeParameters)} active per token)` : ""}, ` +
      `${Object.entries(info.dtypes).map(([d, n]) => `${d} ${fmtCount(n)}`).join(", ")}, ${fmtBytes(info.weightBytes)}`,
    "",
    `KV cache per token (${kv.dtype} cache, ${kv.layers} layers), MHA/GQA/MQA with the same heads and identical scores:`,
  ];
  const rows = [["", "cached heads", "elements/layer", "bytes/layer", "bytes/token (model)", "x MLA"]];
  for (const k of ["mla", "mha", "gqa", "mqa"] as const) {
    const f = kv[k];
    rows.push([
      k.toUpperCase(), k === "mla" ? "latent" : String(f.kvHeads), `${f.elementsPerTokenPerLayer} (${f.formula})`,
      fmtBytes(f.bytesPerTokenPerLayer), fmtBytes(f.bytesPerToken),
      (f.elementsPerTokenPerLayer / kv.mla.elementsPerTokenPerLayer).toFixed(1),
    ]);
  }
  return lines.join("\n") + "\n" + table(rows);
}
