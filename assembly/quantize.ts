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
      else if (dt == 1) for (let i: usize = 0; i < 32; i++) store<u32>(scratch + (i << 2), <u32>load<u16>(p + (i << 1)) << 16);
      else for (let i: usize = 0; i < 32; i += 8) f16x8_to_f32(scratch + (i << 2), p + (i << 1));
      let m: f32 = 0;
      for (let i: usize = 0; i < 32; i++) m = max(m, f32.abs(load<f32>(x + (i << 2))));
      const d = m / <f32>127;
      const qo = q + at, so = s + ((<usize>r * <usize>nb + <usize>b) << 2);
      if (d == 0 || !(d < Infinity)) {
        // all zeros, or inf/NaN that int8 cannot carry: a zero block (as quant.ts)
        store<f32>(so, 0);
        memory.fill(qo, 0, 32);
        continue;
      }
      store<f32>(so, f16round(d));
      const id = <f32>1 / d;
      for (let i: usize = 0; i < 32; i++) {
        const v = roundAway(load<f32>(x + (i << 2)) * id);
        store<i8>(qo + i, <i8>(v > 127 ? 127 : v < -127 ? -127 : v));
      }
    }
  }
}
