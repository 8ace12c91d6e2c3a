// The products out[t, n] = sum_k x[t, k] * W[n, k] the pool runs, one kernel per weight dtype (F32, BF16, F16, Q8)
// plus linear_grouped: T == 1 (decode) paths here (and Q8's few-token path), T > 1 through linear_tiled.

import { acc2, acc4, evens, hsum, odds } from "./simd";
import { f16hi, f16hi_x, f16lo_x, f16special } from "./f16";
import { dot1_f32 } from "./dot-f32";
import { Q8M_MAX_T, q8_prep_x, q8_rows_float, q8_rows_x, q8m_prep, q8m_rec, q8m_rows } from "./q8";
import { linear_tiled } from "./linear-tiled";
import { Q5M_MAX_T, q5_0_decode, q5_0_few, q5_0_prep, q5_0_prep_bytes, q5_0_row_bytes, q5_0_rows } from "./q5";
import { KQ8_CHUNK, KQ_FEW_T, kq8_chunk_bytes, kq8_rows_chunk, kq_rows_xt, kq_decode, kq_prefill8, kq_prep_bytes, kq_prep_x, kq_row_bytes, kq_rows_x } from "./kquant";

/** F32 weights. scratch unused. */
export function linear_f32(out: usize, x: usize, T: i32, K: i32, w: usize, n0: i32, n1: i32, xStride: i32, outStride: i32, scratch: usize): void {
  if (T == 1) {
    // decode: one row at a time, so the weights are read as ONE sequential stream (the hardware prefetchers keep
    // far more of it in flight than with 2 or 4 rows interleaved: ~1.7x the DRAM bandwidth of the 4-row loop on
    // one core); x stays in L1. Same arithmetic as a lane of dot4_f32.
    const rowBytes = <usize>K << 2;
    let p = w + <usize>n0 * rowBytes;
    for (let n = n0; n < n1; n++) {
      store<f32>(out + (<usize>n << 2), dot1_f32(x, p, K));
      p += rowBytes;
    }
    return;
  }
  linear_tiled(0, out, x, T, K, w, 0, n0, n1, xStride, outStride, scratch);
}

/**
 * x (K floats, K % 8 == 0) -> dst in groups of 8 columns [x0 x2 x4 x6 | x1 x3 x5 x7]: the even/odd columns that the
 * low/high halves of eight 16-bit weights (one v128) pair with.
 */
function deinterleave_x(dst: usize, x: usize, K: i32): void {
  const n = <usize>K << 2;
  for (let i: usize = 0; i < n; i += 32) {
    const a = v128.load(x + i), b = v128.load(x + i, 16);
    v128.store(dst + i, evens(a, b));
    v128.store(dst + i, odds(a, b), 16);
  }
}

/**
 * One BF16 row at w against x deinterleaved at xd (deinterleave_x): 16 weights per step, products summed as
 * [even, odd] x 2 through acc4 (the order the earlier 4-row kernel used per row).
 */
// @ts-ignore: decorator
@inline function dot1_bf16(xd: usize, w: usize, K: i32): f32 {
  const hiMask = i32x4.splat(0xffff0000);
  let p = w, px = xd;
  const end = xd + (<usize>(K >> 4) << 6);
  let a = f32x4.splat(0);
  while (px < end) {
    const v = v128.load(p), u = v128.load(p, 16);
    a = acc4(a, i32x4.shl(v, 16), v128.load(px), v128.and(v, hiMask), v128.load(px, 16),
      i32x4.shl(u, 16), v128.load(px, 32), v128.and(u, hiMask), v128.load(px, 48));
    px += 64; p += 32;
  }
  if (K & 8) {
    const v = v128.load(p);
    a = acc2(a, i32x4.shl(v, 16), v128.load(px), v128.and(v, hiMask), v128.load(px, 16));
  }
  return hsum(a);
}

/** One F16 row at w against x deinterleaved at xd; exact conversion (fast path unless a 16-weight group has exponent 31). */
// @ts-ignore: decorator
@inline function dot1_f16(xd: usize, w: usize, K: i32): f32 {
  let p = w, px = xd;
  const end = xd + (<usize>(K >> 4) << 6);
  let a = f32x4.splat(0);
  while (px < end) {
    const v = v128.load(p), u = v128.load(p, 16);
    if (f16special(v128.or(v, u))) {
      a = acc4(a, f16lo_x(v), v128.load(px), f16hi_x(v), v128.load(px, 16), f16lo_x(u), v128.load(px, 32), f16hi_x(u), v128.load(px, 48));
    } else {
      // f16hi on the raw word: the shift drops the low half's bits into 0..12, which its mask clears
      a = acc4(a, f16hi(i32x4.shl(v, 16)), v128.load(px), f16hi(v), v128.load(px, 16),
        f16hi(i32x4.shl(u, 16)), v128.load(px, 32), f16hi(u), v128.load(px, 48));
    }
    px += 64; p += 32;
  }
  if (K & 8) {
    const v = v128.load(p);
    a = acc2(a, f16lo_x(v), v128.load(px), f16hi_x(v), v128.load(px, 16));
  }
  return hsum(a);
}

/**
 * BF16 weights (u16 words, the top half of an f32). T == 1: widened in registers, one row at a time against x
 * deinterleaved into scratch (4*K bytes); T > 1: linear_tiled (each 4-row block widened to f32 once per token block;
 * scratch linear_scratch(K)).
 */
export function linear_bf16(out: usize, x: usize, T: i32, K: i32, w: usize, n0: i32, n1: i32, xStride: i32, outStride: i32, scratch: usize): void {
  const rowBytes = <usize>K << 1;
  if (T == 1) {
    // decode: x split into even/odd columns once (scratch, 4*K bytes), then one row at a time (one sequential
    // weight stream, see linear_f32)
    deinterleave_x(scratch, x, K);
    let p = w + <usize>n0 * rowBytes;
    for (let n = n0; n < n1; n++) {
      store<f32>(out + (<usize>n << 2), dot1_bf16(scratch, p, K));
      p += rowBytes;
    }
    return;
  }
  linear_tiled(1, out, x, T, K, w, 0, n0, n1, xStride, outStride, scratch);
}

/**
 * F16 weights (IEEE half, exact conversion incl. subnormals, inf and NaN).
 * T == 1: converted in registers, one row at a time against x deinterleaved into scratch (4*K bytes);
 * T > 1: linear_tiled (scratch linear_scratch(K)).
 */
export function linear_f16(out: usize, x: usize, T: i32, K: i32, w: usize, n0: i32, n1: i32, xStride: i32, outStride: i32, scratch: usize): void {
  const rowBytes = <usize>K << 1;
  if (T == 1) {
    // decode: as linear_bf16 (x deinterleaved into scratch, one sequential weight stream)
    deinterleave_x(scratch, x, K);
    let p = w + <usize>n0 * rowBytes;
    for (let n = n0; n < n1; n++) {
      store<f32>(out + (<usize>n << 2), dot1_f16(scratch, p, K));
      p += rowBytes;
    }
    return;
  }
  linear_tiled(2, out, x, T, K, w, 0, n0, n1, xStride, outStride, scratch);
}

/**
 * Q8 weights (int8 [N, K], f32 scales [N, K/32]); K % 32 == 0.
 * T == 1: integer dot products against x quantized to int16 per block (see q8_prep_x; scratch: K*2.125 bytes), one
 * row at a time, or the float path when x has non-finite or tiny blocks. T = 2..Q8M_MAX_T: the same int16 x per token,
 * each row met by all tokens (q8.ts q8m_rows; scratch T*K*2.125 bytes). Larger T, or x with non-finite or tiny blocks:
 * linear_tiled (4 rows at a time dequantized to f32; scratch linear_scratch(K)).
 */
export function linear_q8(out: usize, x: usize, T: i32, K: i32, wq: usize, scales: usize, n0: i32, n1: i32, xStride: i32, outStride: i32, scratch: usize): void {
  if (T == 1) {
    if (q8_prep_x(scratch, x, K)) q8_rows_x(out, scratch, K, wq, scales, n0, n1);
    else q8_rows_float(out, x, K, wq, scales, n0, n1);
    return;
  }
  // few tokens (batched decode): integer dots, each row read once for all tokens; a non-finite or tiny x block: f32 tiles
  if (T <= Q8M_MAX_T && q8m_prep(scratch, x, T, K, xStride)) {
    q8m_rows(out, scratch, T, K, wq, scales, n0, n1, outStride);
    return;
  }
  linear_tiled(3, out, x, T, K, wq, scales, n0, n1, xStride, outStride, scratch);
}

/**
 * GGML block weights (src/tensor/ggml.ts), row-major whole blocks; K a multiple of the block (32 Q4_0, 256 K-quants).
 * T == 1: integer dot products on the packed blocks against x quantized to int16 per 32 (kquant.ts; scratch
 * 16 K + 64 bytes), or the float path when x has non-finite or tiny blocks. T > 1: linear_tiled, 4 rows at a time
 * dequantized to f32 (scratch linear_scratch(K)). The relaxed build's K-quants (dt 5-7) use x in int8 per 256 instead,
 * T == 1 and T > 1 (kq_rows_x, kq_prefill8: unpacked rows meet chunks of tokens; same scratch bounds).
 */
export function linear_q4_0(out: usize, x: usize, T: i32, K: i32, w: usize, n0: i32, n1: i32, xStride: i32, outStride: i32, scratch: usize): void {
  linear_blocks(4, out, x, T, K, w, n0, n1, xStride, outStride, scratch);
}
export function linear_q4_k(out: usize, x: usize, T: i32, K: i32, w: usize, n0: i32, n1: i32, xStride: i32, outStride: i32, scratch: usize): void {
  linear_blocks(5, out, x, T, K, w, n0, n1, xStride, outStride, scratch);
}
export function linear_q5_k(out: usize, x: usize, T: i32, K: i32, w: usize, n0: i32, n1: i32, xStride: i32, outStride: i32, scratch: usize): void {
  linear_blocks(6, out, x, T, K, w, n0, n1, xStride, outStride, scratch);
}
export function linear_q6_k(out: usize, x: usize, T: i32, K: i32, w: usize, n0: i32, n1: i32, xStride: i32, outStride: i32, scratch: usize): void {
  linear_blocks(7, out, x, T, K, w, n0, n1, xStride, outStride, scratch);
}

/** GGML's Q5_0 (q5.ts): T == 1 on the packed blocks (scratch 16 K + 64 bytes), T > 1 through linear_tiled. */
export function linear_q5_0(out: usize, x: usize, T: i32, K: i32, w: usize, n0: i32, n1: i32, xStride: i32, outStride: i32, scratch: usize): void {
  if (T == 1) q5_0_decode(out, x, K, w, n0, n1, scratch);
  else if (!(T <= Q5M_MAX_T && q5_0_few(out, x, T, K, w, n0, n1, xStride, outStride, scratch))) linear_tiled(8, out, x, T, K, w, 0, n0, n1, xStride, outStride, scratch);
}

// @ts-ignore: decorator
@inline function linear_blocks(dt: i32, out: usize, x: usize, T: i32, K: i32, w: usize, n0: i32, n1: i32, xStride: i32, outStride: i32, scratch: usize): void {
  if (T == 1) kq_decode(dt, out, x, K, w, n0, n1, scratch);
  else if (ASC_FEATURE_RELAXED_SIMD && (dt == 5 || dt == 6) && T <= KQ_FEW_T && kq_few(dt, out, x, T, K, w, n0, n1, xStride, outStride, scratch)) return;
  else if (ASC_FEATURE_RELAXED_SIMD && dt >= 5 && dt <= 7) kq_prefill(dt, out, x, T, K, w, n0, n1, xStride, outStride, scratch);
  else linear_tiled(dt, out, x, T, K, w, 0, n0, n1, xStride, outStride, scratch);
}

/**
 * Relaxed-build Q4_K/Q5_K with T = 2..4: each token prepared as for T == 1 into scratch, then kq_rows_xt (as
 * WasmBackend.linear does with x prepared once for all threads; this is the path of linear_grouped's groups and of
 * single-thread calls). False (nothing written) when a token needs the float path.
 */
function kq_few(dt: i32, out: usize, x: usize, T: i32, K: i32, w: usize, n0: i32, n1: i32, xStride: i32, outStride: i32, scratch: usize): bool {
  const rec = <usize>prep_x_bytes(dt, K), xb = <usize>xStride << 2;
  for (let t = 0; t < T; t++) if (!kq_prep_x(dt, scratch + <usize>t * rec, x + <usize>t * xb, K)) return false;
  kq_rows_xt(dt, out, scratch, rec, T, K, w, n0, n1, outStride, scratch + <usize>T * rec);
  return true;
}

/** Relaxed-build K-quant T > 1: int8 chunks of tokens (kquant.ts kq_prefill8); a chunk with a non-finite or tiny block goes through the f32 tiles. */
function kq_prefill(dt: i32, out: usize, x: usize, T: i32, K: i32, w: usize, n0: i32, n1: i32, xStride: i32, outStride: i32, scratch: usize): void {
  const xb = <usize>xStride << 2, ob = <usize>outStride << 2;
  for (let t0 = 0; t0 < T; t0 += KQ8_CHUNK) {
    const cnt = min(KQ8_CHUNK, T - t0), xt = x + <usize>t0 * xb, ot = out + <usize>t0 * ob;
    if (!kq_prefill8(dt, ot, xt, cnt, K, w, n0, n1, xStride, outStride, scratch)) linear_tiled(dt, ot, xt, cnt, K, w, 0, n0, n1, xStride, outStride, scratch);
  }
}

/**
 * G independent products over row blocks of one weight (dt 0 F32, 1 BF16, 2 F16, 3 Q8, 4-7 GGML blocks Q4_0, Q4_K,
 * Q5_K, Q6_K, 8 Q5_0), T tokens each: for g in [g0, g1), t < T, n < N:
 *   out[t*outStride + g*og + n] = sum_k x[t*xStride + g*xg + k] * W[row0 + g*gs + n, k].
 * Absorbed MLA folds W^UK into each head's query this way and applies W^UV (every head's block inside kv_b_proj),
 * one call for all heads: T = 1 for one sequence, T = n for n sequences' decodes at once (each head's block read once
 * for all of them, on the T > 1 paths). Each group is the dtype's own product kernel on the group's rows.
 */
export function linear_grouped(dt: i32, out: usize, x: usize, T: i32, K: i32, w: usize, scales: usize, N: i32, row0: i32, gs: i32, g0: i32, g1: i32, xg: i32, og: i32, xStride: i32, outStride: i32, scratch: usize): void {
  const eb: usize = dt == 0 ? 4 : dt == 3 ? 1 : 2;
  for (let g = g0; g < g1; g++) {
    const r = <usize>(row0 + g * gs);
    const o = out + ((<usize>g * <usize>og) << 2), xp = x + ((<usize>g * <usize>xg) << 2);
    if (dt == 8) {
      linear_q5_0(o, xp, T, K, w + r * q5_0_row_bytes(K), 0, N, xStride, outStride, scratch);
      continue;
    }
    if (dt >= 4) {
      const wg = w + r * kq_row_bytes(dt, K);
      if (dt == 4) linear_blocks(4, o, xp, T, K, wg, 0, N, xStride, outStride, scratch);
      else if (dt == 5) linear_blocks(5, o, xp, T, K, wg, 0, N, xStride, outStride, scratch);
      else if (dt == 6) linear_blocks(6, o, xp, T, K, wg, 0, N, xStride, outStride, scratch);
      else linear_blocks(7, o, xp, T, K, wg, 0, N, xStride, outStride, scratch);
      continue;
    }
    const wg = w + r * <usize>K * eb;
    if (dt == 0) linear_f32(o, xp, T, K, wg, 0, N, xStride, outStride, scratch);
    else if (dt == 1) linear_bf16(o, xp, T, K, wg, 0, N, xStride, outStride, scratch);
    else if (dt == 2) linear_f16(o, xp, T, K, wg, 0, N, xStride, outStride, scratch);
    else linear_q8(o, xp, T, K, wg, scales + ((r * <usize>(K >> 5)) << 2), 0, N, xStride, outStride, scratch);
  }
}

// ---------------------------------------------------------------------------------------------
// T == 1 in two steps for the integer paths (dt 3 Q8, 4-7 GGML's blocks, 8 Q5_0), as linear_grouped numbers them: a
// product split across threads prepares x once (prep_x, on the calling thread) and every thread's rows then read it
// (linear_rows_x), instead of each chunk of rows quantizing x again (~5% of a 4-bit decode step, measured).

/**
 * Bytes prep_x writes at dst for dtype dt and width K, rounded up to a 64-byte line: a thread's 64 bytes of factors
 * follow, and the preparing thread's factors, which it rewrites every block, must not share a cache line with the
 * prepared x the other threads read (that false sharing made 4-bit products at K = 1024 1.5x slower).
 */
export function prep_x_bytes(dt: i32, K: i32): i32 {
  const b: usize = dt == 3 ? q8m_rec(K) : dt == 8 ? q5_0_prep_bytes(K) : kq_prep_bytes(dt, K);
  return <i32>((b + 63) & ~(<usize>63));
}

/** x (K floats) prepared at dst for linear_rows_x; 0 when x has a non-finite or tiny block (use the T == 1 kernels' float path). */
export function prep_x(dt: i32, dst: usize, x: usize, K: i32): i32 {
  if (dt == 3) return q8_prep_x(dst, x, K) ? 1 : 0;
  if (dt == 8) return q5_0_prep(dst, x, K) ? 1 : 0;
  return kq_prep_x(dt, dst, x, K) ? 1 : 0;
}

/**
 * Rows [n0, n1) of a T == 1 product against x prepared by prep_x at xq (read only, shared by the threads). w: row 0
 * (Q8: its int8 rows, scales its f32 block scales; block dtypes: row 0's first block, scales unused). scratch: this
 * thread's, at least prep_x_bytes + 64 bytes (the factors go after prep_x_bytes, so the preparing thread may pass
 * xq as its scratch).
 */
export function linear_rows_x(dt: i32, out: usize, xq: usize, K: i32, w: usize, scales: usize, n0: i32, n1: i32, scratch: usize): void {
  if (dt == 3) q8_rows_x(out, xq, K, w, scales, n0, n1);
  else if (dt == 8) q5_0_rows(out, xq, K, w, n0, n1);
  else kq_rows_x(dt, out, xq, K, w, n0, n1, scratch + <usize>prep_x_bytes(dt, K));
}

/**
 * Relaxed-build T > 1 K-quant product (dt 5-7) on chunks prepared by kq8_prep: rows [n0, n1) of out[t, n] for all T
 * tokens; a chunk flagged 0 goes through the f32 tiles from x. scratch: linear_scratch(K).
 */
export function linear_kq8(dt: i32, out: usize, prep: usize, flags: usize, x: usize, T: i32, K: i32, w: usize, n0: i32, n1: i32, xStride: i32, outStride: i32, scratch: usize): void {
  if (!ASC_FEATURE_RELAXED_SIMD) unreachable(); // the plain build has no int8 tiles (WasmBackend never calls it there)
  else {
    const cb = <usize>kq8_chunk_bytes(K), xb = <usize>xStride << 2, ob = <usize>outStride << 2;
    for (let t0 = 0, c = 0; t0 < T; t0 += KQ8_CHUNK, c++) {
      const cnt = min(KQ8_CHUNK, T - t0), ot = out + <usize>t0 * ob;
      if (load<i32>(flags + (<usize>c << 2))) kq8_rows_chunk(dt, ot, prep + <usize>c * cb, cnt, K, w, n0, n1, outStride, scratch);
      else linear_tiled(dt, ot, x + <usize>t0 * xb, cnt, K, w, 0, n0, n1, xStride, outStride, scratch);
    }
  }
}

/**
 * Rows [n0, n1) of a product of T = 2..4 Q4_K/Q5_K tokens (relaxed build) against x prepared by prep_x for each token
 * at xq, records prep_x_bytes(dt, K) apart (read only, shared by the threads). scratch: this thread's, at least
 * T prep_x_bytes + 64 bytes (the factors go after T records, so the preparing thread may pass xq as its scratch).
 */
export function linear_rows_xt(dt: i32, out: usize, xq: usize, T: i32, K: i32, w: usize, n0: i32, n1: i32, outStride: i32, scratch: usize): void {
  const rec = <usize>prep_x_bytes(dt, K);
  kq_rows_xt(dt, out, xq, rec, T, K, w, n0, n1, outStride, scratch + <usize>T * rec);
}
