/**
 * Calibration activations for the conversion: the source model's per-layer attention inputs on sample text, as z
 * (the residual stream normalized to unit RMS, before input_layernorm's weight; see ./latent.ts). They come from
 * the engine's own forward (hiddenStates), so every supported llama-family checkpoint can be calibrated.
 */
import { MlaError } from "../errors.js";
import type { CausalLM } from "../model/causal-lm.js";

export interface Calibration {
  /** Samples (tokens) per layer. */
  readonly n: number;
  /** Per layer, z [n, D] (float64): the windows back to back. */
  readonly layers: readonly Float64Array[];
  /** Token count of each window (each starts at position 0). */
  readonly windows: readonly number[];
}

/** Run the windows through the model and keep every layer's normalized input. */
export function calibrate(model: CausalLM, windows: readonly (readonly number[])[]): Calibration {
  const c = model.config, D = c.hiddenSize, L = c.numLayers;
  const n = windows.reduce((s, w) => s + w.length, 0);
  if (n === 0) throw new MlaError("calibration: no tokens");
  const layers = Array.from({ length: L }, () => new Float64Array(n * D));
  let row = 0;
  for (const ids of windows) {
    const hs: Float32Array[] = [];
    model.forward(ids, model.newState(ids.length), { hiddenStates: hs });
    for (let i = 0; i < L; i++) {
      const h = hs[i], z = layers[i];
      for (let t = 0; t < ids.length; t++) {
        let ss = 0;
        for (let j = 0; j < D; j++) ss += h[t * D + j] ** 2;
        const inv = 1 / Math.sqrt(ss / D + c.rmsNormEps);
        for (let j = 0; j < D; j++) z[(row + t) * D + j] = h[t * D + j] * inv;
      }
    }
    row += ids.length;
  }
  return { n, layers, windows: windows.map((w) => w.length) };
}
