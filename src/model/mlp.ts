import type { Tensor } from "../tensor/tensor.js";
import { cpuOps, type Ops } from "../backends/ops.js";

/** SwiGLU feed-forward: down(silu(gate(x)) * up(x)). Weights [F, D], [F, D], [D, F]. */
export interface MlpWeights {
  readonly gate: Tensor; // gate_proj
  readonly up: Tensor; //   up_proj
  readonly down: Tensor; // down_proj
}

export function mlpForward(w: MlpWeights, x: Float32Array, T: number, ops: Ops = cpuOps): Float32Array {
  const F = w.gate.shape[0], D = w.gate.shape[1];
  const g = new Float32Array(T * F), u = new Float32Array(T * F);
  ops.linear(g, x, T, D, w.gate, F);
  ops.linear(u, x, T, D, w.up, F);
  ops.siluMul(g, g, u, T * F);
  const out = new Float32Array(T * D);
  ops.linear(out, g, T, F, w.down, D);
  return out;
}
