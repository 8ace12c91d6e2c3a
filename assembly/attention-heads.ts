// Decode attention (one query token) with per-head K/V: MHA, GQA and MQA over a KV cache, and naive MLA over its
// up-projected keys and values; and the causal softmax of the score rows when T queries go through the products.

import { softmax } from "./elementwise";

/** Scratch bytes attend_heads needs per thread: the L scores. */
export function attend_heads_scratch(L: i32): i32 {
  return (L + 4) << 2;
}

/**
 * out[h] = sum_s softmax_s(scale * q[h] . K[s, g]) V[s, g],  s < L, g = h / group, for h in [h0, h1).
 * K row s of group g at k + (s*kRow + g*kHead)*4 (dk floats), V likewise; q [H, dk] and out [H, dv] contiguous.
 * Three passes per head: the scores (each K row read once), their softmax, then the weighted V rows.
 * Needs dk % 4 == 0 and dv % 4 == 0.
 */
export function attend_heads(
  out: usize, q: usize, k: usize, v: usize, L: i32, dk: i32, dv: i32,
  kRow: i32, vRow: i32, kHead: i32, vHead: i32, group: i32, scale: f32, h0: i32, h1: i32, scratch: usize,
): void {
  const sc = scratch;
  for (let h = h0; h < h1; h++) {
    const g = h / group;
    const qh = q + ((<usize>h * <usize>dk) << 2);
    let m: f32 = -Infinity;
    for (let s = 0; s < L; s++) {
      const kp = k + ((<usize>s * <usize>kRow + <usize>g * <usize>kHead) << 2);
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
      let i = 0;
      for (; i + 8 <= dk; i += 8) {
        a0 = f32x4.add(a0, f32x4.mul(v128.load(qh + (<usize>i << 2)), v128.load(kp + (<usize>i << 2))));
        a1 = f32x4.add(a1, f32x4.mul(v128.load(qh + (<usize>i << 2), 16), v128.load(kp + (<usize>i << 2), 16)));
      }
      if (i < dk) a0 = f32x4.add(a0, f32x4.mul(v128.load(qh + (<usize>i << 2)), v128.load(kp + (<usize>i << 2))));
      const a = f32x4.add(a0, a1);
      const d = (f32x4.extract_lane(a, 0) + f32x4.extract_lane(a, 1) + f32x4.extract_lane(a, 2) + f32x4.extract_lane(a, 3)) * scale;
      store<f32>(sc + (<usize>s << 2), d);
      if (d > m) m = d;
    }
    let sum: f32 = 0;
    for (let s = 0; s < L; s++) {
      const e = Mathf.exp(load<f32>(sc + (<usize>s << 2)) - m);
      store<f32>(sc + (<usize>s << 2), e);
      sum += e;
    }
    const oh = out + ((<usize>h * <usize>dv) << 2);
    for (let i = 0; i < dv; i += 4) v128.store(oh + (<usize>i << 2), f32x4.splat(0));
    for (let s = 0; s < L; s++) {
      const p = f32x4.splat(load<f32>(sc + (<usize>s << 2)));
      const vp = v + ((<usize>s * <usize>vRow + <usize>g * <usize>vHead) << 2);
      for (let i = 0; i < dv; i += 4) {
        const o = oh + (<usize>i << 2);
        v128.store(o, f32x4.add(v128.load(o), f32x4.mul(p, v128.load(vp + (<usize>i << 2)))));
      }
    }
    const r = f32x4.splat(<f32>1 / sum);
    for (let i = 0; i < dv; i += 4) {
      const o = oh + (<usize>i << 2);
      v128.store(o, f32x4.mul(v128.load(o), r));
    }
  }
}

/**
 * Causal softmax of score rows [t0, t1) of a [T, Lp] matrix: row t sees its first (first + t + 1) entries, which
 * become probabilities; the rest become 0 (so a following product over all Lp columns ignores them).
 */
export function softmax_causal(s: usize, Lp: i32, first: i32, t0: i32, t1: i32, scratch: usize): void {
  for (let t = t0; t < t1; t++) {
    const row = s + ((<usize>t * <usize>Lp) << 2);
    const visible = first + t + 1;
    softmax(row, visible);
    for (let j = visible; j < Lp; j++) store<f32>(row + (<usize>j << 2), 0);
  }
}
