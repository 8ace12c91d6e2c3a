// IEEE half -> f32 on SIMD lanes, exact (subnormals, inf and NaN included), for the F16 products.

// A half sitting in the top 16 bits of each i32 lane (whatever is in the low 16 bits is
// shifted into bits 0..12 and masked off).
// Arithmetic shift by 3 puts exponent+mantissa at bits 13..27 (f32 exponent field = half exponent),
// and keeps the sign at bit 31; the AND clears the sign copies at bits 28..30. Multiplying by 2^112
// rebiases the exponent: exact for normals AND subnormals (a half subnormal becomes an f32 subnormal first).
// Exponent 31 (inf/nan) comes out finite (>= 2^16) and must be fixed by f16fix.
// @ts-ignore: decorator
@inline export function f16hi(v: v128): v128 {
  return f32x4.mul(v128.and(i32x4.shr_s(v, 3), i32x4.splat(0x8fffe000)), f32x4.splat(5.192296858534828e33));
}
// The inf/nan fix-up: OR an all-ones exponent into lanes whose half exponent is 31 (mantissa kept -> NaN stays NaN).
// @ts-ignore: decorator
@inline export function f16fix(f: v128, v: v128): v128 {
  const infnan = i32x4.eq(v128.and(v, i32x4.splat(0x7c000000)), i32x4.splat(0x7c000000));
  return v128.or(f, v128.and(infnan, i32x4.splat(0x7f800000)));
}
/** Any of the 8 halves in v has exponent 31? */
// @ts-ignore: decorator
@inline export function f16special(v: v128): bool {
  return v128.any_true(i16x8.eq(v128.and(v, i16x8.splat(0x7c00)), i16x8.splat(0x7c00)));
}

/** Exact f32 of the low halves (even elements) / high halves (odd elements) of 8 f16 words. */
// @ts-ignore: decorator
@inline export function f16lo_x(v: v128): v128 {
  const l = i32x4.shl(v, 16);
  return f16fix(f16hi(l), l);
}
// @ts-ignore: decorator
@inline export function f16hi_x(v: v128): v128 {
  const h = v128.and(v, i32x4.splat(0xffff0000));
  return f16fix(f16hi(h), h);
}

/** 8 halves at p -> 8 floats at dst (in order), exact. */
// @ts-ignore: decorator
@inline export function f16x8_to_f32(dst: usize, p: usize): void {
  const v = v128.load(p);
  const lo = i32x4.shl(v, 16);
  const hi = v128.and(v, i32x4.splat(0xffff0000));
  let fl = f16hi(lo);
  let fh = f16hi(hi);
  if (f16special(v)) {
    fl = f16fix(fl, lo);
    fh = f16fix(fh, hi);
  }
  v128.store(dst, v128.shuffle<f32>(fl, fh, 0, 4, 1, 5));
  v128.store(dst, v128.shuffle<f32>(fl, fh, 2, 6, 3, 7), 16);
}

/** The half at p -> f32, exact (the lane trick of f16hi on one value: rebias by 2^112, then fix exponent 31). */
// @ts-ignore: decorator
@inline export function f16_at(p: usize): f32 {
  const h = <u32>load<u16>(p);
  let b = reinterpret<u32>(reinterpret<f32>((h & 0x7fff) << 13) * reinterpret<f32>(0x77800000)) | ((h & 0x8000) << 16);
  if ((h & 0x7c00) == 0x7c00) b |= 0x7f800000;
  return reinterpret<f32>(b);
}

/** The halves at p, p + stride, p + 2 stride, p + 3 stride as one f32x4 (four blocks' scales, each block stride bytes). */
// @ts-ignore: decorator
@inline export function f16x4_at(p: usize, stride: usize): v128 {
  let s = f32x4.splat(f16_at(p));
  s = f32x4.replace_lane(s, 1, f16_at(p + stride));
  s = f32x4.replace_lane(s, 2, f16_at(p + 2 * stride));
  return f32x4.replace_lane(s, 3, f16_at(p + 3 * stride));
}
