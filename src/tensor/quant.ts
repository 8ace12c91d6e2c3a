import { MlaError } from "../errors.js";
import { f16Lut, f32ToF16 } from "./dtype.js";

/**
 * Q8: GGML's Q8_0 held apart: symmetric int8 weights in blocks of 32 along each row (the input dimension), one
 * scale per block, computed as llama.cpp's quantize_row_q8_0_ref does (d = max|w| / 127, q = round(w / d) half away
 * from zero, d stored as f16), the scale kept as the f32 value of that f16. So a Q8 tensor is a Q8_0 tensor bit for
 * bit (GGUF files load and export losslessly), laid out for the SIMD kernels: 1.125 bytes per weight.
 */
export const Q8_BLOCK = 32;

export interface Q8Data {
  readonly q: Int8Array;
  readonly scales: Float32Array;
}

/** Quantize [rows, K] values, read row by row through `row(r)`, into q / scales. */
export function quantizeRowsQ8(q: Int8Array, scales: Float32Array, rows: number, K: number, row: (r: number) => Float32Array): void {
  if (K % Q8_BLOCK !== 0) throw new MlaError(`Q8 needs rows whose length is a multiple of ${Q8_BLOCK}, got ${K}`);
  const nb = K / Q8_BLOCK;
  const lut = f16Lut();
  for (let r = 0; r < rows; r++) {
    const x = row(r);
    for (let b = 0; b < nb; b++) {
      const o = b * Q8_BLOCK;
      let m = 0;
      for (let i = 0; i < Q8_BLOCK; i++) m = Math.max(m, Math.abs(x[o + i]));
      const d = Math.fround(m / 127);
      const qo = r * K + o;
      if (d === 0 || !Number.isFinite(d)) {
        // an all-zero block, or one with inf/NaN that int8 cannot carry: zeros
        scales[r * nb + b] = 0;
        for (let i = 0; i < Q8_BLOCK; i++) q[qo + i] = 0;
        continue;
      }
      scales[r * nb + b] = lut[f32ToF16(d)]; // the f16 scale as stored in Q8_0
      const id = Math.fround(1 / d);
      for (let i = 0; i < Q8_BLOCK; i++) {
        const v = roundAway(Math.fround(x[o + i] * id));
        q[qo + i] = v > 127 ? 127 : v < -127 ? -127 : v;
      }
    }
  }
}

/** Row r of Q8 data [rows, K] as f32 (q * scale, rounded to f32 once: what the kernels compute with). */
export function dequantizeRowQ8(q: Int8Array, s: Float32Array, r: number, K: number, out: Float32Array): Float32Array {
  const nb = K / Q8_BLOCK;
  for (let k = 0; k < K; k++) out[k] = q[r * K + k] * s[r * nb + ((k / Q8_BLOCK) | 0)];
  return out;
}

/** C's roundf: halves away from zero (Math.round sends -2.5 to -2). */
export function roundAway(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v);
}
