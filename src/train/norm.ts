import type { Vec } from "./grad/index.js";

/** RMSNorm of T rows (input stride xs, output stride os), float64 sums: the forward of grad/norm.ts's backward. */
export function rmsRows(out: Vec, x: Vec, T: number, D: number, w: Vec, eps: number, xs = D, os = D): void {
  for (let t = 0; t < T; t++) {
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[t * xs + i] * x[t * xs + i];
    const r = 1 / Math.sqrt(ss / D + eps);
    for (let i = 0; i < D; i++) out[t * os + i] = w[i] * (x[t * xs + i] * r);
  }
}
