// GGML's packed block formats (src/tensor/ggml.ts has the layouts and the reference dequantization), dt codes as
// linear_grouped numbers them: 4 Q4_0 (32 weights, 18 bytes), 5 Q4_K (256, 144), 6 Q5_K (256, 176), 7 Q6_K (256, 210).
// The T == 1 products read each weight byte once: x is quantized to int16 per block of 32 (q8_prep_x), each
// sub-block's integer dot product is exact in i32 (i32x4.dot_i16x8_s), and the block scales are applied per
// sub-block in f32. widen_* make the f32 rows the T > 1 tiles (linear-tiled.ts) multiply, equal to the reference
// dequantization bit for bit (each weight is d * q - m rounded once, as in f32 arithmetic it is exact up to that).
// The relaxed-SIMD build takes other paths for the K-quants (the int8 sections at the end): x in int8 per 256 (GGML's
// Q8_K) against the levels in relaxed_dot_i8x16_i7x16, for T == 1 (kq_rows_x) and T > 1 (kq_prefill8); Q4_0 and the
// plain SIMD build keep the int16 and f32 paths above.

import { fma, hsum } from "./simd";
import { f16_at, f16x4_at } from "./f16";
import { q8_prep_x } from "./q8";
import { dot1_f32 } from "./dot-f32";

/** Bytes of a row of K weights of block dtype dt (K a multiple of the block). */
// @ts-ignore: decorator
@inline export function kq_row_bytes(dt: i32, K: i32): usize {
  if (dt == 4) return <usize>(K >> 5) * 18;
  return <usize>(K >> 8) * (dt == 5 ? 144 : dt == 6 ? 176 : 210);
}

/** Scale (low 16 bits) and min (high 16 bits) of sub-block j of a Q4_K/Q5_K block, from its 12 scale bytes at sc. */
// @ts-ignore: decorator
@inline function scale_min(sc: usize, j: i32): u32 {
  const p = sc + <usize>j;
  if (j < 4) return (<u32>load<u8>(p) & 63) | ((<u32>load<u8>(p, 4) & 63) << 16);
  const b = <u32>load<u8>(p, 4);
  return ((b & 15) | ((<u32>load<u8>(p - 4) >> 6) << 4)) | (((b >> 4) | ((<u32>load<u8>(p) >> 6) << 4)) << 16);
}

// ---------------------------------------------------------------------------------------------
// T == 1: x prepared by kq_prep (scratch: nb blocks of 32 int16, nb f32 factors, nb f32 block sums f * sum X, then
// 80 bytes of constant vectors: 15, 0x30, 32, 16, 8 in every byte, then 64 bytes for a block's sub-block factors)

/** 32 u8/i8 weights (two vectors of 16, extended as signed or unsigned) against one int16 x block at d: i32x4. */
// @ts-ignore: decorator
@inline function idot32u(a: v128, b: v128, d: usize): v128 {
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(a), v128.load(d)), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(a), v128.load(d, 16))),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(b), v128.load(d, 32)), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(b), v128.load(d, 48))));
}
// @ts-ignore: decorator
@inline function idot16s(a: v128, d: usize): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(a), v128.load(d)), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(a), v128.load(d, 16)));
}

/** x (K floats) -> int16 blocks, factors and block sums at dst; false when x needs the float path (see q8_prep_x). */
function kq_prep(dst: usize, x: usize, K: i32, sums: bool): bool {
  if (!q8_prep_x(dst, x, K)) return false;
  const nb = <usize>(K >> 5);
  const fac = dst + (nb << 6), bs = fac + (nb << 2), one = i16x8.splat(1);
  // the kernels' byte masks and offsets, loaded from memory: V8 rebuilds a SIMD constant at every use inside a loop
  // (several instructions each), but keeps a loaded vector in a register or reloads it with one instruction
  const cst = bs + (nb << 2);
  v128.store(cst, i8x16.splat(15));
  v128.store(cst, i8x16.splat(0x30), 16);
  v128.store(cst, i8x16.splat(32), 32);
  v128.store(cst, i8x16.splat(16), 48);
  v128.store(cst, i8x16.splat(8), 64);
  if (!sums) return true;
  // the K-quants' mins multiply sum_k x_k over each sub-block: f * sum X, X summed exactly in i32
  for (let b: usize = 0; b < nb; b++) {
    const d = dst + (b << 6);
    const s = i32x4.add(i32x4.add(i32x4.dot_i16x8_s(v128.load(d), one), i32x4.dot_i16x8_s(v128.load(d, 16), one)),
      i32x4.add(i32x4.dot_i16x8_s(v128.load(d, 32), one), i32x4.dot_i16x8_s(v128.load(d, 48), one)));
    const t = i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1) + i32x4.extract_lane(s, 2) + i32x4.extract_lane(s, 3);
    store<f32>(bs + (b << 2), <f32>t * load<f32>(fac + (b << 2)));
  }
  return true;
}

// Four sub-blocks' i32x4 partial sums reduced to one vector [sum a, sum b, sum c, sum d] in two steps, ipair as
// soon as two are known (fewer live vectors: V8 has 16 SIMD registers on x64), then ifin; all exact in i32.
// @ts-ignore: decorator
@inline function ipair(a: v128, b: v128): v128 {
  return i32x4.add(v128.shuffle<i32>(a, b, 0, 1, 4, 5), v128.shuffle<i32>(a, b, 2, 3, 6, 7));
}
// @ts-ignore: decorator
@inline function ifin(ab: v128, cd: v128): v128 {
  return i32x4.add(v128.shuffle<i32>(ab, cd, 0, 2, 4, 6), v128.shuffle<i32>(ab, cd, 1, 3, 5, 7));
}
// @ts-ignore: decorator
@inline function isum4(a: v128, b: v128, c: v128, d: v128): v128 {
  return ifin(ipair(a, b), ipair(c, d));
}

/** Q4_0 block at p (nibbles minus 8 as int8) against the int16 x block at d: i32x4 partial sums. */
// @ts-ignore: decorator
@inline function q4_0_dot(p: usize, d: usize): v128 {
  const v = v128.load(p, 2), m4 = i8x16.splat(15), c8 = i8x16.splat(8);
  return i32x4.add(idot16s(i8x16.sub(v128.and(v, m4), c8), d), idot16s(i8x16.sub(v128.and(i16x8.shr_u(v, 4), m4), c8), d + 32));
}

/** Q4_0 rows [n0, n1): 4 blocks at a time, their integer sums in the 4 lanes, times [d_b f_b] in one multiply-add. */
function q4_0_rows(out: usize, xq: usize, K: i32, w: usize, n0: i32, n1: i32): void {
  const nb = <usize>(K >> 5), fac = xq + (nb << 6), nb4 = nb & ~(<usize>3);
  let p = w + <usize>n0 * kq_row_bytes(4, K);
  for (let n = n0; n < n1; n++) {
    let acc = f32x4.splat(0);
    let b: usize = 0;
    for (; b < nb4; b += 4) {
      const d = xq + (b << 6);
      const i = isum4(q4_0_dot(p, d), q4_0_dot(p + 18, d + 64), q4_0_dot(p + 36, d + 128), q4_0_dot(p + 54, d + 192));
      acc = fma(f32x4.convert_i32x4_s(i), f32x4.mul(f16x4_at(p, 18), v128.load(fac + (b << 2))), acc);
      p += 72;
    }
    for (; b < nb; b++) {
      acc = fma(f32x4.convert_i32x4_s(q4_0_dot(p, xq + (b << 6))), f32x4.splat(f16_at(p) * load<f32>(fac + (b << 2))), acc);
      p += 18;
    }
    store<f32>(out + (<usize>n << 2), hsum(acc));
  }
}

/**
 * The 12 scale bytes of a Q4_K/Q5_K block at sc as 16 bytes: the 8 sub-block scales, then the 8 mins (6 bits each;
 * get_scale_min_k4 on whole 32-bit words, as llama.cpp's SIMD kernels unpack them).
 */
// @ts-ignore: decorator
@inline function scales_mins(sc: usize): v128 {
  const w0 = load<u32>(sc), w1 = load<u32>(sc, 4), w2 = load<u32>(sc, 8);
  const lo6: u32 = 0x3f3f3f3f, lo4: u32 = 0x0f0f0f0f, lo2: u32 = 0x03030303;
  let v = i32x4.splat(w0 & lo6);
  v = i32x4.replace_lane(v, 1, (w2 & lo4) | (((w0 >> 6) & lo2) << 4));
  v = i32x4.replace_lane(v, 2, w1 & lo6);
  return i32x4.replace_lane(v, 3, ((w2 >> 4) & lo4) | (((w1 >> 6) & lo2) << 4));
}

// The row loops below take one sub-block pair (32 weights) per iteration, the accumulator carried from one to the
// next: with a whole 256-weight block in one straight body, V8's scheduler hoists every load to the top and
// spills most of them (2-3x slower). Each block's per-sub-block factors d sc_s f_s go to `fs` in scratch first and
// are broadcast from there. Byte shifts are 16-bit shifts plus the mask each use applies anyway (wasm's i8x16
// shifts cost a mask more on x64): the bits a 16-bit shift carries across the byte boundary land outside the mask.

/** Bits b of each byte of h (b = 0..7) moved to bit 4 (worth 16), the rest cleared. */
// @ts-ignore: decorator
@inline function bit16(h: v128, b: i32, m16: v128): v128 {
  return v128.and(i16x8.shl(i16x8.shr_u(h, b), 4), m16);
}

/**
 * Q4_K (five false) and Q5_K rows [n0, n1): sub-blocks 2j (low nibbles of the j-th 32 bytes) and 2j + 1 (high), Q5_K's
 * fifth bits at bit 2j / 2j + 1 of qh. Per block: sum w x = sum_s d sc_s f_s (sum q X)_s - dmin sum_s m_s (f sum X)_s.
 */
// @ts-ignore: decorator
@inline function q45k_rows(out: usize, xq: usize, K: i32, w: usize, n0: i32, n1: i32, five: bool, fs: usize): void {
  const nb = <usize>(K >> 5), fac = xq + (nb << 6), bs = fac + (nb << 2), cst = bs + (nb << 2);
  const m4 = v128.load(cst), m16 = v128.load(cst, 48);
  const size: usize = five ? 176 : 144, qsOff: usize = five ? 48 : 16;
  let p = w + <usize>n0 * kq_row_bytes(five ? 6 : 5, K);
  for (let n = n0; n < n1; n++) {
    let acc = f32x4.splat(0), macc = f32x4.splat(0);
    for (let xb: usize = 0; xb < nb; xb += 8) {
      const sm = scales_mins(p + 4);
      const s16 = i16x8.extend_low_i8x16_u(sm), m16s = i16x8.extend_high_i8x16_u(sm);
      const d = f32x4.splat(f16_at(p)), dmin = f32x4.splat(f16_at(p + 2));
      v128.store(fs, f32x4.mul(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_u(s16)), d), v128.load(fac + (xb << 2))));
      v128.store(fs, f32x4.mul(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_u(s16)), d), v128.load(fac + (xb << 2), 16)), 16);
      macc = fma(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_u(m16s)), dmin), v128.load(bs + (xb << 2)), macc);
      macc = fma(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_u(m16s)), dmin), v128.load(bs + (xb << 2), 16), macc);
      const qs = p + qsOff, xd = xq + (xb << 6);
      for (let j = 0; j < 4; j++) {
        const o = <usize>j << 5, q0 = v128.load(qs + o), q1 = v128.load(qs + o, 16);
        let a0 = v128.and(q0, m4), a1 = v128.and(q1, m4);
        let c0 = v128.and(i16x8.shr_u(q0, 4), m4), c1 = v128.and(i16x8.shr_u(q1, 4), m4);
        if (five) {
          const h0 = v128.load(p, 16), h1 = v128.load(p, 32), b = j << 1;
          a0 = v128.or(a0, bit16(h0, b, m16)); a1 = v128.or(a1, bit16(h1, b, m16));
          c0 = v128.or(c0, bit16(h0, b + 1, m16)); c1 = v128.or(c1, bit16(h1, b + 1, m16));
        }
        const xj = xd + (<usize>j << 7);
        acc = fma(f32x4.convert_i32x4_s(idot32u(a0, a1, xj)), v128.load32_splat(fs + (<usize>j << 3)), acc);
        acc = fma(f32x4.convert_i32x4_s(idot32u(c0, c1, xj + 64)), v128.load32_splat(fs + (<usize>j << 3), 4), acc);
      }
      p += size;
    }
    store<f32>(out + (<usize>n << 2), hsum(acc) - hsum(macc));
  }
}
function q4k_rows(out: usize, xq: usize, K: i32, w: usize, n0: i32, n1: i32, fs: usize): void {
  q45k_rows(out, xq, K, w, n0, n1, false, fs);
}
function q5k_rows(out: usize, xq: usize, K: i32, w: usize, n0: i32, n1: i32, fs: usize): void {
  q45k_rows(out, xq, K, w, n0, n1, true, fs);
}



/**
 * Q6_K rows [n0, n1). A block is 2 halves of 128 weights, each 4 groups of 32 (k = 4 half + g): group g's levels are
 * the low (g < 2) or high nibbles of ql[32 (g & 1) ..] with bits 2g, 2g + 1 of qh on top, as int8 q - 32; the group
 * holds sub-blocks 2k and 2k + 1 (16 weights each, int8 scales) and meets x block k.
 */
function q6k_rows(out: usize, xq: usize, K: i32, w: usize, n0: i32, n1: i32, fs: usize): void {
  const nb = <usize>(K >> 5), fac = xq + (nb << 6), cst = fac + (nb << 3);
  const m4 = v128.load(cst), m30 = v128.load(cst, 16), c32 = v128.load(cst, 32);
  let p = w + <usize>n0 * kq_row_bytes(7, K);
  for (let n = n0; n < n1; n++) {
    let acc = f32x4.splat(0);
    for (let xb: usize = 0; xb < nb; xb += 8) {
      // fs[s] = d sc_s f_(xb + s/2) for the 16 sub-blocks
      const d = f32x4.splat(f16_at(p + 208)), sc = v128.load(p + 192);
      const s0 = i16x8.extend_low_i8x16_s(sc), s1 = i16x8.extend_high_i8x16_s(sc);
      const f0 = f32x4.mul(v128.load(fac + (xb << 2)), d), f1 = f32x4.mul(v128.load(fac + (xb << 2), 16), d);
      v128.store(fs, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(s0)), v128.shuffle<f32>(f0, f0, 0, 0, 1, 1)));
      v128.store(fs, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(s0)), v128.shuffle<f32>(f0, f0, 2, 2, 3, 3)), 16);
      v128.store(fs, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(s1)), v128.shuffle<f32>(f1, f1, 0, 0, 1, 1)), 32);
      v128.store(fs, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(s1)), v128.shuffle<f32>(f1, f1, 2, 2, 3, 3)), 48);
      for (let k = 0; k < 8; k++) {
        const g = k & 3, half = <usize>(k >> 2);
        const ql = p + (half << 6) + (<usize>(g & 1) << 5), qh = p + 128 + (half << 5);
        const nib = (g >> 1) << 2, hb = g << 1;
        const a = i8x16.sub(q6_levels(v128.load(ql), v128.load(qh), nib, hb, m4, m30), c32);
        const b = i8x16.sub(q6_levels(v128.load(ql, 16), v128.load(qh, 16), nib, hb, m4, m30), c32);
        const xd = xq + ((xb + <usize>k) << 6), f = fs + (<usize>k << 3);
        acc = fma(f32x4.convert_i32x4_s(idot16s(a, xd)), v128.load32_splat(f), acc);
        acc = fma(f32x4.convert_i32x4_s(idot16s(b, xd + 32)), v128.load32_splat(f, 4), acc);
      }
      p += 210;
    }
    store<f32>(out + (<usize>n << 2), hsum(acc));
  }
}

/** T == 1 float path (x has non-finite or tiny blocks): each row widened into scratch (4 K bytes), then an f32 dot. */
function kq_rows_float(dt: i32, out: usize, x: usize, K: i32, w: usize, n0: i32, n1: i32, scratch: usize): void {
  for (let n = n0; n < n1; n++) {
    widen_blocks(dt, scratch, w, n, 1, K);
    store<f32>(out + (<usize>n << 2), dot1_f32(x, scratch, K));
  }
}

/** out[n] = W[n] . x for n in [n0, n1), weights of block dtype dt at w (row 0 at w); scratch: 16 K + 64 bytes. */
export function kq_decode(dt: i32, out: usize, x: usize, K: i32, w: usize, n0: i32, n1: i32, scratch: usize): void {
  if (!kq_prep_x(dt, scratch, x, K)) {
    kq_rows_float(dt, out, x, K, w, n0, n1, scratch);
    return;
  }
  kq_rows_x(dt, out, scratch, K, w, n0, n1, scratch + kq_prep_bytes(dt, K));
}

// The T == 1 product in two steps, so that a product split across threads prepares x once (WasmBackend.linear runs
// kq_prep_x on the calling thread, then every thread's rows read the one prepared x): kq_prep_x writes the prepared
// x (read-only from then on), kq_rows_x takes each thread's own 64 bytes of block factors at fs.

/** Bytes kq_prep_x writes for width K, rounded up to 16 (a thread's fs may follow at once). */
export function kq_prep_bytes(dt: i32, K: i32): usize {
  if (ASC_FEATURE_RELAXED_SIMD && dt >= 5 && dt <= 7) return kq8_stride(K);
  return ((<usize>K << 1) + (<usize>(K >> 5) << 3) + 80 + 15) & ~(<usize>15); // int16 blocks, factors, sums, constants
}

/** x (K floats) prepared at dst for kq_rows_x of dtype dt; false when x needs the float path (kq_rows_float). */
export function kq_prep_x(dt: i32, dst: usize, x: usize, K: i32): bool {
  if (ASC_FEATURE_RELAXED_SIMD && dt >= 5 && dt <= 7) return kq8_quant(dst, x, K);
  return kq_prep(dst, x, K, dt == 5 || dt == 6);
}

/** Rows [n0, n1) against x prepared at xq (kq_prep_x); fs: 64 bytes of this thread's own. */
export function kq_rows_x(dt: i32, out: usize, xq: usize, K: i32, w: usize, n0: i32, n1: i32, fs: usize): void {
  if (ASC_FEATURE_RELAXED_SIMD && dt >= 5 && dt <= 7) {
    if (dt == 7) q6k_rows8(out, xq, K, w, n0, n1, fs);
    else if (dt == 6) q45k_rows8_t(1, out, 0, xq, 0, K, w, n0, n1, true, fs);
    else q45k_rows8_t(1, out, 0, xq, 0, K, w, n0, n1, false, fs);
    return;
  }
  if (dt == 4) q4_0_rows(out, xq, K, w, n0, n1);
  else if (dt == 7) q6k_rows(out, xq, K, w, n0, n1, fs);
  else if (dt == 6) q5k_rows(out, xq, K, w, n0, n1, fs);
  else q4k_rows(out, xq, K, w, n0, n1, fs);
}

// ---------------------------------------------------------------------------------------------
// f32 rows for the T > 1 tiles

/** 16 u8 levels in v -> dst[0..16) = s * q + o (one rounding: s * q is exact in f32 for these formats). */
// @ts-ignore: decorator
@inline function put16u(dst: usize, v: v128, s: v128, o: v128): void {
  const lo = i16x8.extend_low_i8x16_u(v), hi = i16x8.extend_high_i8x16_u(v);
  v128.store(dst, fma(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_u(lo)), s, o));
  v128.store(dst, fma(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_u(lo)), s, o), 16);
  v128.store(dst, fma(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_u(hi)), s, o), 32);
  v128.store(dst, fma(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_u(hi)), s, o), 48);
}
/** 16 i8 levels in v -> dst[0..16) = s * q. */
// @ts-ignore: decorator
@inline function put16s(dst: usize, v: v128, s: v128): void {
  const lo = i16x8.extend_low_i8x16_s(v), hi = i16x8.extend_high_i8x16_s(v);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(lo)), s));
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(lo)), s), 16);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(hi)), s), 32);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(hi)), s), 48);
}

/** Q4_0 blocks at w -> f32 at dst: d * (q - 8). */
function widen_q4_0(dst: usize, w: usize, blocks: usize): void {
  const m4 = i8x16.splat(15), c8 = i8x16.splat(8);
  for (let b: usize = 0; b < blocks; b++) {
    const p = w + b * 18, o = dst + (b << 7);
    const v = v128.load(p, 2), d = f32x4.splat(f16_at(p));
    put16s(o, i8x16.sub(v128.and(v, m4), c8), d);
    put16s(o + 64, i8x16.sub(v128.and(i16x8.shr_u(v, 4), m4), c8), d);
  }
}

/**
 * Q4_K / Q5_K blocks of 256 at w -> f32 at dst: (d sc) q - (dmin m), the products as the reference rounds them. One
 * sub-block per iteration, as the row loops (a 16-bit shift and a mask in place of each byte shift).
 */
// @ts-ignore: decorator
@inline function widen_q45k(dst: usize, w: usize, blocks: usize, five: bool): void {
  const m4 = i8x16.splat(15), m16 = i8x16.splat(16), size: usize = five ? 176 : 144, qsOff: usize = five ? 48 : 16;
  for (let b: usize = 0; b < blocks; b++) {
    const p = w + b * size, o = dst + (b << 10);
    const d = f16_at(p), dmin = f16_at(p + 2), sc = p + 4, qs = p + qsOff;
    for (let s = 0; s < 8; s++) {
      // sub-block s: the low (s even) or high nibbles of bytes 32 (s / 2) .., Q5_K's fifth bit s of qh
      const q = qs + (<usize>(s >> 1) << 5), sh = (s & 1) << 2;
      let a0 = v128.and(i16x8.shr_u(v128.load(q), sh), m4), a1 = v128.and(i16x8.shr_u(v128.load(q, 16), sh), m4);
      if (five) {
        a0 = v128.or(a0, bit16(v128.load(p, 16), s, m16));
        a1 = v128.or(a1, bit16(v128.load(p, 32), s, m16));
      }
      const sm = scale_min(sc, s);
      const ds = f32x4.splat(d * <f32>(sm & 0xffff)), dm = f32x4.splat(-(dmin * <f32>(sm >> 16)));
      const os = o + (<usize>s << 7);
      put16u(os, a0, ds, dm);
      put16u(os + 64, a1, ds, dm);
    }
  }
}
function widen_q4k(dst: usize, w: usize, blocks: usize): void {
  widen_q45k(dst, w, blocks, false);
}
function widen_q5k(dst: usize, w: usize, blocks: usize): void {
  widen_q45k(dst, w, blocks, true);
}

/** Q6_K blocks of 256 at w -> f32 at dst: (d sc) (q - 32), one 32-weight group per iteration (see q6k_rows). */
function widen_q6k(dst: usize, w: usize, blocks: usize): void {
  const m4 = i8x16.splat(15), m30 = i8x16.splat(0x30), c32 = i8x16.splat(32);
  for (let b: usize = 0; b < blocks; b++) {
    const p = w + b * 210, d = f16_at(p + 208);
    for (let k = 0; k < 8; k++) {
      const g = k & 3, half = <usize>(k >> 2);
      const ql = p + (half << 6) + (<usize>(g & 1) << 5), qh = p + 128 + (half << 5);
      const nib = (g >> 1) << 2, hb = g << 1;
      const a = i8x16.sub(q6_levels(v128.load(ql), v128.load(qh), nib, hb, m4, m30), c32);
      const c = i8x16.sub(q6_levels(v128.load(ql, 16), v128.load(qh, 16), nib, hb, m4, m30), c32);
      const o = dst + (b << 10) + (<usize>k << 7), sc = p + 192 + (<usize>k << 1);
      put16s(o, a, f32x4.splat(d * <f32>load<i8>(sc)));
      put16s(o + 64, c, f32x4.splat(d * <f32>load<i8>(sc, 1)));
    }
  }
}

/** f32 copies of rows [r, r + cnt) of a block-dtype matrix at w (rows are consecutive whole blocks) at dst. */
export function widen_blocks(dt: i32, dst: usize, w: usize, r: i32, cnt: i32, K: i32): void {
  const rb = kq_row_bytes(dt, K), src = w + <usize>r * rb;
  if (dt == 4) widen_q4_0(dst, src, <usize>cnt * <usize>(K >> 5));
  else if (dt == 7) widen_q6k(dst, src, <usize>cnt * <usize>(K >> 8));
  else if (dt == 6) widen_q5k(dst, src, <usize>cnt * <usize>(K >> 8));
  else widen_q4k(dst, src, <usize>cnt * <usize>(K >> 8));
}

// ---------------------------------------------------------------------------------------------
// Int8 activations (relaxed build only; ASC_FEATURE_RELAXED_SIMD). As GGML's Q8_K (ggml-cpu quants.c): each token's
// x is quantized to int8 per block of 256 (X = round(127 x / max|x|), factor xd = max|x| / 127) with its per-16 and
// per-32 sums kept in i16, and the K-quants' levels, all in [0, 63], are the 7-bit operand of
// i16x8.relaxed_dot_i8x16_i7x16_s (x86: pmaddubsw, 16 multiply-adds into 8 i16 pair sums, exact: at most
// 2 * 63 * 127 < 2^15). The pair sums meet the sub-block's integer scale in i32x4.dot_i16x8_s (pmaddwd), so a whole
// 256-weight block accumulates in i32 and takes one float multiply-add; the mins (Q4_K/Q5_K) and Q6_K's -32 go
// through the x sums. Error: x rounded to 1/254 of its block's largest |x| (~2-4e-3 relative on a dot product of
// random data, as llama.cpp's).
//
// A token's record (kq8_stride bytes): K int8 | per 256-block: 16 i16 sums of 16 | 8 i16 sums of 32 | f32 xd.

/** Bytes of one token's int8 record for width K (a multiple of 256), rounded up to 16. */
// @ts-ignore: decorator
@inline function kq8_stride(K: i32): usize {
  const nb = <usize>(K >> 8);
  return (<usize>K + nb * 52 + 15) & ~(<usize>15);
}

/** 16 floats at xp times inv, rounded to int8 at q; returns their sum (exact, in i32). */
// @ts-ignore: decorator
@inline export function q8k_chunk(q: usize, xp: usize, inv: v128): i32 {
  const X0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(xp), inv)));
  const X1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(xp, 16), inv)));
  const X2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(xp, 32), inv)));
  const X3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(xp, 48), inv)));
  v128.store(q, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(X0, X1), i16x8.narrow_i32x4_s(X2, X3)));
  const s = i32x4.add(i32x4.add(X0, X1), i32x4.add(X2, X3));
  return i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1) + i32x4.extract_lane(s, 2) + i32x4.extract_lane(s, 3);
}

/** max |x| over the 256 floats at xp */
// @ts-ignore: decorator
@inline function absmax256(xp: usize): f32 {
  let m = f32x4.abs(v128.load(xp));
  for (let j: usize = 16; j < 1024; j += 16) m = f32x4.max(m, f32x4.abs(v128.load(xp + j)));
  return max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
}

/** x (K floats) -> the token record at dst; false when a block is non-finite or tiny (the caller's float path). */
function kq8_quant(dst: usize, x: usize, K: i32): bool {
  const nb = <usize>(K >> 8);
  const s16 = dst + <usize>K, s32 = s16 + (nb << 5), xd = s32 + (nb << 4);
  for (let b: usize = 0; b < nb; b++) {
    const xp = x + (b << 10), q = dst + (b << 8);
    const mx = absmax256(xp);
    if (!(mx < Infinity)) return false;
    if (mx == 0) {
      memory.fill(q, 0, 256);
      memory.fill(s16 + (b << 5), 0, 32);
      memory.fill(s32 + (b << 4), 0, 16);
      store<f32>(xd + (b << 2), 0);
      continue;
    }
    if (mx < <f32>7.888609e-31) return false; // 2^-100: 127 / mx would overflow
    const inv = f32x4.splat(<f32>127 / mx);
    for (let c: usize = 0; c < 16; c += 2) {
      const a = q8k_chunk(q + (c << 4), xp + (c << 6), inv), e = q8k_chunk(q + (c << 4) + 16, xp + (c << 6) + 64, inv);
      store<i16>(s16 + (b << 5) + (c << 1), a);
      store<i16>(s16 + (b << 5) + (c << 1), e, 2);
      store<i16>(s32 + (b << 4) + c, a + e);
    }
    store<f32>(xd + (b << 2), mx / <f32>127);
  }
  return true;
}

/** 16 int8 x at xp against 16 levels (0..63) in l, pair sums (i16x8) times the i16 scale splatted from sp: i32x4. */
// @ts-ignore: decorator
@inline function i8dot16(xp: usize, l: v128, s: v128): v128 {
  return i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xp), l), s);
}
/** As i8dot16 over 32 weights sharing one scale: the two pair sums added in i16 first (at most 4 * 15 * 127 for Q4_K, 4 * 31 * 127 for Q5_K). */
// @ts-ignore: decorator
@inline function i8dot32(xp: usize, l0: v128, l1: v128, s: v128): v128 {
  return i32x4.dot_i16x8_s(i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xp), l0), i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xp, 16), l1)), s);
}

/**
 * The levels of 16 Q4_K/Q5_K weights from their 16 bytes q: the low nibbles (lo45, sub-block 2j) or the high ones
 * (hi45, 2j + 1), with Q5_K's fifth bits (bits 0 and 1 of h, h shifted right by 2 per sub-block pair) worth 16.
 */
// @ts-ignore: decorator
@inline function lo45(q: v128, h: v128, five: bool, m4: v128, m16: v128): v128 {
  const a = v128.and(q, m4);
  return five ? v128.or(a, v128.and(i16x8.shl(h, 4), m16)) : a;
}
// @ts-ignore: decorator
@inline function hi45(q: v128, h: v128, five: bool, m4: v128, m16: v128): v128 {
  const c = v128.and(i16x8.shr_u(q, 4), m4);
  return five ? v128.or(c, v128.and(i16x8.shl(h, 3), m16)) : c;
}


/** A token's part of one Q4_K/Q5_K sub-block pair: levels a (low nibbles), c (high) against its x at xj, scales at sp. */
// @ts-ignore: decorator
@inline function q45k_pair8(iacc: v128, xj: usize, a0: v128, a1: v128, c0: v128, c1: v128, s0: v128, s1: v128): v128 {
  return i32x4.add(i32x4.add(iacc, i8dot32(xj, a0, a1, s0)), i8dot32(xj + 32, c0, c1, s1));
}

/**
 * Q4_K (five false) / Q5_K rows [n0, n1) for cnt = 1..4 tokens (a literal at each call site) whose records
 * (kq8_quant) lie rec bytes apart from xr: per block, token by token, d xd sum_s sc_s (q . X)_s - dmin xd sum_s m_s
 * (sum X)_s, the first sum in i32 over the block. Each block's nibbles are split once and met by every token
 * (batched decodes of 2-4 sequences; the int8 tiles unpack a row for a quad of tokens, which costs them as much again
 * when only 2 are there). out[t * ob + n]; fs: 16 bytes of this thread's own.
 */
// @ts-ignore: decorator
@inline function q45k_rows8_t(cnt: i32, out: usize, ob: usize, xr: usize, rec: usize, K: i32, w: usize, n0: i32, n1: i32, five: bool, fs: usize): void {
  const nb = <usize>(K >> 8), s32o = <usize>K + (nb << 5), xdo = s32o + (nb << 4);
  const x1 = xr + rec, x2 = x1 + rec, x3 = x2 + rec;
  const m4 = i8x16.splat(15), m16 = i8x16.splat(16);
  const size: usize = five ? 176 : 144, qsOff: usize = five ? 48 : 16;
  let p = w + <usize>n0 * kq_row_bytes(five ? 6 : 5, K);
  for (let n = n0; n < n1; n++) {
    let f0 = f32x4.splat(0), f1 = f32x4.splat(0), f2 = f32x4.splat(0), f3 = f32x4.splat(0);
    for (let b: usize = 0; b < nb; b++) {
      const sm = scales_mins(p + 4), d = f16_at(p), dmin = f16_at(p + 2);
      v128.store(fs, i16x8.extend_low_i8x16_u(sm));
      const mv = i16x8.extend_high_i8x16_u(sm), so = s32o + (b << 4), xo = xdo + (b << 2);
      let i0 = i32x4.splat(0), i1 = i0, i2 = i0, i3 = i0;
      const qs = p + qsOff, xb = b << 8;
      let h0 = five ? v128.load(p, 16) : m4, h1 = five ? v128.load(p, 32) : m4;
      for (let j = 0; j < 4; j++) {
        const o = <usize>j << 5, q0 = v128.load(qs + o), q1 = v128.load(qs + o, 16);
        const a0 = lo45(q0, h0, five, m4, m16), a1 = lo45(q1, h1, five, m4, m16);
        const c0 = hi45(q0, h0, five, m4, m16), c1 = hi45(q1, h1, five, m4, m16);
        if (five) { h0 = i16x8.shr_u(h0, 2); h1 = i16x8.shr_u(h1, 2); }
        const xj = xb + (<usize>j << 6), sp = fs + (<usize>j << 2);
        const s0 = v128.load16_splat(sp), s1 = v128.load16_splat(sp, 2);
        i0 = q45k_pair8(i0, xr + xj, a0, a1, c0, c1, s0, s1);
        if (cnt > 1) i1 = q45k_pair8(i1, x1 + xj, a0, a1, c0, c1, s0, s1);
        if (cnt > 2) i2 = q45k_pair8(i2, x2 + xj, a0, a1, c0, c1, s0, s1);
        if (cnt > 3) i3 = q45k_pair8(i3, x3 + xj, a0, a1, c0, c1, s0, s1);
      }
      // per token: xd (d sum_s sc_s (q . X)_s - dmin sum_s m_s (sum X)_s), the mins against the token's per-32 sums
      f0 = kq8_few_fin(f0, i0, mv, xr + so, load<f32>(xr + xo), d, dmin);
      if (cnt > 1) f1 = kq8_few_fin(f1, i1, mv, x1 + so, load<f32>(x1 + xo), d, dmin);
      if (cnt > 2) f2 = kq8_few_fin(f2, i2, mv, x2 + so, load<f32>(x2 + xo), d, dmin);
      if (cnt > 3) f3 = kq8_few_fin(f3, i3, mv, x3 + so, load<f32>(x3 + xo), d, dmin);
      p += size;
    }
    const o = out + (<usize>n << 2);
    store<f32>(o, hsum(f0));
    if (cnt > 1) store<f32>(o + ob, hsum(f1));
    if (cnt > 2) store<f32>(o + 2 * ob, hsum(f2));
    if (cnt > 3) store<f32>(o + 3 * ob, hsum(f3));
  }
}

/** acc + xd (d i - dmin (mins . sums)) in the lanes (their sum is the block's part of the token's output). */
// @ts-ignore: decorator
@inline function kq8_few_fin(acc: v128, i: v128, mv: v128, sums: usize, xd: f32, d: f32, dmin: f32): v128 {
  const mins = i32x4.dot_i16x8_s(mv, v128.load(sums));
  return fma(f32x4.convert_i32x4_s(mins), f32x4.splat(-dmin * xd), fma(f32x4.convert_i32x4_s(i), f32x4.splat(d * xd), acc));
}

/** Most tokens of kq_rows_xt (src/backends/wasm/index.ts sends the same 2..4 tokens there). */
export const KQ_FEW_T: i32 = 4;

/**
 * Relaxed-build Q4_K / Q5_K (dt 5, 6) rows [n0, n1) for T = 2..KQ_FEW_T tokens prepared by kq_prep_x at xq, records
 * kq_prep_bytes apart rounded to a cache line (see linear_rows_xt); fs: 64 bytes of this thread's own.
 */
export function kq_rows_xt(dt: i32, out: usize, xq: usize, rec: usize, T: i32, K: i32, w: usize, n0: i32, n1: i32, outStride: i32, fs: usize): void {
  if (!ASC_FEATURE_RELAXED_SIMD) unreachable();
  else {
    const ob = <usize>outStride << 2;
    if (dt == 6) {
      if (T == 2) q45k_rows8_t(2, out, ob, xq, rec, K, w, n0, n1, true, fs);
      else if (T == 3) q45k_rows8_t(3, out, ob, xq, rec, K, w, n0, n1, true, fs);
      else q45k_rows8_t(4, out, ob, xq, rec, K, w, n0, n1, true, fs);
    } else {
      if (T == 2) q45k_rows8_t(2, out, ob, xq, rec, K, w, n0, n1, false, fs);
      else if (T == 3) q45k_rows8_t(3, out, ob, xq, rec, K, w, n0, n1, false, fs);
      else q45k_rows8_t(4, out, ob, xq, rec, K, w, n0, n1, false, fs);
    }
  }
}

/** Q6_K level bytes (0..63) of 16 weights: nibbles at bit nib of ql, bits hb, hb + 1 of qh on top (see q6k_rows). */
// @ts-ignore: decorator
@inline function q6_levels(ql: v128, qh: v128, nib: i32, hb: i32, m4: v128, m30: v128): v128 {
  return v128.or(v128.and(i16x8.shr_u(ql, nib), m4), v128.and(i16x8.shl(i16x8.shr_u(qh, hb), 4), m30));
}

/** Q6_K rows against the token record: d xd (sum_s sc_s (q . X)_s - 32 sum_s sc_s (sum X)_s), all in i32 per block. */
function q6k_rows8(out: usize, xr: usize, K: i32, w: usize, n0: i32, n1: i32, fs: usize): void {
  const nb = <usize>(K >> 8), s16 = xr + <usize>K, xdp = s16 + (nb << 5) + (nb << 4);
  const m4 = i8x16.splat(15), m30 = i8x16.splat(0x30);
  let p = w + <usize>n0 * kq_row_bytes(7, K);
  for (let n = n0; n < n1; n++) {
    let acc = f32x4.splat(0);
    for (let b: usize = 0; b < nb; b++) {
      const sc = v128.load(p + 192), sl = i16x8.extend_low_i8x16_s(sc), sh = i16x8.extend_high_i8x16_s(sc);
      v128.store(fs, sl);
      v128.store(fs, sh, 16);
      const bs = s16 + (b << 5);
      const off = i32x4.add(i32x4.dot_i16x8_s(sl, v128.load(bs)), i32x4.dot_i16x8_s(sh, v128.load(bs, 16)));
      let iacc = i32x4.sub(i32x4.splat(0), i32x4.shl(off, 5));
      const xb = xr + (b << 8);
      // groups g = e and e + 2 of a half share their ql bytes (low / high nibbles) and qh bytes (bits 2e.. / 2e + 4..):
      // one shift of qh by 2e serves both, the rest are constant shifts (a variable one costs V8 three instructions)
      for (let i = 0; i < 4; i++) {
        const half = <usize>(i >> 1), e = <usize>(i & 1), k = (half << 2) + e;
        const ql = p + (half << 6) + (e << 5), qh = p + 128 + (half << 5), hs = <i32>e << 1;
        const l0 = v128.load(ql), l1 = v128.load(ql, 16), h0 = i16x8.shr_u(v128.load(qh), hs), h1 = i16x8.shr_u(v128.load(qh, 16), hs);
        const xk = xb + (k << 5), sp = fs + (k << 2);
        iacc = i32x4.add(iacc, i8dot16(xk, v128.or(v128.and(l0, m4), v128.and(i16x8.shl(h0, 4), m30)), v128.load16_splat(sp)));
        iacc = i32x4.add(iacc, i8dot16(xk + 16, v128.or(v128.and(l1, m4), v128.and(i16x8.shl(h1, 4), m30)), v128.load16_splat(sp, 2)));
        iacc = i32x4.add(iacc, i8dot16(xk + 64, v128.or(v128.and(i16x8.shr_u(l0, 4), m4), v128.and(h0, m30)), v128.load16_splat(sp, 8)));
        iacc = i32x4.add(iacc, i8dot16(xk + 80, v128.or(v128.and(i16x8.shr_u(l1, 4), m4), v128.and(h1, m30)), v128.load16_splat(sp, 10)));
      }
      acc = fma(f32x4.convert_i32x4_s(iacc), f32x4.splat(f16_at(p + 208) * load<f32>(xdp + (b << 2))), acc);
      p += 210;
    }
    store<f32>(out + (<usize>n << 2), hsum(acc));
  }
}


// ---------------------------------------------------------------------------------------------
// T > 1 on int8 activations (relaxed build): each row is unpacked once per chunk of tokens into a common form, then
// every token of the chunk meets it with the same integer dot products as T == 1 (the levels are no longer re-masked
// per token). A block's unpacked record (KQ_REC bytes): 256 levels (0..63) | 16 i16x8 vectors, the integer scale of
// each 16 weights splatted (pmaddwd operand) | 16 i16 offsets o_c | f32 d, f32 dm. A block of the row then adds
// xd (d sum_c sc_c (q . X)_c - dm sum_c o_c (sum X)_c): Q4_K/Q5_K o_c = the min of the sub-block, dm = dmin;
// Q6_K o_c = 32 sc_c, dm = d.

const KQ_REC: usize = 576;
/** Tokens quantized per chunk (kq_prefill8): 64 tokens of ~1.1 K bytes stay in L2 while a row pair meets them all. */
export const KQ8_CHUNK: i32 = 64;

/** A block's i16 scale splats from the n scales at tmp: 8 (Q4_K/Q5_K, one per 32 weights) or 16 (Q6_K, per 16). */
// @ts-ignore: decorator
@inline function put_splats(r: usize, tmp: usize, n: usize): void {
  for (let c: usize = 0; c < n; c++) v128.store(r + 256 + (c << 4), v128.load16_splat(tmp + (c << 1)));
}

/** Unpack a Q4_K / Q5_K row (nb blocks at p) into records at rec, 2 KQ_REC apart (see kq8_tile); tmp: 32 bytes. */
// @ts-ignore: decorator
@inline function unpack_q45k(rec: usize, p: usize, nb: usize, five: bool, tmp: usize): void {
  const m4 = i8x16.splat(15), m16 = i8x16.splat(16);
  const size: usize = five ? 176 : 144, qsOff: usize = five ? 48 : 16;
  for (let b: usize = 0; b < nb; b++) {
    const r = rec + b * (KQ_REC << 1), q = p + b * size, sm = scales_mins(q + 4);
    const m = i16x8.extend_high_i8x16_u(sm);
    v128.store(tmp, i16x8.extend_low_i8x16_u(sm));
    put_splats(r, tmp, 8);
    v128.store(r + 512, v128.shuffle<i16>(m, m, 0, 0, 1, 1, 2, 2, 3, 3));
    v128.store(r + 528, v128.shuffle<i16>(m, m, 4, 4, 5, 5, 6, 6, 7, 7));
    store<f32>(r + 544, f16_at(q));
    store<f32>(r + 548, f16_at(q + 2));
    let h0 = v128.load(q, 16), h1 = v128.load(q, 32);
    for (let j: usize = 0; j < 4; j++) {
      const qs = q + qsOff + (j << 5), q0 = v128.load(qs), q1 = v128.load(qs, 16);
      const a0 = lo45(q0, h0, five, m4, m16), a1 = lo45(q1, h1, five, m4, m16);
      const c0 = hi45(q0, h0, five, m4, m16), c1 = hi45(q1, h1, five, m4, m16);
      if (five) { h0 = i16x8.shr_u(h0, 2); h1 = i16x8.shr_u(h1, 2); }
      const o = r + (j << 6);
      v128.store(o, a0); v128.store(o, a1, 16); v128.store(o, c0, 32); v128.store(o, c1, 48);
    }
  }
}

/** Unpack a Q6_K row into records (levels q, not q - 32; the -32 goes through the offsets). */
function unpack_q6k(rec: usize, p: usize, nb: usize, tmp: usize): void {
  const m4 = i8x16.splat(15), m30 = i8x16.splat(0x30);
  for (let b: usize = 0; b < nb; b++) {
    const r = rec + b * (KQ_REC << 1), q = p + b * 210, sc = v128.load(q + 192);
    const sl = i16x8.extend_low_i8x16_s(sc), sh = i16x8.extend_high_i8x16_s(sc);
    v128.store(tmp, sl);
    v128.store(tmp, sh, 16);
    put_splats(r, tmp, 16);
    v128.store(r + 512, i16x8.shl(sl, 5));
    v128.store(r + 528, i16x8.shl(sh, 5));
    const d = f16_at(q + 208);
    store<f32>(r + 544, d);
    store<f32>(r + 548, d);
    for (let k = 0; k < 8; k++) {
      const g = k & 3, half = <usize>(k >> 2);
      const ql = q + (half << 6) + (<usize>(g & 1) << 5), qh = q + 128 + (half << 5);
      const nib = (g >> 1) << 2, hb = g << 1, o = r + (<usize>k << 5);
      v128.store(o, q6_levels(v128.load(ql), v128.load(qh), nib, hb, m4, m30));
      v128.store(o, q6_levels(v128.load(ql, 16), v128.load(qh, 16), nib, hb, m4, m30), 16);
    }
  }
}

// The tiles below meet 2 rows with 4 tokens. Their operands are laid out so that every load is a base plus a constant
// (V8 folds it into the instruction; a computed address costs an extra instruction per load): the rows' records
// interleaved by block (row 1's block b right after row 0's), and the 4 tokens of a quad interleaved per 16 bytes of x
// (token j's bytes 16i.. at quad + 64 i + 16 j), their per-16 sums after the K * 4 bytes of x (block b, token j:
// + 128 b + 32 j), their factors xd token-minor in a table (block b: xdt + KQ8_CHUNK 4 b, 4 tokens in one load).

/** Quad bytes for width K: 4 tokens' int8 x, then their per-16 sums. */
// @ts-ignore: decorator
@inline function kq8_quad(K: i32): usize {
  return (<usize>K << 2) + (<usize>(K >> 8) << 7);
}

/** Token j of a quad from its record at xr (kq8_quant): x, sums; its factors to the table at xdt. */
function kq8_scatter(quad: usize, j: usize, xr: usize, K: i32, xdt: usize): void {
  const nb = <usize>(K >> 8), k = <usize>K;
  for (let i: usize = 0; i < k; i += 16) v128.store(quad + (i << 2) + (j << 4), v128.load(xr + i));
  for (let b: usize = 0; b < nb; b++) {
    const d = quad + (k << 2) + (b << 7) + (j << 5), s = xr + k + (b << 5);
    v128.store(d, v128.load(s));
    v128.store(d, v128.load(s, 16), 16);
    store<f32>(xdt + ((b * <usize>KQ8_CHUNK) << 2), load<f32>(xr + k + nb * 48 + (b << 2)));
  }
}

/** i16 pair sums of 32 int8 x (x, y) against 32 levels (l, l2), added (at most 4 * 31 * 127 < 2^15 for Q4_K/Q5_K) */
// @ts-ignore: decorator
@inline function i8pair(x: v128, y: v128, l: v128, l2: v128): v128 {
  return i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(x, l), i16x8.relaxed_dot_i8x16_i7x16_s(y, l2));
}

/**
 * Block of 2 rows (records r, r + KQ_REC) against a quad's block (x at xq): the 8 i32x4 sums to ia (row-major).
 * One scale per 32 (Q4_K/Q5_K): the two 16-weight pair sums are added in i16 before the pmaddwd.
 */
// @ts-ignore: decorator
@inline function kq8_block8_32(ia: usize, r: usize, xq: usize): void {
  let i0 = i32x4.splat(0), i1 = i32x4.splat(0), i2 = i32x4.splat(0), i3 = i32x4.splat(0);
  let j0 = i32x4.splat(0), j1 = i32x4.splat(0), j2 = i32x4.splat(0), j3 = i32x4.splat(0);
  for (let c: usize = 0; c < 256; c += 32) {
    const w = r + c, sp = r + (c >> 1), xp = xq + (c << 2);
    const l = v128.load(w), l2 = v128.load(w, 16), m = v128.load(w, KQ_REC), m2 = v128.load(w, KQ_REC + 16);
    let x = v128.load(xp), y = v128.load(xp, 64);
    i0 = i32x4.add(i0, i32x4.dot_i16x8_s(i8pair(x, y, l, l2), v128.load(sp, 256)));
    j0 = i32x4.add(j0, i32x4.dot_i16x8_s(i8pair(x, y, m, m2), v128.load(sp, KQ_REC + 256)));
    x = v128.load(xp, 16); y = v128.load(xp, 80);
    i1 = i32x4.add(i1, i32x4.dot_i16x8_s(i8pair(x, y, l, l2), v128.load(sp, 256)));
    j1 = i32x4.add(j1, i32x4.dot_i16x8_s(i8pair(x, y, m, m2), v128.load(sp, KQ_REC + 256)));
    x = v128.load(xp, 32); y = v128.load(xp, 96);
    i2 = i32x4.add(i2, i32x4.dot_i16x8_s(i8pair(x, y, l, l2), v128.load(sp, 256)));
    j2 = i32x4.add(j2, i32x4.dot_i16x8_s(i8pair(x, y, m, m2), v128.load(sp, KQ_REC + 256)));
    x = v128.load(xp, 48); y = v128.load(xp, 112);
    i3 = i32x4.add(i3, i32x4.dot_i16x8_s(i8pair(x, y, l, l2), v128.load(sp, 256)));
    j3 = i32x4.add(j3, i32x4.dot_i16x8_s(i8pair(x, y, m, m2), v128.load(sp, KQ_REC + 256)));
  }
  v128.store(ia, i0); v128.store(ia, i1, 16); v128.store(ia, i2, 32); v128.store(ia, i3, 48);
  v128.store(ia, j0, 64); v128.store(ia, j1, 80); v128.store(ia, j2, 96); v128.store(ia, j3, 112);
}

/** As kq8_block8_32 with one scale per 16 weights (Q6_K). */
// @ts-ignore: decorator
@inline function kq8_block8_16(ia: usize, r: usize, xq: usize): void {
  let i0 = i32x4.splat(0), i1 = i32x4.splat(0), i2 = i32x4.splat(0), i3 = i32x4.splat(0);
  let j0 = i32x4.splat(0), j1 = i32x4.splat(0), j2 = i32x4.splat(0), j3 = i32x4.splat(0);
  for (let c: usize = 0; c < 256; c += 16) {
    const w = r + c, xp = xq + (c << 2);
    const l = v128.load(w), s = v128.load(w, 256), m = v128.load(w, KQ_REC), u = v128.load(w, KQ_REC + 256);
    let x = v128.load(xp);
    i0 = i32x4.add(i0, i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x, l), s));
    j0 = i32x4.add(j0, i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x, m), u));
    x = v128.load(xp, 16);
    i1 = i32x4.add(i1, i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x, l), s));
    j1 = i32x4.add(j1, i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x, m), u));
    x = v128.load(xp, 32);
    i2 = i32x4.add(i2, i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x, l), s));
    j2 = i32x4.add(j2, i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x, m), u));
    x = v128.load(xp, 48);
    i3 = i32x4.add(i3, i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x, l), s));
    j3 = i32x4.add(j3, i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x, m), u));
  }
  v128.store(ia, i0); v128.store(ia, i1, 16); v128.store(ia, i2, 32); v128.store(ia, i3, 48);
  v128.store(ia, j0, 64); v128.store(ia, j1, 80); v128.store(ia, j2, 96); v128.store(ia, j3, 112);
}

/** o . (sum X) for token j's block: the offsets (ol, oh) against its 16 per-16 sums (at bs + 32 j), i32x4 partial sums. */
// @ts-ignore: decorator
@inline function kq8_off(ol: v128, oh: v128, bs: usize, j: usize): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(ol, v128.load(bs + (j << 5))), i32x4.dot_i16x8_s(oh, v128.load(bs + (j << 5), 16)));
}

/**
 * The float step of one row's block (record r) for a quad's 4 tokens in the lanes: f + xd (d i - dm o . sum X), the
 * tokens' i32 sums at ia (4 vectors), their per-16 sums at bs, their factors in xdv.
 */
// @ts-ignore: decorator
@inline function kq8_fin(f: v128, ia: usize, r: usize, bs: usize, xdv: v128): v128 {
  const ol = v128.load(r + 512), oh = v128.load(r + 528);
  const i = ifin(ipair(v128.load(ia), v128.load(ia, 16)), ipair(v128.load(ia, 32), v128.load(ia, 48)));
  const o = ifin(ipair(kq8_off(ol, oh, bs, 0), kq8_off(ol, oh, bs, 1)), ipair(kq8_off(ol, oh, bs, 2), kq8_off(ol, oh, bs, 3)));
  const fi = fma(f32x4.convert_i32x4_s(i), f32x4.mul(v128.load32_splat(r + 544), xdv), f);
  return fma(f32x4.convert_i32x4_s(o), f32x4.mul(v128.load32_splat(r + 548), f32x4.neg(xdv)), fi);
}

/** Lanes 0..cnt-1 of f to out, ob apart. */
// @ts-ignore: decorator
@inline function store_lanes(out: usize, ob: usize, f: v128, cnt: i32): void {
  store<f32>(out, f32x4.extract_lane(f, 0));
  if (cnt > 1) store<f32>(out + ob, f32x4.extract_lane(f, 1));
  if (cnt > 2) store<f32>(out + 2 * ob, f32x4.extract_lane(f, 2));
  if (cnt > 3) store<f32>(out + 3 * ob, f32x4.extract_lane(f, 3));
}

/**
 * rows unpacked rows (1 or 2, records at rec) against the quad at xq (cnt <= 4 tokens; the other lanes are computed
 * from whatever the scratch holds and never stored, as is a lone row's partner), their factors at xdt:
 * out[t * ob + 4 r]. ia: 128 bytes.
 */
function kq8_tile(out: usize, ob: usize, rec: usize, rows: i32, xq: usize, xdt: usize, K: i32, cnt: i32, ia: usize, per32: bool): void {
  const nb = <usize>(K >> 8), sums = xq + (<usize>K << 2);
  let f0 = f32x4.splat(0), f1 = f32x4.splat(0);
  for (let b: usize = 0; b < nb; b++) {
    const r = rec + b * (KQ_REC << 1), xb = xq + (b << 10), bs = sums + (b << 7);
    if (per32) kq8_block8_32(ia, r, xb);
    else kq8_block8_16(ia, r, xb);
    const xdv = v128.load(xdt + ((b * <usize>KQ8_CHUNK) << 2));
    f0 = kq8_fin(f0, ia, r, bs, xdv);
    if (rows == 2) f1 = kq8_fin(f1, ia + 64, r + KQ_REC, bs, xdv);
  }
  store_lanes(out, ob, f0, cnt);
  if (rows == 2) store_lanes(out + 4, ob, f1, cnt);
}

/**
 * Relaxed-build T > 1 for the K-quants (dt 5-7), one chunk of cnt <= KQ8_CHUNK tokens: out[t, n] for n in [n0, n1).
 * False (nothing written) when a token needs the float path. Scratch: 16 kq8_quad(K) + kq8_stride(K) + 2 (K / 256) KQ_REC + 160 + K.
 */
export function kq_prefill8(dt: i32, out: usize, x: usize, cnt: i32, K: i32, w: usize, n0: i32, n1: i32, xStride: i32, outStride: i32, scratch: usize): bool {
  const prep = scratch, xr = scratch + kq8_chunk_bytes(K);
  if (!kq8_prep_chunk(prep, x, cnt, K, xStride, xr)) return false;
  kq8_rows_chunk(dt, out, prep, cnt, K, w, n0, n1, outStride, xr);
  return true;
}

// A chunk of up to KQ8_CHUNK tokens prepared for the tiles (kq8_chunk_bytes): 16 quads (kq8_quad(K) each), then the
// tokens' factors xd (block b, token t at + 4 (KQ8_CHUNK b + t)). kq_prefill8 prepares one chunk in its own scratch;
// WasmBackend.linear prepares every chunk of a product once in shared memory (kq8_prep) and every thread's rows read
// them (linear_kq8), instead of each chunk of rows quantizing all the tokens again (7-10% of a 64-token product).

/** Tokens per prepared chunk (KQ8_CHUNK), for the JS side. */
export function kq8_chunk_tokens(): i32 {
  return KQ8_CHUNK;
}

/** Bytes of one prepared chunk for width K, a multiple of 64. */
export function kq8_chunk_bytes(K: i32): i32 {
  const b: usize = <usize>16 * kq8_quad(K) + ((<usize>(K >> 8) * <usize>KQ8_CHUNK) << 2);
  return <i32>((b + 63) & ~(<usize>63));
}

/** cnt <= KQ8_CHUNK tokens of x (rows xStride floats apart) prepared at prep; xr: kq8_stride(K) bytes of scratch. */
function kq8_prep_chunk(prep: usize, x: usize, cnt: i32, K: i32, xStride: i32, xr: usize): bool {
  const xb = <usize>xStride << 2, qb = kq8_quad(K), xdt = prep + 16 * qb;
  for (let t = 0; t < cnt; t++) {
    if (!kq8_quant(xr, x + <usize>t * xb, K)) return false;
    kq8_scatter(prep + <usize>(t >> 2) * qb, <usize>(t & 3), xr, K, xdt + (<usize>t << 2));
  }
  return true;
}

/** Rows [n0, n1) against a prepared chunk of cnt tokens: out[t, n]. scratch: 2 (K / 256) KQ_REC + 160 + K bytes. */
export function kq8_rows_chunk(dt: i32, out: usize, prep: usize, cnt: i32, K: i32, w: usize, n0: i32, n1: i32, outStride: i32, scratch: usize): void {
  const nb = <usize>(K >> 8), ob = <usize>outStride << 2, qb = kq8_quad(K), xdt = prep + 16 * qb;
  const rec = scratch, tmp = rec + 2 * nb * KQ_REC, ia = tmp + 32;
  const rb = kq_row_bytes(dt, K);
  for (let n = n0; n < n1; n += 2) {
    const rows = min(2, n1 - n);
    for (let r = 0; r < rows; r++) unpack_row(dt, rec + <usize>r * KQ_REC, w + <usize>(n + r) * rb, nb, tmp);
    const on = out + (<usize>n << 2);
    for (let t = 0; t < cnt; t += 4) {
      kq8_tile(on + <usize>t * ob, ob, rec, rows, prep + <usize>(t >> 2) * qb, xdt + (<usize>t << 2), K, min(4, cnt - t), ia, dt != 7);
    }
  }
}

/** Chunks [c0, c1) of T tokens prepared at prep (kq8_chunk_bytes apart), flags[c] 1 when chunk c is, 0 when it needs the float path. */
export function kq8_prep(prep: usize, x: usize, T: i32, K: i32, xStride: i32, flags: usize, c0: i32, c1: i32, scratch: usize): void {
  if (!ASC_FEATURE_RELAXED_SIMD) unreachable(); // the plain build has no int8 tiles (WasmBackend never calls it there)
  else {
    const cb = <usize>kq8_chunk_bytes(K), xb = <usize>xStride << 2;
    for (let c = c0; c < c1; c++) {
      const t0 = c * KQ8_CHUNK, cnt = min(KQ8_CHUNK, T - t0);
      store<i32>(flags + (<usize>c << 2), kq8_prep_chunk(prep + <usize>c * cb, x + <usize>t0 * xb, cnt, K, xStride, scratch) ? 1 : 0);
    }
  }
}


function unpack_row(dt: i32, rec: usize, p: usize, nb: usize, tmp: usize): void {
  if (dt == 7) unpack_q6k(rec, p, nb, tmp);
  else if (dt == 6) unpack_q45k(rec, p, nb, true, tmp);
  else unpack_q45k(rec, p, nb, false, tmp);
}
