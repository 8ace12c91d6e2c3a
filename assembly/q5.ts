// GGML's Q5_0 (dt 8 as linear_grouped numbers it): blocks of 32 weights in 22 bytes, f16 d, 4 bytes qh (bit j is
// the fifth bit of weight j), 16 bytes of nibbles (low: weights 0-15, high: 16-31); w = d (q - 16), q in [0, 31].
// llama.cpp's Q4_K files hold it wherever a row does not divide 256 (DeepSeek-V2-Lite's 1408-wide ffn_down_exps).
// T == 1 reads the packed blocks once, as kquant.ts does Q4_0: x quantized to int16 per block of 32 (q8_prep_x), the
// levels q - 16 as int8 against it in i32x4.dot_i16x8_s (exact in i32), d times x's factor applied per block in f32.
// The relaxed build quantizes x to int8 instead and takes relaxed dot products (q5_0_rows8 below).
// T > 1 goes through linear_tiled (linear-tiled.ts), which widens rows to f32 with widen_q5_0.

import { fma, hsum } from "./simd";
import { f16_at, f16x4_at } from "./f16";
import { q8_prep_x } from "./q8";
import { q8k_chunk } from "./kquant";
import { dot1_f32 } from "./dot-f32";

/** Bytes of a row of K weights (K % 32 == 0). */
// @ts-ignore: decorator
@inline export function q5_0_row_bytes(K: i32): usize {
  return <usize>(K >> 5) * 22;
}

// The constant vectors the T == 1 loop uses, stored in scratch after x's factors and loaded once per call (V8 rebuilds
// a SIMD constant at every use inside a loop, but keeps a loaded vector in a register): 15 in every byte, 16 in every
// byte, the bit of each byte's position (1, 2, .., 128 twice).
function put_constants(cst: usize): void {
  v128.store(cst, i8x16.splat(15));
  v128.store(cst, i8x16.splat(16), 16);
  v128.store(cst, i64x2.splat(0x8040201008040201), 32);
}

/**
 * qh's 4 bytes (lanes 0-3 of q) each repeated 4 times: [b0 x4, b1 x4, b2 x4, b3 x4]; a 32-bit shuffle then gives
 * [b0 x8, b1 x8] or [b2 x8, b3 x8]. Interleaves (punpckl*) are one instruction each in V8, a swizzle (i8x16.swizzle
 * with the spreading indices) three: ~6% faster decode on one core.
 */
// @ts-ignore: decorator
@inline function spread4(q: v128): v128 {
  const q2 = v128.shuffle<u8>(q, q, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  return v128.shuffle<u16>(q2, q2, 0, 0, 1, 1, 2, 2, 3, 3);
}

/** The fifth bits of 16 weights as a byte mask, 0xff where set: s holds their 2 qh bytes 8 times each; bm each byte's bit. */
// @ts-ignore: decorator
@inline function fifth(s: v128, bm: v128): v128 {
  return i8x16.eq(v128.and(s, bm), bm);
}

/** 16 int8 levels against 16 int16 x at d: i32x4 partial sums. */
// @ts-ignore: decorator
@inline function idot16s(a: v128, d: usize): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(a), v128.load(d)), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(a), v128.load(d, 16)));
}

/**
 * The block at p against the int16 x block at d: i32x4 partial sums of (q - 16) X. A weight's level is its nibble less
 * 16 where its fifth bit is clear (andnot of 16 with the bit mask), so no shift moves the bit into place.
 * Measured no faster on one core (7.3 G weights/s here): int16 levels plus a 4 KB table of each qh byte's i16
 * corrections (6.2), i8 corrections from a 2 KB table (6.6), unsigned levels split into even/odd i16 lanes against x
 * reordered once per call, so nothing is sign-extended (7.2). int8 x (llama.cpp's Q8_0 activations, relaxed dot)
 * reached 9.7 at ~4e-3 relative error; the int16 x here keeps 1e-5.
 */
// @ts-ignore: decorator
@inline function q5_0_dot(p: usize, d: usize, cst: usize): v128 {
  const m4 = v128.load(cst), c16 = v128.load(cst, 16), bm = v128.load(cst, 32);
  const v = v128.load(p, 6), h = spread4(v128.load32_zero(p, 2));
  const lo = i8x16.sub(v128.and(v, m4), v128.andnot(c16, fifth(v128.shuffle<u32>(h, h, 0, 0, 1, 1), bm)));
  const hi = i8x16.sub(v128.and(i16x8.shr_u(v, 4), m4), v128.andnot(c16, fifth(v128.shuffle<u32>(h, h, 2, 2, 3, 3), bm)));
  return i32x4.add(idot16s(lo, d), idot16s(hi, d + 32));
}

/** [sum a, sum b, sum c, sum e] of four i32x4, exact. */
// @ts-ignore: decorator
@inline function isum4(a: v128, b: v128, c: v128, e: v128): v128 {
  const ab = i32x4.add(v128.shuffle<i32>(a, b, 0, 1, 4, 5), v128.shuffle<i32>(a, b, 2, 3, 6, 7));
  const ce = i32x4.add(v128.shuffle<i32>(c, e, 0, 1, 4, 5), v128.shuffle<i32>(c, e, 2, 3, 6, 7));
  return i32x4.add(v128.shuffle<i32>(ab, ce, 0, 2, 4, 6), v128.shuffle<i32>(ab, ce, 1, 3, 5, 7));
}

/**
 * Rows [n0, n1) against x prepared at xq (q8_prep_x), one row at a time (one sequential weight stream): 4 blocks per
 * step, their integer sums in the 4 lanes, times [d_b f_b] in one multiply-add (as kquant.ts's q4_0_rows).
 */
function q5_0_rows16(out: usize, xq: usize, K: i32, w: usize, n0: i32, n1: i32): void {
  const nb = <usize>(K >> 5), fac = xq + (nb << 6), cst = fac + (nb << 2), nb4 = nb & ~(<usize>3);
  let p = w + <usize>n0 * q5_0_row_bytes(K);
  for (let n = n0; n < n1; n++) {
    let acc = f32x4.splat(0);
    let b: usize = 0;
    for (; b < nb4; b += 4) {
      const d = xq + (b << 6);
      const i = isum4(q5_0_dot(p, d, cst), q5_0_dot(p + 22, d + 64, cst), q5_0_dot(p + 44, d + 128, cst), q5_0_dot(p + 66, d + 192, cst));
      acc = fma(f32x4.convert_i32x4_s(i), f32x4.mul(f16x4_at(p, 22), v128.load(fac + (b << 2))), acc);
      p += 88;
    }
    for (; b < nb; b++) {
      acc = fma(f32x4.convert_i32x4_s(q5_0_dot(p, xq + (b << 6), cst)), f32x4.splat(f16_at(p) * load<f32>(fac + (b << 2))), acc);
      p += 22;
    }
    store<f32>(out + (<usize>n << 2), hsum(acc));
  }
}

// ---------------------------------------------------------------------------------------------
// Relaxed build: int8 x per block of 32 (llama.cpp's Q8_0 activations, as the K-quants' int8 path in this build; the
// Q5_0 rows of a 4-bit file then carry the same ~4e-3 per product as its K-quant rows) and the levels q in [0, 31]
// unshifted as the 7-bit operand of i16x8.relaxed_dot_i8x16_i7x16_s (pair sums at most 4 * 31 * 127 < 2^15 after the
// two halves are added); the -16 goes through each block's 16 sum X, exact in i32. ~1.3x the int16 path per weight.
// Prepared x: nb blocks of 32 int8 | nb f32 factors | nb i32 16 sum X | 64 bytes of constants (put_constants, then
// eight i16 ones).

/** x (K floats) to the int8 record at dst; false when a block is non-finite or tiny (the float path). */
function q5_0_prep8(dst: usize, x: usize, K: i32): bool {
  const nb = <usize>(K >> 5), fac = dst + (nb << 5), s16 = fac + (nb << 2);
  for (let b: usize = 0; b < nb; b++) {
    const xp = x + (b << 7), q = dst + (b << 5);
    let m = f32x4.abs(v128.load(xp));
    for (let j: usize = 16; j < 128; j += 16) m = f32x4.max(m, f32x4.abs(v128.load(xp + j)));
    const mx = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
    if (!(mx < Infinity)) return false;
    if (mx == 0) {
      v128.store(q, i32x4.splat(0));
      v128.store(q, i32x4.splat(0), 16);
      store<f32>(fac + (b << 2), 0);
      store<i32>(s16 + (b << 2), 0);
      continue;
    }
    if (mx < <f32>7.888609e-31) return false; // 2^-100: 127 / mx would overflow
    const inv = f32x4.splat(<f32>127 / mx);
    const sum = q8k_chunk(q, xp, inv) + q8k_chunk(q + 16, xp + 64, inv);
    store<f32>(fac + (b << 2), mx / <f32>127);
    store<i32>(s16 + (b << 2), sum << 4);
  }
  const cst = s16 + (nb << 2);
  put_constants(cst);
  v128.store(cst, i16x8.splat(1), 48);
  return true;
}

/**
 * A block's levels q = nibble + 16 fifth bit in [0, 31], unshifted, of weights 0-15 (q5_lo) and 16-31 (q5_hi): v its
 * 16 nibble bytes, h its qh bytes through spread4; m4, c16, bm the constant vectors (put_constants).
 */
// @ts-ignore: decorator
@inline function q5_lo(v: v128, h: v128, m4: v128, c16: v128, bm: v128): v128 {
  return v128.or(v128.and(v, m4), v128.and(c16, fifth(v128.shuffle<u32>(h, h, 0, 0, 1, 1), bm)));
}
// @ts-ignore: decorator
@inline function q5_hi(v: v128, h: v128, m4: v128, c16: v128, bm: v128): v128 {
  return v128.or(v128.and(i16x8.shr_u(v, 4), m4), v128.and(c16, fifth(v128.shuffle<u32>(h, h, 2, 2, 3, 3), bm)));
}

/** The block at p against the int8 x block at xb: i32x4 partial sums of q X (q5_lo, q5_hi). */
// @ts-ignore: decorator
@inline function q5_0_dot8(p: usize, xb: usize, cst: usize): v128 {
  const m4 = v128.load(cst), c16 = v128.load(cst, 16), bm = v128.load(cst, 32);
  const v = v128.load(p, 6), h = spread4(v128.load32_zero(p, 2));
  const lo = q5_lo(v, h, m4, c16, bm), hi = q5_hi(v, h, m4, c16, bm);
  const s = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xb), lo), i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xb, 16), hi));
  return i32x4.dot_i16x8_s(s, v128.load(cst, 48));
}

/** Rows [n0, n1) against the int8 record at xq (q5_0_prep8): 4 blocks per step, as q5_0_rows16. */
function q5_0_rows8(out: usize, xq: usize, K: i32, w: usize, n0: i32, n1: i32): void {
  const nb = <usize>(K >> 5), fac = xq + (nb << 5), s16 = fac + (nb << 2), cst = s16 + (nb << 2), nb4 = nb & ~(<usize>3);
  let p = w + <usize>n0 * q5_0_row_bytes(K);
  for (let n = n0; n < n1; n++) {
    let acc = f32x4.splat(0);
    let b: usize = 0;
    for (; b < nb4; b += 4) {
      const d = xq + (b << 5);
      const i = i32x4.sub(isum4(q5_0_dot8(p, d, cst), q5_0_dot8(p + 22, d + 32, cst), q5_0_dot8(p + 44, d + 64, cst), q5_0_dot8(p + 66, d + 96, cst)), v128.load(s16 + (b << 2)));
      acc = fma(f32x4.convert_i32x4_s(i), f32x4.mul(f16x4_at(p, 22), v128.load(fac + (b << 2))), acc);
      p += 88;
    }
    let tail: f32 = 0;
    for (; b < nb; b++) {
      const v = q5_0_dot8(p, xq + (b << 5), cst);
      const t = i32x4.extract_lane(v, 0) + i32x4.extract_lane(v, 1) + i32x4.extract_lane(v, 2) + i32x4.extract_lane(v, 3) - load<i32>(s16 + (b << 2));
      tail += <f32>t * (f16_at(p) * load<f32>(fac + (b << 2)));
      p += 22;
    }
    store<f32>(out + (<usize>n << 2), hsum(acc) + tail);
  }
}

// ---------------------------------------------------------------------------------------------
// Relaxed build, a few tokens (T = 2..Q5M_MAX_T: batched decodes, the tokens one expert gets in a prefill): each token's
// x prepared as at T == 1 (q5_0_prep8, one record each), each row's levels unpacked once into scratch (32 bytes a
// block, then its f32 d per block) and met by every token, 4 at a time, while they sit in L1. About half the work
// per token of T == 1 (no fifth-bit spreading per token) and ~2x the f32 tiles, which widen rows for only a few tokens.

/** Largest T for the few-token path (beyond it the f32 tiles, whose widening is then paid for by many tokens). */
export const Q5M_MAX_T: i32 = 16;

/** Bytes of one token's record (q5_0_prep8) for width K, rounded to a cache line. */
// @ts-ignore: decorator
@inline function q5m_rec(K: i32): usize {
  return (q5_0_prep_bytes(K) + 63) & ~(<usize>63);
}

/** Levels (lo 16 | hi 16 bytes per block) and d (f32 per block, after the levels) of one row at p, into u. */
// @ts-ignore: decorator
@inline function q5_0_unpack_row(u: usize, p: usize, nb: usize, cst: usize): void {
  const m4 = v128.load(cst), c16 = v128.load(cst, 16), bm = v128.load(cst, 32);
  const dOff = nb << 5;
  for (let b: usize = 0; b < nb; b++) {
    const q = p + b * 22;
    const v = v128.load(q, 6), h = spread4(v128.load32_zero(q, 2));
    v128.store(u + (b << 5), q5_lo(v, h, m4, c16, bm));
    v128.store(u + (b << 5), q5_hi(v, h, m4, c16, bm), 16);
    store<f32>(u + dOff + (b << 2), f16_at(q));
  }
}

/** i32x4 partial sums of one unpacked block (levels at l) against a token's int8 x block at xb. */
// @ts-ignore: decorator
@inline function q5m_dot(l: usize, xb: usize, ones: v128): v128 {
  return i32x4.dot_i16x8_s(i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xb), v128.load(l)), i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xb, 16), v128.load(l, 16))), ones);
}

/** One token (record r) against an unpacked row u: the dot product. */
// @ts-ignore: decorator
@inline function q5m_token(u: usize, r: usize, nb: usize, ones: v128): f32 {
  const fac = r + (nb << 5), s16 = fac + (nb << 2), dv = u + (nb << 5), nb4 = nb & ~(<usize>3);
  let acc = f32x4.splat(0);
  let b: usize = 0;
  for (; b < nb4; b += 4) {
    const l = u + (b << 5), xb = r + (b << 5);
    const i = i32x4.sub(isum4(q5m_dot(l, xb, ones), q5m_dot(l + 32, xb + 32, ones), q5m_dot(l + 64, xb + 64, ones), q5m_dot(l + 96, xb + 96, ones)), v128.load(s16 + (b << 2)));
    acc = fma(f32x4.convert_i32x4_s(i), f32x4.mul(v128.load(dv + (b << 2)), v128.load(fac + (b << 2))), acc);
  }
  let tail: f32 = 0;
  for (; b < nb; b++) {
    const v = q5m_dot(u + (b << 5), r + (b << 5), ones);
    const t = i32x4.extract_lane(v, 0) + i32x4.extract_lane(v, 1) + i32x4.extract_lane(v, 2) + i32x4.extract_lane(v, 3) - load<i32>(s16 + (b << 2));
    tail += <f32>t * (load<f32>(dv + (b << 2)) * load<f32>(fac + (b << 2)));
  }
  return hsum(acc) + tail;
}

/**
 * Relaxed-build T = 2..Q5M_MAX_T: rows [n0, n1) of out[t, n]. False (nothing written) when a token needs the float
 * path. Scratch: T q5m_rec(K) + K + 4 (K / 32) bytes.
 */
export function q5_0_few(out: usize, x: usize, T: i32, K: i32, w: usize, n0: i32, n1: i32, xStride: i32, outStride: i32, scratch: usize): bool {
  if (!ASC_FEATURE_RELAXED_SIMD) return false;
  else {
    const nb = <usize>(K >> 5), rec = q5m_rec(K), xb = <usize>xStride << 2, ob = <usize>outStride << 2;
    for (let t = 0; t < T; t++) if (!q5_0_prep8(scratch + <usize>t * rec, x + <usize>t * xb, K)) return false;
    const cst = scratch + (nb << 5) + (nb << 3), ones = v128.load(cst, 48); // token 0's constants
    const u = scratch + <usize>T * rec, rb = q5_0_row_bytes(K);
    for (let n = n0; n < n1; n++) {
      q5_0_unpack_row(u, w + <usize>n * rb, nb, cst);
      const o = out + (<usize>n << 2);
      for (let t = 0; t < T; t++) store<f32>(o + <usize>t * ob, q5m_token(u, scratch + <usize>t * rec, nb, ones));
    }
    return true;
  }
}

// ---------------------------------------------------------------------------------------------
// T == 1 entry points: x prepared once (q5_0_prep: int16 per 32, or int8 in the relaxed build), then rows.

/** Bytes q5_0_prep writes for width K, rounded up to 16. */
export function q5_0_prep_bytes(K: i32): usize {
  if (ASC_FEATURE_RELAXED_SIMD) return (<usize>K + (<usize>(K >> 5) << 3) + 64 + 15) & ~(<usize>15);
  return ((<usize>K << 1) + (<usize>(K >> 5) << 2) + 48 + 15) & ~(<usize>15);
}

/** x prepared at dst for q5_0_rows; false: x needs the float path. */
export function q5_0_prep(dst: usize, x: usize, K: i32): bool {
  if (ASC_FEATURE_RELAXED_SIMD) return q5_0_prep8(dst, x, K);
  if (!q8_prep_x(dst, x, K)) return false;
  put_constants(dst + (<usize>(K >> 5) << 6) + (<usize>(K >> 5) << 2));
  return true;
}

/** Rows [n0, n1) against x prepared by q5_0_prep at xq (read only). */
export function q5_0_rows(out: usize, xq: usize, K: i32, w: usize, n0: i32, n1: i32): void {
  if (ASC_FEATURE_RELAXED_SIMD) q5_0_rows8(out, xq, K, w, n0, n1);
  else q5_0_rows16(out, xq, K, w, n0, n1);
}

/**
 * out[n] = W[n] . x for n in [n0, n1), Q5_0 weights at w (row 0 at w). x with a non-finite or tiny block (q8_prep_x
 * refuses it) takes the float path: each row widened into scratch, then an f32 dot. Scratch: 16 K + 64 bytes.
 */
export function q5_0_decode(out: usize, x: usize, K: i32, w: usize, n0: i32, n1: i32, scratch: usize): void {
  if (q5_0_prep(scratch, x, K)) {
    q5_0_rows(out, scratch, K, w, n0, n1);
    return;
  }
  for (let n = n0; n < n1; n++) {
    widen_q5_0(scratch, w, n, 1, K);
    store<f32>(out + (<usize>n << 2), dot1_f32(x, scratch, K));
  }
}

/** 16 int8 levels in v times s -> 16 floats at dst (exact: |q - 16| <= 16 times an f16 d fits f32's mantissa). */
// @ts-ignore: decorator
@inline function put16s(dst: usize, v: v128, s: v128): void {
  const lo = i16x8.extend_low_i8x16_s(v), hi = i16x8.extend_high_i8x16_s(v);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(lo)), s));
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(lo)), s), 16);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(hi)), s), 32);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(hi)), s), 48);
}

/** f32 copies of rows [r, r + cnt) of a Q5_0 matrix at w at dst: d (q - 16), the reference's values bit for bit. */
export function widen_q5_0(dst: usize, w: usize, r: i32, cnt: i32, K: i32): void {
  const blocks = <usize>cnt * <usize>(K >> 5), src = w + <usize>r * q5_0_row_bytes(K);
  const m4 = i8x16.splat(15), c16 = i8x16.splat(16), bm = i64x2.splat(0x8040201008040201);
  for (let b: usize = 0; b < blocks; b++) {
    const p = src + b * 22, o = dst + (b << 7);
    const v = v128.load(p, 6), h = spread4(v128.load32_zero(p, 2)), d = f32x4.splat(f16_at(p));
    put16s(o, i8x16.sub(v128.and(v, m4), v128.andnot(c16, fifth(v128.shuffle<u32>(h, h, 0, 0, 1, 1), bm))), d);
    put16s(o + 64, i8x16.sub(v128.and(i16x8.shr_u(v, 4), m4), v128.andnot(c16, fifth(v128.shuffle<u32>(h, h, 2, 2, 3, 3), bm))), d);
  }
}
