/**
 * Rotary embedding in place on T rows (stride `rowStride`) of `heads` d-wide slices each (stride `headStride`,
 * starting at `offset`); cos/sin hold T rows of d/2 values (the caller's positions). Pair j rotates by the angle of
 * frequency j; the two layouts differ only in which dims form pair j.
 */
function rotatePairs(
  x: Float32Array | Float64Array, T: number, heads: number, d: number, offset: number, rowStride: number, headStride: number,
  cos: ArrayLike<number>, sin: ArrayLike<number>, step: number, gap: number,
): void {
  const half = d >> 1;
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < heads; h++) {
      const o = t * rowStride + h * headStride + offset;
      for (let j = 0; j < half; j++) {
        const c = cos[t * half + j], s = sin[t * half + j];
        const ia = o + j * step, ib = ia + gap;
        const a = x[ia], b = x[ib];
        x[ia] = a * c - b * s;
        x[ib] = a * s + b * c;
      }
    }
  }
}

/** Interleaved pairs (x0,x1),(x2,x3),... (DeepSeek). */
export function ropeInterleaved(
  x: Float32Array | Float64Array, T: number, heads: number, d: number, offset: number, rowStride: number, headStride: number,
  cos: ArrayLike<number>, sin: ArrayLike<number>,
): void {
  rotatePairs(x, T, heads, d, offset, rowStride, headStride, cos, sin, 2, 1);
}

/** By halves, pairs (x_j, x_{j+d/2}) (transformers' Llama `rotate_half`). Same layout arguments. */
export function ropeHalves(
  x: Float32Array | Float64Array, T: number, heads: number, d: number, offset: number, rowStride: number, headStride: number,
  cos: ArrayLike<number>, sin: ArrayLike<number>,
): void {
  rotatePairs(x, T, heads, d, offset, rowStride, headStride, cos, sin, 1, d >> 1);
}
