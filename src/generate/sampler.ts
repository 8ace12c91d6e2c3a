import { MlaError } from "../errors.js";
import { mulberry32 } from "./rng.js";

/** How the next token is chosen: argmax unless a temperature > 0 is given (as transformers without do_sample). */
export interface SamplingOptions {
  readonly greedy?: boolean;
  readonly temperature?: number;
  /** Keep the k most likely tokens (0: all). */
  readonly topK?: number;
  /** Keep the smallest set of tokens whose probability sums to at least p (1: all). */
  readonly topP?: number;
  readonly seed?: number;
}

/** Index of the largest logit; the first one on ties, as torch.argmax. */
export function argmax(logits: ArrayLike<number>, off = 0, n = logits.length - off): number {
  let best = 0, bv = -Infinity;
  for (let i = 0; i < n; i++) if (logits[off + i] > bv) (bv = logits[off + i]), (best = i);
  return best;
}

export class Sampler {
  private readonly rand: () => number;
  readonly greedy: boolean;

  constructor(readonly opts: SamplingOptions = {}) {
    const t = opts.temperature ?? 1;
    if (!(t >= 0) || !Number.isFinite(t)) throw new MlaError(`temperature must be >= 0, got ${opts.temperature}`);
    if (opts.topK !== undefined && !(Number.isInteger(opts.topK) && opts.topK >= 0)) throw new MlaError(`top-k must be a non-negative integer, got ${opts.topK}`);
    if (opts.topP !== undefined && !(opts.topP > 0 && opts.topP <= 1)) throw new MlaError(`top-p must be in (0, 1], got ${opts.topP}`);
    this.greedy = opts.greedy === true || opts.temperature === undefined || t === 0;
    this.rand = mulberry32(opts.seed ?? (Math.random() * 2 ** 32) >>> 0);
  }

  /** Pick a token from one row of logits: temperature, then top-k, then top-p (as transformers orders them). */
  sample(logits: Float32Array): number {
    if (this.greedy) return argmax(logits);
    const t = this.opts.temperature ?? 1;
    const V = logits.length;
    let idx = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
    const k = this.opts.topK ?? 0;
    if (k > 0 && k < V) idx = idx.slice(0, k);
    const m = logits[idx[0]] / t;
    const p = idx.map((i) => Math.exp(logits[i] / t - m));
    const sum = p.reduce((a, b) => a + b, 0);
    for (let i = 0; i < p.length; i++) p[i] /= sum;
    const topP = this.opts.topP ?? 1;
    let keep = p.length;
    if (topP < 1) {
      let acc = 0;
      for (let i = 0; i < p.length; i++) {
        acc += p[i];
        if (acc >= topP) {
          keep = i + 1;
          break;
        }
      }
    }
    const mass = p.slice(0, keep).reduce((a, b) => a + b, 0);
    let r = this.rand() * mass;
    for (let i = 0; i < keep; i++) {
      r -= p[i];
      if (r < 0) return idx[i];
    }
    return idx[keep - 1];
  }
}
