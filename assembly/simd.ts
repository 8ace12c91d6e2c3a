// SIMD arithmetic every kernel file shares: multiply-add (fused in the relaxed build), horizontal sums, even/odd
// lanes, and exp. All @inline, so each call site compiles as it did when the kernels were one file.

// @ts-ignore: decorator
@inline export function fma(a: v128, b: v128, c: v128): v128 {
  // a * b + c; fused (single rounding) or not, at the engine's choice, in the relaxed build
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

// @ts-ignore: decorator
@inline export function hsum(a: v128): f32 {
  const b = f32x4.add(a, v128.shuffle<f32>(a, a, 2, 3, 0, 1));
  const c = f32x4.add(b, v128.shuffle<f32>(b, b, 1, 0, 3, 2));
  return f32x4.extract_lane(c, 0);
}

/** [hsum(a), hsum(b), hsum(c), hsum(d)] */
// @ts-ignore: decorator
@inline export function hsum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = f32x4.add(v128.shuffle<f32>(a, b, 0, 1, 4, 5), v128.shuffle<f32>(a, b, 2, 3, 6, 7));
  const cd = f32x4.add(v128.shuffle<f32>(c, d, 0, 1, 4, 5), v128.shuffle<f32>(c, d, 2, 3, 6, 7));
  return f32x4.add(v128.shuffle<f32>(ab, cd, 0, 2, 4, 6), v128.shuffle<f32>(ab, cd, 1, 3, 5, 7));
}

/** a + p0*q0 + p1*q1 + p2*q2 + p3*q3, the four products summed as a tree (one add on the loop-carried chain). */
// @ts-ignore: decorator
@inline export function acc4(a: v128, p0: v128, q0: v128, p1: v128, q1: v128, p2: v128, q2: v128, p3: v128, q3: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return f32x4.add(a, f32x4.relaxed_madd(p0, q0, f32x4.relaxed_madd(p1, q1, f32x4.relaxed_madd(p2, q2, f32x4.mul(p3, q3)))));
  }
  return f32x4.add(a, f32x4.add(f32x4.add(f32x4.mul(p0, q0), f32x4.mul(p1, q1)), f32x4.add(f32x4.mul(p2, q2), f32x4.mul(p3, q3))));
}
/** a + p0*q0 + p1*q1 */
// @ts-ignore: decorator
@inline export function acc2(a: v128, p0: v128, q0: v128, p1: v128, q1: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.add(a, f32x4.relaxed_madd(p0, q0, f32x4.mul(p1, q1)));
  return f32x4.add(a, f32x4.add(f32x4.mul(p0, q0), f32x4.mul(p1, q1)));
}

/** Even elements of the 8 floats at p: [p0, p2, p4, p6] (pairs with the low halves of 16-bit weights). */
// @ts-ignore: decorator
@inline export function evens(a: v128, b: v128): v128 {
  return v128.shuffle<f32>(a, b, 0, 2, 4, 6);
}
// @ts-ignore: decorator
@inline export function odds(a: v128, b: v128): v128 {
  return v128.shuffle<f32>(a, b, 1, 3, 5, 7);
}

/** exp on 4 lanes (Cephes expf polynomial, ~1 ulp); exp(x) = 0 for x < -87.33, inf for large x, NaN stays NaN. */
// @ts-ignore: decorator
@inline export function exp4(v: v128): v128 {
  // pmin/pmax (one instruction each on x86, unlike min/max) keep a NaN in v: the comparisons are false
  const x = f32x4.pmax(f32x4.pmin(v, f32x4.splat(88.72283)), f32x4.splat(-87.33654));
  // n = round(x / ln 2) with the 1.5 * 2^23 trick: the sum's low mantissa bits hold n (no float->int conversion)
  const t = f32x4.add(f32x4.mul(x, f32x4.splat(1.44269504088896341)), f32x4.splat(12582912.0));
  const fx = f32x4.sub(t, f32x4.splat(12582912.0));
  let r = f32x4.sub(x, f32x4.mul(fx, f32x4.splat(0.693359375)));
  r = f32x4.add(r, f32x4.mul(fx, f32x4.splat(2.12194440e-4)));
  let y = f32x4.splat(1.9875691500e-4);
  y = fma(y, r, f32x4.splat(1.3981999507e-3));
  y = fma(y, r, f32x4.splat(8.3334519073e-3));
  y = fma(y, r, f32x4.splat(4.1665795894e-2));
  y = fma(y, r, f32x4.splat(1.6666665459e-1));
  y = fma(y, r, f32x4.splat(5.0000001201e-1));
  y = f32x4.add(fma(f32x4.mul(y, r), r, r), f32x4.splat(1.0));
  // 2^n: (bits(t) - bits(1.5 * 2^23) + 127) << 23
  const e = i32x4.shl(i32x4.sub(t, i32x4.splat(0x4b400000 - 127)), 23);
  const res = f32x4.mul(y, e);
  return v128.andnot(res, f32x4.lt(v, f32x4.splat(-87.33654)));
}

// @ts-ignore: decorator
@inline export function expf(x: f32): f32 {
  return f32x4.extract_lane(exp4(f32x4.splat(x)), 0);
}
