import type { Ids, Vec } from "./types.js";

/** Targets equal to this are skipped (PyTorch's and transformers' convention). */
export const IGNORE_INDEX = -100;

export interface LossResult {
  /** Mean negative log-likelihood over the counted positions (0 when none). */
  readonly loss: number;
  /** Summed negative log-likelihood (for averaging over several micro-batches). */
  readonly sum: number;
  /** Positions whose target is not ignored. */
  readonly count: number;
}

/**
 * Causal-LM cross-entropy over logits [T, V] (row t predicts targets[t]; shifting ids by one is the caller's job):
 *   loss = (1 / count) sum_{t: target != ignore} -log softmax(logits[t])[target[t]]
 *   dlogits[t] = (softmax(logits[t]) - onehot(target[t])) / divisor   (zero rows for ignored targets)
 * `divisor` defaults to count, giving the gradient of the mean; pass the token count of the whole accumulated
 * batch to make micro-batch gradients sum to the batch mean. dlogits may alias logits; null skips the gradient.
 * Targets outside [0, V) other than ignoreIndex throw.
 */
export function crossEntropyLoss(
  dlogits: Vec | null, logits: Vec, targets: Ids, T: number, V: number,
  ignoreIndex = IGNORE_INDEX, divisor?: number,
): LossResult {
  let count = 0;
  for (let t = 0; t < T; t++) {
    const y = targets[t];
    if (y === ignoreIndex) continue;
    if (!Number.isInteger(y) || y < 0 || y >= V) throw new Error(`crossEntropyLoss: target ${y} at ${t} is outside [0, ${V})`);
    count++;
  }
  const div = divisor ?? count;
  const inv = div > 0 ? 1 / div : 0;
  let sum = 0;
  for (let t = 0; t < T; t++) {
    const o = t * V, y = targets[t];
    if (y === ignoreIndex) {
      if (dlogits) for (let j = 0; j < V; j++) dlogits[o + j] = 0;
      continue;
    }
    let m = -Infinity;
    for (let j = 0; j < V; j++) if (logits[o + j] > m) m = logits[o + j];
    let z = 0;
    for (let j = 0; j < V; j++) z += Math.exp(logits[o + j] - m);
    const lse = m + Math.log(z);
    sum += lse - logits[o + y];
    if (dlogits) {
      for (let j = 0; j < V; j++) dlogits[o + j] = Math.exp(logits[o + j] - lse) * inv;
      dlogits[o + y] -= inv;
    }
  }
  return { loss: count > 0 ? sum / count : 0, sum, count };
}
