/**
 * What a training attention block (./attention-mla.ts, ./attention-gqa.ts) needs from the model, and the causal
 * attention forward they share. A block maps the normed input xn [N, D] (N = B sequences of T tokens) to its
 * o_proj output [N, D], keeping what its backward needs; the backward returns d(xn) and adds parameter gradients.
 */
import type { RotaryEmbedding } from "../attention/rope.js";
import { attendBackward, type Vec } from "./grad/index.js";
import type { MatmulOps } from "./wasm-matmul.js";

export interface TrainCtx {
  readonly mm: MatmulOps;
  /** New zeroed activation array (Float32Array, or Float64Array in float64 mode). */
  readonly alloc: (n: number) => Vec;
  /** Parameter / gradient by Hugging Face name. */
  p(name: string): Vec;
  g(name: string): Vec;
}

export interface TrainAttention<S> {
  /** Numbers cached per token and layer at inference (the quantity the attention variants trade). */
  readonly cachePerToken: number;
  forward(ctx: TrainCtx, prefix: string, xn: Vec, B: number, T: number): { y: Vec; saved: S };
  /** Gradient of xn given dy (of y); adds the block's parameter gradients. */
  backward(ctx: TrainCtx, prefix: string, saved: S, dy: Vec, B: number, T: number): Vec;
}

/** cos/sin for positions 0..T-1 repeated for each of B sequences ([B T, dim/2]). */
export function batchRope(rope: RotaryEmbedding, B: number, T: number): { cos: Float32Array; sin: Float32Array } {
  const { cos, sin } = rope.table(0, T);
  const half = rope.dim / 2;
  const cn = new Float32Array(B * T * half), sn = new Float32Array(B * T * half);
  for (let b = 0; b < B; b++) {
    cn.set(cos, b * T * half);
    sn.set(sin, b * T * half);
  }
  return { cos: cn, sin: sn };
}

/**
 * Causal attention over one sequence: q [T, H, dk], k [T, G, dk], v [T, G, dv] -> out [T, H, dv]; query head h
 * reads KV head floor(h / (H / G)) (transformers' repeat_kv). Sums and the softmax in float64.
 */
export function attendCausal(out: Vec, q: Vec, k: Vec, v: Vec, T: number, H: number, G: number, dk: number, dv: number, scale: number): void {
  const p = new Float64Array(T), acc = new Float64Array(dv), group = H / G;
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const qo = (t * H + h) * dk, g = Math.floor(h / group);
      let m = -Infinity;
      for (let s = 0; s <= t; s++) {
        const ko = (s * G + g) * dk;
        let dot = 0;
        for (let i = 0; i < dk; i++) dot += q[qo + i] * k[ko + i];
        p[s] = dot * scale;
        if (p[s] > m) m = p[s];
      }
      let sum = 0;
      for (let s = 0; s <= t; s++) sum += p[s] = Math.exp(p[s] - m);
      acc.fill(0);
      for (let s = 0; s <= t; s++) {
        const ps = p[s] / sum, vo = (s * G + g) * dv;
        for (let i = 0; i < dv; i++) acc[i] += ps * v[vo + i];
      }
      const oo = (t * H + h) * dv;
      for (let i = 0; i < dv; i++) out[oo + i] = acc[i];
    }
  }
}

/** attendCausal over each of B sequences of a batch ([B T, ...] layouts). */
export function attendBatch(out: Vec, q: Vec, k: Vec, v: Vec, B: number, T: number, H: number, G: number, dk: number, dv: number, scale: number): void {
  for (let b = 0; b < B; b++) {
    attendCausal(out.subarray(b * T * H * dv), q.subarray(b * T * H * dk), k.subarray(b * T * G * dk), v.subarray(b * T * G * dv), T, H, G, dk, dv, scale);
  }
}

/** attendBackward over each of B sequences of a batch (the layouts of attendBatch; gradients overwritten). */
export function attendBackwardBatch(
  dq: Vec, dk: Vec, dv: Vec, q: Vec, k: Vec, v: Vec, dout: Vec,
  B: number, T: number, H: number, G: number, hdk: number, hdv: number, scale: number,
): void {
  for (let b = 0; b < B; b++) {
    const qo = b * T * H * hdk, ko = b * T * G * hdk, vo = b * T * G * hdv, oo = b * T * H * hdv;
    attendBackward(dq.subarray(qo), dk.subarray(ko), dv.subarray(vo), q.subarray(qo), k.subarray(ko), v.subarray(vo), dout.subarray(oo), T, H, G, hdk, hdv, scale);
  }
}
