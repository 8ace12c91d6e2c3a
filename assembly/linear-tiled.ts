// T > 1 products of every dtype (linear_tiled): register tiles of 4 weight rows x 8 tokens, rows widened to f32 in
// scratch unless already F32.

import { fma } from "./simd";
import { f16x8_to_f32 } from "./f16";
import { gemm_f32 } from "./dot-f32";
import { widen_q8 } from "./q8";
import { widen_blocks } from "./kquant";
import { widen_q5_0 } from "./q5";

// The dot-product tiles (dot-f32.ts) keep K along the SIMD lanes, so every output needs a horizontal sum and each step
// loads as many x vectors as weight vectors. Here the tokens go along the lanes instead: x is packed into panels
// of 8 tokens ([K][8], token-minor) and each weight is splatted, so one step is 2 x loads + 4 splat loads for 8
// fused multiply-adds into 8 independent accumulators (the most V8 keeps in xmm registers without spilling:
// 4 x 12 and 6 x 8 tiles measured slower). ~1.5x the dot tiles on one core (45-50 vs 27-35 GFLOP/s at 8 tokens).

/** Tokens packed per block: TILE_TOKENS * K * 4 bytes of scratch, which stays in L2 while the rows stream past. */
const TILE_TOKENS: i32 = 64;

/** Scratch bytes the T > 1 path needs for width K: one packed token block and 4 widened rows. */
export function linear_scratch(K: i32): i32 {
  return (TILE_TOKENS + 4) * K * 4 + 64;
}

// @ts-ignore: decorator
@inline function tr_lo(a: v128, b: v128): v128 { return v128.shuffle<f32>(a, b, 0, 4, 1, 5); }
// @ts-ignore: decorator
@inline function tr_hi(a: v128, b: v128): v128 { return v128.shuffle<f32>(a, b, 2, 6, 3, 7); }

/**
 * Tokens [0, cnt) of x (rows xStride floats apart; K % 4 == 0) into `panels` panels of 8 at dst: panel p holds
 * x[8p + j, k] at float k*8 + j. Token slots past cnt are zero.
 */
function pack_x8(dst: usize, x: usize, cnt: i32, panels: i32, K: i32, xStride: i32): void {
  const xb = <usize>xStride << 2;
  const zero = f32x4.splat(0);
  for (let q = 0; q < panels * 2; q++) {
    // a quad of tokens: 4 rows of x transposed in 4 x 4 blocks into the panel's low or high half
    const t = q << 2;
    const d = dst + <usize>(q >> 1) * (<usize>K << 5) + (<usize>(q & 1) << 4);
    const r0 = x + <usize>t * xb, r1 = r0 + xb, r2 = r1 + xb, r3 = r2 + xb;
    const v0 = t < cnt, v1 = t + 1 < cnt, v2 = t + 2 < cnt, v3 = t + 3 < cnt;
    for (let k: usize = 0; k < <usize>K; k += 4) {
      const a = v0 ? v128.load(r0 + (k << 2)) : zero;
      const b = v1 ? v128.load(r1 + (k << 2)) : zero;
      const c = v2 ? v128.load(r2 + (k << 2)) : zero;
      const e = v3 ? v128.load(r3 + (k << 2)) : zero;
      const ab0 = tr_lo(a, b), ab1 = tr_hi(a, b), ce0 = tr_lo(c, e), ce1 = tr_hi(c, e);
      const o = d + (k << 5);
      v128.store(o, v128.shuffle<f32>(ab0, ce0, 0, 1, 4, 5));
      v128.store(o, v128.shuffle<f32>(ab0, ce0, 2, 3, 6, 7), 32);
      v128.store(o, v128.shuffle<f32>(ab1, ce1, 0, 1, 4, 5), 64);
      v128.store(o, v128.shuffle<f32>(ab1, ce1, 2, 3, 6, 7), 96);
    }
  }
}

/**
 * Tokens j < cnt (<= 8) of one packed panel against f32 rows r..r+3 (at w, rowBytes apart):
 * out[j*ob + 0..3] (4 consecutive outputs per token). Each lane sums over k in order with one rounding per step.
 */
function tile4x8(out: usize, ob: usize, xp: usize, w: usize, rowBytes: usize, K: i32, cnt: i32): void {
  let p0 = w, p1 = w + rowBytes, p2 = p1 + rowBytes, p3 = p2 + rowBytes;
  let a0 = f32x4.splat(0), b0 = f32x4.splat(0), a1 = f32x4.splat(0), b1 = f32x4.splat(0);
  let a2 = f32x4.splat(0), b2 = f32x4.splat(0), a3 = f32x4.splat(0), b3 = f32x4.splat(0);
  let px = xp;
  const end = xp + (<usize>K << 5);
  while (px < end) {
    const x0 = v128.load(px), x1 = v128.load(px, 16);
    let s = v128.load32_splat(p0); a0 = fma(s, x0, a0); b0 = fma(s, x1, b0);
    s = v128.load32_splat(p1); a1 = fma(s, x0, a1); b1 = fma(s, x1, b1);
    s = v128.load32_splat(p2); a2 = fma(s, x0, a2); b2 = fma(s, x1, b2);
    s = v128.load32_splat(p3); a3 = fma(s, x0, a3); b3 = fma(s, x1, b3);
    px += 32; p0 += 4; p1 += 4; p2 += 4; p3 += 4;
  }
  // a_r / b_r hold row r for tokens 0..3 / 4..7: transpose 4 x 4 so that each token's 4 outputs are one store
  let l0 = tr_lo(a0, a1), h0 = tr_hi(a0, a1), l1 = tr_lo(a2, a3), h1 = tr_hi(a2, a3);
  v128.store(out, v128.shuffle<f32>(l0, l1, 0, 1, 4, 5));
  if (cnt > 1) v128.store(out + ob, v128.shuffle<f32>(l0, l1, 2, 3, 6, 7));
  if (cnt > 2) v128.store(out + 2 * ob, v128.shuffle<f32>(h0, h1, 0, 1, 4, 5));
  if (cnt > 3) v128.store(out + 3 * ob, v128.shuffle<f32>(h0, h1, 2, 3, 6, 7));
  if (cnt <= 4) return;
  l0 = tr_lo(b0, b1); h0 = tr_hi(b0, b1); l1 = tr_lo(b2, b3); h1 = tr_hi(b2, b3);
  const o4 = out + 4 * ob;
  v128.store(o4, v128.shuffle<f32>(l0, l1, 0, 1, 4, 5));
  if (cnt > 5) v128.store(o4 + ob, v128.shuffle<f32>(l0, l1, 2, 3, 6, 7));
  if (cnt > 6) v128.store(o4 + 2 * ob, v128.shuffle<f32>(h0, h1, 0, 1, 4, 5));
  if (cnt > 7) v128.store(o4 + 3 * ob, v128.shuffle<f32>(h0, h1, 2, 3, 6, 7));
}

/** One f32 row at w against one packed panel: out[j*ob] for tokens j < cnt (the rows left over after the 4-row tiles). */
function tile1x8(out: usize, ob: usize, xp: usize, w: usize, K: i32, cnt: i32): void {
  let a = f32x4.splat(0), b = f32x4.splat(0);
  let px = xp, p = w;
  const end = xp + (<usize>K << 5);
  while (px < end) {
    const s = v128.load32_splat(p);
    a = fma(s, v128.load(px), a);
    b = fma(s, v128.load(px, 16), b);
    px += 32; p += 4;
  }
  store<f32>(out, f32x4.extract_lane(a, 0));
  if (cnt > 1) store<f32>(out + ob, f32x4.extract_lane(a, 1));
  if (cnt > 2) store<f32>(out + 2 * ob, f32x4.extract_lane(a, 2));
  if (cnt > 3) store<f32>(out + 3 * ob, f32x4.extract_lane(a, 3));
  if (cnt > 4) store<f32>(out + 4 * ob, f32x4.extract_lane(b, 0));
  if (cnt > 5) store<f32>(out + 5 * ob, f32x4.extract_lane(b, 1));
  if (cnt > 6) store<f32>(out + 6 * ob, f32x4.extract_lane(b, 2));
  if (cnt > 7) store<f32>(out + 7 * ob, f32x4.extract_lane(b, 3));
}

// ---------------------------------------------------------------------------------------------
// weight rows widened to f32 for the tiles (Q8: widen_q8 in q8.ts)

/** Widen rows [r, r + cnt) of a BF16 matrix into f32 at dst (cnt*K floats). */
function widen_bf16(dst: usize, w: usize, r: i32, cnt: i32, K: i32): void {
  const src = w + <usize>r * (<usize>K << 1);
  const n = <usize>cnt * <usize>K;
  for (let i: usize = 0; i < n; i += 8) {
    const v = v128.load(src + (i << 1));
    v128.store(dst + (i << 2), i32x4.extend_low_i16x8_u(v) );
    v128.store(dst + (i << 2), i32x4.extend_high_i16x8_u(v), 16);
  }
  for (let i: usize = 0; i < n; i += 4) {
    const p = dst + (i << 2);
    v128.store(p, i32x4.shl(v128.load(p), 16));
  }
}

/** Widen rows [r, r + cnt) of an F16 matrix into f32 at dst. */
function widen_f16(dst: usize, w: usize, r: i32, cnt: i32, K: i32): void {
  const src = w + <usize>r * (<usize>K << 1);
  const n = <usize>cnt * <usize>K;
  for (let i: usize = 0; i < n; i += 8) f16x8_to_f32(dst + (i << 2), src + (i << 1));
}

/** f32 copies of weight rows [r, r + cnt) at dst (dt 1 BF16, 2 F16, 3 Q8, 4-7 GGML blocks, 8 Q5_0; see widen_*). */
function widen_rows(dt: i32, dst: usize, w: usize, scales: usize, r: i32, cnt: i32, K: i32): void {
  if (dt == 1) widen_bf16(dst, w, r, cnt, K);
  else if (dt == 2) widen_f16(dst, w, r, cnt, K);
  else if (dt == 3) widen_q8(dst, w, scales, r, cnt, K);
  else if (dt == 8) widen_q5_0(dst, w, r, cnt, K);
  else widen_blocks(dt, dst, w, r, cnt, K);
}

// ---------------------------------------------------------------------------------------------

/**
 * out[t, n] for t < T (T > 1), n in [n0, n1), weights of dtype dt (0 F32, 1 BF16, 2 F16, 3 Q8, 4 Q4_0, 5 Q4_K,
 * 6 Q5_K, 7 Q6_K). Tokens go in blocks
 * of TILE_TOKENS packed into scratch; in a block, each group of 4 rows (widened to f32 in scratch unless F32) is
 * multiplied with every full panel of 8 tokens by tile4x8. A last part-panel of 6 or 7 tokens is padded with
 * zeros; 1 to 5 left-over tokens go through the dot tiles (gemm_f32), where padding would waste more than half.
 * Scratch: linear_scratch(K) bytes.
 */
export function linear_tiled(dt: i32, out: usize, x: usize, T: i32, K: i32, w: usize, scales: usize, n0: i32, n1: i32, xStride: i32, outStride: i32, scratch: usize): void {
  const xb = <usize>xStride << 2, ob = <usize>outStride << 2;
  const fBytes = <usize>K << 2;
  const wbuf = scratch + <usize>TILE_TOKENS * fBytes;
  for (let t0 = 0; t0 < T; t0 += TILE_TOKENS) {
    const cnt = min(TILE_TOKENS, T - t0);
    const panels = (cnt & 7) >= 6 ? (cnt + 7) >> 3 : cnt >> 3;
    const tiled = min(cnt, panels << 3);
    const xt = x + <usize>t0 * xb, ot = out + <usize>t0 * ob;
    if (panels > 0) pack_x8(scratch, xt, tiled, panels, K, xStride);
    for (let n = n0; n < n1; n += 4) {
      const rows = min(4, n1 - n);
      // f32 rows n..n+rows at wr (row stride fBytes)
      let wr: usize;
      if (dt == 0) {
        wr = w + <usize>n * fBytes;
      } else {
        widen_rows(dt, wbuf, w, scales, n, rows, K);
        wr = wbuf;
      }
      const on = ot + (<usize>n << 2);
      for (let p = 0; p < panels; p++) {
        const xp = scratch + <usize>p * (<usize>K << 5), op = on + <usize>(p << 3) * ob;
        const c = min(8, tiled - (p << 3));
        if (rows == 4) tile4x8(op, ob, xp, wr, fBytes, K, c);
        else for (let r = 0; r < rows; r++) tile1x8(op + (<usize>r << 2), ob, xp, wr + <usize>r * fBytes, K, c);
      }
      if (tiled < cnt) {
        // rows n..n+rows of the f32 copy, addressed as gemm_f32 expects (row n at base + n * fBytes)
        gemm_f32(ot + <usize>tiled * ob, xt + <usize>tiled * xb, cnt - tiled, K, wr - <usize>n * fBytes, fBytes, n, n + rows, xStride, outStride);
      }
    }
  }
}
