/**
 * The MLA block of training, in the engine's naive form (src/attention/mla.ts), Hugging Face deepseek_v3 names:
 *   q      = RoPE_q(W^UQ|W^QR RMSNorm(W^DQ x))      (q_a_proj, q_a_layernorm, q_b_proj; or q_proj x without
 *                                                     query compression)
 *   [c|kr] = kv_a_proj_with_mqa x,  c_KV = RMSNorm(c) (kv_a_layernorm, eps 1e-6),  k_rope = RoPE(kr) shared by heads
 *   [k_nope|v] per head = kv_b_proj c_KV  (W^UK | W^UV),  k = [k_nope | k_rope]
 *   y      = o_proj(causal softmax(scale q.k) v)
 * with interleaved RoPE on the last qk_rope_head_dim dims of each query head and on the shared key.
 */
import { LATENT_NORM_EPS } from "../attention/mla.js";
import { RotaryEmbedding, attentionScale } from "../attention/rope.js";
import type { ModelConfig } from "../model/config.js";
import { ropeInterleaved } from "../backends/cpu/rope.js";
import { rmsNormBackward, ropeInterleavedBackward, type Vec } from "./grad/index.js";
import { attendBackwardBatch, attendBatch, batchRope, type TrainAttention, type TrainCtx } from "./attention.js";
import { rmsNorm } from "../backends/cpu/norm.js";

interface MlaSaved {
  xn: Vec; //          [N, D]
  cq: Vec | null; //   [N, qr] q_a_proj xn
  cqn: Vec | null; //  [N, qr] q_a_layernorm(cq)
  q: Vec; //           [N, H, dqk] after RoPE
  a: Vec; //           [N, dc + dr] kv_a_proj_with_mqa xn (before norm/RoPE)
  ckv: Vec; //         [N, dc]
  k: Vec; //           [N, H, dqk]
  v: Vec; //           [N, H, dv]
  att: Vec; //         [N, H dv]
}

export class MlaTrainAttention implements TrainAttention<MlaSaved> {
  readonly cachePerToken: number;
  private readonly rope: RotaryEmbedding;
  private readonly scale: number;

  constructor(private readonly c: ModelConfig) {
    this.rope = new RotaryEmbedding(c.rope, c.qkRopeHeadDim);
    this.scale = attentionScale(c.qkNopeHeadDim + c.qkRopeHeadDim, c.rope);
    this.cachePerToken = c.kvLoraRank + c.qkRopeHeadDim;
  }

  forward(x: TrainCtx, at: string, xn: Vec, B: number, T: number): { y: Vec; saved: MlaSaved } {
    const c = this.c, N = B * T, D = c.hiddenSize, H = c.numHeads, qr = c.qLoraRank, dc = c.kvLoraRank;
    const dn = c.qkNopeHeadDim, dr = c.qkRopeHeadDim, dv = c.vHeadDim, dqk = dn + dr;
    const A = x.alloc, { cos, sin } = batchRope(this.rope, B, T);
    let cq: Vec | null = null, cqn: Vec | null = null;
    const q = A(N * H * dqk);
    if (qr) {
      cq = A(N * qr);
      cqn = A(N * qr);
      x.mm.forward(cq, xn, N, D, x.p(`${at}q_a_proj.weight`), qr);
      rmsNorm(cqn, cq, N, qr, x.p(`${at}q_a_layernorm.weight`), LATENT_NORM_EPS);
      x.mm.forward(q, cqn, N, qr, x.p(`${at}q_b_proj.weight`), H * dqk);
    } else {
      x.mm.forward(q, xn, N, D, x.p(`${at}q_proj.weight`), H * dqk);
    }
    ropeInterleaved(q, N, H, dr, dn, H * dqk, dqk, cos, sin);
    const a = A(N * (dc + dr));
    x.mm.forward(a, xn, N, D, x.p(`${at}kv_a_proj_with_mqa.weight`), dc + dr);
    const ckv = A(N * dc);
    rmsNorm(ckv, a, N, dc, x.p(`${at}kv_a_layernorm.weight`), LATENT_NORM_EPS, dc + dr, dc);
    const kr = a.slice();
    ropeInterleaved(kr, N, 1, dr, dc, dc + dr, 0, cos, sin);
    const kv = A(N * H * (dn + dv));
    x.mm.forward(kv, ckv, N, dc, x.p(`${at}kv_b_proj.weight`), H * (dn + dv));
    const k = A(N * H * dqk), v = A(N * H * dv);
    for (let r = 0; r < N; r++) for (let hh = 0; hh < H; hh++) {
      const ko = (r * H + hh) * dqk, so = (r * H + hh) * (dn + dv);
      for (let j = 0; j < dn; j++) k[ko + j] = kv[so + j];
      for (let j = 0; j < dr; j++) k[ko + dn + j] = kr[r * (dc + dr) + dc + j];
      for (let j = 0; j < dv; j++) v[(r * H + hh) * dv + j] = kv[so + dn + j];
    }
    const att = A(N * H * dv);
    attendBatch(att, q, k, v, B, T, H, H, dqk, dv, this.scale);
    const y = A(N * D);
    x.mm.forward(y, att, N, H * dv, x.p(`${at}o_proj.weight`), D);
    return { y, saved: { xn, cq, cqn, q, a, ckv, k, v, att } };
  }

  backward(x: TrainCtx, at: string, L: MlaSaved, dy: Vec, B: number, T: number): Vec {
    const c = this.c, N = B * T, D = c.hiddenSize, H = c.numHeads, qr = c.qLoraRank, dc = c.kvLoraRank;
    const dn = c.qkNopeHeadDim, dr = c.qkRopeHeadDim, dv = c.vHeadDim, dqk = dn + dr;
    const A = x.alloc, { cos, sin } = batchRope(this.rope, B, T);
    const datt = A(N * H * dv);
    x.mm.backwardInput(datt, dy, N, D, x.p(`${at}o_proj.weight`), H * dv);
    x.mm.backwardWeight(x.g(`${at}o_proj.weight`), dy, L.att, N, D, H * dv);
    const dq = A(N * H * dqk), dk = A(N * H * dqk), dvv = A(N * H * dv);
    attendBackwardBatch(dq, dk, dvv, L.q, L.k, L.v, datt, B, T, H, H, dqk, dv, this.scale);
    // k = [kv_b(c_KV) nope rows | shared k_rope], v = kv_b value rows
    const dkv = A(N * H * (dn + dv)), da = A(N * (dc + dr));
    for (let r = 0; r < N; r++) for (let hh = 0; hh < H; hh++) {
      const ko = (r * H + hh) * dqk, so = (r * H + hh) * (dn + dv);
      for (let j = 0; j < dn; j++) dkv[so + j] = dk[ko + j];
      for (let j = 0; j < dv; j++) dkv[so + dn + j] = dvv[(r * H + hh) * dv + j];
      for (let j = 0; j < dr; j++) da[r * (dc + dr) + dc + j] += dk[ko + dn + j];
    }
    ropeInterleavedBackward(da, N, 1, dr, dc, dc + dr, 0, cos, sin);
    const dckv = A(N * dc);
    x.mm.backwardInput(dckv, dkv, N, H * (dn + dv), x.p(`${at}kv_b_proj.weight`), dc);
    x.mm.backwardWeight(x.g(`${at}kv_b_proj.weight`), dkv, L.ckv, N, H * (dn + dv), dc);
    rmsNormBackward(da, x.g(`${at}kv_a_layernorm.weight`), L.a, x.p(`${at}kv_a_layernorm.weight`), dckv, N, dc, LATENT_NORM_EPS, false, dc + dr, dc, dc + dr);

    ropeInterleavedBackward(dq, N, H, dr, dn, H * dqk, dqk, cos, sin);
    const dxn = A(N * D);
    if (qr) {
      const dcqn = A(N * qr), dcq = A(N * qr);
      x.mm.backwardInput(dcqn, dq, N, H * dqk, x.p(`${at}q_b_proj.weight`), qr);
      x.mm.backwardWeight(x.g(`${at}q_b_proj.weight`), dq, L.cqn!, N, H * dqk, qr);
      rmsNormBackward(dcq, x.g(`${at}q_a_layernorm.weight`), L.cq!, x.p(`${at}q_a_layernorm.weight`), dcqn, N, qr, LATENT_NORM_EPS);
      x.mm.backwardInput(dxn, dcq, N, qr, x.p(`${at}q_a_proj.weight`), D);
      x.mm.backwardWeight(x.g(`${at}q_a_proj.weight`), dcq, L.xn, N, qr, D);
    } else {
      x.mm.backwardInput(dxn, dq, N, H * dqk, x.p(`${at}q_proj.weight`), D);
      x.mm.backwardWeight(x.g(`${at}q_proj.weight`), dq, L.xn, N, H * dqk, D);
    }
    x.mm.backwardInput(dxn, da, N, dc + dr, x.p(`${at}kv_a_proj_with_mqa.weight`), D, true);
    x.mm.backwardWeight(x.g(`${at}kv_a_proj_with_mqa.weight`), da, L.xn, N, dc + dr, D);
    return dxn;
  }
}
