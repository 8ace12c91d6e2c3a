import type { Tensor } from "../tensor/tensor.js";
import { MlaError } from "../errors.js";
import { ropeInterleaved } from "../backends/cpu/index.js";
import { cpuOps, type Ops } from "../backends/ops.js";
import type { KvCache } from "./cache.js";
import type { RotaryEmbedding } from "./rope.js";

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
  /** RoPE (interleaved pairs) on the last ropeDim dims of each q/k head; 0 for none. Defaults to headDim. */
  readonly ropeDim?: number;
}

export interface GqaWeights {
  readonly q: Tensor; // q_proj [nHeads*headDim, D]
  readonly k: Tensor; // k_proj [nKvHeads*headDim, D]
  readonly v: Tensor; // v_proj [nKvHeads*vHeadDim, D]
  readonly o: Tensor; // o_proj [D, nHeads*vHeadDim]
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
    const { hidden: D, nHeads: H, nKvHeads: G, headDim: dk } = this.dims;
    const dv = this.vHeadDim, dr = this.ropeDim;
    const q = new Float32Array(T * H * dk), k = new Float32Array(T * G * dk), v = new Float32Array(T * G * dv);
    this.ops.linear(q, x, T, D, this.w.q, H * dk);
    this.ops.linear(k, x, T, D, this.w.k, G * dk);
    this.ops.linear(v, x, T, D, this.w.v, G * dv);
    if (this.rope && dr > 0) {
      const { cos, sin } = this.rope.table(cache.length, T);
      ropeInterleaved(q, T, H, dr, dk - dr, H * dk, dk, cos, sin);
      ropeInterleaved(k, T, G, dr, dk - dr, G * dk, dk, cos, sin);
    }
    cache.k.append(k, T);
    cache.v.append(v, T);
    const o = new Float32Array(T * H * dv);
    this.ops.attend(o, q, T, H, dk,
      { data: cache.k.data, offset: 0, rowStride: G * dk, headStride: dk },
      { data: cache.v.data, offset: 0, rowStride: G * dv, headStride: dv },
      dv, G, cache.length, this.scale);
    const out = new Float32Array(T * D);
    this.ops.linear(out, o, T, H * dv, this.w.o, D);
    return out;
  }
}
