import { MlaError } from "../errors.js";
import { weightRow } from "../backends/cpu/index.js";
import type { Ops } from "../backends/ops.js";
import type { CacheData, CacheDType, RowCache } from "../attention/cache.js";
import type { MlaMode } from "../attention/mla.js";
import type { ModelConfig } from "./config.js";
import type { DecoderWeights, LoadProgress } from "./weights.js";
import type { InferenceModel, SequenceState, StepItem, StepOptions } from "./inference.js";

/**
 * The CPU decoders' synchronous interface, under the inference contract (./inference.ts) that they also implement
 * through CpuDecoder: DeepseekModel (MLA, latent cache) and LlamaModel (GQA, per-head K/V cache). Tests, training
 * and conversion call forward directly; generation and serving go through InferenceModel. S is the model's own run
 * state; a state only fits the model (family) that made it.
 */
export interface CausalLM<S extends ModelState = ModelState> {
  readonly config: ModelConfig;
  /** The kernels the model runs on (its weights were prepared for them). */
  readonly ops: Ops;
  /** A fresh sequence; capacity reserves cache rows up front (they grow as needed, up to the context length). */
  newState(capacity?: number): S;
  /** Run T new tokens at positions state.position.., appending to the state's caches; logits [1, V] or [T, V]. */
  forward(ids: ArrayLike<number>, state: S, opts?: ForwardOptions): Float32Array;
  /**
   * Several sequences in one pass (continuous batching): the new tokens of every item go through each linear layer
   * together (one weight pass serves the whole batch), attention runs per item on its own cache. Logits [B, V]: row
   * b is the last new position of items[b]. Optional: `forwardBatch()` below falls back to one forward per item.
   */
  forwardBatch?(items: readonly BatchItem<S>[], opts?: BatchForwardOptions): Float32Array;
}

/** One sequence's share of a batched step: its new tokens (one when decoding, a prompt chunk when prefilling). */
export interface BatchItem<S extends ModelState = ModelState> {
  readonly ids: ArrayLike<number>;
  readonly state: S;
}

export interface BatchForwardOptions {
  /** MLA form, resolved per item (`auto`: an item of one token decodes absorbed, a longer one prefills naive). */
  readonly mode?: MlaMode;
}

/**
 * A CPU decoder under the inference contract: its synchronous forward passes returned as resolved promises (the
 * step is computed before step() returns, so a CPU decode costs no more than calling forward), states
 * garbage-collected, long contexts filled straight into the row caches.
 */
export abstract class CpuDecoder<S extends ModelState> implements CausalLM<S>, InferenceModel<S> {
  abstract readonly config: ModelConfig;
  abstract readonly ops: Ops;
  private bytesPerToken = -1;

  abstract newState(capacity?: number): S;
  abstract forward(ids: ArrayLike<number>, state: S, opts?: ForwardOptions): Float32Array;
  abstract forwardBatch(items: readonly BatchItem<S>[], opts?: BatchForwardOptions): Float32Array;

  get backendName(): string {
    return this.ops.name;
  }

  get cacheBytesPerToken(): number {
    if (this.bytesPerToken < 0) this.bytesPerToken = this.newState(1).rowCaches.reduce((s, c) => s + c.rowBytes, 0);
    return this.bytesPerToken;
  }

  step(items: readonly StepItem<S>[], opts: StepOptions = {}): Promise<Float32Array> {
    try {
      if (opts.allLogits) {
        if (items.length !== 1) throw new MlaError("allLogits needs exactly one sequence");
        return Promise.resolve(this.forward(items[0].ids, items[0].state, { mode: opts.mode, allLogits: true }));
      }
      return Promise.resolve(this.forwardBatch(items, { mode: opts.mode }));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  releaseState(): void {}

  forkState(src: S, n: number, capacity = n): S {
    if (!Number.isInteger(n) || n < 0 || n > src.position) throw new MlaError(`cannot fork ${n} positions of a sequence at position ${src.position}`);
    const dst = this.newState(Math.max(1, capacity, n));
    const from = src.rowCaches, to = dst.rowCaches;
    if (from.length !== to.length) throw new MlaError("this run state was made by another kind of model (use model.newState())");
    to.forEach((c, i) => c.copyFrom(from[i], n));
    return dst;
  }

  fillContext(state: S, n: number, rand: () => number): void {
    for (const cache of state.rowCaches) {
      const rows = new Float32Array(n * cache.width);
      for (let i = 0; i < rows.length; i++) rows[i] = rand() * 2 - 1;
      cache.append(rows, n);
    }
  }
}

/** Logits [B, V] of a batched step: the model's own batched forward, else one forward per item. */
export function forwardBatch<S extends ModelState>(model: CausalLM<S>, items: readonly BatchItem<S>[], opts: BatchForwardOptions = {}): Float32Array {
  if (model.forwardBatch) return model.forwardBatch(items, opts);
  const V = model.config.vocabSize, out = new Float32Array(items.length * V);
  items.forEach((it, b) => out.set(model.forward(it.ids, it.state, { mode: opts.mode }), b * V));
  return out;
}

/** Per-sequence state: the caches of every layer. Their length is the next token's position. */
export interface ModelState extends SequenceState {
  /** Every row cache of the state (latent caches, or K and V caches), e.g. to fill a synthetic context. */
  readonly rowCaches: readonly RowCache<CacheData>[];
  /** Drop everything after the first n positions (e.g. to re-run a prompt suffix). */
  truncate(n: number): void;
}

export interface ForwardOptions {
  /** MLA form; `auto` = naive prefill, absorbed decode. GQA models have one form and ignore it. */
  readonly mode?: MlaMode;
  /** Logits for every new position ([T, V]); default only the last ([1, V]). */
  readonly allLogits?: boolean;
  /** When given, receives the embedding output and each layer's output ([T, D] each), as transformers' hidden_states. */
  readonly hiddenStates?: Float32Array[];
}

export interface LoadOptions {
  readonly onProgress?: LoadProgress;
  /** Kernels to run on (default: the scalar CPU reference). Weights are prepared for them while loading. */
  readonly ops?: Ops;
  /** How MLA latent caches store their rows (default F32; F16/BF16 halve them). GQA models take F32 only. */
  readonly cacheType?: CacheDType;
}

/** Reject bad token ids and sequences past the context before any cache is touched. */
export function checkInput(c: ModelConfig, ids: ArrayLike<number>, position: number): void {
  if (ids.length === 0) throw new MlaError("no input tokens");
  for (let i = 0; i < ids.length; i++) {
    const t = ids[i];
    if (!Number.isInteger(t) || t < 0 || t >= c.vocabSize) throw new MlaError(`token id ${t} is out of range (vocab_size ${c.vocabSize})`);
  }
  if (position + ids.length > c.maxPositionEmbeddings) {
    throw new MlaError(`sequence of ${position + ids.length} tokens exceeds the context length ${c.maxPositionEmbeddings} (max_position_embeddings)`);
  }
}

/**
 * Validate a batch before any cache is touched: every item's ids and context, and no state twice (each sequence
 * appends to its own caches). Returns the total row count.
 */
export function checkBatch(c: ModelConfig, items: readonly BatchItem[]): number {
  if (items.length === 0) throw new MlaError("empty batch");
  const seen = new Set<ModelState>();
  let n = 0;
  for (const it of items) {
    if (seen.has(it.state)) throw new MlaError("a batch holds the same sequence state twice");
    seen.add(it.state);
    checkInput(c, it.ids, it.state.position);
    n += it.ids.length;
  }
  return n;
}

/** Embedding rows of the ids of every item, back to back ([sum T, D]). */
export function embedBatch(w: DecoderWeights<unknown>, D: number, items: readonly BatchItem[], N: number): Float32Array {
  const h = new Float32Array(N * D);
  let r = 0;
  for (const it of items) {
    h.set(embedTokens(w, D, it.ids), r * D);
    r += it.ids.length;
  }
  return h;
}

/**
 * The pre-norm residual stack both families share, over the N rows of all items: embeddings (times embedScale),
 * then per layer h += r attention_i(input_layernorm(h)) and h += r ffn_i(post_attention_layernorm(h)) with r the
 * residualScale (1 but for MiniCPM3). Returns the final hidden states [N, D]; hiddenStates, when given, receives the
 * embedding output and each layer's output.
 */
export function residualStack<L extends { readonly inputNorm: Float32Array; readonly postNorm: Float32Array }>(
  c: ModelConfig, ops: Ops, w: DecoderWeights<L>, items: readonly BatchItem[], N: number,
  attention: (i: number, x: Float32Array) => Float32Array,
  ffn: (i: number, layer: L, x: Float32Array) => Float32Array,
  hiddenStates?: Float32Array[],
): Float32Array {
  const D = c.hiddenSize;
  const h = embedBatch(w, D, items, N);
  if (c.embedScale !== 1) for (let j = 0; j < N * D; j++) h[j] *= c.embedScale;
  hiddenStates?.push(h.slice());
  const x = new Float32Array(N * D), r = c.residualScale;
  for (let i = 0; i < c.numLayers; i++) {
    const l = w.layers[i];
    ops.rmsNorm(x, h, N, D, l.inputNorm, c.rmsNormEps);
    const a = attention(i, x);
    for (let j = 0; j < N * D; j++) h[j] += r * a[j]; // r = 1 leaves a[j] exact
    ops.rmsNorm(x, h, N, D, l.postNorm, c.rmsNormEps);
    const f = ffn(i, l, x);
    for (let j = 0; j < N * D; j++) h[j] += r * f[j];
    hiddenStates?.push(h.slice());
  }
  return h;
}

/** Logits [B, V] of the last row of each item: the rows gathered first, so lm_head streams its weights once. */
export function lastRowLogits(c: ModelConfig, w: DecoderWeights<unknown>, ops: Ops, h: Float32Array, items: readonly BatchItem[]): Float32Array {
  const D = c.hiddenSize, B = items.length, last = new Float32Array(B * D);
  let r = 0;
  items.forEach((it, b) => {
    r += it.ids.length;
    last.set(h.subarray((r - 1) * D, r * D), b * D);
  });
  return lmHeadLogits(c, w, ops, last, B, B);
}

/** Embedding rows of the ids, widened to F32 ([T, D]). */
export function embedTokens(w: DecoderWeights<unknown>, D: number, ids: ArrayLike<number>): Float32Array {
  const h = new Float32Array(ids.length * D), scratch = new Float32Array(D);
  for (let t = 0; t < ids.length; t++) h.set(weightRow(w.embed, ids[t], D, scratch), t * D);
  return h;
}

/** Final RMSNorm, times logitScale (MiniCPM3's dim_model_base / hidden_size, else 1), and lm_head of the last `rows` of h ([T, D]): logits [rows, V]. */
export function lmHeadLogits(c: ModelConfig, w: DecoderWeights<unknown>, ops: Ops, h: Float32Array, T: number, rows: number): Float32Array {
  const D = c.hiddenSize;
  const hn = new Float32Array(rows * D);
  ops.rmsNorm(hn, h.subarray((T - rows) * D), rows, D, w.norm, c.rmsNormEps);
  if (c.logitScale !== 1) for (let j = 0; j < rows * D; j++) hn[j] *= c.logitScale;
  const logits = new Float32Array(rows * c.vocabSize);
  ops.linear(logits, hn, rows, D, w.lmHead, c.vocabSize);
  return logits;
}
