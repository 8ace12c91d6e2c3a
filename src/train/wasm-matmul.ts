/**
 * The three matrix products of training on the WebAssembly SIMD backend (src/backends/wasm), as drop-in
 * replacements of the scalar reference kernels in model.ts (`lin`) and ./grad/linear.ts:
 *
 *   forward         y  = x W^T        out[t, n]  = sum_k x[t, k]  W[n, k]
 *   backward input  dx = dy W         out[t, k]  = sum_n dy[t, n] W^T[k, n]     (weight = W^T, made here)
 *   backward weight dW += dy^T x      out[n, k]  = sum_t dy^T[n, t] x^T[k, t]   (x = dy^T, weight = x^T)
 *
 * Each call copies its operands into wasm memory (transposing where needed) with the reduced dimension zero-padded
 * to a multiple of 8 (the kernel's requirement), runs `WasmBackend.linear` on the worker pool and copies the result
 * back. The copies are O(operand size) against the product's O(T N K), so they are a few percent of the work for
 * training-sized batches, and parameters can stay ordinary arrays (AdamW updates them in place as before).
 *
 * Sums are float32 (SIMD lanes) where the scalar reference sums in float64, so results agree to float32 rounding.
 * Products whose padded reduced dimension would outgrow the kernel's per-thread scratch fall back to scalar code.
 */
import { MlaError } from "../errors.js";
import type { WasmBackend } from "../backends/wasm/index.js";
import { linearBackwardInput, linearBackwardWeight, type Vec } from "./grad/index.js";

/** Reduced dimensions above this go to scalar code (the kernels' per-thread scratch grows with K: ~272 K bytes). */
const MAX_K = 65528;

const pad8 = (n: number) => (n + 7) & ~7;

/** out[t, n] = sum_k x[t*xs + k] W[n, k] (float64 sums); out rows at stride os. The scalar reference. */
export function linScalar(out: Vec, x: Vec, T: number, K: number, W: Vec, N: number, xs = K, os = N): void {
  for (let t = 0; t < T; t++) {
    const xo = t * xs, oo = t * os;
    for (let n = 0; n < N; n++) {
      const wo = n * K;
      let acc = 0;
      for (let k = 0; k < K; k++) acc += x[xo + k] * W[wo + k];
      out[oo + n] = acc;
    }
  }
}

/** Training's three products, whatever runs them (TrainMatmul here, GpuTrainMatmul in ./gpu-matmul.ts). */
export interface MatmulOps {
  forward(out: Vec, x: Vec, T: number, K: number, W: Vec, N: number, xs?: number, os?: number): void;
  backwardInput(dx: Vec, dy: Vec, T: number, N: number, W: Vec, K: number, accumulate?: boolean): void;
  backwardWeight(dW: Vec, dy: Vec, x: Vec, T: number, N: number, K: number): void;
}

/** The matmuls of TrainModel: scalar JS (no backend) or WasmBackend.linear. */
export class TrainMatmul implements MatmulOps {
  constructor(readonly backend: WasmBackend | null = null) {}

  /** out[t, n] = sum_k x[t*xs + k] W[n, k] for t < T, n < N; out rows at stride os (overwritten). */
  forward(out: Vec, x: Vec, T: number, K: number, W: Vec, N: number, xs = K, os = N): void {
    const be = this.backend;
    const Kp = pad8(K);
    if (!be || Kp > MAX_K || T === 0 || N === 0) return linScalar(out, x, T, K, W, N, xs, os);
    be.reserveLinear(Kp); // before the mark: scratch that grows inside it would pin the heap
    const heap = be.heap, mark = heap.mark();
    try {
      const xw = heap.allocF32(T * Kp), ww = heap.allocF32(N * Kp), ow = heap.allocF32(T * N);
      copyRows(xw.view, Kp, x, xs, T, K);
      copyRows(ww.view, Kp, W, K, N, K);
      be.linear(ow.ptr, xw.ptr, T, Kp, { dtype: "F32", rows: N, cols: Kp, ptr: ww.ptr, scalesPtr: 0 }, N);
      const o = ow.view;
      if (os === N) out.set(o.subarray(0, T * N));
      else for (let t = 0; t < T; t++) out.set(o.subarray(t * N, (t + 1) * N), t * os);
    } finally {
      heap.release(mark);
    }
  }

  /** dx[t, k] (=, or += with accumulate) sum_n dy[t, n] W[n, k]: the input gradient of y = x W^T. */
  backwardInput(dx: Vec, dy: Vec, T: number, N: number, W: Vec, K: number, accumulate = false): void {
    const be = this.backend;
    const Np = pad8(N);
    if (!be || Np > MAX_K || T === 0 || K === 0) return linearBackwardInput(dx, dy, T, N, W, K, accumulate);
    be.reserveLinear(Np); // before the mark: scratch that grows inside it would pin the heap
    const heap = be.heap, mark = heap.mark();
    try {
      const xw = heap.allocF32(T * Np), wt = heap.allocF32(K * Np), ow = heap.allocF32(T * K);
      copyRows(xw.view, Np, dy, N, T, N);
      transposeInto(wt.view, Np, W, N, K); // W^T [K, Np]
      be.linear(ow.ptr, xw.ptr, T, Np, { dtype: "F32", rows: K, cols: Np, ptr: wt.ptr, scalesPtr: 0 }, K);
      const o = ow.view, n = T * K;
      if (accumulate) for (let i = 0; i < n; i++) dx[i] += o[i];
      else dx.set(o.subarray(0, n));
    } finally {
      heap.release(mark);
    }
  }

  /** dW[n, k] += sum_t dy[t, n] x[t, k]: the weight gradient of y = x W^T (always accumulates). */
  backwardWeight(dW: Vec, dy: Vec, x: Vec, T: number, N: number, K: number): void {
    const be = this.backend;
    const Tp = pad8(T);
    if (!be || Tp > MAX_K || N === 0 || K === 0) return linearBackwardWeight(dW, dy, x, T, N, K);
    be.reserveLinear(Tp); // before the mark: scratch that grows inside it would pin the heap
    const heap = be.heap, mark = heap.mark();
    try {
      const dyt = heap.allocF32(N * Tp), xt = heap.allocF32(K * Tp), ow = heap.allocF32(N * K);
      transposeInto(dyt.view, Tp, dy, T, N); // dy^T [N, Tp]
      transposeInto(xt.view, Tp, x, T, K); //   x^T [K, Tp]
      be.linear(ow.ptr, dyt.ptr, N, Tp, { dtype: "F32", rows: K, cols: Tp, ptr: xt.ptr, scalesPtr: 0 }, K);
      const o = ow.view, n = N * K;
      for (let i = 0; i < n; i++) dW[i] += o[i];
    } finally {
      heap.release(mark);
    }
  }
}

/** dst[r, 0..cols) = src[r*srcStride + 0..cols), dst[r, cols..dstStride) = 0, r < rows. */
function copyRows(dst: Float32Array, dstStride: number, src: Vec, srcStride: number, rows: number, cols: number): void {
  if (dstStride === cols && srcStride === cols) {
    dst.set(src.subarray(0, rows * cols));
    return;
  }
  for (let r = 0; r < rows; r++) {
    dst.set(src.subarray(r * srcStride, r * srcStride + cols), r * dstStride);
    if (dstStride > cols) dst.fill(0, r * dstStride + cols, (r + 1) * dstStride);
  }
}

/** dst [cols, dstStride] = src [rows, cols]^T, columns rows..dstStride of dst zeroed. */
function transposeInto(dst: Float32Array, dstStride: number, src: Vec, rows: number, cols: number): void {
  if (dstStride < rows) throw new MlaError("transposeInto: destination too narrow");
  for (let c = 0; c < cols; c++) {
    const o = c * dstStride;
    for (let r = 0; r < rows; r++) dst[o + r] = src[r * cols + c];
    if (dstStride > rows) dst.fill(0, o + rows, o + dstStride);
  }
}
