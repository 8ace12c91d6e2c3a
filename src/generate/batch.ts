import { MlaError } from "../errors.js";
import type { MlaMode } from "../attention/mla.js";
import type { InferenceModel, SequenceState } from "../model/inference.js";
import type { ModelConfig } from "../model/config.js";
import { Sampler, type SamplingOptions } from "./sampler.js";
import type { TokenConstraint } from "./grammar/constraint.js";
import { PrefixCache, commonPrefix } from "./prefix-cache.js";
import { firstPromptToken, promptLogprobs, tokenLogprob, type TokenLogprob } from "./logprobs.js";

/** The queue is full: come back later (HTTP 429 with Retry-After). */
export class BusyError extends MlaError {
  constructor(message: string, readonly retryAfterSeconds: number) {
    super(message);
    this.name = "BusyError";
  }
}

export interface SequenceRequest extends SamplingOptions {
  readonly prompt: readonly number[];
  /** New tokens at most (the prompt plus these must fit the context). */
  readonly maxNewTokens: number;
  /** Tokens that end the sequence (included in `tokens`, as generate() does). */
  readonly eosTokenIds?: readonly number[];
  /** The EOS tokens cannot be chosen before this many new tokens exist (default 0). */
  readonly minNewTokens?: number;
  /**
   * Share this sequence's cache rows: while it runs, requests admitted after it copy its prompt rows; when it ends,
   * its rows stay in the prefix cache (LRU, within the budget). Default: the scheduler's `prefixCache`. Every
   * request reads the prefix cache whatever this says.
   */
  readonly cache?: boolean;
  /** Aborting it cancels the sequence (as cancel()): it leaves the queue, or stops before the next step. */
  readonly signal?: AbortSignal;
  /**
   * Each new token as soon as it is chosen, with its log-probability when `logprobs` is set; return true to end the
   * sequence there (e.g. a stop string matched).
   */
  readonly onToken?: (id: number, index: number, logprob?: TokenLogprob) => boolean | void;
  /**
   * Score each new token: its log-probability under the model's raw distribution and this many most likely
   * alternatives (0 to 20; see ./logprobs.ts). Unset: none.
   */
  readonly logprobs?: number;
  /**
   * Score the prompt's own tokens too (echo with logprobs; lm-evaluation-harness' loglikelihood). Its prefill
   * computes the logits of every prompt position (a step of its own, `allLogits`), so such a sequence must compute
   * its whole prompt: a prefix cache must not hand it cached positions (their logits are gone). maxNewTokens may be
   * 0 then (score only).
   */
  readonly promptLogprobs?: boolean;
  /** The prompt's scores, once its prefill is done (before the first new token): the first token's is null. */
  readonly onPromptLogprobs?: (scores: readonly TokenLogprob[]) => void;
  /**
   * Constrained decoding (response_format): the tokens it allows are the only ones the sampler may choose (greedy
   * too), and it advances with each chosen one. It decides when the text may end, so minNewTokens does not apply.
   */
  readonly constraint?: TokenConstraint;
}

export type FinishReason = "eos" | "length" | "stopped" | "cancelled";

export interface SequenceResult {
  readonly tokens: number[];
  readonly finishReason: FinishReason;
  readonly promptTokens: number;
  /** Prompt tokens whose cache rows were copied from the prefix cache or a running sequence, not computed. */
  readonly cachedTokens: number;
  /** One per new token, when the request set `logprobs`. */
  readonly logprobs?: TokenLogprob[];
  /** One per prompt token, when it set `promptLogprobs`. */
  readonly promptLogprobs?: TokenLogprob[];
}

export interface SequenceHandle {
  readonly id: number;
  readonly done: Promise<SequenceResult>;
  /** Stop now (a waiting request leaves the queue; an active one frees its cache before the next step). */
  cancel(): void;
}

export interface SchedulerOptions {
  /** Cache budget in bytes: a sequence is admitted when its whole cache (prompt + max new tokens) fits. */
  readonly maxCacheBytes: number;
  /** Sequences decoded together at most (default 32). */
  readonly maxBatch?: number;
  /** Requests waiting to be admitted at most; past it submit() throws BusyError (default 64). */
  readonly maxQueue?: number;
  /** Prompt tokens per sequence per step: longer prompts are prefilled in chunks of this many (default 256). */
  readonly prefillChunk?: number;
  /** Prompt tokens per step in all (default prefillChunk): bounds how long a step that admits prompts takes. */
  readonly prefillBudget?: number;
  readonly mode?: MlaMode;
  /** Seconds suggested to a client turned away (default 1). */
  readonly retryAfterSeconds?: number;
  /**
   * Keep every sequence's cache rows for requests that share its prefix (SequenceRequest.cache per request):
   * finished sequences' rows stay, least recently used first out, in the part of the budget that running sequences
   * leave idle (default false).
   */
  readonly prefixCache?: boolean;
}

interface Sequence {
  readonly id: number;
  readonly req: SequenceRequest;
  readonly sampler: Sampler;
  readonly eos: ReadonlySet<number>;
  /** Cache rows reserved: prompt + new tokens, capped at the context. */
  readonly rows: number;
  /** Null until the sequence starts (admitted, it may wait for another's prompt rows to copy). */
  state: SequenceState | null;
  /** Prompt tokens already in the cache. */
  prefilled: number;
  /** Its rows are shared: copied by later requests while it runs, kept in the prefix cache after. */
  readonly publish: boolean;
  /** Prompt tokens copied from a cached prefix. */
  cachedTokens: number;
  /** Removes the abort listener of req.signal. */
  unlisten?: () => void;
  readonly tokens: number[];
  /** Scores of the new tokens and of the prompt, when asked for. */
  readonly logprobs?: TokenLogprob[];
  readonly promptLogprobs?: TokenLogprob[];
  resolve(r: SequenceResult): void;
  reject(e: unknown): void;
  finished: boolean;
}

export interface SchedulerStats {
  readonly active: number;
  readonly waiting: number;
  /** Bytes the active sequences' caches hold now. */
  readonly cacheBytes: number;
  /** Bytes reserved for the active sequences (what the budget is checked against). */
  readonly reservedBytes: number;
  readonly maxCacheBytes: number;
  readonly steps: number;
  readonly tokens: number;
  /** Most sequences decoded in one step so far. */
  readonly maxBatchSeen: number;
  /** Whether every sequence's rows are kept for reuse (SchedulerOptions.prefixCache). */
  readonly prefixCache: boolean;
  /** Prompt tokens of the sequences started so far, and how many of them were copied instead of computed. */
  readonly promptTokens: number;
  readonly cachedPromptTokens: number;
  /**
   * Idle cached prefixes: entries, the bytes and tokens they hold (the bytes count against the budget); sequences
   * that started from copied rows (of an entry or of a running sequence); entries evicted.
   */
  readonly prefixCacheEntries: number;
  readonly prefixCacheBytes: number;
  readonly prefixCacheTokens: number;
  readonly prefixCacheHits: number;
  readonly prefixCacheEvictions: number;
}

/**
 * Continuous batching over one model: sequences join (their prompt prefilled in chunks, in the same forward pass
 * as the others' decode tokens) and leave between steps; every step is one `forwardBatch`, so each weight matrix is
 * streamed once for all active sequences while each sequence attends over its own cache.
 *
 * Memory: a sequence is admitted only when its whole cache fits the budget (exact bytes: cacheBytesPerToken x
 * (prompt + max new tokens)), so a running sequence never runs out; the rest wait in a bounded FIFO queue, and past
 * that submit() throws BusyError. Steps run from the event loop (setImmediate), so sockets, timers and
 * cancellations are served between steps.
 *
 * Prefix reuse: a sequence starts from the longest prefix of its prompt (all but its last token, whose logits it
 * needs) that an idle cached entry or an earlier running sequence that shares its rows holds: those rows are copied
 * into its state (model.forkState) and only the rest is prefilled. If an earlier sequence is still prefilling a
 * longer shared prefix, it waits for those rows rather than computing them twice (n choices of one prompt).
 * Cached rows use the idle part of the budget: an admission that needs room evicts them, least recently used first.
 */
export class BatchScheduler {
  /** Exact cache bytes one token occupies across all layers (the latent row for MLA, K and V rows for GQA). */
  readonly cacheBytesPerToken: number;
  readonly maxCacheBytes: number;
  private readonly maxBatch: number;
  /** Requests that may wait at once (SchedulerOptions.maxQueue). */
  readonly maxQueue: number;
  private readonly prefillChunk: number;
  private readonly prefillBudget: number;
  private readonly waiting: Sequence[] = [];
  private readonly active: Sequence[] = [];
  private reserved = 0;
  private nextId = 1;
  private scheduled = false;
  private closed = false;
  private steps = 0;
  private tokensOut = 0;
  private maxBatchSeen = 0;
  /** Finished sequences' rows (null when the model cannot fork states). */
  private readonly cache: PrefixCache | null;
  readonly prefixCaching: boolean;
  private promptTokens = 0;
  private cachedPromptTokens = 0;
  private prefixHits = 0;

  /** States of finished sequences that a step in flight may still use: released when it ends. */
  private readonly toRelease: SequenceState[] = [];
  private stepping = false;

  constructor(readonly model: InferenceModel, private readonly opts: SchedulerOptions) {
    this.cacheBytesPerToken = model.cacheBytesPerToken;
    if (!(opts.maxCacheBytes > 0)) throw new MlaError(`the cache budget must be positive, got ${opts.maxCacheBytes} bytes`);
    this.maxCacheBytes = opts.maxCacheBytes;
    this.maxBatch = positive(opts.maxBatch ?? 32, "max batch");
    this.maxQueue = positive(opts.maxQueue ?? 64, "max queue");
    this.prefillChunk = positive(opts.prefillChunk ?? 256, "prefill chunk");
    this.prefillBudget = Math.max(this.prefillChunk, Math.floor(opts.prefillBudget ?? this.prefillChunk));
    this.cache = model.forkState ? new PrefixCache((st) => this.release(st)) : null;
    this.prefixCaching = this.cache !== null && opts.prefixCache === true;
  }

  /** Cache bytes a request needs for its prompt and new tokens. */
  bytesFor(promptTokens: number, maxNewTokens: number): number {
    return this.rowsFor(promptTokens, maxNewTokens) * this.cacheBytesPerToken;
  }

  /**
   * Queue a sequence. Throws MlaError for a request that can never run (empty prompt, past the context, bigger than
   * the whole budget) and BusyError when the queue is full.
   */
  submit(req: SequenceRequest): SequenceHandle {
    if (this.closed) throw new MlaError("the scheduler is closed");
    const c = this.model.config;
    if (req.prompt.length === 0) throw new MlaError("the prompt is empty");
    for (const t of req.prompt) if (!Number.isInteger(t) || t < 0 || t >= c.vocabSize) throw new MlaError(`token id ${t} is out of range (vocab_size ${c.vocabSize})`);
    const leastNew = req.promptLogprobs ? 0 : 1; // scoring a prompt needs no new token
    if (!Number.isInteger(req.maxNewTokens) || req.maxNewTokens < leastNew) throw new MlaError(`max new tokens must be ${leastNew ? "a positive" : "a non-negative"} integer, got ${req.maxNewTokens}`);
    if (req.logprobs !== undefined && !(Number.isInteger(req.logprobs) && req.logprobs >= 0 && req.logprobs <= 20)) throw new MlaError(`logprobs must be an integer from 0 to 20, got ${req.logprobs}`);
    if (req.prompt.length >= c.maxPositionEmbeddings) {
      throw new MlaError(`the prompt has ${req.prompt.length} tokens; the context length is ${c.maxPositionEmbeddings} (max_position_embeddings), which leaves no room for a new token`);
    }
    const rows = this.rowsFor(req.prompt.length, req.maxNewTokens);
    if (rows * this.cacheBytesPerToken > this.maxCacheBytes) {
      throw new MlaError(`the request needs ${mib(rows * this.cacheBytesPerToken)} of cache (${rows} tokens at ${this.cacheBytesPerToken} bytes); the budget is ${mib(this.maxCacheBytes)}`);
    }
    if (this.waiting.length >= this.maxQueue) {
      const r = this.opts.retryAfterSeconds ?? 1;
      throw new BusyError(`the server is busy: ${this.active.length} sequences running and ${this.waiting.length} waiting; retry in ${r} s`, r);
    }
    const minNew = req.minNewTokens ?? 0;
    if (!Number.isInteger(minNew) || minNew < 0 || minNew > req.maxNewTokens) throw new MlaError(`min new tokens must be an integer from 0 to max new tokens (${req.maxNewTokens}), got ${minNew}`);
    const sampler = new Sampler(req, req.prompt); // validates the sampling options before anything is queued
    let resolve!: (r: SequenceResult) => void, reject!: (e: unknown) => void;
    const done = new Promise<SequenceResult>((res, rej) => ((resolve = res), (reject = rej)));
    const seq: Sequence = {
      id: this.nextId++, req, sampler, eos: new Set(req.eosTokenIds ?? c.eosTokenIds), rows,
      state: null, prefilled: 0, tokens: [], resolve, reject, finished: false,
      publish: this.cache !== null && (req.cache ?? this.prefixCaching), cachedTokens: 0,
      logprobs: req.logprobs !== undefined ? [] : undefined, promptLogprobs: req.promptLogprobs ? [firstPromptToken(req.prompt[0])] : undefined,
    };
    this.waiting.push(seq);
    const signal = req.signal;
    if (signal) {
      const onAbort = (): void => this.finish(seq, "cancelled");
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener("abort", onAbort, { once: true });
        seq.unlisten = () => signal.removeEventListener("abort", onAbort);
      }
    }
    this.schedule();
    return { id: seq.id, done, cancel: () => this.finish(seq, "cancelled") };
  }

  stats(): SchedulerStats {
    return {
      active: this.active.length, waiting: this.waiting.length,
      cacheBytes: this.active.reduce((s, q) => s + (q.state?.cacheBytes ?? 0), 0),
      reservedBytes: this.reserved, maxCacheBytes: this.maxCacheBytes,
      steps: this.steps, tokens: this.tokensOut, maxBatchSeen: this.maxBatchSeen,
      prefixCache: this.prefixCaching, promptTokens: this.promptTokens, cachedPromptTokens: this.cachedPromptTokens,
      ...prefixStats(this.cache), prefixCacheHits: this.prefixHits,
    };
  }

  /** Cancel everything and refuse new work. */
  close(): void {
    this.closed = true;
    for (const s of [...this.waiting, ...this.active]) this.finish(s, "cancelled");
    this.cache?.clear();
  }

  private rowsFor(promptTokens: number, maxNewTokens: number): number {
    return Math.min(promptTokens + maxNewTokens, this.model.config.maxPositionEmbeddings);
  }

  /**
   * Admit the head of the queue if its reservation fits beside the running sequences, evicting cached prefixes
   * (least recently used first, the one it would copy last) to make the room.
   */
  private admitNext(): boolean {
    const seq = this.waiting[0];
    if (!seq || this.active.length >= this.maxBatch) return false;
    const need = seq.rows * this.cacheBytesPerToken;
    if (this.reserved + need > this.maxCacheBytes) return false;
    const keep = this.cache?.match(seq.req.prompt, seq.req.prompt.length - 1)?.entry;
    this.cache?.evictTo(this.maxCacheBytes - this.reserved - need, keep);
    this.waiting.shift();
    this.reserved += need;
    this.active.push(seq);
    return true;
  }

  /**
   * Give an admitted sequence its state: a copy of the longest cached or shared prefix of its prompt (all but the
   * last token), else a fresh one. Returns false, leaving it unstarted, while an earlier sequence is still
   * prefilling more of its prompt than can be copied now (it copies those rows once they exist).
   */
  private start(seq: Sequence): boolean {
    const p = seq.req.prompt, limit = seq.req.promptLogprobs ? 0 : p.length - 1; // scored prompts need every position's logits
    const hit = limit > 0 ? this.cache?.match(p, limit) : null;
    let src: SequenceState | null = hit?.entry.state ?? null, rows = hit?.rows ?? 0, coming = 0;
    for (const a of this.cache && limit > 0 ? this.active : []) {
      if (a === seq) break; // only sequences admitted before it: no two wait on each other
      if (!a.publish || !a.state) continue;
      const now = Math.min(commonPrefix(tokensOf(a), p, limit), knownRows(a));
      if (now > rows) (src = a.state), (rows = now);
      if (a.prefilled < a.req.prompt.length) coming = Math.max(coming, commonPrefix(a.req.prompt, p, limit));
    }
    if (coming > rows) return false; // an earlier sequence's prefill will hold more of the prompt: copy it then
    if (src && rows > 0 && this.model.forkState) {
      seq.state = this.model.forkState(src, rows, seq.rows);
      seq.prefilled = seq.cachedTokens = rows;
      this.prefixHits++;
      if (hit && src === hit.entry.state) this.cache!.touch(hit.entry);
    } else {
      seq.state = this.model.newState(seq.rows);
    }
    this.promptTokens += p.length;
    this.cachedPromptTokens += seq.cachedTokens;
    return true;
  }

  /** A finished sequence's rows into the prefix cache, compacted to what they hold (the reservation was larger). */
  private keep(seq: Sequence, state: SequenceState): void {
    const rows = knownRows(seq), tokens = tokensOf(seq).slice(0, rows);
    if (!this.cache || !this.model.forkState || rows === 0 || this.cache.holds(tokens)) return; // held already: no copy
    this.cache.insert(tokens, this.model.forkState(state, rows, rows), rows * this.cacheBytesPerToken);
  }

  private schedule(): void {
    if (this.scheduled || (this.active.length === 0 && this.waiting.length === 0)) return;
    this.scheduled = true;
    setImmediate(() => {
      const after = (): void => {
        this.stepping = false;
        for (const st of this.toRelease.splice(0)) this.release(st);
        this.scheduled = false;
        this.schedule();
      };
      this.stepping = true;
      // a failure past the model's step (a bug: the model's own errors cancel the batch in step) still frees the
      // scheduler before it surfaces
      void this.step().then(after, (e: unknown) => {
        after();
        throw e;
      });
    });
  }

  /** A state goes back to the model now, or after the step that may still use it (GPU buffers in flight). */
  private release(state: SequenceState): void {
    if (this.stepping) this.toRelease.push(state);
    else this.model.releaseState(state);
  }

  /** Remove a sequence (idempotent): its cache and reservation go back to the budget. */
  private finish(seq: Sequence, reason: FinishReason, error?: unknown): void {
    if (seq.finished) return;
    seq.finished = true;
    const w = this.waiting.indexOf(seq);
    if (w >= 0) this.waiting.splice(w, 1);
    const a = this.active.indexOf(seq);
    if (a >= 0) {
      this.active.splice(a, 1);
      this.reserved -= seq.rows * this.cacheBytesPerToken;
    }
    seq.unlisten?.();
    if (seq.state) {
      // a failed step leaves its rows unknown, and a closed scheduler keeps nothing
      if (seq.publish && error === undefined && !this.closed) this.keep(seq, seq.state);
      this.release(seq.state);
    }
    seq.state = null;
    if (error !== undefined) seq.reject(error);
    else seq.resolve({ tokens: seq.tokens, finishReason: reason, promptTokens: seq.req.prompt.length, cachedTokens: seq.cachedTokens, logprobs: seq.logprobs, promptLogprobs: seq.promptLogprobs });
    this.schedule();
  }

  /** One forward pass: admit what fits, prefill chunks of new prompts, decode one token of every other sequence. */
  private async step(): Promise<void> {
    while (this.admitNext());
    for (const seq of this.active) if (!seq.state) this.start(seq);
    const batch: { seq: Sequence; ids: readonly number[] }[] = [];
    let prefill = 0;
    for (const seq of this.active) {
      if (!seq.state) continue; // waiting for an earlier sequence's prompt rows
      const p = seq.req.prompt;
      if (seq.prefilled < p.length) {
        // fixed chunk boundaries (multiples of prefillChunk, also after a copied prefix), whatever else runs: a
        // sequence computes the same numbers alone or in company
        const n = Math.min(p.length - seq.prefilled, this.prefillChunk - (seq.prefilled % this.prefillChunk));
        if (prefill > 0 && prefill + n > this.prefillBudget) continue;
        batch.push({ seq, ids: p.slice(seq.prefilled, seq.prefilled + n) });
        prefill += n;
      } else {
        batch.push({ seq, ids: [seq.tokens[seq.tokens.length - 1]] });
      }
    }
    if (batch.length === 0) return;
    const fail = (e: unknown): void => {
      for (const b of batch) this.finish(b.seq, "cancelled", e);
    };
    let logits: Float32Array[];
    try {
      logits = await this.forward(batch);
    } catch (e) {
      return fail(e);
    }
    this.sample(batch, logits);
  }

  /**
   * The step's forward passes. Each item's logits: its last new position's row, or, for a prompt chunk whose every
   * position is scored (promptLogprobs), all its [n, V] rows, from a pass of its own with allLogits (the inference
   * contract gives every row for a lone item only).
   */
  private async forward(batch: readonly { seq: Sequence; ids: readonly number[] }[]): Promise<Float32Array[]> {
    const V = this.model.config.vocabSize, mode = this.opts.mode;
    // the model's own states (made by model.newState); taken now, as a sequence cancelled during an await below
    // drops its state (the model keeps it until the step ends: toRelease)
    const items = batch.map((b) => ({ ids: b.ids, state: b.seq.state! }));
    const all = batch.map((b) => b.seq.req.promptLogprobs === true && b.seq.prefilled < b.seq.req.prompt.length);
    const out = new Array<Float32Array>(batch.length);
    const plain = items.filter((_, b) => !all[b]);
    if (plain.length > 0) {
      const logits = await this.model.step(plain, { mode });
      let r = 0;
      for (let b = 0; b < batch.length; b++) if (!all[b]) out[b] = logits.subarray(r * V, ++r * V);
    }
    for (let b = 0; b < batch.length; b++) if (all[b]) out[b] = await this.model.step([items[b]], { mode, allLogits: true });
    return out;
  }

  /** After a step: each sequence's next token from its logits row (and its scores, when asked), then the stop rules. */
  private sample(batch: readonly { seq: Sequence; ids: readonly number[] }[], logits: readonly Float32Array[]): void {
    this.steps++;
    this.maxBatchSeen = Math.max(this.maxBatchSeen, batch.length);
    const V = this.model.config.vocabSize;
    batch.forEach(({ seq, ids }, b) => {
      if (seq.finished) return; // cancelled by another sequence's callback during this loop
      const rows = logits[b];
      if (seq.prefilled < seq.req.prompt.length) {
        if (seq.promptLogprobs) seq.promptLogprobs.push(...promptLogprobs(rows, V, seq.req.prompt, seq.prefilled, seq.req.logprobs ?? 0));
        seq.prefilled += ids.length;
        if (seq.prefilled < seq.req.prompt.length) return; // a middle chunk: its logits are not needed
        if (seq.promptLogprobs) {
          try {
            seq.req.onPromptLogprobs?.(seq.promptLogprobs);
          } catch (e) {
            return this.finish(seq, "cancelled", e);
          }
          if (seq.finished) return;
        }
        if (seq.req.maxNewTokens === 0) return this.finish(seq, "length"); // scored, nothing to generate
      }
      const row = rows.length === V ? rows : rows.subarray(rows.length - V); // the last position's
      const early = seq.tokens.length < (seq.req.minNewTokens ?? 0);
      const constraint = seq.req.constraint;
      const allowed = constraint?.next();
      if (allowed === null) return this.finish(seq, "eos"); // the document is complete and no stop token exists
      // a constraint decides when the text may end: it overrides minNewTokens
      const next = seq.sampler.sample(row, early && !constraint ? seq.eos : undefined, allowed);
      if (constraint && !constraint.accept(next)) return this.finish(seq, "cancelled", new MlaError(`token ${next} breaks the response format (a bug in the token mask)`));
      // the raw model distribution's score, not the processed one the sampler drew from (see ./logprobs.ts)
      const lp = seq.logprobs ? tokenLogprob(row, next, seq.req.logprobs) : undefined;
      if (lp) seq.logprobs!.push(lp);
      seq.tokens.push(next);
      this.tokensOut++;
      let stop: boolean | void = false;
      try {
        stop = seq.req.onToken?.(next, seq.tokens.length - 1, lp);
      } catch (e) {
        return this.finish(seq, "cancelled", e);
      }
      if (seq.finished) return;
      if (stop) this.finish(seq, "stopped");
      else if (seq.eos.has(next)) this.finish(seq, "eos");
      else if (seq.tokens.length >= seq.req.maxNewTokens || seq.state!.position >= seq.rows) this.finish(seq, "length");
    });
  }
}

/** The prompt and the new tokens of a sequence (the first state.position of them have cache rows). */
function tokensOf(seq: Sequence): readonly number[] {
  return seq.tokens.length === 0 ? seq.req.prompt : [...seq.req.prompt, ...seq.tokens];
}

/**
 * Cache rows a sequence holds that no step in flight is still writing: its prefilled prompt tokens, then every new
 * token but the last (which the next step feeds).
 */
function knownRows(seq: Sequence): number {
  const L = seq.req.prompt.length;
  return seq.prefilled < L ? seq.prefilled : L + Math.max(0, seq.tokens.length - 1);
}

function prefixStats(cache: PrefixCache | null): Pick<SchedulerStats, "prefixCacheEntries" | "prefixCacheBytes" | "prefixCacheTokens" | "prefixCacheEvictions"> {
  const s = cache?.stats() ?? { entries: 0, bytes: 0, tokens: 0, hits: 0, evictions: 0 };
  return { prefixCacheEntries: s.entries, prefixCacheBytes: s.bytes, prefixCacheTokens: s.tokens, prefixCacheEvictions: s.evictions };
}

function positive(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1) throw new MlaError(`${what} must be a positive integer, got ${n}`);
  return n;
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(2)} MiB`;
}
