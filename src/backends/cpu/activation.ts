/** SwiGLU gate: out[i] = silu(gate[i]) * up[i]. out may alias gate. */
export function siluMul(out: Float32Array, gate: Float32Array, up: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const g = gate[i];
    out[i] = (g / (1 + Math.exp(-g))) * up[i];
  }
}

/** out += alpha * x over n values. */
export function axpy(out: Float32Array, alpha: number, x: Float32Array, n: number, outOff = 0, xOff = 0): void {
  for (let i = 0; i < n; i++) out[outOff + i] += alpha * x[xOff + i];
}
