/**
 * AdamW (Loshchilov & Hutter: decoupled weight decay), as torch.optim.AdamW computes it, with global-norm gradient
 * clipping (torch.nn.utils.clip_grad_norm_) and a linear-warmup + cosine-decay learning-rate schedule.
 * Everything is deterministic: fixed iteration order (the parameter map's), float64 sums.
 *
 * One step at learning rate lr, step count t (1-based), gradient g (after clipping):
 *   p <- p - lr * wd * p                     (only decayed tensors: 2-D or larger and not a norm)
 *   m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2
 *   p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 */
import { MlaError } from "../errors.js";
import type { Vec } from "./grad/index.js";

export interface AdamWOptions {
  readonly beta1?: number; // default 0.9
  readonly beta2?: number; // default 0.95
  readonly eps?: number; //   default 1e-8
  readonly weightDecay?: number; // default 0.1
  /** Clip the global gradient norm to this (default 1; null or Infinity: no clipping). */
  readonly clipNorm?: number | null;
}

export interface StepResult {
  /** Global L2 norm of the gradients before clipping. */
  readonly gradNorm: number;
  /** Factor the gradients were scaled by (1 when not clipped). */
  readonly clipScale: number;
}

/** Global L2 norm of every gradient (float64 sum, map order). */
export function globalNorm(grads: Iterable<Vec>): number {
  let ss = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) ss += g[i] * g[i];
  return Math.sqrt(ss);
}

/**
 * Whether a tensor gets weight decay: matrices (the embedding included) do; 1-D tensors (norm weights, biases)
 * and anything named like a norm do not.
 */
export function decays(name: string, shape: readonly number[]): boolean {
  return shape.length >= 2 && !/norm/.test(name);
}

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly clipNorm: number;
  /** Steps taken so far. */
  t = 0;
  /** First and second moments per parameter (float32, like PyTorch's state for float32 parameters). */
  readonly m = new Map<string, Float32Array>();
  readonly v = new Map<string, Float32Array>();
  private readonly decay = new Map<string, boolean>();

  constructor(readonly params: Map<string, Vec>, shapes: Map<string, readonly number[]>, opts: AdamWOptions = {}) {
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.95;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.1;
    this.clipNorm = opts.clipNorm === undefined ? 1 : opts.clipNorm ?? Infinity;
    if (!(this.clipNorm > 0)) throw new MlaError(`AdamW: clipNorm must be positive, got ${this.clipNorm}`);
    for (const [name, p] of params) {
      const shape = shapes.get(name);
      if (!shape) throw new MlaError(`AdamW: no shape for ${name}`);
      this.decay.set(name, decays(name, shape));
      this.m.set(name, new Float32Array(p.length));
      this.v.set(name, new Float32Array(p.length));
    }
  }

  /** Update every parameter from `grads` (same names) at learning rate lr. The gradients are not modified. */
  step(grads: Map<string, Vec>, lr: number): StepResult {
    for (const name of this.params.keys()) if (!grads.has(name)) throw new MlaError(`AdamW: no gradient for ${name}`);
    const gradNorm = globalNorm([...this.params.keys()].map((n) => grads.get(n)!));
    if (!Number.isFinite(gradNorm)) throw new MlaError(`AdamW: gradient norm is ${gradNorm}`);
    // torch's clip_grad_norm_: scale = max_norm / (norm + 1e-6), applied only when below 1
    const clipScale = gradNorm > this.clipNorm ? this.clipNorm / (gradNorm + 1e-6) : 1;
    this.t++;
    const { beta1: b1, beta2: b2, eps } = this;
    const bc1 = 1 - b1 ** this.t, bc2 = 1 - b2 ** this.t;
    for (const [name, p] of this.params) {
      const g = grads.get(name)!, m = this.m.get(name)!, v = this.v.get(name)!;
      const shrink = this.decay.get(name) ? 1 - lr * this.weightDecay : 1;
      for (let i = 0; i < p.length; i++) {
        const gi = g[i] * clipScale;
        const mi = (m[i] = b1 * m[i] + (1 - b1) * gi);
        const vi = (v[i] = b2 * v[i] + (1 - b2) * gi * gi);
        p[i] = p[i] * shrink - (lr * (mi / bc1)) / (Math.sqrt(vi / bc2) + eps);
      }
    }
    return { gradNorm, clipScale };
  }
}

export interface LrSchedule {
  readonly maxLr: number;
  readonly minLr: number;
  readonly warmupSteps: number;
  readonly totalSteps: number;
}

/**
 * Learning rate for step s (0-based): linear warmup maxLr (s + 1) / warmupSteps for s < warmupSteps, then cosine
 * from maxLr down to minLr at s = totalSteps - 1 (minLr from there on).
 */
export function lrAt(s: number, sc: LrSchedule): number {
  if (s < sc.warmupSteps) return (sc.maxLr * (s + 1)) / sc.warmupSteps;
  const span = sc.totalSteps - 1 - sc.warmupSteps;
  if (span <= 0) return s < sc.totalSteps ? sc.maxLr : sc.minLr;
  const x = Math.min(1, (s - sc.warmupSteps) / span);
  return sc.minLr + 0.5 * (sc.maxLr - sc.minLr) * (1 + Math.cos(Math.PI * x));
}
