// Quantization at load time, on the worker pool: a checkpoint's F32/BF16/F16 rows to Q8 (GGML's Q8_0 held apart:
// int8 values, and the f16 block scale kept as its f32 value). The same arithmetic as src/tensor/quant.ts
// (llama.cpp's quantize_row_q8_0_ref), bit for bit: d = max|x| / 127 in f32, q = roundf(x * (1 / d)) clamped to
// +-127, d stored rounded to f16. Done here because the JS version costs ~10 ns a weight: 45 s for V2-Lite's
// first 8 layers, where reading them takes a few seconds.

import { f16x8_to_f32 } from "./f16";

/** x rounded to the nearest f16 value (ties to even), as f32; x >= 0. Past f16's largest finite value: infinity. */
function f16round(x: f32): f32 {
  const b = reinterpret<u32>(x);
  const e = (b >> 23) & 0xff;
  if (e < 113) return f32.nearest(x * <f32>16777216) / <f32>16777216; // f16 subnormal: multiples of 2^-24
  const r = reinterpret<f32>((b + 0xfff + ((b >> 13) & 1)) & 0xffffe000);
  return r > <f32>65504 ? Infinity : r;
}

/** C's roundf: halves away from zero (v - trunc(v) is exact in f32). */
// @ts-ignore: decorator
@inline function roundAway(v: f32): f32 {
  const t = f32.trunc(v);
  return f32.abs(v - t) >= <f32>0.5 ? t + f32.copysign(1, v) : t;
}

/** The 32 floats of one block at x (f32, already widened) -> their largest |x| (NaN when any is NaN, as Math.max). */
// @ts-ignore: decorator
@inline function amax32(x: usize): f32 {
  let m = f32x4.abs(v128.load(x));
  for (let j: usize = 16; j < 128; j += 16) m = f32x4.max(m, f32x4.abs(v128.load(x + j)));
  return max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
}

/** roundf(v * id) on 4 lanes as i32 (trunc, then one step away from zero when the dropped part is >= 0.5). */
// @ts-ignore: decorator
@inline function roundAway4(v: v128): v128 {
  const t = f32x4.trunc(v);
  const up = f32x4.ge(f32x4.abs(f32x4.sub(v, t)), f32x4.splat(0.5));
  // copysign(1, v) where up, 0 elsewhere
  const one = v128.or(v128.and(v, i32x4.splat(0x80000000)), f32x4.splat(1));
  return i32x4.trunc_sat_f32x4_s(f32x4.add(t, v128.and(one, up)));
}

/**
 * Rows [r0, r1) of src (K values a row; dt 0 = F32, 1 = BF16, 2 = F16) to Q8: int8 values at q ([rows, K]) and one
 * f32 scale per 32 at s. K % 32 == 0. Scratch: 128 bytes (one block widened to f32).
 */
export function quantize_q8(q: usize, s: usize, src: usize, dt: i32, K: i32, r0: i32, r1: i32, scratch: usize): void {
  const nb = K >> 5;
  const eb: usize = dt == 0 ? 4 : 2;
  for (let r = r0; r < r1; r++) {
    for (let b = 0; b < nb; b++) {
      const at = <usize>r * <usize>K + (<usize>b << 5);
      const p = src + at * eb;
      let x = scratch;
      if (dt == 0) x = p;
      else if (dt == 1) {
        for (let i: usize = 0; i < 4; i++) {
          const v = v128.load(p + (i << 4));
          v128.store(scratch + (i << 5), i32x4.shl(i32x4.extend_low_i16x8_u(v), 16));
          v128.store(scratch + (i << 5), i32x4.shl(i32x4.extend_high_i16x8_u(v), 16), 16);
        }
      } else for (let i: usize = 0; i < 32; i += 8) f16x8_to_f32(scratch + (i << 2), p + (i << 1));
      const d = amax32(x) / <f32>127;
      const qo = q + at, so = s + ((<usize>r * <usize>nb + <usize>b) << 2);
      if (d == 0 || !(d < Infinity)) {
        // all zeros, or inf/NaN that int8 cannot carry: a zero block (as quant.ts)
        store<f32>(so, 0);
        v128.store(qo, i32x4.splat(0));
        v128.store(qo, i32x4.splat(0), 16);
        continue;
      }
      store<f32>(so, f16round(d));
      const id = f32x4.splat(<f32>1 / d), lo = i8x16.splat(-127);
      for (let h: usize = 0; h < 2; h++) {
        const xp = x + (h << 6);
        const a = i16x8.narrow_i32x4_s(roundAway4(f32x4.mul(v128.load(xp), id)), roundAway4(f32x4.mul(v128.load(xp, 16), id)));
        const c = i16x8.narrow_i32x4_s(roundAway4(f32x4.mul(v128.load(xp, 32), id)), roundAway4(f32x4.mul(v128.load(xp, 48), id)));
        // |x| <= max|x| keeps |x / d| <= 127 up to rounding; saturate, then clamp -128 to -127 as quant.ts does
        v128.store(qo + (h << 4), i8x16.max_s(i8x16.narrow_i16x8_s(a, c), lo));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// GGML's block types (Q4_0, Q4_K, Q5_K, Q6_K): a port of src/tensor/ggml-quantize.ts, operation for operation in
// f32, so the bytes equal the JS reference's (and so llama.cpp's). Where the JS relies on how a NaN level behaves
// (a range below f32's smallest normal makes 1 / range infinite, and 0 * inf a NaN level), this code does the same:
// the clamps keep NaN as Math.min/max do, a level is stored as a Uint8Array stores it (NaN -> 0), and the
// scale bytes go through ToInt32 as JS's `& 255` does.

const TENTH: f32 = 0.1;
const GROUP_MAX_EPS: f32 = 1e-15;
/** 1.5 * 2^23: adding it rounds an f32 to an integer, half to even (llama.cpp's nearest_int). */
const MAGIC: f32 = 12582912;

// Scratch layout of quantize_blocks (bytes from the thread's scratch pointer).
const X_AT: usize = 0; //      one block widened to f32 (256 floats)
const L_AT: usize = 1024; //   the block's levels (256 bytes)
const SC_AT: usize = 1280; //  sub-block scales (16 floats)
const MN_AT: usize = 1344; //  sub-block mins (8 floats)
const XT_AT: usize = 1408; //  four sub-blocks transposed (32 x 4 floats)
const WT_AT: usize = 1920; //  their weights
const LT_AT: usize = 2432; //  their trial levels
const BT_AT: usize = 2944; //  their best levels
// 3456 bytes in all: WasmBackend sets aside 4096 (QUANTIZE_BLOCKS_SCRATCH there)

/** nearest_int unclamped, as JS's f64 difference (exact), for values that go through `& 255`. */
// @ts-ignore: decorator
@inline function nearest64(v: f32): f64 {
  return <f64>(v + MAGIC) - <f64>MAGIC;
}

/** JS's ToInt32: NaN and infinities to 0, else truncated and taken modulo 2^32. */
function toInt32(v: f64): i32 {
  if (!(v - v == 0)) return 0;
  const t = f64.trunc(v);
  return <i32><i64>(t - f64.floor(t / 4294967296) * 4294967296);
}

/** float32 -> IEEE half bits, round to nearest even, overflow to infinity (dtype.ts f32ToF16). */
function f16bits(x: f32): u32 {
  const b = reinterpret<u32>(x);
  const sign = (b >> 16) & 0x8000, exp = (b >> 23) & 0xff;
  let man = b & 0x7fffff;
  if (exp == 0xff) return sign | 0x7c00 | (man ? 0x200 : 0);
  const e = <i32>exp - 112;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    man |= 0x800000;
    const shift = <u32>(14 - e);
    let h = man >> shift;
    const rem = man & ((<u32>1 << shift) - 1), half = <u32>1 << (shift - 1);
    if (rem > half || (rem == half && (h & 1) != 0)) h++;
    return sign | h;
  }
  let h = (<u32>e << 10) | (man >> 13);
  const rem = man & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1) != 0)) h++;
  return sign | h;
}

/** The f32 value of half bits h. */
function f16value(h: u32): f32 {
  const e = (h >> 10) & 31, m = h & 1023, s: f32 = h & 0x8000 ? -1 : 1;
  if (e == 0) return s * <f32>m * <f32>5.9604644775390625e-8; // m * 2^-24, exact
  if (e == 31) return m ? NaN : s * Infinity;
  return reinterpret<f32>(((h & 0x8000) << 16) | ((e + 112) << 23) | (m << 13));
}

// @ts-ignore: decorator
@inline function ld(p: usize, i: i32): f32 {
  return load<f32>(p + (<usize>i << 2));
}

/**
 * Q4_0's nibbles of 4 values: min(15, trunc(x * id + 8.5)) as JS's `|` sees it. pmin(t, 15) keeps a NaN (as
 * Math.min); trunc_sat sends NaN to 0 and t <= -2^31 (-inf included) to -2^31, whose low byte is 0 as ToInt32's is.
 */
// @ts-ignore: decorator
@inline function q4x4(v: v128, id: v128): v128 {
  return i32x4.trunc_sat_f32x4_s(f32x4.pmin(f32x4.trunc(f32x4.add(f32x4.mul(v, id), f32x4.splat(8.5))), f32x4.splat(15)));
}

/** quantize_row_q4_0_ref, one block of 32 (finite) at x into 18 bytes at y. */
function blockQ4_0(x: usize, y: usize): void {
  let m = f32x4.abs(v128.load(x));
  for (let j: usize = 16; j < 128; j += 16) m = f32x4.max(m, f32x4.abs(v128.load(x + j)));
  const amax = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
  // the JS keeps the first value of largest magnitude (strict <), and +0 when all are zero
  let mx: f32 = 0;
  if (amax > 0) {
    let j = 0;
    while (f32.abs(ld(x, j)) != amax) j++;
    mx = ld(x, j);
  }
  const d = mx / <f32>-8, id: f32 = d != 0 ? <f32>1 / d : 0, vid = f32x4.splat(id);
  store<u16>(y, <u16>f16bits(d));
  const lo = i16x8.narrow_i32x4_u(q4bytes(x, vid), q4bytes(x + 16, vid));
  const hi = i16x8.narrow_i32x4_u(q4bytes(x + 32, vid), q4bytes(x + 48, vid));
  v128.store(y + 2, i8x16.narrow_i16x8_u(lo, hi));
}

/** Bytes j..j+3 of Q4_0 (x at value j): nibble of x[j] | nibble of x[16 + j] << 4, masked to 8 bits as the JS's store. */
// @ts-ignore: decorator
@inline function q4bytes(x: usize, vid: v128): v128 {
  return v128.and(v128.or(q4x4(v128.load(x), vid), i32x4.shl(q4x4(v128.load(x + 64), vid), 4)), i32x4.splat(255));
}

// The fits (make_qkx2_quants, make_qx_quants) run on four sub-blocks at once, one per SIMD lane: lane k of row i
// holds sub-block k's value i (a "transposed" group). Each lane does exactly the scalar code's f32 operations in
// its order (sums stay sequential within a lane), so the results are the JS's; the branches become lane masks.
// One sub-block at a time is bound by the latency of those sequential sums; four at a time hide it.

/** Four sub-blocks of n values (n * 4 floats from x, sub-block k at x + k * n * 4) into lanes at xT. */
function transpose4(xT: usize, x: usize, n: i32): void {
  const stride = <usize>n << 2;
  for (let i: usize = 0; i < <usize>n; i++) {
    const p = x + (i << 2), v = f32x4.splat(load<f32>(p));
    v128.store(xT + (i << 4), f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(v, 1, load<f32>(p + stride)), 2, load<f32>(p + 2 * stride)), 3, load<f32>(p + 3 * stride)));
  }
}

/** Lanes of levels at lT (f32; NaN -> 0 as a Uint8Array stores it) back to four sub-blocks of n bytes at L. */
function untransposeLevels(L: usize, lT: usize, n: i32): void {
  for (let i: usize = 0; i < <usize>n; i++) {
    const q = i32x4.trunc_sat_f32x4_u(v128.load(lT + (i << 4)));
    store<u8>(L + i, <u8>i32x4.extract_lane(q, 0));
    store<u8>(L + <usize>n + i, <u8>i32x4.extract_lane(q, 1));
    store<u8>(L + 2 * <usize>n + i, <u8>i32x4.extract_lane(q, 2));
    store<u8>(L + 3 * <usize>n + i, <u8>i32x4.extract_lane(q, 3));
  }
}

// @ts-ignore: decorator
@inline function ldv(p: usize, i: i32): v128 {
  return v128.load(p + (<usize>i << 4));
}

/**
 * A level on four lanes: Math.max(lo, Math.min(hi, nearestInt(v))). v + MAGIC - MAGIC is nearestInt (exact for
 * |v| < 2^22, on the right side of any bound past it) and never -0, so the pseudo-min/max (one instruction each;
 * pmin(t, hi) = hi < t ? hi : t keeps a NaN as Math.min does) equal Math.min/max here, where f32x4.min/max's NaN
 * and -0 rules cost engines several instructions.
 */
// @ts-ignore: decorator
@inline function levelx4(v: v128, lo: v128, hi: v128): v128 {
  const m = f32x4.splat(MAGIC);
  return f32x4.pmax(f32x4.pmin(f32x4.sub(f32x4.add(v, m), m), hi), lo);
}

/**
 * n values at s (a multiple of 4) re-quantized against their stored scale and min, as the JS's last pass:
 * off + clamp(nearest((x + dm) / dj), lo, hi) to n bytes at L (NaN -> 0, as a Uint8Array stores it).
 */
function requant(L: usize, s: usize, n: i32, dm: f32, dj: f32, lo: f32, hi: f32, off: f32): void {
  const vdm = f32x4.splat(dm), vdj = f32x4.splat(dj), vlo = f32x4.splat(lo), vhi = f32x4.splat(hi), voff = f32x4.splat(off);
  for (let i: usize = 0; i < <usize>n; i += 4) {
    const l = f32x4.add(voff, levelx4(f32x4.div(f32x4.add(v128.load(s + (i << 2)), vdm), vdj), vlo, vhi));
    const q = i32x4.trunc_sat_f32x4_u(l), h = i16x8.narrow_i32x4_u(q, q);
    v128.store32_lane(L + i, i8x16.narrow_i16x8_u(h, h), 0);
  }
}

/** make_qkx2_quants' results per lane: the scale and -min (wasm globals, so per thread). */
let qkxScale = f32x4.splat(0), qkxMin = f32x4.splat(0);

/**
 * make_qkx2_quants on four sub-blocks of 32 (values at xT, weights at wT, transposed): the best levels to bestT
 * (f32 lanes), the scales and -mins to qkxScale / qkxMin. lT: 512 bytes for the trial levels.
 */
function makeQkx2x4(xT: usize, wT: usize, bestT: usize, lT: usize, nmax: f32, rmin: f32, nstep: i32): void {
  const zero = f32x4.splat(0), vmax = f32x4.splat(nmax);
  let mn = ldv(xT, 0), mx = mn, sumW = ldv(wT, 0), sumX = f32x4.mul(sumW, mn);
  for (let i = 1; i < 32; i++) {
    const v = ldv(xT, i), w = ldv(wT, i);
    mn = f32x4.pmin(mn, v); // if (v < min) min = v
    mx = f32x4.pmax(mx, v); // if (v > max) max = v
    sumW = f32x4.add(sumW, w);
    sumX = f32x4.add(sumX, f32x4.mul(w, v));
  }
  mn = f32x4.pmin(mn, zero); // if (min > 0) min = 0
  const flat = f32x4.eq(mx, mn); // these lanes end as scale 0, levels 0 (their fits below make NaN and never win)
  let iscale = f32x4.div(vmax, f32x4.sub(mx, mn)), scale = f32x4.div(f32x4.splat(1), iscale), best = zero;
  for (let i = 0; i < 32; i++) {
    const v = ldv(xT, i), l = levelx4(f32x4.mul(iscale, f32x4.sub(v, mn)), zero, vmax);
    v128.store(bestT + (<usize>i << 4), l);
    const diff = f32x4.sub(f32x4.add(f32x4.mul(scale, l), mn), v);
    best = f32x4.add(best, f32x4.mul(ldv(wT, i), f32x4.mul(diff, diff)));
  }
  for (let is = 0; is <= nstep; is++) {
    // (max - min) with the best min so far: llama.cpp moves min as it finds better fits
    iscale = f32x4.div(f32x4.splat(rmin + TENTH * <f32>is + nmax), f32x4.sub(mx, mn));
    let sumL = zero, sumL2 = zero, sumXL = zero;
    for (let i = 0; i < 32; i++) {
      const v = ldv(xT, i), l = levelx4(f32x4.mul(iscale, f32x4.sub(v, mn)), zero, vmax);
      v128.store(lT + (<usize>i << 4), l);
      const wl = f32x4.mul(ldv(wT, i), l);
      sumL = f32x4.add(sumL, wl);
      sumL2 = f32x4.add(sumL2, f32x4.mul(wl, l));
      sumXL = f32x4.add(sumXL, f32x4.mul(wl, v));
    }
    const D = f32x4.sub(f32x4.mul(sumW, sumL2), f32x4.mul(sumL, sumL));
    const ok = f32x4.gt(D, zero); // a lane with a NaN level has D NaN: its levels below are never used
    if (!v128.any_true(ok)) continue;
    let thisScale = f32x4.div(f32x4.sub(f32x4.mul(sumW, sumXL), f32x4.mul(sumX, sumL)), D);
    let thisMin = f32x4.div(f32x4.sub(f32x4.mul(sumL2, sumX), f32x4.mul(sumL, sumXL)), D);
    const pos = f32x4.gt(thisMin, zero);
    thisMin = v128.bitselect(zero, thisMin, pos);
    thisScale = v128.bitselect(f32x4.div(sumXL, sumL2), thisScale, pos);
    let cur = zero;
    for (let i = 0; i < 32; i++) {
      const diff = f32x4.sub(f32x4.add(f32x4.mul(thisScale, ldv(lT, i)), thisMin), ldv(xT, i));
      cur = f32x4.add(cur, f32x4.mul(ldv(wT, i), f32x4.mul(diff, diff)));
    }
    const better = v128.and(ok, f32x4.lt(cur, best));
    if (!v128.any_true(better)) continue;
    for (let i = 0; i < 32; i++) {
      const p = bestT + (<usize>i << 4);
      v128.store(p, v128.bitselect(ldv(lT, i), v128.load(p), better));
    }
    best = v128.bitselect(cur, best, better);
    scale = v128.bitselect(thisScale, scale, better);
    mn = v128.bitselect(thisMin, mn, better);
  }
  if (v128.any_true(flat)) for (let i = 0; i < 32; i++) v128.store(bestT + (<usize>i << 4), v128.andnot(ldv(bestT, i), flat));
  qkxScale = v128.bitselect(zero, scale, flat);
  qkxMin = f32x4.neg(mn);
}

/** The 6-bit scale and min bytes of Q4_K/Q5_K (12 bytes at sc) from the f32 scales and mins in scratch. */
function packScalesK4(sc: usize, scales: usize, mins: usize, invScale: f32, invMin: f32): void {
  memory.fill(sc, 0, 12);
  for (let j = 0; j < 8; j++) {
    // (uint8_t) of the int, then MIN(63, .), as the JS's `& 255`
    const ls = min(63, toInt32(nearest64(invScale * ld(scales, j))) & 255);
    const lm = min(63, toInt32(nearest64(invMin * ld(mins, j))) & 255);
    const p = sc + <usize>j;
    if (j < 4) {
      store<u8>(p, <u8>ls);
      store<u8>(p + 4, <u8>lm);
    } else {
      store<u8>(p + 4, <u8>((ls & 15) | ((lm & 15) << 4)));
      store<u8>(p - 4, load<u8>(p - 4) | <u8>((ls >> 4) << 6));
      store<u8>(p, load<u8>(p) | <u8>((lm >> 4) << 6));
    }
  }
}

/** Sub-block j's 6-bit scale (low 8 bits) and min (next 8) as stored (get_scale_min_k4). */
function scaleMinK4(sc: usize, j: i32): i32 {
  // widened to i32 first: shifts on u8 values wrap at 8 bits
  const p = sc + <usize>j, a = <i32>load<u8>(p), b = <i32>load<u8>(p + 4);
  if (j < 4) return (a & 63) | ((b & 63) << 8);
  const c = <i32>load<u8>(p - 4);
  return (b & 15) | ((c >> 6) << 4) | (((b >> 4) | ((a >> 6) << 4)) << 8);
}

/** quantize_row_q4_K_ref / q5_K_ref, one block of 256 at x into y (144 / 176 bytes). */
function blockQ45K(x: usize, y: usize, five: bool, scr: usize): void {
  const nmax: f32 = five ? 31 : 15, L = scr + L_AT, scales = scr + SC_AT, mins = scr + MN_AT;
  let maxScale: f32 = 0, maxMin: f32 = 0;
  for (let g = 0; g < 2; g++) {
    // sub-blocks 4g .. 4g+3 side by side; weights sqrt(mean x^2) + |x|
    const xT = scr + XT_AT, wT = scr + WT_AT;
    transpose4(xT, x + (<usize>g << 9), 32);
    let sumX2 = f32x4.splat(0);
    for (let l = 0; l < 32; l++) sumX2 = f32x4.add(sumX2, f32x4.mul(ldv(xT, l), ldv(xT, l)));
    const av = f32x4.sqrt(f32x4.div(sumX2, f32x4.splat(32)));
    for (let l = 0; l < 32; l++) v128.store(wT + (<usize>l << 4), f32x4.add(av, f32x4.abs(ldv(xT, l))));
    if (five) makeQkx2x4(xT, wT, scr + BT_AT, scr + LT_AT, 31, -0.5, 15);
    else makeQkx2x4(xT, wT, scr + BT_AT, scr + LT_AT, 15, -1, 20);
    untransposeLevels(L + (<usize>g << 7), scr + BT_AT, 32);
    v128.store(scales + (<usize>g << 4), qkxScale);
    v128.store(mins + (<usize>g << 4), qkxMin);
  }
  for (let j = 0; j < 8; j++) {
    const sc = ld(scales, j), m = ld(mins, j);
    if (sc > maxScale) maxScale = sc;
    if (m > maxMin) maxMin = m;
  }
  const invScale: f32 = maxScale > 0 ? <f32>63 / maxScale : 0, invMin: f32 = maxMin > 0 ? <f32>63 / maxMin : 0;
  packScalesK4(y + 4, scales, mins, invScale, invMin);
  const dh = f16bits(maxScale / <f32>63), mh = f16bits(maxMin / <f32>63);
  const d = f16value(dh), dmin = f16value(mh);
  store<u16>(y, <u16>dh);
  store<u16>(y + 2, <u16>mh);
  for (let j = 0; j < 8; j++) {
    const sm = scaleMinK4(y + 4, j);
    const dj = d * <f32>(sm & 255);
    if (dj == 0 || dj != dj) continue; // keeps makeQkx2's levels, as llama.cpp does (JS's `!dj`)
    requant(L + (<usize>j << 5), x + (<usize>j << 7), 32, dmin * <f32>(sm >> 8), dj, 0, nmax, 0);
  }
  packQ45K(L, y, five);
}

/** Levels into nibbles (and Q5_K's fifth bits): each 32 bytes hold sub-blocks 2j (low) and 2j+1 (high). */
function packQ45K(L: usize, y: usize, five: bool): void {
  const qh = y + 16, qs = y + (five ? 48 : 16);
  if (five) memory.fill(qh, 0, 32);
  for (let j: usize = 0; j < 4; j++) {
    const sh = <u32>2 * <u32>j, b1 = <u8>(<u32>1 << sh), b2 = <u8>(<u32>2 << sh);
    for (let l: usize = 0; l < 32; l++) {
      let l1 = <u32>load<u8>(L + (j << 6) + l), l2 = <u32>load<u8>(L + (j << 6) + 32 + l);
      if (five && l1 > 15) {
        l1 -= 16;
        store<u8>(qh + l, load<u8>(qh + l) | b1);
      }
      if (five && l2 > 15) {
        l2 -= 16;
        store<u8>(qh + l, load<u8>(qh + l) | b2);
      }
      store<u8>(qs + (j << 5) + l, <u8>(l1 | (l2 << 4)));
    }
  }
}

/** make_qx_quants' scales per lane (a wasm global, so per thread). */
let qxScale = f32x4.splat(0);

/** One trial of make_qx_quants on four lanes: levels (-32..31) to lT, returns sum w l x, with sum w l^2 in qxSumL2. */
let qxSumL2 = f32x4.splat(0);
function qxTrial(xT: usize, lT: usize, iscale: v128): v128 {
  const lo = f32x4.splat(-32), hi = f32x4.splat(31);
  let sumlx = f32x4.splat(0), suml2 = sumlx;
  for (let i = 0; i < 16; i++) {
    const v = ldv(xT, i), l = levelx4(f32x4.mul(iscale, v), lo, hi), w = f32x4.mul(v, v);
    v128.store(lT + (<usize>i << 4), l);
    sumlx = f32x4.add(sumlx, f32x4.mul(f32x4.mul(w, v), l));
    suml2 = f32x4.add(suml2, f32x4.mul(f32x4.mul(w, l), l));
  }
  qxSumL2 = suml2;
  return sumlx;
}

/**
 * make_qx_quants (nmax 32, rmse_type 1: weights x^2) on four sub-blocks of 16 at xT (transposed): the best levels
 * + 32 to bestT (f32 lanes), the scales to qxScale. lT: 256 bytes for the trial levels.
 */
function makeQxx4(xT: usize, bestT: usize, lT: usize): void {
  const zero = f32x4.splat(0), off = f32x4.splat(32);
  let mx = zero, amax = zero;
  for (let i = 0; i < 16; i++) {
    const v = ldv(xT, i), ax = f32x4.abs(v), m = f32x4.gt(ax, amax);
    amax = v128.bitselect(ax, amax, m);
    mx = v128.bitselect(v, mx, m);
  }
  const tiny = f32x4.lt(amax, f32x4.splat(GROUP_MAX_EPS)); // these lanes end as scale 0, levels 0
  let sumlx = qxTrial(xT, bestT, f32x4.div(f32x4.splat(-32), mx)), suml2 = qxSumL2;
  const has = v128.and(f32x4.ne(suml2, zero), f32x4.eq(suml2, suml2)); // JS's `suml2 ? ... : 0` (NaN is falsy)
  let scale = v128.bitselect(f32x4.div(sumlx, suml2), zero, has), best = f32x4.mul(scale, sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is == 0) continue;
    sumlx = qxTrial(xT, lT, f32x4.div(f32x4.splat(-(<f32>32 + TENTH * <f32>is)), mx));
    suml2 = qxSumL2;
    const better = v128.and(f32x4.gt(suml2, zero), f32x4.gt(f32x4.mul(sumlx, sumlx), f32x4.mul(best, suml2)));
    if (!v128.any_true(better)) continue;
    for (let i = 0; i < 16; i++) {
      const p = bestT + (<usize>i << 4);
      v128.store(p, v128.bitselect(ldv(lT, i), v128.load(p), better));
    }
    scale = v128.bitselect(f32x4.div(sumlx, suml2), scale, better);
    best = v128.bitselect(f32x4.mul(scale, sumlx), best, better);
  }
  // levels stored + 32 (NaN stays NaN: stored as 0); tiny lanes all 0
  for (let i = 0; i < 16; i++) v128.store(bestT + (<usize>i << 4), v128.andnot(f32x4.add(off, ldv(bestT, i)), tiny));
  qxScale = v128.bitselect(zero, scale, tiny);
}

/** quantize_row_q6_K_ref, one block of 256 at x into 210 bytes at y. */
function blockQ6K(x: usize, y: usize, scr: usize): void {
  const L = scr + L_AT, scales = scr + SC_AT;
  let maxScale: f32 = 0, maxAbs: f32 = 0;
  for (let g = 0; g < 4; g++) {
    // sub-blocks 4g .. 4g+3 side by side
    const xT = scr + XT_AT;
    transpose4(xT, x + (<usize>g << 8), 16);
    makeQxx4(xT, scr + BT_AT, scr + LT_AT);
    untransposeLevels(L + (<usize>g << 6), scr + BT_AT, 16);
    v128.store(scales + (<usize>g << 4), qxScale);
  }
  for (let ib = 0; ib < 16; ib++) {
    const s = ld(scales, ib);
    if (f32.abs(s) > maxAbs) {
      maxAbs = f32.abs(s);
      maxScale = s;
    }
  }
  memory.fill(y, 0, 210);
  if (maxAbs < GROUP_MAX_EPS) return;
  const iscale = <f32>-128 / maxScale, dh = f16bits(<f32>1 / iscale), d = f16value(dh);
  store<u16>(y + 208, <u16>dh);
  for (let ib = 0; ib < 16; ib++) store<u8>(y + 192 + ib, <u8>(toInt32(min(<f64>127, nearest64(iscale * ld(scales, ib)))) & 255));
  for (let j = 0; j < 16; j++) {
    const dj = d * <f32>load<i8>(y + 192 + j);
    if (dj == 0 || dj != dj) continue;
    // x + 0 differs from x only at -0, which nearest() turns to 0 either way
    requant(L + (<usize>j << 4), x + (<usize>j << 6), 16, 0, dj, -32, 31, 32);
  }
  packQ6K(L, y);
}

function packQ6K(L: usize, y: usize): void {
  for (let h: usize = 0; h < 2; h++) {
    const ql = y + (h << 6), qh = y + 128 + (h << 5), b = L + (h << 7);
    for (let l: usize = 0; l < 32; l++) {
      const q1 = <u32>load<u8>(b + l), q2 = <u32>load<u8>(b + l + 32), q3 = <u32>load<u8>(b + l + 64), q4 = <u32>load<u8>(b + l + 96);
      store<u8>(ql + l, <u8>((q1 & 15) | ((q3 & 15) << 4)));
      store<u8>(ql + l + 32, <u8>((q2 & 15) | ((q4 & 15) << 4)));
      store<u8>(qh + l, <u8>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6)));
    }
  }
}

/** n (a multiple of 8) source values at p widened to f32 at dst; dt 1 = BF16, 2 = F16. */
function widen(dst: usize, p: usize, dt: i32, n: i32): void {
  for (let i: usize = 0; i < <usize>n; i += 8) {
    if (dt == 2) {
      f16x8_to_f32(dst + (i << 2), p + (i << 1));
      continue;
    }
    const v = v128.load(p + (i << 1));
    v128.store(dst + (i << 2), i32x4.shl(i32x4.extend_low_i16x8_u(v), 16));
    v128.store(dst + (i << 2), i32x4.shl(i32x4.extend_high_i16x8_u(v), 16), 16);
  }
}

/** Every one of n (a multiple of 4) floats at x finite? (exponent field not all ones) */
function finiteBlock(x: usize, n: i32): bool {
  const e = i32x4.splat(0x7f800000);
  let bad = i32x4.splat(0);
  for (let i: usize = 0; i < <usize>n; i += 4) bad = v128.or(bad, i32x4.eq(v128.and(v128.load(x + (i << 2)), e), e));
  return !v128.any_true(bad);
}

/**
 * Rows [r0, r1) of src (K values a row; dt 0 = F32, 1 = BF16, 2 = F16) to GGML's blocks of `type` (DTYPE_CODE:
 * 4 = Q4_0, 5 = Q4_K, 6 = Q5_K, 7 = Q6_K) at dst, each row ggmlRowBytes(type, K) bytes. K divides the block. A block
 * holding inf or NaN is quantized as zeros (as ggml-quantize.ts). Scratch: QUANTIZE_BLOCKS_SCRATCH bytes.
 */
export function quantize_blocks(dst: usize, src: usize, dt: i32, type: i32, K: i32, r0: i32, r1: i32, scratch: usize): void {
  const per = type == 4 ? 32 : 256;
  const bytes: usize = type == 4 ? 18 : type == 5 ? 144 : type == 6 ? 176 : 210;
  const nb = K / per, rowBytes = <usize>nb * bytes, eb: usize = dt == 0 ? 4 : 2;
  for (let r = r0; r < r1; r++) {
    for (let b = 0; b < nb; b++) {
      const p = src + (<usize>r * <usize>K + <usize>(b * per)) * eb;
      let x = scratch + X_AT;
      if (dt == 0) x = p;
      else widen(x, p, dt, per);
      if (!finiteBlock(x, per)) {
        x = scratch + X_AT;
        memory.fill(x, 0, <usize>per << 2);
      }
      const y = dst + <usize>r * rowBytes + <usize>b * bytes;
      if (type == 4) blockQ4_0(x, y);
      else if (type == 7) blockQ6K(x, y, scratch);
      else blockQ45K(x, y, type == 6, scratch);
    }
  }
}
