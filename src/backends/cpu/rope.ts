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
