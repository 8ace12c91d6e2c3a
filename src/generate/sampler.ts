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

const keyBits = new Uint32Array(1);
const keyF32 = new Float32Array(keyBits.buffer);

/**
 * Token ids ordered by logit, largest first, ties by id (as sorting with `logits[b] - logits[a] || a - b`), by a
 * native numeric sort of one float64 key per token: the logit's bits mapped to an order-preserving unsigned
 * integer, inverted, times 2^bits(V), plus the id. About 20x faster than a comparator sort of 2048+ ids, which
 * dominated a sampled decode step of a small model.
 */
export function byLogitDesc(logits: Float32Array): number[] {
  const V = logits.length, shift = 2 ** Math.max(1, Math.ceil(Math.log2(V)));
  if (shift * 2 ** 32 > Number.MAX_SAFE_INTEGER) {
    return Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  }
  const keys = new Float64Array(V);
  for (let i = 0; i < V; i++) {
    keyF32[0] = logits[i] + 0; // -0 -> +0: equal logits tie on the id
    const b = keyBits[0];
    const ordered = b & 0x80000000 ? ~b >>> 0 : (b | 0x80000000) >>> 0; // ascending with the float
    keys[i] = (0xffffffff - ordered) * shift + i;
  }
  keys.sort();
  const idx = new Array<number>(V);
  for (let i = 0; i < V; i++) idx[i] = keys[i] % shift;
  return idx;
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
    let idx = byLogitDesc(logits);
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
