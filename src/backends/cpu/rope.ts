/**
 * Rotary embedding on interleaved pairs (x0,x1),(x2,x3),... of a d-wide slice, in place.
 * x holds T rows (stride `rowStride`) of `heads` slices each (stride `headStride`, starting at `offset`);
 * cos/sin hold T rows of d/2 values (the caller's positions).
 */
export function ropeInterleaved(
  x: Float32Array | Float64Array, T: number, heads: number, d: number, offset: number, rowStride: number, headStride: number,
  cos: ArrayLike<number>, sin: ArrayLike<number>,
): void {
  const half = d >> 1;
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < heads; h++) {
      const o = t * rowStride + h * headStride + offset;
      for (let j = 0; j < half; j++) {
        const c = cos[t * half + j], s = sin[t * half + j];
        const a = x[o + 2 * j], b = x[o + 2 * j + 1];
        x[o + 2 * j] = a * c - b * s;
        x[o + 2 * j + 1] = a * s + b * c;
      }
    }
  }
}

/**
 * Rotary embedding by halves (transformers' Llama `rotate_half`): pairs (x_j, x_{j+d/2}) of a d-wide slice rotate
 * by the angle of frequency j, in place. Same layout arguments as `ropeInterleaved`.
 */
export function ropeHalves(
  x: Float32Array | Float64Array, T: number, heads: number, d: number, offset: number, rowStride: number, headStride: number,
  cos: ArrayLike<number>, sin: ArrayLike<number>,
): void {
  const half = d >> 1;
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < heads; h++) {
      const o = t * rowStride + h * headStride + offset;
      for (let j = 0; j < half; j++) {
        const c = cos[t * half + j], s = sin[t * half + j];
        const a = x[o + j], b = x[o + half + j];
        x[o + j] = a * c - b * s;
        x[o + half + j] = a * s + b * c;
      }
    }
  }
}
