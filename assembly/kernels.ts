// mla-ts CPU kernels in AssemblyScript (WebAssembly SIMD, shared memory).
//
// Build (see package.json "asbuild"): two binaries from this one source,
//   build/kernels.wasm          --enable simd,threads                 (every SIMD engine)
//   build/kernels-relaxed.wasm  --enable simd,threads,relaxed-simd    (FMA via f32x4.relaxed_madd)
// The relaxed build is picked at run time when WebAssembly.validate accepts it
// (Node 20 needs --experimental-wasm-relaxed-simd; newer engines ship it).
//
// Conventions
// - Every pointer is a byte offset into the imported shared linear memory; every count is in elements.
// - Kernels work on a range of output rows [n0, n1) (heads [h0, h1) for attention) so that
//   several threads can share one call; ranges of different threads never write the same bytes.
// - A trailing `scratch` pointer is per-thread working memory (see each kernel for the size it needs).
// - Weights are row-major [N, K] (PyTorch Linear layout): out[t, n] = sum_k x[t, k] * W[n, k].

// ---------------------------------------------------------------------------------------------
// helpers

// @ts-ignore: decorator
@inline function fma(a: v128, b: v128, c: v128): v128 {
  // a * b + c; fused (single rounding) or not, at the engine's choice, in the relaxed build
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

// @ts-ignore: decorator
@inline function hsum(a: v128): f32 {
  const b = f32x4.add(a, v128.shuffle<f32>(a, a, 2, 3, 0, 1));
  const c = f32x4.add(b, v128.shuffle<f32>(b, b, 1, 0, 3, 2));
  return f32x4.extract_lane(c, 0);
}

/** [hsum(a), hsum(b), hsum(c), hsum(d)] */
// @ts-ignore: decorator
@inline function hsum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = f32x4.add(v128.shuffle<f32>(a, b, 0, 1, 4, 5), v128.shuffle<f32>(a, b, 2, 3, 6, 7));
  const cd = f32x4.add(v128.shuffle<f32>(c, d, 0, 1, 4, 5), v128.shuffle<f32>(c, d, 2, 3, 6, 7));
  return f32x4.add(v128.shuffle<f32>(ab, cd, 0, 2, 4, 6), v128.shuffle<f32>(ab, cd, 1, 3, 5, 7));
}

/** a + p0*q0 + p1*q1 + p2*q2 + p3*q3, the four products summed as a tree (one add on the loop-carried chain). */
// @ts-ignore: decorator
@inline function acc4(a: v128, p0: v128, q0: v128, p1: v128, q1: v128, p2: v128, q2: v128, p3: v128, q3: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return f32x4.add(a, f32x4.relaxed_madd(p0, q0, f32x4.relaxed_madd(p1, q1, f32x4.relaxed_madd(p2, q2, f32x4.mul(p3, q3)))));
  }
  return f32x4.add(a, f32x4.add(f32x4.add(f32x4.mul(p0, q0), f32x4.mul(p1, q1)), f32x4.add(f32x4.mul(p2, q2), f32x4.mul(p3, q3))));
}
/** a + p0*q0 + p1*q1 */
// @ts-ignore: decorator
@inline function acc2(a: v128, p0: v128, q0: v128, p1: v128, q1: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.add(a, f32x4.relaxed_madd(p0, q0, f32x4.mul(p1, q1)));
  return f32x4.add(a, f32x4.add(f32x4.mul(p0, q0), f32x4.mul(p1, q1)));
}

/** Even elements of the 8 floats at p: [p0, p2, p4, p6] (pairs with the low halves of 16-bit weights). */
// @ts-ignore: decorator
@inline function evens(a: v128, b: v128): v128 {
  return v128.shuffle<f32>(a, b, 0, 2, 4, 6);
}
// @ts-ignore: decorator
@inline function odds(a: v128, b: v128): v128 {
  return v128.shuffle<f32>(a, b, 1, 3, 5, 7);
}

// IEEE half -> f32 for a half sitting in the top 16 bits of each i32 lane (whatever is in the low 16 bits is
// shifted into bits 0..12 and masked off).
// Arithmetic shift by 3 puts exponent+mantissa at bits 13..27 (f32 exponent field = half exponent),
// and keeps the sign at bit 31; the AND clears the sign copies at bits 28..30. Multiplying by 2^112
// rebiases the exponent: exact for normals AND subnormals (a half subnormal becomes an f32 subnormal first).
// Exponent 31 (inf/nan) comes out finite (>= 2^16) and must be fixed by f16_fix.
// @ts-ignore: decorator
@inline function f16hi(v: v128): v128 {
  return f32x4.mul(v128.and(i32x4.shr_s(v, 3), i32x4.splat(0x8fffe000)), f32x4.splat(5.192296858534828e33));
}
// The inf/nan fix-up: OR an all-ones exponent into lanes whose half exponent is 31 (mantissa kept -> NaN stays NaN).
// @ts-ignore: decorator
@inline function f16fix(f: v128, v: v128): v128 {
  const infnan = i32x4.eq(v128.and(v, i32x4.splat(0x7c000000)), i32x4.splat(0x7c000000));
  return v128.or(f, v128.and(infnan, i32x4.splat(0x7f800000)));
}
/** Any of the 8 halves in v has exponent 31? */
// @ts-ignore: decorator
@inline function f16special(v: v128): bool {
  return v128.any_true(i16x8.eq(v128.and(v, i16x8.splat(0x7c00)), i16x8.splat(0x7c00)));
}

/** Exact f32 of the low halves (even elements) / high halves (odd elements) of 8 f16 words. */
// @ts-ignore: decorator
@inline function f16lo_x(v: v128): v128 {
  const l = i32x4.shl(v, 16);
  return f16fix(f16hi(l), l);
}
// @ts-ignore: decorator
@inline function f16hi_x(v: v128): v128 {
  const h = v128.and(v, i32x4.splat(0xffff0000));
  return f16fix(f16hi(h), h);
}

/** 8 halves at p -> 8 floats at dst (in order), exact. */
// @ts-ignore: decorator
@inline function f16x8_to_f32(dst: usize, p: usize): void {
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

/** exp on 4 lanes (Cephes expf polynomial, ~1 ulp); exp(x) = 0 for x < -87.33, inf for large x, NaN stays NaN. */
// @ts-ignore: decorator
@inline function exp4(v: v128): v128 {
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
@inline function expf(x: f32): f32 {
  return f32x4.extract_lane(exp4(f32x4.splat(x)), 0);
}

// ---------------------------------------------------------------------------------------------
// f32 building blocks shared by every dtype

/**
 * 4 consecutive outputs out[0..3] = dot(x, W rows r..r+3), x and the rows f32 with K % 8 == 0.
 * 16 columns per step through running pointers (immediate load offsets, no per-load address arithmetic).
 */
// @ts-ignore: decorator
@inline function dot4_f32(out: usize, x: usize, w: usize, rowBytes: usize, K: i32): void {
  let p0 = w, p1 = w + rowBytes, p2 = p1 + rowBytes, p3 = p2 + rowBytes, px = x;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const end = x + (<usize>(K >> 4) << 6);
  while (px < end) {
    const x0 = v128.load(px), x1 = v128.load(px, 16), x2 = v128.load(px, 32), x3 = v128.load(px, 48);
    a0 = acc4(a0, v128.load(p0), x0, v128.load(p0, 16), x1, v128.load(p0, 32), x2, v128.load(p0, 48), x3);
    a1 = acc4(a1, v128.load(p1), x0, v128.load(p1, 16), x1, v128.load(p1, 32), x2, v128.load(p1, 48), x3);
    a2 = acc4(a2, v128.load(p2), x0, v128.load(p2, 16), x1, v128.load(p2, 32), x2, v128.load(p2, 48), x3);
    a3 = acc4(a3, v128.load(p3), x0, v128.load(p3, 16), x1, v128.load(p3, 32), x2, v128.load(p3, 48), x3);
    px += 64; p0 += 64; p1 += 64; p2 += 64; p3 += 64;
  }
  if (K & 8) {
    const x0 = v128.load(px), x1 = v128.load(px, 16);
    a0 = acc2(a0, v128.load(p0), x0, v128.load(p0, 16), x1);
    a1 = acc2(a1, v128.load(p1), x0, v128.load(p1, 16), x1);
    a2 = acc2(a2, v128.load(p2), x0, v128.load(p2, 16), x1);
    a3 = acc2(a3, v128.load(p3), x0, v128.load(p3, 16), x1);
  }
  v128.store(out, hsum4(a0, a1, a2, a3));
}

/** One row: same arithmetic (and order) as a lane of dot4_f32. */
// @ts-ignore: decorator
@inline function dot1_f32(x: usize, w: usize, K: i32): f32 {
  let p0 = w, px = x;
  let a0 = f32x4.splat(0);
  const end = x + (<usize>(K >> 4) << 6);
  while (px < end) {
    a0 = acc4(a0, v128.load(p0), v128.load(px), v128.load(p0, 16), v128.load(px, 16), v128.load(p0, 32), v128.load(px, 32), v128.load(p0, 48), v128.load(px, 48));
    px += 64; p0 += 64;
  }
  if (K & 8) a0 = acc2(a0, v128.load(p0), v128.load(px), v128.load(p0, 16), v128.load(px, 16));
  return hsum(a0);
}

/** Two tokens x, x + xb against 4 f32 rows: outputs to out[0..3] and out2[0..3]. 8 columns per step. */
// @ts-ignore: decorator
@inline function dot4x2_f32(out: usize, out2: usize, x: usize, xb: usize, w: usize, rowBytes: usize, K: i32): void {
  let p0 = w, p1 = w + rowBytes, p2 = p1 + rowBytes, p3 = p2 + rowBytes, px = x, py = x + xb;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  const end = x + (<usize>K << 2);
  while (px < end) {
    const x0 = v128.load(px), x1 = v128.load(px, 16), y0 = v128.load(py), y1 = v128.load(py, 16);
    let v = v128.load(p0), u = v128.load(p0, 16);
    a0 = acc2(a0, v, x0, u, x1); b0 = acc2(b0, v, y0, u, y1);
    v = v128.load(p1); u = v128.load(p1, 16);
    a1 = acc2(a1, v, x0, u, x1); b1 = acc2(b1, v, y0, u, y1);
    v = v128.load(p2); u = v128.load(p2, 16);
    a2 = acc2(a2, v, x0, u, x1); b2 = acc2(b2, v, y0, u, y1);
    v = v128.load(p3); u = v128.load(p3, 16);
    a3 = acc2(a3, v, x0, u, x1); b3 = acc2(b3, v, y0, u, y1);
    px += 32; py += 32; p0 += 32; p1 += 32; p2 += 32; p3 += 32;
  }
  v128.store(out, hsum4(a0, a1, a2, a3));
  v128.store(out2, hsum4(b0, b1, b2, b3));
}

/**
 * out[t, n] for t < T, n in [n0, n1) with W f32 rows at w (row n at w + n*rowBytes).
 * Weight rows go 4 at a time; tokens 2 at a time, so a weight row is read ceil(T/2) times from cache
 * but (the 4-row block being 4*K*4 bytes) only once from memory.
 */
function gemm_f32(out: usize, x: usize, T: i32, K: i32, w: usize, rowBytes: usize, n0: i32, n1: i32, xStride: i32, outStride: i32): void {
  const xb = <usize>xStride << 2, ob = <usize>outStride << 2;
  let n = n0;
  for (; n + 4 <= n1; n += 4) {
    const wr = w + <usize>n * rowBytes;
    let t = 0;
    for (; t + 2 <= T; t += 2) {
      const o = out + <usize>t * ob + (<usize>n << 2);
      dot4x2_f32(o, o + ob, x + <usize>t * xb, xb, wr, rowBytes, K);
    }
    if (t < T) dot4_f32(out + <usize>t * ob + (<usize>n << 2), x + <usize>t * xb, wr, rowBytes, K);
  }
  for (; n < n1; n++) {
    const wr = w + <usize>n * rowBytes;
    for (let t = 0; t < T; t++) {
      store<f32>(out + <usize>t * ob + (<usize>n << 2), dot1_f32(x + <usize>t * xb, wr, K));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// T > 1: register tiles of 4 weight rows x 8 tokens
//
// The dot-product tiles above keep K along the SIMD lanes, so every output needs a horizontal sum and each step
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

/** f32 copies of weight rows [r, r + cnt) at dst (dt 1 BF16, 2 F16, 3 Q8; see widen_*). */
function widen_rows(dt: i32, dst: usize, w: usize, scales: usize, r: i32, cnt: i32, K: i32): void {
  if (dt == 1) widen_bf16(dst, w, r, cnt, K);
  else if (dt == 2) widen_f16(dst, w, r, cnt, K);
  else widen_q8(dst, w, scales, r, cnt, K);
}

/**
 * out[t, n] for t < T (T > 1), n in [n0, n1), weights of dtype dt (0 F32, 1 BF16, 2 F16, 3 Q8). Tokens go in blocks
 * of TILE_TOKENS packed into scratch; in a block, each group of 4 rows (widened to f32 in scratch unless F32) is
 * multiplied with every full panel of 8 tokens by tile4x8. A last part-panel of 6 or 7 tokens is padded with
 * zeros; 1 to 5 left-over tokens go through the dot tiles (gemm_f32), where padding would waste more than half.
 * Scratch: linear_scratch(K) bytes.
 */
function linear_tiled(dt: i32, out: usize, x: usize, T: i32, K: i32, w: usize, scales: usize, n0: i32, n1: i32, xStride: i32, outStride: i32, scratch: usize): void {
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

// ---------------------------------------------------------------------------------------------
// linear kernels

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

/** Widen rows [r, r + cnt) of an F16 matrix into f32 at dst. */
function widen_f16(dst: usize, w: usize, r: i32, cnt: i32, K: i32): void {
  const src = w + <usize>r * (<usize>K << 1);
  const n = <usize>cnt * <usize>K;
  for (let i: usize = 0; i < n; i += 8) f16x8_to_f32(dst + (i << 2), src + (i << 1));
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

// ---------------------------------------------------------------------------------------------
// Q8: int8 weights [N, K], one f32 scale per block of 32 along K: scales [N, K/32]. W = q * scale.

/** 16 int8 at p as four f32x4 (in order) */
// @ts-ignore: decorator
@inline function q16lo(v: v128): v128 { return i16x8.extend_low_i8x16_s(v); }
// @ts-ignore: decorator
@inline function q16hi(v: v128): v128 { return i16x8.extend_high_i8x16_s(v); }
// @ts-ignore: decorator
@inline function cvlo(h: v128): v128 { return f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h)); }
// @ts-ignore: decorator
@inline function cvhi(h: v128): v128 { return f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h)); }

/** sum over 16 int8 weights at p of q * x (x: 4 vectors) added to acc */
// @ts-ignore: decorator
@inline function q8dot16(p: usize, x0: v128, x1: v128, x2: v128, x3: v128, acc: v128): v128 {
  const v = v128.load(p);
  const lo = q16lo(v), hi = q16hi(v);
  return fma(cvlo(lo), x0, fma(cvhi(lo), x1, fma(cvlo(hi), x2, fma(cvhi(hi), x3, acc))));
}

/** Dequantize rows [r, r + cnt) into f32 at dst. */
function widen_q8(dst: usize, wq: usize, scales: usize, r: i32, cnt: i32, K: i32): void {
  const nb = K >> 5;
  const src = wq + <usize>r * <usize>K;
  const sc = scales + ((<usize>r * <usize>nb) << 2);
  const blocks = <usize>cnt * <usize>nb;
  for (let b: usize = 0; b < blocks; b++) {
    const s = v128.load32_splat(sc + (b << 2));
    const p = src + (b << 5);
    const d = dst + (b << 7);
    const v0 = v128.load(p), v1 = v128.load(p, 16);
    const l0 = q16lo(v0), h0 = q16hi(v0), l1 = q16lo(v1), h1 = q16hi(v1);
    v128.store(d, f32x4.mul(cvlo(l0), s));
    v128.store(d, f32x4.mul(cvhi(l0), s), 16);
    v128.store(d, f32x4.mul(cvlo(h0), s), 32);
    v128.store(d, f32x4.mul(cvhi(h0), s), 48);
    v128.store(d, f32x4.mul(cvlo(l1), s), 64);
    v128.store(d, f32x4.mul(cvhi(l1), s), 80);
    v128.store(d, f32x4.mul(cvlo(h1), s), 96);
    v128.store(d, f32x4.mul(cvhi(h1), s), 112);
  }
}

// Decode with integer dot products. x is quantized once per call, per block of 32 columns, to int16:
//   x_k ~= X_k * f,  f = max|x| / 32767 over the block,  X_k = round(x_k / f) in [-32767, 32767]
// (error <= f/2 per element: ~1.5e-5 of the block's largest |x|, far below the int8 weights' own error of ~4e-3).
// Per weight row and block, sum_k q_k X_k is exact in i32 (i32x4.dot_i16x8_s: |q| <= 127, so a lane's 8 products
// stay below 2^25) and the row accumulates it times f * (the block's weight scale). Blocks of x that are
// non-finite or tiny (max|x| < 2^-100) send the call to the float path (q8_rows_float), which converts q to f32.
// Scratch layout: nb blocks of 32 int16 (64 bytes each), then nb f32 factors.

/** Quantize x (K floats) to int16 blocks at dst; false when some block cannot be represented (use the float path). */
function q8_prep_x(dst: usize, x: usize, K: i32): bool {
  const nb = K >> 5;
  const fac = dst + (<usize>nb << 6);
  for (let b = 0; b < nb; b++) {
    const xp = x + (<usize>b << 7);
    const d = dst + (<usize>b << 6);
    let m = f32x4.abs(v128.load(xp));
    for (let j: usize = 16; j < 128; j += 16) m = f32x4.max(m, f32x4.abs(v128.load(xp + j)));
    const mx = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
    if (!(mx < Infinity)) return false; // inf or NaN in x
    if (mx == 0) {
      memory.fill(d, 0, 64);
      store<f32>(fac + (<usize>b << 2), 0);
      continue;
    }
    if (mx < <f32>7.888609e-31) return false; // 2^-100: 32767 / mx would overflow
    const inv = f32x4.splat(<f32>32767 / mx);
    for (let g: usize = 0; g < 4; g++) {
      // |x * inv| <= 32767 up to rounding; the saturating conversions keep it in i16 range regardless
      const X0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(xp + (g << 5)), inv)));
      const X1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(xp + (g << 5), 16), inv)));
      v128.store(d + (g << 4), i16x8.narrow_i32x4_s(X0, X1));
    }
    store<f32>(fac + (<usize>b << 2), mx / <f32>32767);
  }
  return true;
}

/** acc + (sum over one block of 32 int8 weights at p times the int16 x block at d) * x factor at f * weight scale at s */
// @ts-ignore: decorator
@inline function q8_block(acc: v128, p: usize, d: usize, s: usize, f: usize): v128 {
  const i = i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(v128.load8x8_s(p), v128.load(d)), i32x4.dot_i16x8_s(v128.load8x8_s(p, 8), v128.load(d, 16))),
    i32x4.add(i32x4.dot_i16x8_s(v128.load8x8_s(p, 16), v128.load(d, 32)), i32x4.dot_i16x8_s(v128.load8x8_s(p, 24), v128.load(d, 48))));
  return fma(f32x4.convert_i32x4_s(i), f32x4.splat(load<f32>(s) * load<f32>(f)), acc);
}

/** T == 1 float path: q converted to f32, x as is. */
function q8_rows_float(out: usize, x: usize, K: i32, wq: usize, scales: usize, n0: i32, n1: i32): void {
  const nb = K >> 5;
  const rowBytes = <usize>K;
  const sBytes = <usize>nb << 2;
  let n = n0;
  for (; n + 4 <= n1; n += 4) {
    const w0 = wq + <usize>n * rowBytes, w1 = w0 + rowBytes, w2 = w1 + rowBytes, w3 = w2 + rowBytes;
    const s0 = scales + <usize>n * sBytes, s1 = s0 + sBytes, s2 = s1 + sBytes, s3 = s2 + sBytes;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    for (let b: usize = 0; b < <usize>nb; b++) {
      const xp = x + (b << 7), wo = b << 5;
      let x0 = v128.load(xp), x1 = v128.load(xp, 16), x2 = v128.load(xp, 32), x3 = v128.load(xp, 48);
      let c0 = q8dot16(w0 + wo, x0, x1, x2, x3, f32x4.splat(0));
      let c1 = q8dot16(w1 + wo, x0, x1, x2, x3, f32x4.splat(0));
      let c2 = q8dot16(w2 + wo, x0, x1, x2, x3, f32x4.splat(0));
      let c3 = q8dot16(w3 + wo, x0, x1, x2, x3, f32x4.splat(0));
      x0 = v128.load(xp, 64); x1 = v128.load(xp, 80); x2 = v128.load(xp, 96); x3 = v128.load(xp, 112);
      c0 = q8dot16(w0 + wo + 16, x0, x1, x2, x3, c0);
      c1 = q8dot16(w1 + wo + 16, x0, x1, x2, x3, c1);
      c2 = q8dot16(w2 + wo + 16, x0, x1, x2, x3, c2);
      c3 = q8dot16(w3 + wo + 16, x0, x1, x2, x3, c3);
      const so = b << 2;
      a0 = fma(c0, v128.load32_splat(s0 + so), a0);
      a1 = fma(c1, v128.load32_splat(s1 + so), a1);
      a2 = fma(c2, v128.load32_splat(s2 + so), a2);
      a3 = fma(c3, v128.load32_splat(s3 + so), a3);
    }
    v128.store(out + (<usize>n << 2), hsum4(a0, a1, a2, a3));
  }
  for (; n < n1; n++) {
    const w0 = wq + <usize>n * rowBytes;
    const s0 = scales + <usize>n * sBytes;
    let a = f32x4.splat(0);
    for (let b: usize = 0; b < <usize>nb; b++) {
      const xp = x + (b << 7), wo = b << 5;
      let c = q8dot16(w0 + wo, v128.load(xp), v128.load(xp, 16), v128.load(xp, 32), v128.load(xp, 48), f32x4.splat(0));
      c = q8dot16(w0 + wo + 16, v128.load(xp, 64), v128.load(xp, 80), v128.load(xp, 96), v128.load(xp, 112), c);
      a = fma(c, v128.load32_splat(s0 + (b << 2)), a);
    }
    store<f32>(out + (<usize>n << 2), hsum(a));
  }
}

/**
 * Q8 weights (int8 [N, K], f32 scales [N, K/32]); K % 32 == 0.
 * T == 1: integer dot products against x quantized to int16 per block (see q8_prep_x; scratch: K*2.125 bytes), one
 * row at a time, or the float path when x has non-finite or tiny blocks. T > 1: linear_tiled (4 rows at a time dequantized
 * to f32; scratch linear_scratch(K)).
 */
export function linear_q8(out: usize, x: usize, T: i32, K: i32, wq: usize, scales: usize, n0: i32, n1: i32, xStride: i32, outStride: i32, scratch: usize): void {
  const nb = K >> 5;
  const rowBytes = <usize>K;
  const sBytes = <usize>nb << 2;
  if (T == 1) {
    if (!q8_prep_x(scratch, x, K)) {
      q8_rows_float(out, x, K, wq, scales, n0, n1);
      return;
    }
    const dend = scratch + (<usize>nb << 6);
    // one row at a time: one sequential weight stream (see linear_f32)
    let p0 = wq + <usize>n0 * rowBytes;
    let s0 = scales + <usize>n0 * sBytes;
    for (let n = n0; n < n1; n++) {
      let a0 = f32x4.splat(0);
      let f = dend;
      for (let d = scratch; d < dend; d += 64) {
        a0 = q8_block(a0, p0, d, s0, f);
        p0 += 32; s0 += 4; f += 4;
      }
      store<f32>(out + (<usize>n << 2), hsum(a0));
    }
    return;
  }
  linear_tiled(3, out, x, T, K, wq, scales, n0, n1, xStride, outStride, scratch);
}

/**
 * G independent one-token products over row blocks of one weight (dt 0 F32, 1 BF16, 2 F16, 3 Q8):
 * for g in [g0, g1): out[g*og + n] = sum_k x[g*xg + k] * W[row0 + g*gs + n, k], n < N. Absorbed MLA folds W^UK
 * into each head's query this way and applies W^UV (every head's block inside kv_b_proj), one call for all heads.
 */
export function linear_grouped(dt: i32, out: usize, x: usize, K: i32, w: usize, scales: usize, N: i32, row0: i32, gs: i32, g0: i32, g1: i32, xg: i32, og: i32, scratch: usize): void {
  const eb: usize = dt == 0 ? 4 : dt == 3 ? 1 : 2;
  for (let g = g0; g < g1; g++) {
    const r = <usize>(row0 + g * gs);
    const o = out + ((<usize>g * <usize>og) << 2), xp = x + ((<usize>g * <usize>xg) << 2), wg = w + r * <usize>K * eb;
    if (dt == 0) linear_f32(o, xp, 1, K, wg, 0, N, K, N, scratch);
    else if (dt == 1) linear_bf16(o, xp, 1, K, wg, 0, N, K, N, scratch);
    else if (dt == 2) linear_f16(o, xp, 1, K, wg, 0, N, K, N, scratch);
    else linear_q8(o, xp, 1, K, wg, scales + ((r * <usize>(K >> 5)) << 2), 0, N, K, N, scratch);
  }
}

// ---------------------------------------------------------------------------------------------
// elementwise

/** RMSNorm over rows [t0, t1) of width D: out = w * x / sqrt(mean(x^2) + eps). out may alias x. */
export function rmsnorm(out: usize, x: usize, D: i32, w: usize, eps: f32, t0: i32, t1: i32, xStride: i32, outStride: i32): void {
  const D4 = <usize>(D & ~3);
  for (let t = t0; t < t1; t++) {
    const xr = x + ((<usize>t * <usize>xStride) << 2);
    const orow = out + ((<usize>t * <usize>outStride) << 2);
    let a = f32x4.splat(0);
    let i: usize = 0;
    for (; i < D4; i += 4) {
      const v = v128.load(xr + (i << 2));
      a = fma(v, v, a);
    }
    let ss = hsum(a);
    for (; i < <usize>D; i++) { const v = load<f32>(xr + (i << 2)); ss += v * v; }
    const r = <f32>1.0 / Mathf.sqrt(ss / <f32>D + eps);
    const rv = f32x4.splat(r);
    i = 0;
    for (; i < D4; i += 4) {
      v128.store(orow + (i << 2), f32x4.mul(v128.load(w + (i << 2)), f32x4.mul(v128.load(xr + (i << 2)), rv)));
    }
    for (; i < <usize>D; i++) store<f32>(orow + (i << 2), load<f32>(w + (i << 2)) * (load<f32>(xr + (i << 2)) * r));
  }
}

/** out[i] = silu(gate[i]) * up[i] for i in [i0, i1). out may alias gate or up. */
export function silu_mul(out: usize, gate: usize, up: usize, i0: i32, i1: i32): void {
  let i = <usize>i0;
  const one = f32x4.splat(1);
  for (; i + 4 <= <usize>i1; i += 4) {
    const g = v128.load(gate + (i << 2));
    const s = f32x4.div(g, f32x4.add(one, exp4(f32x4.neg(g))));
    v128.store(out + (i << 2), f32x4.mul(s, v128.load(up + (i << 2))));
  }
  for (; i < <usize>i1; i++) {
    const g = load<f32>(gate + (i << 2));
    store<f32>(out + (i << 2), (g / (<f32>1 + expf(-g))) * load<f32>(up + (i << 2)));
  }
}

/** In-place numerically stable softmax of x[0 .. n). */
export function softmax(x: usize, n: i32): void {
  const n4 = <usize>(n & ~3);
  let mv = f32x4.splat(-Infinity);
  let i: usize = 0;
  for (; i < n4; i += 4) mv = f32x4.pmax(mv, v128.load(x + (i << 2)));
  let m = max(max(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)), max(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3)));
  for (; i < <usize>n; i++) m = max(m, load<f32>(x + (i << 2)));
  const ms = f32x4.splat(m);
  let sv = f32x4.splat(0);
  for (i = 0; i < n4; i += 4) {
    const e = exp4(f32x4.sub(v128.load(x + (i << 2)), ms));
    v128.store(x + (i << 2), e);
    sv = f32x4.add(sv, e);
  }
  let s = hsum(sv);
  for (; i < <usize>n; i++) {
    const e = expf(load<f32>(x + (i << 2)) - m);
    store<f32>(x + (i << 2), e);
    s += e;
  }
  const r = <f32>1 / s;
  const rv = f32x4.splat(r);
  for (i = 0; i < n4; i += 4) v128.store(x + (i << 2), f32x4.mul(v128.load(x + (i << 2)), rv));
  for (; i < <usize>n; i++) store<f32>(x + (i << 2), load<f32>(x + (i << 2)) * r);
}

// ---------------------------------------------------------------------------------------------
// absorbed-MLA decode attention

const CHUNK: i32 = 32; // cache rows per online-softmax step

/** Bytes of scratch attend_latent needs per thread. */
export function attend_latent_scratch(H: i32, dc: i32): i32 {
  return ((H + 3) >> 2) * 32 + CHUNK * 16 + 4 * 16 + 3 * dc * 4 + 64;
}

/**
 * One query token of absorbed MLA against L cached latent rows (MQA: every head reads the same row).
 *   q:     [H, w] f32, w = d_c + d_rope, head h at q + h*w*4
 *   cache: row s at cache + s*cStride*4, row = [c_KV (d_c) | k_rope (d_rope)]
 *   out:   [H, d_c], out_h = sum_s softmax_s(scale * q_h . row_s) * row_s[:d_c]
 * Heads [h0, h1) only; requires w % 4 == 0, dc % 4 == 0. Heads go 4 at a time (one SIMD lane per head for the
 * scores and the online softmax), cache rows CHUNK at a time: each chunk is loaded from memory once per thread and
 * reused from cache by every head group. Scratch: attend_latent_scratch(H, dc) bytes.
 */
export function attend_latent(out: usize, q: usize, cache: usize, L: i32, w: i32, dc: i32, cStride: i32, scale: f32, h0: i32, h1: i32, scratch: usize): void {
  if (h1 <= h0) return;
  const nh = h1 - h0;
  const ng = (nh + 3) >> 2;
  const mArr = scratch;                       // per group: running max, f32x4 (lane = head)
  const lArr = mArr + (<usize>ng << 4);       // per group: running sum
  const pArr = lArr + (<usize>ng << 4);       // [CHUNK][4]: scores, then probabilities
  const cArr = pArr + (<usize>CHUNK << 4);    // [4] correction factors
  const dummy = (cArr + 16 + 63) & ~<usize>63; // 3 rows of dc floats for padding lanes
  const qb = <usize>w << 2, ob = <usize>dc << 2, cb = <usize>cStride << 2;
  const wb = <usize>w << 2;
  const dc8 = <usize>(dc & ~7) << 2;
  const dcb = <usize>dc << 2;
  const sv = f32x4.splat(scale);

  for (let g = 0; g < ng; g++) {
    v128.store(mArr + (<usize>g << 4), f32x4.splat(-Infinity));
    v128.store(lArr + (<usize>g << 4), f32x4.splat(0));
  }
  for (let h = h0; h < h1; h++) memory.fill(out + <usize>h * ob, 0, ob);

  for (let c0 = 0; c0 < L; c0 += CHUNK) {
    const cs = min(CHUNK, L - c0);
    const rows = cache + <usize>c0 * cb;
    for (let g = 0; g < ng; g++) {
      const hb = h0 + (g << 2);
      // lanes past h1 reuse the last head's query and write into dummy rows
      const q0 = q + <usize>hb * qb;
      const q1 = q + <usize>min(hb + 1, h1 - 1) * qb;
      const q2 = q + <usize>min(hb + 2, h1 - 1) * qb;
      const q3 = q + <usize>min(hb + 3, h1 - 1) * qb;
      const o0 = out + <usize>hb * ob;
      const o1 = hb + 1 < h1 ? o0 + ob : dummy;
      const o2 = hb + 2 < h1 ? o0 + 2 * ob : dummy + dcb;
      const o3 = hb + 3 < h1 ? o0 + 3 * ob : dummy + 2 * dcb;

      // scores: p[s][lane] = scale * q_lane . row_s, two rows at a time
      let s = 0;
      for (; s + 2 <= cs; s += 2) {
        const r0 = rows + <usize>s * cb, r1 = r0 + cb;
        let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
        let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
        for (let o: usize = 0; o < wb; o += 16) {
          const ra = v128.load(r0 + o), rb = v128.load(r1 + o);
          const v0 = v128.load(q0 + o), v1 = v128.load(q1 + o), v2 = v128.load(q2 + o), v3 = v128.load(q3 + o);
          a0 = fma(v0, ra, a0); b0 = fma(v0, rb, b0);
          a1 = fma(v1, ra, a1); b1 = fma(v1, rb, b1);
          a2 = fma(v2, ra, a2); b2 = fma(v2, rb, b2);
          a3 = fma(v3, ra, a3); b3 = fma(v3, rb, b3);
        }
        v128.store(pArr + (<usize>s << 4), f32x4.mul(hsum4(a0, a1, a2, a3), sv));
        v128.store(pArr + (<usize>s << 4), f32x4.mul(hsum4(b0, b1, b2, b3), sv), 16);
      }
      if (s < cs) {
        const r0 = rows + <usize>s * cb;
        let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
        for (let o: usize = 0; o < wb; o += 16) {
          const ra = v128.load(r0 + o);
          a0 = fma(v128.load(q0 + o), ra, a0);
          a1 = fma(v128.load(q1 + o), ra, a1);
          a2 = fma(v128.load(q2 + o), ra, a2);
          a3 = fma(v128.load(q3 + o), ra, a3);
        }
        v128.store(pArr + (<usize>s << 4), f32x4.mul(hsum4(a0, a1, a2, a3), sv));
      }

      // online softmax, all 4 heads at once
      const mp = mArr + (<usize>g << 4), lp = lArr + (<usize>g << 4);
      const mOld = v128.load(mp);
      let mc = mOld;
      for (let j = 0; j < cs; j++) mc = f32x4.pmax(mc, v128.load(pArr + (<usize>j << 4)));
      let corr = exp4(f32x4.sub(mOld, mc));
      corr = v128.and(corr, f32x4.eq(corr, corr));  // first chunk: -inf - -inf = NaN -> 0 (acc is 0 anyway)
      let sum = f32x4.splat(0);
      for (let j = 0; j < cs; j++) {
        const pp = pArr + (<usize>j << 4);
        const e = exp4(f32x4.sub(v128.load(pp), mc));
        v128.store(pp, e);
        sum = f32x4.add(sum, e);
      }
      v128.store(mp, mc);
      v128.store(lp, fma(v128.load(lp), corr, sum));
      v128.store(cArr, corr);

      // acc_h = acc_h * corr_h + sum_s p[s][h] * row_s[:dc], 8 floats of 4 heads per pass
      const k0 = v128.load32_splat(cArr), k1 = v128.load32_splat(cArr, 4), k2 = v128.load32_splat(cArr, 8), k3 = v128.load32_splat(cArr, 12);
      let i: usize = 0;
      for (; i < dc8; i += 32) {
        let a0 = f32x4.mul(v128.load(o0 + i), k0), c0 = f32x4.mul(v128.load(o0 + i, 16), k0);
        let a1 = f32x4.mul(v128.load(o1 + i), k1), c1 = f32x4.mul(v128.load(o1 + i, 16), k1);
        let a2 = f32x4.mul(v128.load(o2 + i), k2), c2 = f32x4.mul(v128.load(o2 + i, 16), k2);
        let a3 = f32x4.mul(v128.load(o3 + i), k3), c3 = f32x4.mul(v128.load(o3 + i, 16), k3);
        let rp = rows + i;
        for (let j = 0; j < cs; j++) {
          const ra = v128.load(rp), rb = v128.load(rp, 16);
          const pp = pArr + (<usize>j << 4);
          const p0 = v128.load32_splat(pp), p1 = v128.load32_splat(pp, 4), p2 = v128.load32_splat(pp, 8), p3 = v128.load32_splat(pp, 12);
          a0 = fma(p0, ra, a0); c0 = fma(p0, rb, c0);
          a1 = fma(p1, ra, a1); c1 = fma(p1, rb, c1);
          a2 = fma(p2, ra, a2); c2 = fma(p2, rb, c2);
          a3 = fma(p3, ra, a3); c3 = fma(p3, rb, c3);
          rp += cb;
        }
        v128.store(o0 + i, a0); v128.store(o0 + i, c0, 16);
        v128.store(o1 + i, a1); v128.store(o1 + i, c1, 16);
        v128.store(o2 + i, a2); v128.store(o2 + i, c2, 16);
        v128.store(o3 + i, a3); v128.store(o3 + i, c3, 16);
      }
      for (; i < dcb; i += 16) {
        let a0 = f32x4.mul(v128.load(o0 + i), k0);
        let a1 = f32x4.mul(v128.load(o1 + i), k1);
        let a2 = f32x4.mul(v128.load(o2 + i), k2);
        let a3 = f32x4.mul(v128.load(o3 + i), k3);
        let rp = rows + i;
        for (let j = 0; j < cs; j++) {
          const ra = v128.load(rp);
          const pp = pArr + (<usize>j << 4);
          a0 = fma(v128.load32_splat(pp), ra, a0);
          a1 = fma(v128.load32_splat(pp, 4), ra, a1);
          a2 = fma(v128.load32_splat(pp, 8), ra, a2);
          a3 = fma(v128.load32_splat(pp, 12), ra, a3);
          rp += cb;
        }
        v128.store(o0 + i, a0); v128.store(o1 + i, a1); v128.store(o2 + i, a2); v128.store(o3 + i, a3);
      }
    }
  }

  // normalize
  for (let h = h0; h < h1; h++) {
    const g = (h - h0) >> 2, lane = (h - h0) & 3;
    const l = load<f32>(lArr + (<usize>g << 4) + (<usize>lane << 2));
    const rv = f32x4.splat(<f32>1 / l);
    const o = out + <usize>h * ob;
    for (let i: usize = 0; i < dcb; i += 16) v128.store(o + i, f32x4.mul(v128.load(o + i), rv));
  }
}

/**
 * attend_latent for sequences [s0, s1) of a batch, each with one query token and its own latent cache: sequence s has
 * q at q + s*H*w*4, out at out + s*H*dc*4, and its cache described at table + s*12 as i32 (cache pointer, rows L,
 * row stride in floats). One call for every decoding sequence of a step: the pool splits the sequences.
 */
export function attend_latent_many(out: usize, q: usize, table: usize, H: i32, w: i32, dc: i32, scale: f32, s0: i32, s1: i32, scratch: usize): void {
  for (let s = s0; s < s1; s++) {
    const t = table + <usize>s * 12;
    attend_latent(out + <usize>s * <usize>H * (<usize>dc << 2), q + <usize>s * <usize>H * (<usize>w << 2),
      <usize>load<i32>(t), load<i32>(t, 4), w, dc, load<i32>(t, 8), scale, 0, H, scratch);
  }
}

/** First free byte after the module's static data: the JS allocator starts above this. */
export function heap_base(): usize {
  return __heap_base;
}

// decode attention with per-head K/V (MHA/GQA/MQA, naive MLA)
export * from "./attention";
