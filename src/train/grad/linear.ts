import type { Vec } from "./types.js";

/**
 * Backward of y = x W^T (src/backends/cpu/matmul.ts `linear`), x [T, K], W [N, K] row-major (F32 data), dy [T, N].
 * Rows of x, dy and dx may be strided (slices of wider activations), like the forward; a band of W's rows is
 * `w.subarray(row0 * K)` (and likewise for dW).
 */

/** dx[t, k] = sum_n dy[t, n] W[n, k]  (dx = dy W). Overwrites dx unless `accumulate`, which adds to it. */
export function linearBackwardInput(
  dx: Vec, dy: Vec, T: number, N: number, w: Vec, K: number,
  accumulate = false, dyStride = N, dxStride = K,
): void {
  const acc = new Float64Array(K);
  for (let t = 0; t < T; t++) {
    acc.fill(0);
    const yo = t * dyStride;
    for (let n = 0; n < N; n++) {
      const a = dy[yo + n];
      if (a === 0) continue;
      const wo = n * K;
      for (let k = 0; k < K; k++) acc[k] += a * w[wo + k];
    }
    const xo = t * dxStride;
    if (accumulate) for (let k = 0; k < K; k++) dx[xo + k] += acc[k];
    else for (let k = 0; k < K; k++) dx[xo + k] = acc[k];
  }
}

/** dW[n, k] += sum_t dy[t, n] x[t, k]  (dW += dy^T x). Always accumulates (gradient accumulation, shared weights). */
export function linearBackwardWeight(
  dW: Vec, dy: Vec, x: Vec, T: number, N: number, K: number,
  dyStride = N, xStride = K,
): void {
  const acc = new Float64Array(K);
  for (let n = 0; n < N; n++) {
    acc.fill(0);
    for (let t = 0; t < T; t++) {
      const a = dy[t * dyStride + n];
      if (a === 0) continue;
      const xo = t * xStride;
      for (let k = 0; k < K; k++) acc[k] += a * x[xo + k];
    }
    const wo = n * K;
    for (let k = 0; k < K; k++) dW[wo + k] += acc[k];
  }
}

/** Both gradients of y = x W^T: dx (overwritten unless `accumulate`; skipped when null) and dW (+=; skipped when null). */
export function linearBackward(
  dx: Vec | null, dW: Vec | null, x: Vec, T: number, K: number, w: Vec, N: number, dy: Vec,
  accumulate = false,
): void {
  if (dx) linearBackwardInput(dx, dy, T, N, w, K, accumulate);
  if (dW) linearBackwardWeight(dW, dy, x, T, N, K);
}
