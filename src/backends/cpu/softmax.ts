/** In-place numerically stable softmax of x[off .. off+n). */
export function softmax(x: Float32Array | Float64Array, off: number, n: number): void {
  let m = -Infinity;
  for (let i = 0; i < n; i++) if (x[off + i] > m) m = x[off + i];
  let s = 0;
  for (let i = 0; i < n; i++) {
    const e = Math.exp(x[off + i] - m);
    x[off + i] = e;
    s += e;
  }
  const r = 1 / s;
  for (let i = 0; i < n; i++) x[off + i] *= r;
}
