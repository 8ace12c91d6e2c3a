import type { Tensor } from "../tensor/tensor.js";
import { cpuOps, type Ops } from "../backends/ops.js";

/** SwiGLU feed-forward: down(silu(gate(x)) * up(x)). Weights [F, D], [F, D], [D, F]. */
export interface MlpWeights {
  readonly gate: Tensor; // gate_proj
  readonly up: Tensor; //   up_proj
  readonly down: Tensor; // down_proj
  /** gate_proj and up_proj stacked [2F, D] (when the backend asked for it): one product per decode step. */
  readonly gateUp?: Tensor;
}

export function mlpForward(w: MlpWeights, x: Float32Array, T: number, ops: Ops = cpuOps): Float32Array {
  const F = w.gate.shape[0], D = w.gate.shape[1];
  let g: Float32Array, u: Float32Array;
  if (w.gateUp && T === 1) {
    const gu = new Float32Array(2 * F);
    ops.linear(gu, x, 1, D, w.gateUp, 2 * F);
    (g = gu.subarray(0, F)), (u = gu.subarray(F));
  } else {
    (g = new Float32Array(T * F)), (u = new Float32Array(T * F));
    ops.linear(g, x, T, D, w.gateUp ?? w.gate, F);
    ops.linear(u, x, T, D, w.gateUp ?? w.up, F, w.gateUp ? F : 0);
  }
  ops.siluMul(g, g, u, T * F);
  const out = new Float32Array(T * D);
  ops.linear(out, g, T, F, w.down, D);
  return out;
}
