import { quantizeQ8, type Tensor } from "../tensor/tensor.js";
import type { BlockDType } from "../tensor/dtype.js";
import { quantizeTarget, quantizeTensor } from "../tensor/ggml-quantize.js";
import {
  allocCacheData, attend, attendLatent, linear, rmsNorm, siluMul, type CacheData, type CacheDType, type KvView, type LatentRows,
} from "./cpu/index.js";

export type { LatentRows } from "./cpu/index.js";

/**
 * The kernels a model runs on, so the same layer code drives every backend. Activations are Float32Arrays;
 * weights are whatever `prepare` returned for them at load time (the backend may copy them into its own memory
 * or quantize them).
 */
export interface Ops {
  readonly name: string;
  /** Threads the kernels run on. */
  readonly threads: number;
  /** Make a weight matrix ready for this backend (called once per matrix at load). */
  prepare(w: Tensor): Tensor;
  /**
   * Optional: as `prepare`, but never quantized (the MoE router's gate, whose logits pick the experts, stays in
   * float32 as transformers computes it). Without it, such products run on the scalar kernels.
   */
  prepareExact?(w: Tensor): Tensor;
  /**
   * Storage for a KV/latent cache of n values (a backend may place it in its own memory): floats, or 16-bit words
   * (a Uint16Array) for an F16/BF16 cache.
   */
  allocCache(n: number): Float32Array;
  allocCache(n: number, dtype: CacheDType): CacheData;
  /** out[t, n] = sum_k x[t, k] W[row0 + n, k]  (see backends/cpu/matmul.ts). */
  linear(out: Float32Array, x: Float32Array, T: number, K: number, w: Tensor, N: number, row0?: number, xStride?: number, outStride?: number): void;
  /**
   * Per-head products: T tokens (default 1) through G row blocks of W,
   * out[t*outStride + g*og + n] = sum_k x[t*xStride + g*xg + k] W[row0 + g*gs + n, k]. Elements between the written
   * rows of out keep their values.
   */
  linearGrouped(out: Float32Array, x: Float32Array, G: number, K: number, w: Tensor, N: number, xg: number, og: number, row0?: number, gs?: number, T?: number, xStride?: number, outStride?: number): void;
  rmsNorm(out: Float32Array, x: Float32Array, T: number, D: number, w: Float32Array, eps: number, xStride?: number, outStride?: number): void;
  siluMul(out: Float32Array, gate: Float32Array, up: Float32Array, n: number): void;
  /** Causal attention (see backends/cpu/attention.ts). */
  attend(out: Float32Array, q: Float32Array, T: number, H: number, dk: number, k: KvView, v: KvView, dv: number, Hkv: number, L: number, scale: number): void;
  /**
   * Optional: the absorbed-MLA decode attention of n sequences in one call. Sequence i's query q[i] ([H, w] of
   * q [n, H, w]) attends over all rows of its own latent cache rows[i] (row = [c_KV (dc) | k_rope], w floats) and
   * writes out[i] ([H, dc] of out [n, H, dc]); each result must equal `attend` on that sequence alone. Without it,
   * models call `attend` once per sequence (see attendLatentRows).
   */
  attendLatentMany?(out: Float32Array, q: Float32Array, H: number, w: number, dc: number, rows: readonly LatentRows[], scale: number): void;
}

/** ops.attendLatentMany when the backend has it, else `attend` per sequence. */
export function attendLatentRows(ops: Ops, out: Float32Array, q: Float32Array, H: number, w: number, dc: number, rows: readonly LatentRows[], scale: number): void {
  if (ops.attendLatentMany) ops.attendLatentMany(out, q, H, w, dc, rows, scale);
  else attendLatentEach(ops, out, q, H, w, dc, rows, scale);
}

/**
 * The absorbed decode of each sequence through `attend`: MQA with the latent row as key and its c_KV prefix as value.
 * 16-bit rows go to the scalar latent kernel, which reads them as stored (`attend` takes floats).
 */
export function attendLatentEach(ops: Pick<Ops, "attend">, out: Float32Array, q: Float32Array, H: number, w: number, dc: number, rows: readonly LatentRows[], scale: number): void {
  rows.forEach((c, i) => {
    const o = out.subarray(i * H * dc, (i + 1) * H * dc), qi = q.subarray(i * H * w, (i + 1) * H * w);
    if (!(c.data instanceof Float32Array)) return attendLatent(o, qi, H, w, dc, c, scale);
    const view = { data: c.data, offset: 0, rowStride: c.width, headStride: 0 };
    ops.attend(o, qi, 1, H, w, view, view, dc, 1, c.length, scale);
  });
}

/** The scalar reference kernels: plain JS, float64 sums. Correct everywhere, slow. */
export const cpuOps: Ops = {
  name: "cpu-scalar",
  threads: 1,
  prepare: (w) => w,
  allocCache: allocCacheData,
  linear, rmsNorm, siluMul, attend,
  linearGrouped(out, x, G, K, w, N, xg, og, row0 = 0, gs = N, T = 1, xStride = 0, outStride = 0) {
    for (let g = 0; g < G; g++) linear(out.subarray(g * og), x.subarray(g * xg), T, K, w, N, row0 + g * gs, xStride || K, outStride || N);
  },
};

/** The scalar kernels with weight matrices quantized to Q8 at load (rows whose length is a multiple of 32). */
export const cpuOpsQ8: Ops = {
  ...cpuOps,
  name: "cpu-scalar, q8",
  prepare: (w) => (w.shape.length === 2 && w.shape[1] % 32 === 0 ? quantizeQ8(w) : w),
};

/**
 * The scalar kernels with float weight matrices quantized at load to `type` (quantizeTarget: rows that do not divide
 * its block fall back to Q8, then to the float weights). "q8" is cpuOpsQ8.
 */
export function cpuOpsQuant(type: "q8" | BlockDType): Ops {
  if (type === "q8") return cpuOpsQ8;
  return {
    ...cpuOps,
    name: `cpu-scalar, ${type.toLowerCase()}`,
    prepare: (w) => {
      const to = quantizeTarget(type, w);
      return to ? quantizeTensor(w, to) : w;
    },
  };
}
