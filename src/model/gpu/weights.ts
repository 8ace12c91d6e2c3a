/**
 * A decoder's weights on the GPU: the CPU-loaded structs (src/model/weights.ts) uploaded once, matrices in their
 * stored dtype (GGML's blocks kept packed; the backend splits one past a buffer's limit into parts of whole rows,
 * experts into whole experts), norm vectors and biases as F32. MoE router gates stay on the CPU (routing runs there).
 */
import type { Tensor } from "../../tensor/tensor.js";
import type { WebGpuBackend, GpuWeight } from "../../backends/webgpu/backend.js";
import type { LayerWeights, LlamaLayerWeights, DecoderWeights } from "../weights.js";
import type { MlpWeights } from "../mlp.js";
import type { MoeWeights } from "../moe.js";

export interface GpuMlp {
  readonly gate: GpuWeight;
  readonly up: GpuWeight;
  readonly down: GpuWeight;
}

/** The MLA query path on the GPU: through c_Q (q_lora) or one plain projection. */
export type GpuMlaQuery =
  | { readonly kind: "lora"; readonly qA: GpuWeight; readonly qANorm: GPUBuffer; readonly qB: GpuWeight }
  | { readonly kind: "direct"; readonly q: GpuWeight };

export interface GpuMla {
  readonly kind: "mla";
  readonly query: GpuMlaQuery;
  readonly kvA: GpuWeight;
  readonly kvANorm: GPUBuffer;
  readonly kvB: GpuWeight;
  readonly o: GpuWeight;
}

export interface GpuGqa {
  readonly kind: "gqa";
  readonly q: GpuWeight;
  readonly k: GpuWeight;
  readonly v: GpuWeight;
  readonly o: GpuWeight;
  readonly qBias?: GPUBuffer;
  readonly kBias?: GPUBuffer;
  readonly vBias?: GPUBuffer;
  readonly oBias?: GPUBuffer;
}

export interface GpuMoe {
  /** The CPU-side router (gate [E, D] F32 and bias), for prefill, which reads the normed activations back. */
  readonly router: MoeWeights;
  /** The router on the GPU (decode routes there): mlp.gate.weight [E, D] and e_score_correction_bias [E]. */
  readonly gate: GpuWeight;
  readonly bias: GPUBuffer | null;
  /** Every expert's gate_proj / up_proj stacked [E F, D] and down_proj [E D, F]: expert e is rows e*F.. (e*D..). */
  readonly gates: GpuWeight;
  readonly ups: GpuWeight;
  readonly downs: GpuWeight;
  /** Expert width F. */
  readonly width: number;
  readonly shared: GpuMlp | null;
}

export interface GpuLayer {
  readonly inputNorm: GPUBuffer;
  readonly postNorm: GPUBuffer;
  readonly attn: GpuMla | GpuGqa;
  readonly ffn: { readonly kind: "dense"; readonly mlp: GpuMlp } | { readonly kind: "moe"; readonly moe: GpuMoe };
}

export interface GpuWeights {
  readonly embed: GpuWeight;
  readonly layers: readonly GpuLayer[];
  readonly norm: GPUBuffer;
  readonly lmHead: GpuWeight;
}

function mlp(g: WebGpuBackend, m: MlpWeights): GpuMlp {
  return { gate: g.uploadWeight(m.gate), up: g.uploadWeight(m.up), down: g.uploadWeight(m.down) };
}

function moe(g: WebGpuBackend, m: MoeWeights): GpuMoe {
  const E = m.experts.length;
  return {
    // the gate and bias only: the experts' host copies go once uploaded (route() reads nothing else)
    router: { gate: m.gate, scoreBias: m.scoreBias, experts: [], shared: null },
    gate: g.uploadWeight({ dtype: "F32", shape: [E, m.gate.length / E], data: m.gate }),
    bias: m.scoreBias ? g.uploadF32(m.scoreBias) : null,
    gates: g.uploadStacked(m.experts.map((e) => e.gate), "experts.gate"),
    ups: g.uploadStacked(m.experts.map((e) => e.up), "experts.up"),
    downs: g.uploadStacked(m.experts.map((e) => e.down), "experts.down"),
    width: m.experts[0].gate.shape[0],
    shared: m.shared ? mlp(g, m.shared) : null,
  };
}

const opt = <T, R>(x: T | undefined, f: (x: T) => R): R | undefined => (x === undefined ? undefined : f(x));

/** An MLA layer (its attention has the latent projections) or a llama-layout one. */
function isMlaLayer(l: LayerWeights | LlamaLayerWeights): l is LayerWeights {
  return "kvA" in l.attn;
}

/** One decoder layer's weights on the GPU (the streaming loader, ./load.ts, uploads a layer at a time). */
export function uploadLayer(g: WebGpuBackend, l: LayerWeights | LlamaLayerWeights): GpuLayer {
  const vec = (v: Float32Array) => g.uploadF32(v);
  const w = (t: Tensor) => g.uploadWeight(t);
  const base = { inputNorm: vec(l.inputNorm), postNorm: vec(l.postNorm) };
  if (isMlaLayer(l)) {
    const a = l.attn, q = a.query;
    return {
      ...base,
      attn: {
        kind: "mla",
        query: q.kind === "lora" ? { kind: "lora", qA: w(q.qA), qANorm: vec(q.qANorm), qB: w(q.qB) } : { kind: "direct", q: w(q.q) },
        kvA: w(a.kvA), kvANorm: vec(a.kvANorm), kvB: w(a.kvB), o: w(a.o),
      },
      ffn: l.ffn.kind === "moe" ? { kind: "moe", moe: moe(g, l.ffn.moe) } : { kind: "dense", mlp: mlp(g, l.ffn.mlp) },
    };
  }
  const a = l.attn;
  return {
    ...base,
    attn: {
      kind: "gqa",
      q: w(a.q), k: w(a.k), v: w(a.v), o: w(a.o),
      qBias: opt(a.qBias, vec), kBias: opt(a.kBias, vec), vBias: opt(a.vBias, vec), oBias: opt(a.oBias, vec),
    },
    ffn: { kind: "dense", mlp: mlp(g, l.mlp) },
  };
}

/** Upload every weight (a tied lm_head shares the embedding's buffer). */
export function uploadWeights(g: WebGpuBackend, w: DecoderWeights<LayerWeights | LlamaLayerWeights>): GpuWeights {
  const embed = g.uploadWeight(w.embed, "embed_tokens");
  return {
    embed,
    layers: w.layers.map((l) => uploadLayer(g, l)),
    norm: g.uploadF32(w.norm),
    lmHead: w.lmHead === w.embed ? embed : g.uploadWeight(w.lmHead, "lm_head"),
  };
}
