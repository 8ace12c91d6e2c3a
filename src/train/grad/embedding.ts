import type { Ids, Vec } from "./types.js";

/** Forward gather: out[t] = E[ids[t]] for rows of width D. */
export function embeddingForward(out: Vec, E: Vec, ids: Ids, T: number, D: number): void {
  for (let t = 0; t < T; t++) {
    const eo = ids[t] * D;
    for (let i = 0; i < D; i++) out[t * D + i] = E[eo + i];
  }
}

/** Backward of the gather: scatter-add dE[ids[t]] += dy[t] (repeated ids accumulate). */
export function embeddingBackward(dE: Vec, ids: Ids, dy: Vec, T: number, D: number): void {
  for (let t = 0; t < T; t++) {
    const eo = ids[t] * D;
    for (let i = 0; i < D; i++) dE[eo + i] += dy[t * D + i];
  }
}
