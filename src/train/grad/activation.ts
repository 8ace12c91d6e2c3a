import type { Vec } from "./types.js";

/**
 * Backward of the SwiGLU gate out = silu(gate) * up (src/backends/cpu/activation.ts `siluMul`):
 *   dgate = dy * up * sigma(g) * (1 + g * (1 - sigma(g))),  dup = dy * silu(g).
 * Both outputs are overwritten (either may alias dy).
 */
export function siluMulBackward(dGate: Vec, dUp: Vec, gate: Vec, up: Vec, dy: Vec, n: number): void {
  for (let i = 0; i < n; i++) {
    const g = gate[i], u = up[i], d = dy[i];
    const sg = 1 / (1 + Math.exp(-g));
    dGate[i] = d * u * sg * (1 + g * (1 - sg));
    dUp[i] = d * g * sg;
  }
}
