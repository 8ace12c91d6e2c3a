// Q8: int8 weights [N, K], one f32 scale per block of 32 along K: scales [N, K/32]. W = q * scale.
// The blocks linear_q8 is made of: dequantized rows for the T > 1 tiles, the T == 1 integer and float paths, and the
// few-token (T = 2..Q8M_MAX_T) integer path.

import { fma, hsum, hsum4 } from "./simd";

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
export function widen_q8(dst: usize, wq: usize, scales: usize, r: i32, cnt: i32, K: i32): void {
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
export function q8_prep_x(dst: usize, x: usize, K: i32): bool {
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
@inline export function q8_block(acc: v128, p: usize, d: usize, s: usize, f: usize): v128 {
  const i = q8m_idot(v128.load8x8_s(p), v128.load8x8_s(p, 8), v128.load8x8_s(p, 16), v128.load8x8_s(p, 24), d);
  return fma(f32x4.convert_i32x4_s(i), f32x4.splat(load<f32>(s) * load<f32>(f)), acc);
}

/** T == 1 rows [n0, n1) against x prepared at xq (q8_prep_x), one row at a time (one sequential weight stream). */
export function q8_rows_x(out: usize, xq: usize, K: i32, wq: usize, scales: usize, n0: i32, n1: i32): void {
  const nb = K >> 5;
  const dend = xq + (<usize>nb << 6);
  let p0 = wq + <usize>n0 * <usize>K;
  let s0 = scales + ((<usize>n0 * <usize>nb) << 2);
  for (let n = n0; n < n1; n++) {
    let a0 = f32x4.splat(0);
    let f = dend;
    for (let d = xq; d < dend; d += 64) {
      a0 = q8_block(a0, p0, d, s0, f);
      p0 += 32; s0 += 4; f += 4;
    }
    store<f32>(out + (<usize>n << 2), hsum(a0));
  }
}

/** T == 1 float path: q converted to f32, x as is. */
export function q8_rows_float(out: usize, x: usize, K: i32, wq: usize, scales: usize, n0: i32, n1: i32): void {
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

// ---------------------------------------------------------------------------------------------
// Few-token products (T = 2..Q8M_MAX_T, batched decode): each token's x quantized to int16 per block of 32 as at T == 1
// (q8_prep_x: ~1e-5 relative), then each weight row is read once from memory and met by every token while it sits in
// L1 (tokens in groups of up to 4, one accumulator each). The cost per token and block (4 i32x4.dot_i16x8_s, the
// float multiply-add of the block's two scales) is about that of the f32 tiles' FMAs, so this wins by reading the
// weights once instead of widening them: ~2.5x at T = 2, ~1.5x at T = 4, even around T = 7-8 (measured, 2 threads).
// A 7-bit x variant on i16x8.relaxed_dot_i8x16_i7x16_s (x offset by +64 to be the [0, 127] operand, -64 sum q per
// row block) was ~20% faster but its ~5e-3 error is far above what the model tests allow. Token record
// (q8m_rec bytes): nb blocks of 32 int16, then nb f32 factors (q8_prep_x's layout).

/** Largest T for the integer path: beyond it the f32 tiles (whose fused FMAs make them faster in the relaxed build). */
export const Q8M_MAX_T: i32 = ASC_FEATURE_RELAXED_SIMD ? 6 : 8;

/** Bytes of one token's record for width K (a multiple of 32). */
// @ts-ignore: decorator
@inline export function q8m_rec(K: i32): usize {
  return (<usize>K << 1) + (<usize>(K >> 5) << 2);
}

/** T token records at scratch (q8m_rec apart) from x (rows xStride floats apart); false: some block is non-finite or tiny. */
export function q8m_prep(scratch: usize, x: usize, T: i32, K: i32, xStride: i32): bool {
  const rec = q8m_rec(K), xb = <usize>xStride << 2;
  for (let t = 0; t < T; t++) {
    if (!q8_prep_x(scratch + <usize>t * rec, x + <usize>t * xb, K)) return false;
  }
  return true;
}

/** exact i32x4 partial sums of one block: 32 int8 weights (q0..q3, widened to i16) times the int16 x block at d (q8_block too) */
// @ts-ignore: decorator
@inline function q8m_idot(q0: v128, q1: v128, q2: v128, q3: v128, d: usize): v128 {
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(q0, v128.load(d)), i32x4.dot_i16x8_s(q1, v128.load(d, 16))),
    i32x4.add(i32x4.dot_i16x8_s(q2, v128.load(d, 32)), i32x4.dot_i16x8_s(q3, v128.load(d, 48))));
}

/**
 * One weight row (int8 at p, scales at s) against cnt (1..4, a literal at each call site, so the compiler gives each
 * group size its own loop) token records starting at r; writes out at o, o + ob, ...
 */
// @ts-ignore: decorator
@inline function q8m_row(cnt: i32, p: usize, s: usize, nb: usize, r: usize, rec: usize, o: usize, ob: usize): void {
  const f0 = r + (nb << 6);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  for (let b: usize = 0; b < nb; b++) {
    const wp = p + (b << 5), dO = b << 6, fO = b << 2;
    const q0 = v128.load8x8_s(wp), q1 = v128.load8x8_s(wp, 8), q2 = v128.load8x8_s(wp, 16), q3 = v128.load8x8_s(wp, 24);
    const sv = v128.load32_splat(s + fO);
    a0 = fma(f32x4.convert_i32x4_s(q8m_idot(q0, q1, q2, q3, r + dO)), f32x4.mul(v128.load32_splat(f0 + fO), sv), a0);
    if (cnt > 1) a1 = fma(f32x4.convert_i32x4_s(q8m_idot(q0, q1, q2, q3, r + rec + dO)), f32x4.mul(v128.load32_splat(f0 + rec + fO), sv), a1);
    if (cnt > 2) a2 = fma(f32x4.convert_i32x4_s(q8m_idot(q0, q1, q2, q3, r + 2 * rec + dO)), f32x4.mul(v128.load32_splat(f0 + 2 * rec + fO), sv), a2);
    if (cnt > 3) a3 = fma(f32x4.convert_i32x4_s(q8m_idot(q0, q1, q2, q3, r + 3 * rec + dO)), f32x4.mul(v128.load32_splat(f0 + 3 * rec + fO), sv), a3);
  }
  store<f32>(o, hsum(a0));
  if (cnt > 1) store<f32>(o + ob, hsum(a1));
  if (cnt > 2) store<f32>(o + 2 * ob, hsum(a2));
  if (cnt > 3) store<f32>(o + 3 * ob, hsum(a3));
}

/** Rows [n0, n1) against T token records at scratch (q8m_prep), one row at a time (one sequential weight stream). */
export function q8m_rows(out: usize, scratch: usize, T: i32, K: i32, wq: usize, scales: usize, n0: i32, n1: i32, outStride: i32): void {
  const nb = <usize>(K >> 5), rec = q8m_rec(K), ob = <usize>outStride << 2;
  for (let n = n0; n < n1; n++) {
    const p = wq + <usize>n * <usize>K, s = scales + ((<usize>n * nb) << 2);
    const o = out + (<usize>n << 2);
    for (let t = 0; t < T; t += 4) {
      const cnt = min(4, T - t), r = scratch + <usize>t * rec, ot = o + <usize>t * ob;
      if (cnt == 4) q8m_row(4, p, s, nb, r, rec, ot, ob);
      else if (cnt == 3) q8m_row(3, p, s, nb, r, rec, ot, ob);
      else if (cnt == 2) q8m_row(2, p, s, nb, r, rec, ot, ob);
      else q8m_row(1, p, s, nb, r, rec, ot, ob);
    }
  }
}
