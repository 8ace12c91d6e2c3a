import type { Vec } from "./types.js";

/**
 * Backward of RMSNorm over rows of width D (src/backends/cpu/norm.ts): y = w * x * r, r = 1 / sqrt(mean(x^2) + eps).
 *   dw_i += sum_t dy_i x_i r
 *   dx_i  = r w_i dy_i - x_i r^3 / D * sum_j w_j dy_j x_j
 * dx is overwritten unless `accumulate`; dw always accumulates (null skips it). dx may alias dy (rows are
 * read fully before being written). Strides as in the forward.
 */
export function rmsNormBackward(
  dx: Vec | null, dw: Vec | null, x: Vec, w: Vec, dy: Vec, T: number, D: number, eps: number,
  accumulate = false, xStride = D, dyStride = D, dxStride = D,
): void {
  const g = new Float64Array(D);
  for (let t = 0; t < T; t++) {
    const xo = t * xStride, yo = t * dyStride, dxo = t * dxStride;
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[xo + i] * x[xo + i];
    const r = 1 / Math.sqrt(ss / D + eps);
    let dot = 0;
    for (let i = 0; i < D; i++) {
      const wd = w[i] * dy[yo + i];
      g[i] = wd;
      dot += wd * x[xo + i];
    }
    if (dw) for (let i = 0; i < D; i++) dw[i] += dy[yo + i] * x[xo + i] * r;
    if (!dx) continue;
    const c = (dot * r * r * r) / D;
    if (accumulate) for (let i = 0; i < D; i++) dx[dxo + i] += r * g[i] - c * x[xo + i];
    else for (let i = 0; i < D; i++) dx[dxo + i] = r * g[i] - c * x[xo + i];
  }
}
