/**
 * A minimal training loop: batches of random windows from one token array (seeded, so the data order is fixed by
 * the seed), forward/backward (optionally over several micro-batches), AdamW with warmup + cosine decay and
 * gradient clipping. Returns the loss of every step.
 */
import { MlaError } from "../errors.js";
import { AdamW, lrAt, type AdamWOptions } from "./adamw.js";
import type { TrainModel } from "./model.js";
import { Rng } from "../tensor/rng.js";

export interface TrainOptions extends AdamWOptions {
  readonly steps: number;
  /** Sequences per step (summed over micro-batches). */
  readonly batchSize: number;
  /** Tokens per sequence (each window is seqLen + 1 tokens: inputs and shifted targets). */
  readonly seqLen: number;
  /** Split each step's batch into this many micro-batches (gradient accumulation; default 1). */
  readonly microBatches?: number;
  readonly maxLr: number;
  readonly minLr?: number; // default maxLr / 10
  readonly warmupSteps?: number; // default 0
  /** Seed of the window sampler (default 0). */
  readonly seed?: number;
  /** Called after every step. */
  readonly onStep?: (info: { step: number; loss: number; lr: number; gradNorm: number }) => void;
}

/** `batchSize` windows of seqLen + 1 tokens starting at uniform offsets (one rng draw per window). */
export function sampleBatch(tokens: ArrayLike<number>, batchSize: number, seqLen: number, rng: Rng): { ids: number[][]; targets: number[][] } {
  const n = tokens.length - seqLen - 1;
  if (n < 0) throw new MlaError(`training: ${tokens.length} tokens are too few for windows of ${seqLen + 1}`);
  const ids: number[][] = [], targets: number[][] = [];
  for (let b = 0; b < batchSize; b++) {
    const o = rng.int(n + 1);
    const w = Array.from({ length: seqLen + 1 }, (_, i) => tokens[o + i]);
    ids.push(w.slice(0, seqLen));
    targets.push(w.slice(1));
  }
  return { ids, targets };
}

/** Train `model` in place on `tokens`; returns the mean loss of each step's batch (before its update). */
export function train(model: TrainModel, tokens: ArrayLike<number>, o: TrainOptions): number[] {
  const micro = o.microBatches ?? 1;
  if (o.batchSize % micro) throw new MlaError(`training: batch size ${o.batchSize} does not split into ${micro} micro-batches`);
  const rng = new Rng(o.seed ?? 0);
  const opt = new AdamW(model.params, model.shapes, o);
  const sched = { maxLr: o.maxLr, minLr: o.minLr ?? o.maxLr / 10, warmupSteps: o.warmupSteps ?? 0, totalSteps: o.steps };
  const history: number[] = [];
  for (let step = 0; step < o.steps; step++) {
    const { ids, targets } = sampleBatch(tokens, o.batchSize, o.seqLen, rng);
    const loss = accumulateGradients(model, ids, targets, micro);
    const lr = lrAt(step, sched);
    const { gradNorm } = opt.step(model.grads, lr);
    history.push(loss);
    o.onStep?.({ step, loss, lr, gradNorm });
  }
  return history;
}

/**
 * Zero the gradients, then forward/backward `ids`/`targets` split into `micro` equal micro-batches so that the
 * gradients sum to those of the whole batch's mean loss. Returns that mean loss.
 */
export function accumulateGradients(model: TrainModel, ids: number[][], targets: number[][], micro = 1): number {
  const B = ids.length, T = ids[0]?.length ?? 0;
  if (B % micro) throw new MlaError(`training: batch size ${B} does not split into ${micro} micro-batches`);
  const per = B / micro;
  model.zeroGrad();
  let sum = 0;
  for (let k = 0; k < micro; k++) {
    const sl = (a: number[][]) => a.slice(k * per, (k + 1) * per);
    sum += model.forward(sl(ids), sl(targets)) * per * T;
    model.backward(B * T);
  }
  return sum / (B * T);
}

/**
 * The window sampler's generator for a (1-based) step: reseeded from (seed, step) alone, so a run resumed at any
 * step draws exactly the batches an uninterrupted run would.
 */
export function stepRng(seed: number, step: number): Rng {
  return new Rng((seed * 1000003 + step) % 4294967296);
}
