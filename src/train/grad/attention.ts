import type { Vec } from "./types.js";

/**
 * Backward of causal scaled dot-product attention in training (no cache: the T keys are the T queries' own
 * positions), the computation of `attend` in src/backends/cpu/attention.ts with L = T:
 *   out[t, h] = sum_{s <= t} P[t, h, s] v[s, g],  P = softmax_s(scale * q[t, h] . k[s, g]),  g = floor(h / (H / Hkv))
 * Layouts are contiguous: q [T, H, dk], k [T, Hkv, dk], v [T, Hkv, dv], dout [T, H, dv]. Hkv = H is MHA,
 * 1 < Hkv < H GQA, Hkv = 1 MQA (and absorbed MLA).
 *
 * The probabilities are recomputed here from q and k (nothing is stored by the forward; memory stays O(T) per
 * head instead of O(T^2)). With dP[s] = dout . v[s] and ds = P (dP - sum_s P dP) (sum_s P dP = dout . out):
 *   dq[t, h] = scale sum_s ds[s] k[s, g],  dk[s, g] += scale ds[s] q[t, h],  dv[s, g] += P[s] dout[t, h]
 * so dk and dv sum over the H / Hkv query heads that share a KV group. All three outputs are overwritten unless
 * `accumulate`, which adds to them.
 */
export function attendBackward(
  dQ: Vec, dK: Vec, dV: Vec,
  q: Vec, k: Vec, v: Vec, dout: Vec,
  T: number, H: number, Hkv: number, dk: number, dv: number, scale: number,
  accumulate = false,
): void {
  if (H % Hkv !== 0) throw new Error(`attendBackward: ${H} heads do not split into ${Hkv} KV groups`);
  const group = H / Hkv;
  const p = new Float64Array(T);
  const dp = new Float64Array(T);
  const dqAcc = new Float64Array(dk);
  const dkAcc = new Float64Array(T * Hkv * dk);
  const dvAcc = new Float64Array(T * Hkv * dv);
  for (let t = 0; t < T; t++) {
    const visible = t + 1;
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / group);
      const qo = (t * H + h) * dk;
      const oo = (t * H + h) * dv;
      let m = -Infinity;
      for (let s = 0; s < visible; s++) {
        const ko = (s * Hkv + g) * dk;
        let dot = 0;
        for (let i = 0; i < dk; i++) dot += q[qo + i] * k[ko + i];
        const sc = dot * scale;
        p[s] = sc;
        if (sc > m) m = sc;
      }
      let sum = 0;
      for (let s = 0; s < visible; s++) {
        const e = Math.exp(p[s] - m);
        p[s] = e;
        sum += e;
      }
      let pdp = 0;
      for (let s = 0; s < visible; s++) {
        p[s] /= sum;
        const vo = (s * Hkv + g) * dv;
        let dot = 0;
        for (let i = 0; i < dv; i++) dot += dout[oo + i] * v[vo + i];
        dp[s] = dot;
        pdp += p[s] * dot;
      }
      dqAcc.fill(0);
      for (let s = 0; s < visible; s++) {
        const ps = p[s];
        const ds = ps * (dp[s] - pdp) * scale;
        const ko = (s * Hkv + g) * dk, vo = (s * Hkv + g) * dv;
        for (let i = 0; i < dk; i++) {
          dqAcc[i] += ds * k[ko + i];
          dkAcc[ko + i] += ds * q[qo + i];
        }
        for (let i = 0; i < dv; i++) dvAcc[vo + i] += ps * dout[oo + i];
      }
      if (accumulate) for (let i = 0; i < dk; i++) dQ[qo + i] += dqAcc[i];
      else for (let i = 0; i < dk; i++) dQ[qo + i] = dqAcc[i];
    }
  }
  if (accumulate) {
    for (let i = 0; i < dkAcc.length; i++) dK[i] += dkAcc[i];
    for (let i = 0; i < dvAcc.length; i++) dV[i] += dvAcc[i];
  } else {
    for (let i = 0; i < dkAcc.length; i++) dK[i] = dkAcc[i];
    for (let i = 0; i < dvAcc.length; i++) dV[i] = dvAcc[i];
  }
}
