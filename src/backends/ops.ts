import { quantizeQ8, type Tensor } from "../tensor/tensor.js";
import { attend, linear, rmsNorm, siluMul, type KvView } from "./cpu/index.js";

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
  /** Storage for a KV/latent cache of n floats (a backend may place it in its own memory). */
  allocCache(n: number): Float32Array;
  /** out[t, n] = sum_k x[t, k] W[row0 + n, k]  (see backends/cpu/matmul.ts). */
  linear(out: Float32Array, x: Float32Array, T: number, K: number, w: Tensor, N: number, row0?: number, xStride?: number, outStride?: number): void;
  /** One token through G row blocks of W: out[g*og + n] = sum_k x[g*xg + k] W[row0 + g*gs + n, k] (per-head products). */
  linearGrouped(out: Float32Array, x: Float32Array, G: number, K: number, w: Tensor, N: number, xg: number, og: number, row0?: number, gs?: number): void;
  rmsNorm(out: Float32Array, x: Float32Array, T: number, D: number, w: Float32Array, eps: number, xStride?: number, outStride?: number): void;
  siluMul(out: Float32Array, gate: Float32Array, up: Float32Array, n: number): void;
  /** Causal attention (see backends/cpu/attention.ts). */
  attend(out: Float32Array, q: Float32Array, T: number, H: number, dk: number, k: KvView, v: KvView, dv: number, Hkv: number, L: number, scale: number): void;
}

/** The scalar reference kernels: plain JS, float64 sums. Correct everywhere, slow. */
export const cpuOps: Ops = {
  name: "cpu-scalar",
  threads: 1,
  prepare: (w) => w,
  allocCache: (n) => new Float32Array(n),
  linear, rmsNorm, siluMul, attend,
  linearGrouped(out, x, G, K, w, N, xg, og, row0 = 0, gs = N) {
    for (let g = 0; g < G; g++) linear(out.subarray(g * og), x.subarray(g * xg), 1, K, w, N, row0 + g * gs);
  },
};

/** The scalar kernels with weight matrices quantized to Q8 at load (rows whose length is a multiple of 32). */
export const cpuOpsQ8: Ops = {
  ...cpuOps,
  name: "cpu-scalar, q8",
  prepare: (w) => (w.shape.length === 2 && w.shape[1] % 32 === 0 ? quantizeQ8(w) : w),
};
