/**
 * The numbers behind the two KV-cache charts, from the engine's own accounting (src/attention/accounting.ts,
 * src/model/info.ts): per token, this model's MLA latent cache next to MHA, GQA and MQA with the same heads and
 * the same attention scores, and the same four for DeepSeek-V3's shapes.
 */
import { compareCaches, kvCacheFootprint, type AttentionKind, type CacheFootprint } from "../../src/attention/accounting.js";
import type { ModelConfig } from "../../src/model/config.js";
import { kvCacheInfo } from "../../src/model/info.js";

export interface CacheSeries {
  readonly kind: AttentionKind;
  /** The cache the running model keeps (drawn from its state after every step); the others are computed. */
  readonly measured: boolean;
  readonly label: string;
  readonly color: string;
  /** Numbers cached per token over all layers. */
  readonly elementsPerToken: number;
  readonly bytesPerToken: number;
  /** Per token and layer, e.g. "64 + 16" or "4 x (48 + 32)". */
  readonly formula: string;
}

const COLORS: Record<AttentionKind, string> = { mla: "#d9480f", mha: "#1c7ed6", gqa: "#2f9e44", mqa: "#7048e8" };
const ORDER: AttentionKind[] = ["mla", "mqa", "gqa", "mha"];

function series(f: CacheFootprint, bytesPerElement: number, label: string, measured = false): CacheSeries {
  return {
    kind: f.kind, measured, label, color: COLORS[f.kind], formula: f.formula,
    elementsPerToken: f.elementsPerToken, bytesPerToken: f.elementsPerToken * bytesPerElement,
  };
}

function labels(kvHeads: Record<AttentionKind, number>, nHeads: number): Record<AttentionKind, string> {
  return {
    mla: "MLA latent (d_c + d_h^R)",
    mha: `MHA (${nHeads} K/V heads)`,
    gqa: `GQA (${kvHeads.gqa} K/V heads)`,
    mqa: "MQA (1 K/V head)",
  };
}

/**
 * This model's caches at F32 (what both of the page's backends store). An MLA model: its latent cache (measured)
 * and MHA, GQA and MQA with the same heads and scores. A GQA/MHA/MQA model: its own K/V cache (measured), and MHA
 * with its heads when it shares K/V heads.
 */
export function modelCaches(c: ModelConfig): CacheSeries[] {
  const info = kvCacheInfo(c, "F32");
  if (info.mla) {
    const all = { mla: info.mla, mha: info.mha, gqa: info.gqa, mqa: info.mqa };
    const l = labels({ mla: 1, mha: c.numHeads, gqa: info.gqaGroups, mqa: 1 }, c.numHeads);
    return ORDER.map((k) => series(all[k], 4, l[k], k === "mla"));
  }
  const own = info.model, kind = own.kind.toUpperCase();
  const out = [series(own, 4, `${kind} (${own.kvHeads} K/V head${own.kvHeads > 1 ? "s" : ""}, this model)`, true)];
  if (own.kind !== "mha") out.push(series(kvCacheFootprint("mha", c.numHeads, c.headDim, c.headDim, c.numLayers), 4, `MHA (${c.numHeads} K/V heads)`));
  return out;
}

/** DeepSeek-V3's attention shapes (config.json of deepseek-ai/DeepSeek-V3). */
export const V3 = {
  layers: 61, nHeads: 128, kvLoraRank: 512, qkNopeHeadDim: 128, qkRopeHeadDim: 64, vHeadDim: 128, maxContext: 163_840,
} as const;

/** V3's four caches with numbers of `bytesPerElement` bytes (2 for BF16). */
export function v3Caches(bytesPerElement: number): CacheSeries[] {
  const all = compareCaches(V3, V3.layers);
  const l = labels({ mla: 1, mha: V3.nHeads, gqa: all.gqa.kvHeads, mqa: 1 }, V3.nHeads);
  return ORDER.map((k) => series(all[k], bytesPerElement, l[k]));
}

/** 1536 -> "1.5 KiB" (binary units). */
export function formatBytes(b: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (Math.abs(b) >= 1024 && i < units.length - 1) (b /= 1024), i++;
  const digits = i === 0 ? 0 : b < 10 ? 2 : b < 100 ? 1 : 0;
  return `${Number(b.toFixed(digits))} ${units[i]}`;
}

/** 131072 -> "128K". */
export function formatTokens(n: number): string {
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024}K`;
  return n.toLocaleString("en-US");
}
