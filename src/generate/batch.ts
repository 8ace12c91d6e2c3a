import { MlaError } from "../errors.js";
import type { MlaMode } from "../attention/mla.js";
import type { InferenceModel, SequenceState } from "../model/inference.js";
import type { ModelConfig } from "../model/config.js";
import { Sampler, type SamplingOptions } from "./sampler.js";

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
  /** Each new token as soon as it is chosen; return true to end the sequence there (e.g. a stop string matched). */
  readonly onToken?: (id: number, index: number) => boolean | void;
}

export type FinishReason = "eos" | "length" | "stopped" | "cancelled";

export interface SequenceResult {
  readonly tokens: number[];
  readonly finishReason: FinishReason;
  readonly promptTokens: number;
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
}

interface Sequence {
  readonly id: number;
  readonly req: SequenceRequest;
  readonly sampler: Sampler;
  readonly eos: ReadonlySet<number>;
  /** Cache rows reserved: prompt + new tokens, capped at the context. */
  readonly rows: number;
  state: SequenceState | null;
  /** Prompt tokens already in the cache. */
  prefilled: number;
  readonly tokens: number[];
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
 */
export class BatchScheduler {
  /** Exact cache bytes one token occupies across all layers (the latent row for MLA, K and V rows for GQA). */
  readonly cacheBytesPerToken: number;
  readonly maxCacheBytes: number;
  private readonly maxBatch: number;
  private readonly maxQueue: number;
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
    if (!Number.isInteger(req.maxNewTokens) || req.maxNewTokens < 1) throw new MlaError(`max new tokens must be a positive integer, got ${req.maxNewTokens}`);
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
    };
    this.waiting.push(seq);
    this.schedule();
    return { id: seq.id, done, cancel: () => this.finish(seq, "cancelled") };
  }

  stats(): SchedulerStats {
    return {
      active: this.active.length, waiting: this.waiting.length,
      cacheBytes: this.active.reduce((s, q) => s + (q.state?.cacheBytes ?? 0), 0),
      reservedBytes: this.reserved, maxCacheBytes: this.maxCacheBytes,
      steps: this.steps, tokens: this.tokensOut, maxBatchSeen: this.maxBatchSeen,
    };
  }

  /** Cancel everything and refuse new work. */
  close(): void {
    this.closed = true;
    for (const s of [...this.waiting, ...this.active]) this.finish(s, "cancelled");
  }

  private rowsFor(promptTokens: number, maxNewTokens: number): number {
    return Math.min(promptTokens + maxNewTokens, this.model.config.maxPositionEmbeddings);
  }

  private fitsNow(rows: number): boolean {
    return this.active.length < this.maxBatch && this.reserved + rows * this.cacheBytesPerToken <= this.maxCacheBytes;
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
    if (seq.state) this.release(seq.state);
    seq.state = null;
    if (error !== undefined) seq.reject(error);
    else seq.resolve({ tokens: seq.tokens, finishReason: reason, promptTokens: seq.req.prompt.length });
    this.schedule();
  }

  /** One forward pass: admit what fits, prefill chunks of new prompts, decode one token of every other sequence. */
  private async step(): Promise<void> {
    while (this.waiting.length > 0 && this.fitsNow(this.waiting[0].rows)) {
      const seq = this.waiting.shift()!;
      seq.state = this.model.newState(seq.rows);
      this.reserved += seq.rows * this.cacheBytesPerToken;
      this.active.push(seq);
    }
    const batch: { seq: Sequence; ids: readonly number[] }[] = [];
    let prefill = 0;
    for (const seq of this.active) {
      const p = seq.req.prompt;
      if (seq.prefilled < p.length) {
        // fixed chunk boundaries (multiples of prefillChunk), whatever else runs: a sequence computes the same
        // numbers alone or in company
        const n = Math.min(p.length - seq.prefilled, this.prefillChunk);
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
    let logits: Float32Array;
    try {
      // the model's own states (made by model.newState above)
      logits = await this.model.step(batch.map((b) => ({ ids: b.ids, state: b.seq.state! })), { mode: this.opts.mode });
    } catch (e) {
      return fail(e);
    }
    this.sample(batch, logits);
  }

  /** After a step: each sequence's next token from its logits row, then the stop rules. */
  private sample(batch: readonly { seq: Sequence; ids: readonly number[] }[], logits: Float32Array): void {
    this.steps++;
    this.maxBatchSeen = Math.max(this.maxBatchSeen, batch.length);
    const V = this.model.config.vocabSize;
    batch.forEach(({ seq, ids }, b) => {
      if (seq.finished) return; // cancelled by another sequence's callback during this loop
      if (seq.prefilled < seq.req.prompt.length) {
        seq.prefilled += ids.length;
        if (seq.prefilled < seq.req.prompt.length) return; // a middle chunk: its logits are not needed
      }
      const early = seq.tokens.length < (seq.req.minNewTokens ?? 0);
      const next = seq.sampler.sample(logits.subarray(b * V, (b + 1) * V), early ? seq.eos : undefined);
      seq.tokens.push(next);
      this.tokensOut++;
      let stop: boolean | void = false;
      try {
        stop = seq.req.onToken?.(next, seq.tokens.length - 1);
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

function positive(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1) throw new MlaError(`${what} must be a positive integer, got ${n}`);
  return n;
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(2)} MiB`;
}
