/**
 * The MHA / GQA / MQA block of training, as transformers' Llama computes it (names q_proj, k_proj, v_proj, o_proj):
 *   q = q_proj x [N, H, hd],  k = k_proj x [N, G, hd],  v = v_proj x [N, G, hd]
 *   RoPE by halves (rotate_half) over the whole head of q and k,  y = o_proj(causal softmax(q.k / sqrt(hd)) v)
 * where query head h reads KV head floor(h / (H/G)). G = H is MHA, G = 1 MQA.
 */
import { DEFAULT_ROPE, RotaryEmbedding } from "../attention/rope.js";
import { ropeHalves } from "../backends/cpu/rope.js";
import { ropeHalvesBackward, type Vec } from "./grad/index.js";
import { attendBackwardBatch, attendBatch, batchRope, type TrainAttention, type TrainCtx } from "./attention.js";
import type { LlamaSpec } from "../model/families/writers.js";

interface GqaSaved {
  xn: Vec; //  [N, D]
  q: Vec; //   [N, H, hd] after RoPE
  k: Vec; //   [N, G, hd] after RoPE
  v: Vec; //   [N, G, hd]
  att: Vec; // [N, H hd]
}

export class GqaTrainAttention implements TrainAttention<GqaSaved> {
  readonly cachePerToken: number;
  private readonly rope: RotaryEmbedding;
  private readonly scale: number;

  constructor(private readonly s: Required<LlamaSpec>) {
    this.rope = new RotaryEmbedding({ ...DEFAULT_ROPE, theta: s.ropeTheta }, s.headDim);
    this.scale = 1 / Math.sqrt(s.headDim);
    this.cachePerToken = 2 * s.numKvHeads * s.headDim;
  }

  forward(x: TrainCtx, at: string, xn: Vec, B: number, T: number): { y: Vec; saved: GqaSaved } {
    const s = this.s, N = B * T, D = s.hiddenSize, H = s.numHeads, G = s.numKvHeads, hd = s.headDim;
    const A = x.alloc, { cos, sin } = batchRope(this.rope, B, T);
    const q = A(N * H * hd), k = A(N * G * hd), v = A(N * G * hd);
    x.mm.forward(q, xn, N, D, x.p(`${at}q_proj.weight`), H * hd);
    x.mm.forward(k, xn, N, D, x.p(`${at}k_proj.weight`), G * hd);
    x.mm.forward(v, xn, N, D, x.p(`${at}v_proj.weight`), G * hd);
    ropeHalves(q, N, H, hd, 0, H * hd, hd, cos, sin);
    ropeHalves(k, N, G, hd, 0, G * hd, hd, cos, sin);
    const att = A(N * H * hd);
    attendBatch(att, q, k, v, B, T, H, G, hd, hd, this.scale);
    const y = A(N * D);
    x.mm.forward(y, att, N, H * hd, x.p(`${at}o_proj.weight`), D);
    return { y, saved: { xn, q, k, v, att } };
  }

  backward(x: TrainCtx, at: string, L: GqaSaved, dy: Vec, B: number, T: number): Vec {
    const s = this.s, N = B * T, D = s.hiddenSize, H = s.numHeads, G = s.numKvHeads, hd = s.headDim;
    const A = x.alloc, { cos, sin } = batchRope(this.rope, B, T);
    const datt = A(N * H * hd);
    x.mm.backwardInput(datt, dy, N, D, x.p(`${at}o_proj.weight`), H * hd);
    x.mm.backwardWeight(x.g(`${at}o_proj.weight`), dy, L.att, N, D, H * hd);
    const dq = A(N * H * hd), dk = A(N * G * hd), dv = A(N * G * hd);
    attendBackwardBatch(dq, dk, dv, L.q, L.k, L.v, datt, B, T, H, G, hd, hd, this.scale);
    ropeHalvesBackward(dq, N, H, hd, 0, H * hd, hd, cos, sin);
    ropeHalvesBackward(dk, N, G, hd, 0, G * hd, hd, cos, sin);
    const dxn = A(N * D);
    x.mm.backwardInput(dxn, dq, N, H * hd, x.p(`${at}q_proj.weight`), D);
    x.mm.backwardInput(dxn, dk, N, G * hd, x.p(`${at}k_proj.weight`), D, true);
    x.mm.backwardInput(dxn, dv, N, G * hd, x.p(`${at}v_proj.weight`), D, true);
    x.mm.backwardWeight(x.g(`${at}q_proj.weight`), dq, L.xn, N, H * hd, D);
    x.mm.backwardWeight(x.g(`${at}k_proj.weight`), dk, L.xn, N, G * hd, D);
    x.mm.backwardWeight(x.g(`${at}v_proj.weight`), dv, L.xn, N, G * hd, D);
    return dxn;
  }
}
