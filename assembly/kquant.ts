// GGML's packed block formats (src/tensor/ggml.ts has the layouts and the reference dequantization), dt codes as
// linear_grouped numbers them: 4 Q4_0 (32 weights, 18 bytes), 5 Q4_K (256, 144), 6 Q5_K (256, 176), 7 Q6_K (256, 210).
// The T == 1 products read each weight byte once: x is quantized to int16 per block of 32 (q8_prep_x), each
// sub-block's integer dot product is exact in i32 (i32x4.dot_i16x8_s), and the block scales are applied per
// sub-block in f32. widen_* make the f32 rows the T > 1 tiles (linear-tiled.ts) multiply, equal to the reference
// dequantization bit for bit (each weight is d * q - m rounded once, as in f32 arithmetic it is exact up to that).

import { fma, hsum } from "./simd";
import { q8_prep_x } from "./q8";
import { dot1_f32 } from "./dot-f32";

/** Bytes of a row of K weights of block dtype dt (K a multiple of the block). */
// @ts-ignore: decorator
@inline export function kq_row_bytes(dt: i32, K: i32): usize {
  if (dt == 4) return <usize>(K >> 5) * 18;
  return <usize>(K >> 8) * (dt == 5 ? 144 : dt == 6 ? 176 : 210);
}

/** IEEE half -> f32, exact (the lane trick of f16.ts on one value: rebias by 2^112, then fix exponent 31). */
// @ts-ignore: decorator
@inline function f16_at(p: usize): f32 {
  const h = <u32>load<u16>(p);
  let b = reinterpret<u32>(reinterpret<f32>((h & 0x7fff) << 13) * reinterpret<f32>(0x77800000)) | ((h & 0x8000) << 16);
  if ((h & 0x7c00) == 0x7c00) b |= 0x7f800000;
  return reinterpret<f32>(b);
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
      let s = f32x4.splat(f16_at(p));
      s = f32x4.replace_lane(s, 1, f16_at(p + 18));
      s = f32x4.replace_lane(s, 2, f16_at(p + 36));
      s = f32x4.replace_lane(s, 3, f16_at(p + 54));
      acc = fma(f32x4.convert_i32x4_s(i), f32x4.mul(s, v128.load(fac + (b << 2))), acc);
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
@inline function q45k_rows(out: usize, xq: usize, K: i32, w: usize, n0: i32, n1: i32, five: bool): void {
  const nb = <usize>(K >> 5), fac = xq + (nb << 6), bs = fac + (nb << 2), cst = bs + (nb << 2), fs = cst + 80;
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
function q4k_rows(out: usize, xq: usize, K: i32, w: usize, n0: i32, n1: i32): void {
  q45k_rows(out, xq, K, w, n0, n1, false);
}
function q5k_rows(out: usize, xq: usize, K: i32, w: usize, n0: i32, n1: i32): void {
  q45k_rows(out, xq, K, w, n0, n1, true);
}

/**
 * Q6_K rows [n0, n1). A block is 2 halves of 128 weights, each 4 groups of 32 (k = 4 half + g): group g's levels are
 * the low (g < 2) or high nibbles of ql[32 (g & 1) ..] with bits 2g, 2g + 1 of qh on top, as int8 q - 32; the group
 * holds sub-blocks 2k and 2k + 1 (16 weights each, int8 scales) and meets x block k.
 */
function q6k_rows(out: usize, xq: usize, K: i32, w: usize, n0: i32, n1: i32): void {
  const nb = <usize>(K >> 5), fac = xq + (nb << 6), cst = fac + (nb << 3), fs = cst + 80;
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
        const a = i8x16.sub(v128.or(v128.and(i16x8.shr_u(v128.load(ql), nib), m4), v128.and(i16x8.shl(i16x8.shr_u(v128.load(qh), hb), 4), m30)), c32);
        const b = i8x16.sub(v128.or(v128.and(i16x8.shr_u(v128.load(ql, 16), nib), m4), v128.and(i16x8.shl(i16x8.shr_u(v128.load(qh, 16), hb), 4), m30)), c32);
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
  if (!kq_prep(scratch, x, K, dt == 5 || dt == 6)) {
    kq_rows_float(dt, out, x, K, w, n0, n1, scratch);
    return;
  }
  if (dt == 4) q4_0_rows(out, scratch, K, w, n0, n1);
  else if (dt == 7) q6k_rows(out, scratch, K, w, n0, n1);
  else if (dt == 6) q5k_rows(out, scratch, K, w, n0, n1);
  else q4k_rows(out, scratch, K, w, n0, n1);
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
      const a = i8x16.sub(v128.or(v128.and(i16x8.shr_u(v128.load(ql), nib), m4), v128.and(i16x8.shl(i16x8.shr_u(v128.load(qh), hb), 4), m30)), c32);
      const c = i8x16.sub(v128.or(v128.and(i16x8.shr_u(v128.load(ql, 16), nib), m4), v128.and(i16x8.shl(i16x8.shr_u(v128.load(qh, 16), hb), 4), m30)), c32);
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
