/**
 * How close a converted model is to its source, measured with the engine (what users run): the relative error of
 * the logits, ||converted - source|| / ||source|| over every position of some windows, and the validation loss
 * (mean next-token cross-entropy) and perplexity on held-out windows.
 */
import { MlaError } from "../errors.js";
import type { CausalLM } from "../model/causal-lm.js";

/** Logits [T, V] of one window from a fresh state. */
export function windowLogits(model: CausalLM, ids: readonly number[]): Float32Array {
  return model.forward(ids, model.newState(ids.length), { allLogits: true });
}

/** ||a - b|| / ||b|| over all the windows' logits (b: the reference model). */
export function logitError(a: CausalLM, b: CausalLM, windows: readonly (readonly number[])[]): number {
  if (a.config.vocabSize !== b.config.vocabSize) throw new MlaError(`the models have different vocabularies (${a.config.vocabSize} vs ${b.config.vocabSize})`);
  let num = 0, den = 0;
  for (const ids of windows) {
    const la = windowLogits(a, ids), lb = windowLogits(b, ids);
    for (let i = 0; i < la.length; i++) {
      num += (la[i] - lb[i]) ** 2;
      den += lb[i] ** 2;
    }
  }
  return Math.sqrt(num / den);
}

/** Mean cross-entropy of targets[w][t] given ids[w][..t], and its exp. */
export function validationLoss(model: CausalLM, data: { ids: readonly (readonly number[])[]; targets: readonly (readonly number[])[] }): { loss: number; perplexity: number } {
  const V = model.config.vocabSize;
  let sum = 0, n = 0;
  data.ids.forEach((ids, w) => {
    const logits = windowLogits(model, ids);
    for (let t = 0; t < ids.length; t++) {
      const row = logits.subarray(t * V, (t + 1) * V);
      let mx = -Infinity;
      for (let v = 0; v < V; v++) mx = Math.max(mx, row[v]);
      let z = 0;
      for (let v = 0; v < V; v++) z += Math.exp(row[v] - mx);
      sum += Math.log(z) + mx - row[data.targets[w][t]];
      n++;
    }
  });
  return { loss: sum / n, perplexity: Math.exp(sum / n) };
}
