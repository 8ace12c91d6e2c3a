/** Index of the largest value of logits[off .. off + n), relative to off; the first one on ties, as torch.argmax. */
export function argmax(logits: ArrayLike<number>, off = 0, n = logits.length - off): number {
  let best = 0, bv = -Infinity;
  for (let i = 0; i < n; i++) if (logits[off + i] > bv) (bv = logits[off + i]), (best = i);
  return best;
}
