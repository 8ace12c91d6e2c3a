/**
 * How close a converted model is to its source, measured with the engine (what users run): the validation loss
 * (mean next-token cross-entropy) and perplexity on held-out windows, and the relative error of the logits,
 * ||model - reference|| / ||reference|| over every position of those windows.
 */
import { MlaError } from "../errors.js";
import type { CausalLM } from "../model/causal-lm.js";

export interface Evaluation {
  readonly loss: number;
  readonly perplexity: number;
  /** Against the reference logits, when given. */
  readonly logitError: number | null;
  /** Logits [T, V] of each window (to serve as the reference of another evaluation). */
  readonly logits: readonly Float32Array[];
}

/** Logits [T, V] of one window from a fresh state. */
export function windowLogits(model: CausalLM, ids: readonly number[]): Float32Array {
  return model.forward(ids, model.newState(ids.length), { allLogits: true });
}

/** Loss and perplexity of targets[w][t] given ids[w][..t]; the logit error against `reference` (same windows). */
export function evaluate(
  model: CausalLM,
  data: { ids: readonly (readonly number[])[]; targets: readonly (readonly number[])[] },
  reference?: readonly Float32Array[],
): Evaluation {
  if (reference && reference.length !== data.ids.length) throw new MlaError(`reference logits for ${reference.length} windows, data has ${data.ids.length}`);
  const V = model.config.vocabSize;
  let sum = 0, n = 0, num = 0, den = 0;
  const logits = data.ids.map((ids, w) => {
    const l = windowLogits(model, ids);
    for (let t = 0; t < ids.length; t++) {
      const row = l.subarray(t * V, (t + 1) * V);
      let mx = -Infinity;
      for (let v = 0; v < V; v++) mx = Math.max(mx, row[v]);
      let z = 0;
      for (let v = 0; v < V; v++) z += Math.exp(row[v] - mx);
      sum += Math.log(z) + mx - row[data.targets[w][t]];
      n++;
    }
    const ref = reference?.[w];
    if (ref) {
      if (ref.length !== l.length) throw new MlaError(`reference logits of window ${w} have ${ref.length} values, the model gives ${l.length}`);
      for (let i = 0; i < l.length; i++) {
        num += (l[i] - ref[i]) ** 2;
        den += ref[i] ** 2;
      }
    }
    return l;
  });
  return { loss: sum / n, perplexity: Math.exp(sum / n), logitError: reference ? Math.sqrt(num / den) : null, logits };
}
