type F = Float32Array | Float64Array;

/** RMSNorm over rows of width D: out = w * x / sqrt(mean(x^2) + eps). out may alias x. Float64 arrays too (training's gradient checks). */
export function rmsNorm(out: F, x: F, T: number, D: number, w: F, eps: number, xStride = D, outStride = D): void {
  for (let t = 0; t < T; t++) {
    const xo = t * xStride;
    const oo = t * outStride;
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[xo + i] * x[xo + i];
    const r = 1 / Math.sqrt(ss / D + eps);
    for (let i = 0; i < D; i++) out[oo + i] = w[i] * (x[xo + i] * r);
  }
}
