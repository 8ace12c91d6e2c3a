import { axpy, linear } from "../backends/cpu/index.js";
import { cpuOps, type Ops } from "../backends/ops.js";
import type { Tensor } from "../tensor/tensor.js";
import { mlpForward, type MlpWeights } from "./mlp.js";
import { MlaError } from "../errors.js";
import { routeTokens, type RouterSpec, type Routing } from "./router.js";

export interface MoeWeights {
  readonly gate: Float32Array; //        mlp.gate.weight [E, D], widened to F32 (routing runs in float32)
  readonly scoreBias: Float32Array | null; // mlp.gate.e_score_correction_bias [E] (V3)
  readonly experts: readonly MlpWeights[]; // mlp.experts.{e}
  readonly shared: MlpWeights | null; // mlp.shared_experts
}

/**
 * The experts and weights of T tokens x [T, D]: router logits x W_g^T (float32), then the spec's routing. `gate`:
 * W_g as the backend prepared it (Ops.prepareExact), else the scalar product over w.gate (float64 sums in JS:
 * 0.2 ms a layer for 64 experts of 2048, 3 ms for DeepSeek-V3's 256 of 7168).
 */
export function route(spec: RouterSpec | null, w: MoeWeights, x: Float32Array, T: number, D: number, ops: Ops = cpuOps, gate?: Tensor): Routing {
  if (!spec) throw new MlaError("a mixture-of-experts layer in a model whose config has no router (n_routed_experts)");
  const E = spec.experts;
  const logits = new Float32Array(T * E);
  if (gate) ops.linear(logits, x, T, D, gate, E);
  else linear(logits, x, T, D, { dtype: "F32", shape: [E, D], data: w.gate }, E);
  return routeTokens(spec, logits, T, w.scoreBias);
}

/** W_g prepared by the backend for the router's product (once per MoE layer, at load), or undefined: the scalar one. */
export function prepareGate(w: MoeWeights, ops: Ops): Tensor | undefined {
  const D = w.experts[0].gate.shape[1];
  return ops.prepareExact?.({ dtype: "F32", shape: [w.gate.length / D, D], data: w.gate });
}

/** The routing slots (t*k + j) of each chosen expert, experts in increasing order, so each expert runs once. */
export function slotsByExpert(experts: ArrayLike<number>): [number, number[]][] {
  const byExpert = new Map<number, number[]>();
  for (let slot = 0; slot < experts.length; slot++) {
    const list = byExpert.get(experts[slot]);
    if (list) list.push(slot);
    else byExpert.set(experts[slot], [slot]);
  }
  return [...byExpert].sort((a, b) => a[0] - b[0]);
}

/**
 * out = sum_k weight_k expert_k(x) + shared(x); tokens are batched per expert so each expert runs once. gate: W_g as
 * prepareGate made it.
 */
export function moeForward(spec: RouterSpec | null, w: MoeWeights, x: Float32Array, T: number, ops: Ops = cpuOps, gate?: Tensor): Float32Array {
  const D = w.experts[0].gate.shape[1], k = spec?.topK ?? 0;
  const { experts, weights } = route(spec, w, x, T, D, ops, gate);
  const out = new Float32Array(T * D);
  for (const [e, slots] of slotsByExpert(experts)) {
    const xs = new Float32Array(slots.length * D);
    slots.forEach((slot, i) => xs.set(x.subarray(Math.floor(slot / k) * D, Math.floor(slot / k) * D + D), i * D));
    const ys = mlpForward(w.experts[e], xs, slots.length, ops);
    slots.forEach((slot, i) => axpy(out, weights[slot], ys, D, Math.floor(slot / k) * D, i * D));
  }
  if (w.shared) {
    const sh = mlpForward(w.shared, x, T, ops);
    for (let i = 0; i < T * D; i++) out[i] += sh[i];
  }
  return out;
}
