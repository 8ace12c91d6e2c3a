import { MlaError } from "../errors.js";

/**
 * Q8: symmetric int8 weights in blocks of 32 along each row (the input dimension), one f32 scale per block:
 * scale = max|w| / 127, q = round(w / scale). Like llama.cpp's Q8_0 with an f32 scale: 1.125 bytes per weight.
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
  const scl = new Float32Array(1);
  for (let r = 0; r < rows; r++) {
    const x = row(r);
    for (let b = 0; b < nb; b++) {
      const o = b * Q8_BLOCK;
      let m = 0;
      for (let i = 0; i < Q8_BLOCK; i++) m = Math.max(m, Math.abs(x[o + i]));
      scl[0] = m / 127; // the scale as stored (f32), so q is computed against exactly what the kernels use
      const s = scl[0];
      scales[r * nb + b] = s;
      const qo = r * K + o;
      if (s === 0 || !Number.isFinite(s)) {
        // an all-zero block, or one with inf/NaN that int8 cannot carry: zeros
        for (let i = 0; i < Q8_BLOCK; i++) q[qo + i] = 0;
        continue;
      }
      for (let i = 0; i < Q8_BLOCK; i++) {
        const v = Math.round(x[o + i] / s);
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
