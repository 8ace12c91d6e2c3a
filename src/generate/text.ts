import { basename, resolve } from "node:path";
import { MlaError } from "../errors.js";
import { cpuOps, type Ops } from "../backends/ops.js";
import type { InferenceModel, Runtime } from "../model/inference.js";
import { cpuRuntime } from "../model/load.js";
import type { LoadProgress } from "../model/weights.js";
import { ChatTemplate, stopTokenIds, type ChatMessage } from "../tokenizer/chat.js";
import { StreamDecoder, TextTokenizer } from "../tokenizer/tokenizer.js";
import { loadTextTokenizer } from "../tokenizer/gguf.js";
import { AsyncEncoder } from "../tokenizer/encoder.js";
import { BatchScheduler, type SchedulerOptions } from "./batch.js";
import type { SamplingOptions } from "./sampler.js";
import type { TokenLogprob } from "./logprobs.js";
import { StructuredOutput, TailedConstraint, type TokenConstraint } from "./grammar/constraint.js";
import { TokenVocab } from "./grammar/vocab.js";
import type { JsonGrammar } from "./grammar/schema.js";

/**
 * Holds back text that may be the start of a stop string, and cuts the text at the first stop string (which is
 * not part of the output, as in OpenAI's API).
 */
export class StopMatcher {
  private pending = "";

  constructor(private readonly stops: readonly string[]) {}

  /** The text that is safe to emit after `delta`, and whether a stop string ended it. */
  push(delta: string): { text: string; stopped: boolean } {
    if (this.stops.length === 0) return { text: delta, stopped: false };
    const buf = this.pending + delta;
    let cut = -1;
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.pending = "";
      return { text: buf.slice(0, cut), stopped: true };
    }
    let hold = 0; // the longest end of buf that begins some stop string
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, buf.length); k > hold; k--) {
        if (buf.endsWith(s.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    this.pending = buf.slice(buf.length - hold);
    return { text: buf.slice(0, buf.length - hold), stopped: false };
  }

  /** The held-back text, at the end of generation. */
  flush(): string {
    const p = this.pending;
    this.pending = "";
    return p;
  }
}

export interface TextRequest extends SamplingOptions {
  readonly prompt: readonly number[];
  readonly maxTokens: number;
  /** Up to 4 strings; the text ends before the first one. */
  readonly stop?: readonly string[];
  /** EOS and the chat template's stop tokens cannot end the text before this many tokens (stop strings still do). */
  readonly minTokens?: number;
  /** Go on past EOS and the stop tokens, up to maxTokens (benchmarks). */
  readonly ignoreEos?: boolean;
  /**
   * Text as it is generated (never a broken UTF-8 character, never part of a stop string), with the scores of the
   * tokens since the last call when `logprobs` is set (a token that completes no text yet waits for the next call;
   * what never reaches one, e.g. EOS, is in the result's `logprobs` only).
   */
  readonly onText?: (delta: string, logprobs?: readonly TokenLogprob[]) => void;
  /** Score each new token with this many alternatives (0 to 20), as SequenceRequest.logprobs. */
  readonly logprobs?: number;
  /** Score the prompt's tokens too (SequenceRequest.promptLogprobs); maxTokens may be 0 then. */
  readonly promptLogprobs?: boolean;
  readonly onPromptLogprobs?: (scores: readonly TokenLogprob[]) => void;
  /** Aborting it stops the generation at once (finish reason "cancelled"; a waiting request leaves the queue). */
  readonly signal?: AbortSignal;
  /** Keep this request's cache rows for requests that share its prefix (default: the engine's `prefixCache`). */
  readonly cache?: boolean;
  /**
   * Special tokens whose text is kept (the other special tokens are skipped, as always): the tool-call and `<think>`
   * markers a reply parser reads (src/server/tools/), which are special tokens in some vocabularies (Kimi's).
   */
  readonly keepSpecial?: ReadonlySet<number>;
  /**
   * Constrain the text to a JSON document of this grammar (response_format; jsonObjectGrammar / jsonSchemaGrammar):
   * only tokens that keep it a valid prefix are sampled, and it ends (finish "stop") once the document is complete
   * and a stop token is chosen, or, with no stop token (ignoreEos), as soon as it is complete. minTokens does not
   * apply. Cut off by maxTokens, the text is an incomplete document (finish "length").
   */
  readonly json?: JsonGrammar;
  /**
   * Text the output must go on with once the `json` document is complete (encoded with the tokenizer, special
   * tokens included), before a stop token: the markers that close a tool call whose arguments the document is.
   */
  readonly jsonTail?: string;
}

export type TextFinish = "stop" | "length" | "cancelled";

export interface TextResult {
  readonly text: string;
  readonly finishReason: TextFinish;
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Prompt tokens served from the prefix cache (copied, not computed). */
  readonly cachedTokens: number;
  readonly tokens: readonly number[];
  /** Scores of every new token (EOS and the tokens of a stop string included), when `logprobs` was set. */
  readonly logprobs?: readonly TokenLogprob[];
  /** Scores of the prompt's tokens (the first one's null), when `promptLogprobs` was set. */
  readonly promptLogprobs?: readonly TokenLogprob[];
}

export interface TextJob {
  readonly done: Promise<TextResult>;
  cancel(): void;
}

function loadTokenizer(dir: string): TextTokenizer {
  // a GGUF file carries its tokenizer in its metadata; a folder has tokenizer.json or tiktoken.model (Kimi, Moonlight)
  const tok = loadTextTokenizer(dir);
  if (!tok) throw new MlaError(`${dir} has no tokenizer.json (nor tiktoken.model): text generation needs one`);
  return tok;
}

export interface TextEngineOptions extends SchedulerOptions {
  /** Where the model runs (default: the CPU on `ops`). */
  readonly runtime?: Runtime;
  /** The CPU kernels, when no runtime is given (default: the scalar reference kernels). */
  readonly ops?: Ops;
  /** Name the API reports (default: the folder's name). */
  readonly name?: string;
  readonly onProgress?: LoadProgress;
}

/** A model on any backend with its tokenizer, chat template and stop tokens, generating text through a BatchScheduler. */
export class TextEngine<M extends InferenceModel = InferenceModel> {
  readonly scheduler: BatchScheduler;
  private encoder: AsyncEncoder | null = null;
  private structured: StructuredOutput | null = null;

  constructor(
    readonly name: string, readonly model: M, readonly tokenizer: TextTokenizer, readonly chat: ChatTemplate,
    readonly stopIds: readonly number[], schedulerOptions: SchedulerOptions,
  ) {
    this.scheduler = new BatchScheduler(model, schedulerOptions);
  }

  /** Load a checkpoint folder that has a tokenizer (tokenizer.json or tiktoken.model) onto `opts.runtime` (or the CPU kernels `opts.ops`). */
  static open(dir: string, opts: TextEngineOptions): TextEngine {
    const tok = loadTokenizer(dir);
    const runtime = opts.runtime ?? cpuRuntime(opts.ops ?? cpuOps);
    return TextEngine.withModel(dir, runtime.load(dir, { onProgress: opts.onProgress }), opts, tok);
  }

  /** The tokenizer, chat template and stop tokens of checkpoint folder `dir` around a model already loaded from it. */
  static withModel<M extends InferenceModel>(dir: string, model: M, opts: SchedulerOptions & { readonly name?: string }, tok = loadTokenizer(dir)): TextEngine<M> {
    return new TextEngine(opts.name ?? basename(resolve(dir)), model, tok, ChatTemplate.load(dir, tok), stopTokenIds(dir, model.config, tok), opts);
  }

  get contextLength(): number {
    return this.model.config.maxPositionEmbeddings;
  }

  /** Token ids of a completion prompt (BOS etc. added as the tokenizer's post-processor says). */
  encode(text: string): number[] {
    return this.tokenizer.encode(text, true);
  }

  /** Token ids of a chat: the template already places BOS and the turn markers. */
  encodeChat(messages: readonly ChatMessage[]): number[] {
    return this.tokenizer.encode(this.renderChat(messages), false);
  }

  /** The text of a chat as the model reads it (the template rendered for the assistant's turn). */
  renderChat(messages: readonly ChatMessage[]): string {
    return this.chat.render(messages, true);
  }

  /** As encode (addSpecialTokens true) or the ids of a rendered chat (false), with long texts off the event loop. */
  encodeAsync(text: string, addSpecialTokens: boolean): Promise<number[]> {
    this.encoder ??= new AsyncEncoder(this.tokenizer);
    return this.encoder.encode(text, addSpecialTokens);
  }

  /** Stop the scheduler (running sequences are cancelled) and the tokenizer's worker. */
  async close(): Promise<void> {
    this.scheduler.close();
    await this.encoder?.close();
  }

  /**
   * A conversation that keeps its cache between turns: each turn's prompt starts with the previous turn's prompt and
   * reply tokens, whose rows the prefix cache holds, so a turn computes only its new tokens (see ChatSession).
   */
  chatSession(opts: ChatSessionOptions = {}): ChatSession {
    return new ChatSession(this, opts);
  }

  /** Constrained decoding over this tokenizer (its vocabulary as bytes, the mask cache): made on first use. */
  structuredOutput(): StructuredOutput {
    this.structured ??= new StructuredOutput(TokenVocab.fromTokenizer(this.tokenizer, this.model.config.vocabSize));
    return this.structured;
  }

  private constraint(json: JsonGrammar, tail: string | undefined, stopIds: readonly number[]): TokenConstraint {
    const doc = this.structuredOutput().constraint(json, stopIds);
    if (tail === undefined) return doc;
    const stops = [...new Set(stopIds)].filter((id) => id >= 0 && id < this.model.config.vocabSize).sort((a, b) => a - b);
    return new TailedConstraint(doc, this.tokenizer.encode(tail, false), stops);
  }

  /** Start generating; throws MlaError / BusyError (from the scheduler) for requests that cannot be queued. */
  start(req: TextRequest): TextJob {
    const keep = req.keepSpecial?.size ? req.keepSpecial : null;
    // with tokens to keep, decode everything and skip the other special tokens here (skip_special_tokens would drop all)
    const decoder = new StreamDecoder(this.tokenizer, keep === null);
    const special = keep ? this.specialIds() : null;
    const matcher = new StopMatcher(req.stop ?? []);
    const stopIds = new Set(req.ignoreEos ? [] : this.stopIds);
    let text = "", stoppedByString = false;
    let scores: TokenLogprob[] = []; // of the tokens since the last text delta
    const emit = (delta: string): void => {
      if (!delta) return;
      text += delta;
      req.onText?.(delta, req.logprobs !== undefined ? scores : undefined);
      scores = [];
    };
    const handle = this.scheduler.submit({
      prompt: req.prompt, maxNewTokens: req.maxTokens, eosTokenIds: [...stopIds], minNewTokens: req.minTokens,
      greedy: req.greedy, temperature: req.temperature, topK: req.topK, topP: req.topP, minP: req.minP, seed: req.seed,
      repetitionPenalty: req.repetitionPenalty, presencePenalty: req.presencePenalty, frequencyPenalty: req.frequencyPenalty, logitBias: req.logitBias,
      logprobs: req.logprobs, promptLogprobs: req.promptLogprobs, onPromptLogprobs: req.onPromptLogprobs,
      signal: req.signal, cache: req.cache,
      constraint: req.json ? this.constraint(req.json, req.jsonTail, [...stopIds]) : undefined,
      onToken: (id, _index, lp) => {
        if (lp) scores.push(lp);
        if (stopIds.has(id)) return false; // the scheduler ends the sequence; EOS is not text
        if (special?.has(id) && !keep!.has(id)) return false;
        const r = matcher.push(decoder.push(id));
        emit(r.text);
        if (r.stopped) stoppedByString = true;
        return r.stopped;
      },
    });
    const done = handle.done.then((r) => {
      if (!stoppedByString && r.finishReason !== "cancelled") {
        const r2 = matcher.push(decoder.flush());
        emit(r2.text);
        if (r2.stopped) stoppedByString = true;
        else emit(matcher.flush());
      }
      const finishReason: TextFinish = r.finishReason === "cancelled" ? "cancelled" : r.finishReason === "length" && !stoppedByString ? "length" : "stop";
      return { text, finishReason, promptTokens: r.promptTokens, completionTokens: r.tokens.length, cachedTokens: r.cachedTokens, tokens: r.tokens, logprobs: r.logprobs, promptLogprobs: r.promptLogprobs };
    });
    return { done, cancel: handle.cancel };
  }

  private special?: ReadonlySet<number>;

  /** Ids of the tokenizer's special tokens (tokenizer.json's added_tokens marked special). */
  private specialIds(): ReadonlySet<number> {
    const added = (this.tokenizer.json as { added_tokens?: { id: number; special?: boolean }[] }).added_tokens ?? [];
    return (this.special ??= new Set(added.filter((t) => t.special === true).map((t) => t.id)));
  }
}

/** Sampling, stop strings and limits of a chat turn (ChatSessionOptions sets them for every turn, send() per turn). */
export type ChatTurnOptions = Partial<Omit<TextRequest, "prompt" | "cache" | "promptLogprobs" | "onPromptLogprobs">>;

export interface ChatSessionOptions extends Omit<ChatTurnOptions, "signal" | "onText"> {
  /** The system message, first in every turn's prompt. */
  readonly system?: string;
}

/**
 * A chat with one engine that keeps its cache between turns. Each turn's prompt is the template rendered over the
 * whole history. When that text continues the previous turn's prompt with exactly the reply, the prompt is built
 * from the previous prompt's and the reply's own token ids plus the rest encoded (re-encoding the reply could
 * tokenize it differently and miss the cache), else the whole text is encoded. Every turn keeps its rows in the
 * prefix cache (cache: true), so the next one copies the history's rows and computes only the new message (and
 * the reply's last token when the reply ran to its limit). The rows are cache entries like any other: under
 * memory pressure they are evicted, and the turn then recomputes them. One turn at a time; a cancelled or failed
 * turn leaves the history as it was.
 */
export class ChatSession {
  private readonly history: ChatMessage[] = [];
  /** The last turn's prompt text and ids and its reply's ids (stop tokens excluded), for the next prompt. */
  private last: { text: string; ids: readonly number[]; reply: readonly number[]; replyText: string } | null = null;
  private busy = false;

  constructor(readonly engine: TextEngine, private readonly opts: ChatSessionOptions = {}) {
    if (opts.system !== undefined) this.history.push({ role: "system", content: opts.system });
  }

  /** The conversation so far (the system message, then user and assistant turns). */
  get messages(): readonly ChatMessage[] {
    return this.history;
  }

  /** Send a user message; resolves to the reply (result.text) once it is complete. */
  async send(text: string, opts: ChatTurnOptions = {}): Promise<TextResult> {
    if (this.busy) throw new MlaError("this chat session is answering a message already (one turn at a time)");
    this.busy = true;
    try {
      const messages = [...this.history, { role: "user", content: text }];
      const prompt = await this.promptFor(messages);
      const engine = this.engine, s = engine.scheduler;
      const room = Math.min(engine.contextLength, Math.floor(s.maxCacheBytes / s.cacheBytesPerToken)) - prompt.ids.length;
      if (room < 1) throw new MlaError(`the chat has ${prompt.ids.length} tokens, which leaves no room for a reply (context ${engine.contextLength} tokens)`);
      const { system: _system, ...defaults } = this.opts;
      const maxTokens = Math.min(opts.maxTokens ?? defaults.maxTokens ?? room, room);
      const r = await engine.start({ ...defaults, ...opts, prompt: prompt.ids, maxTokens, cache: true }).done;
      if (r.finishReason !== "cancelled") {
        this.history.push(messages[messages.length - 1], { role: "assistant", content: r.text });
        const stops = new Set(engine.stopIds);
        let n = r.tokens.length;
        while (n > 0 && stops.has(r.tokens[n - 1])) n--;
        this.last = { text: prompt.text, ids: prompt.ids, reply: r.tokens.slice(0, n), replyText: r.text };
      }
      return r;
    } finally {
      this.busy = false;
    }
  }

  /**
   * As send, the reply's text yielded as it is generated; the generator returns the result. Leaving the loop early
   * (break, return, a throw) cancels the turn.
   */
  async *stream(text: string, opts: Omit<ChatTurnOptions, "onText"> = {}): AsyncGenerator<string, TextResult, undefined> {
    const queue: string[] = [];
    let wake: (() => void) | null = null;
    let settled = false;
    const stop = new AbortController(), outer = opts.signal;
    const forward = (): void => stop.abort(outer?.reason);
    if (outer?.aborted) forward();
    outer?.addEventListener("abort", forward, { once: true });
    const done = this.send(text, { ...opts, signal: stop.signal, onText: (d) => (queue.push(d), wake?.()) }).finally(() => ((settled = true), wake?.()));
    done.catch(() => undefined); // surfaced by the await below
    try {
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        if (settled) return await done;
        await new Promise<void>((r) => (wake = r));
        wake = null;
      }
    } finally {
      outer?.removeEventListener("abort", forward);
      if (!settled) {
        stop.abort();
        await done.catch(() => undefined); // the turn is over (and the session free) once the loop is left
      }
    }
  }

  /** The next prompt's text and ids: the previous prompt's and reply's ids where the rendered text continues them. */
  private async promptFor(messages: readonly ChatMessage[]): Promise<{ text: string; ids: number[] }> {
    const engine = this.engine, text = engine.renderChat(messages), last = this.last;
    if (last && text.startsWith(last.text + last.replyText) && engine.tokenizer.decode([...last.reply], true) === last.replyText) {
      const rest = await engine.encodeAsync(text.slice(last.text.length + last.replyText.length), false);
      return { text, ids: [...last.ids, ...last.reply, ...rest] };
    }
    return { text, ids: await engine.encodeAsync(text, false) };
  }
}
