import type { Tensor } from "../tensor/tensor.js";
import { MlaError } from "../errors.js";
import { ropeHalves, ropeInterleaved } from "../backends/cpu/index.js";
import { cpuOps, type Ops } from "../backends/ops.js";
import type { KvCache } from "./cache.js";
import type { RopeStyle, RotaryEmbedding } from "./rope.js";
import type { AttentionSegment } from "./mla.js";

/**
 * Multi-head attention with a per-head K/V cache. nKvHeads = nHeads is MHA, 1 is MQA, anything between GQA
 * (each K/V head serves nHeads/nKvHeads query heads).
 */
export interface GqaDims {
  readonly hidden: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  /** Query/key width per head (includes ropeDim). */
  readonly headDim: number;
  /** Value width per head (defaults to headDim). */
  readonly vHeadDim?: number;
  /** RoPE on the last ropeDim dims of each q/k head; 0 for none. Defaults to headDim. */
  readonly ropeDim?: number;
  /**
   * Which dims RoPE pairs: "interleaved" (x0,x1),(x2,x3),... (the default, as MLA's decoupled key) or "halves"
   * (x_j, x_{j+d/2}), transformers' rotate_half, as Llama/Qwen2/Mistral checkpoints are laid out.
   */
  readonly ropeStyle?: RopeStyle;
  /** Sliding-window attention: a query sees itself and the window - 1 keys before it (Mistral). Default: all. */
  readonly window?: number;
}

export type { RopeStyle } from "./rope.js";

export interface GqaWeights {
  readonly q: Tensor; // q_proj [nHeads*headDim, D]
  readonly k: Tensor; // k_proj [nKvHeads*headDim, D]
  readonly v: Tensor; // v_proj [nKvHeads*vHeadDim, D]
  readonly o: Tensor; // o_proj [D, nHeads*vHeadDim]
  /** Biases of the projections, when the checkpoint has them (Qwen2: q/k/v; Llama with attention_bias: all four). */
  readonly qBias?: Float32Array;
  readonly kBias?: Float32Array;
  readonly vBias?: Float32Array;
  readonly oBias?: Float32Array;
}

/** x[t, :] += b for T rows of b.length. */
function addBias(x: Float32Array, T: number, b: Float32Array | undefined): void {
  if (!b) return;
  const n = b.length;
  for (let t = 0; t < T; t++) for (let i = 0; i < n; i++) x[t * n + i] += b[i];
}

export class GroupedQueryAttention {
  readonly vHeadDim: number;
  readonly ropeDim: number;

  constructor(readonly dims: GqaDims, readonly w: GqaWeights, readonly rope: RotaryEmbedding | null, readonly scale = 1 / Math.sqrt(dims.headDim), readonly ops: Ops = cpuOps) {
    if (dims.nHeads % dims.nKvHeads !== 0) throw new MlaError(`nHeads ${dims.nHeads} is not a multiple of nKvHeads ${dims.nKvHeads}`);
    this.vHeadDim = dims.vHeadDim ?? dims.headDim;
    this.ropeDim = rope ? (dims.ropeDim ?? dims.headDim) : 0;
    if (rope && rope.dim !== this.ropeDim) throw new MlaError(`RoPE table is for ${rope.dim} dims, layer needs ${this.ropeDim}`);
  }

  forward(x: Float32Array, T: number, cache: KvCache): Float32Array {
    return this.forwardBatch(x, [{ T, cache }]);
  }

  /**
   * Several sequences in one pass (rows of each segment back to back): q/k/v/o projections run once over all rows,
   * RoPE, the cache append and attention per segment on its own K/V cache.
   */
  forwardBatch(x: Float32Array, segments: readonly AttentionSegment<KvCache>[]): Float32Array {
    const { hidden: D, nHeads: H, nKvHeads: G, headDim: dk } = this.dims;
    const dv = this.vHeadDim, dr = this.ropeDim;
    const N = segments.reduce((s, g) => s + g.T, 0);
    const q = new Float32Array(N * H * dk), k = new Float32Array(N * G * dk), v = new Float32Array(N * G * dv);
    this.ops.linear(q, x, N, D, this.w.q, H * dk);
    this.ops.linear(k, x, N, D, this.w.k, G * dk);
    this.ops.linear(v, x, N, D, this.w.v, G * dv);
    addBias(q, N, this.w.qBias);
    addBias(k, N, this.w.kBias);
    addBias(v, N, this.w.vBias);
    const o = new Float32Array(N * H * dv);
    let r = 0;
    for (const { T, cache } of segments) {
      const qs = q.subarray(r * H * dk, (r + T) * H * dk), ks = k.subarray(r * G * dk, (r + T) * G * dk);
      if (this.rope && dr > 0) {
        const { cos, sin } = this.rope.table(cache.length, T);
        const rotate = this.dims.ropeStyle === "halves" ? ropeHalves : ropeInterleaved;
        rotate(qs, T, H, dr, dk - dr, H * dk, dk, cos, sin);
        rotate(ks, T, G, dr, dk - dr, G * dk, dk, cos, sin);
      }
      cache.k.append(ks, T);
      cache.v.append(v.subarray(r * G * dv, (r + T) * G * dv), T);
      this.attendCache(o.subarray(r * H * dv, (r + T) * H * dv), qs, T, cache);
      r += T;
    }
    const out = new Float32Array(N * D);
    this.ops.linear(out, o, N, H * dv, this.w.o, D);
    addBias(out, N, this.w.oBias);
    return out;
  }

  /**
   * Causal attention of the T new queries over the cache. Queries whose window reaches back to position 0 run as
   * one causal block; each later query runs alone on a view of its last `window` keys, since the kernels' causal
   * mask cannot express a sliding start. Exact; such a row reads only its window of the cache.
   */
  private attendCache(o: Float32Array, q: Float32Array, T: number, cache: KvCache): void {
    const { nHeads: H, nKvHeads: G, headDim: dk } = this.dims;
    const dv = this.vHeadDim, L = cache.length, W = this.dims.window ?? Infinity;
    const view = (data: Float32Array, start: number, width: number) => ({ data, offset: start * G * width, rowStride: G * width, headStride: width });
    const full = Math.max(0, Math.min(T, W - (L - T))); // queries at positions < W
    if (full > 0) this.ops.attend(o, q, full, H, dk, view(cache.k.data, 0, dk), view(cache.v.data, 0, dv), dv, G, L - T + full, this.scale);
    for (let t = full; t < T; t++) {
      const start = L - T + t - W + 1;
      this.ops.attend(o.subarray(t * H * dv), q.subarray(t * H * dk), 1, H, dk,
        view(cache.k.data, start, dk), view(cache.v.data, start, dv), dv, G, W, this.scale);
    }
  }
}
