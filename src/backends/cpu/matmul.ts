import { rowF32, type Tensor } from "../../tensor/tensor.js";

/**
 * Scalar reference kernels for products with a weight matrix W stored row-major [rows, K] (PyTorch Linear layout)
 * in F32, BF16 or F16. Sums run in float64 (JS numbers), so these are also the yardstick for faster kernels.
 * Each kernel can work on a band of W's rows, which is how attention reads W^UK / W^UV slices of kv_b_proj.
 */

/** Row r of W as F32, widened into `scratch` when W is not F32 (one widening per row, reused for every token). */
export function weightRow(w: Tensor, r: number, K: number, scratch: Float32Array): Float32Array {
  return rowF32(w, r, K, scratch);
}

/**
 * out[t, n] = sum_k x[t, k] * W[row0 + n, k] for t < T, n < N  (y = x W^T).
 * Rows of x and out may be strided, so a head's slice of a [T, H, d] activation can be used in place.
 */
export function linear(
  out: Float32Array, x: Float32Array, T: number, K: number, w: Tensor, N: number,
  row0 = 0, xStride = K, outStride = N,
): void {
  const scratch = new Float32Array(K);
  for (let n = 0; n < N; n++) {
    const wr = weightRow(w, row0 + n, K, scratch);
    for (let t = 0; t < T; t++) {
      const xo = t * xStride;
      let acc = 0;
      for (let k = 0; k < K; k++) acc += x[xo + k] * wr[k];
      out[t * outStride + n] = acc;
    }
  }
}

/**
 * out[t, k] = sum_n x[t, n] * W[row0 + n, k] for t < T, k < K  (y = x W, W read as [N, K] from row0).
 * Used to fold W^UK into the query: q~ = (W^UK)^T q_nope.
 */
export function linearT(
  out: Float32Array, x: Float32Array, T: number, N: number, w: Tensor, K: number,
  row0 = 0, xStride = N, outStride = K,
): void {
  const acc = new Float64Array(T * K);
  const scratch = new Float32Array(K);
  for (let n = 0; n < N; n++) {
    const wr = weightRow(w, row0 + n, K, scratch);
    for (let t = 0; t < T; t++) {
      const a = x[t * xStride + n];
      if (a === 0) continue;
      const o = t * K;
      for (let k = 0; k < K; k++) acc[o + k] += a * wr[k];
    }
  }
  for (let t = 0; t < T; t++) for (let k = 0; k < K; k++) out[t * outStride + k] = acc[t * K + k];
}
