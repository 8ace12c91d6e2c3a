import { DTYPE_BYTES, type DType } from "../tensor/dtype.js";

/** Attention variants whose KV cache we account for. */
export type AttentionKind = "mha" | "gqa" | "mqa" | "mla";

export interface CacheFootprint {
  readonly kind: AttentionKind;
  /** K/V heads cached (MLA: 1 shared latent). */
  readonly kvHeads: number;
  readonly elementsPerTokenPerLayer: number;
  readonly bytesPerTokenPerLayer: number;
  readonly elementsPerToken: number;
  readonly bytesPerToken: number;
  /** How the element count is made up, e.g. "2 x 128 x 192 + ..." */
  readonly formula: string;
}

/** Head shapes of an attention layer: per-head key width dk (incl. RoPE part) and value width dv. */
export interface HeadShape {
  readonly nHeads: number;
  readonly dk: number;
  readonly dv: number;
}

function footprint(kind: AttentionKind, kvHeads: number, perLayer: number, formula: string, layers: number, dtype: DType): CacheFootprint {
  const b = DTYPE_BYTES[dtype];
  return {
    kind, kvHeads, formula,
    elementsPerTokenPerLayer: perLayer,
    bytesPerTokenPerLayer: perLayer * b,
    elementsPerToken: perLayer * layers,
    bytesPerToken: perLayer * b * layers,
  };
}

/** Per-head K/V cache: nKv (dk + dv) numbers per token and layer (MHA 2 n_h d_h when dk = dv = d_h). */
export function kvCacheFootprint(kind: "mha" | "gqa" | "mqa", nKvHeads: number, dk: number, dv: number, layers = 1, dtype: DType = "F32"): CacheFootprint {
  return footprint(kind, nKvHeads, nKvHeads * (dk + dv), `${nKvHeads} x (${dk} + ${dv})`, layers, dtype);
}

/** MLA's latent cache: d_c + d_h^R numbers per token and layer, whatever the number of heads. */
export function latentCacheFootprint(kvLoraRank: number, ropeDim: number, layers = 1, dtype: DType = "F32"): CacheFootprint {
  return footprint("mla", 1, kvLoraRank + ropeDim, `${kvLoraRank} + ${ropeDim}`, layers, dtype);
}

/**
 * A GQA group count to compare against when a model does not define one: 8 groups (Llama-style) when the heads
 * divide evenly, else the largest divisor of nHeads below it.
 */
export function defaultGqaGroups(nHeads: number): number {
  for (let g = Math.min(8, nHeads - 1); g > 1; g--) if (nHeads % g === 0) return g;
  return 1;
}

/**
 * The cache of an MLA layer next to MHA/GQA/MQA with identical scores: MHA keeps K of n_h (d_h + d_h^R) and V of
 * n_h d_v per token (what transformers caches for DeepSeek), GQA the same with n_g heads, MQA with one.
 */
export function compareCaches(
  mla: { nHeads: number; kvLoraRank: number; qkNopeHeadDim: number; qkRopeHeadDim: number; vHeadDim: number },
  layers: number, dtype: DType = "F32", gqaGroups = defaultGqaGroups(mla.nHeads),
): Record<AttentionKind, CacheFootprint> {
  const dk = mla.qkNopeHeadDim + mla.qkRopeHeadDim, dv = mla.vHeadDim;
  return {
    mla: latentCacheFootprint(mla.kvLoraRank, mla.qkRopeHeadDim, layers, dtype),
    mha: kvCacheFootprint("mha", mla.nHeads, dk, dv, layers, dtype),
    gqa: kvCacheFootprint("gqa", gqaGroups, dk, dv, layers, dtype),
    mqa: kvCacheFootprint("mqa", 1, dk, dv, layers, dtype),
  };
}
