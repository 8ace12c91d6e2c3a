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
  /** Text as it is generated (never a broken UTF-8 character, never part of a stop string). */
  readonly onText?: (delta: string) => void;
}

export type TextFinish = "stop" | "length" | "cancelled";

export interface TextResult {
  readonly text: string;
  readonly finishReason: TextFinish;
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly tokens: readonly number[];
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

  /** Start generating; throws MlaError / BusyError (from the scheduler) for requests that cannot be queued. */
  start(req: TextRequest): TextJob {
    const decoder = new StreamDecoder(this.tokenizer, true);
    const matcher = new StopMatcher(req.stop ?? []);
    const stopIds = new Set(req.ignoreEos ? [] : this.stopIds);
    let text = "", stoppedByString = false;
    const emit = (delta: string): void => {
      if (!delta) return;
      text += delta;
      req.onText?.(delta);
    };
    const handle = this.scheduler.submit({
      prompt: req.prompt, maxNewTokens: req.maxTokens, eosTokenIds: [...stopIds], minNewTokens: req.minTokens,
      greedy: req.greedy, temperature: req.temperature, topK: req.topK, topP: req.topP, minP: req.minP, seed: req.seed,
      repetitionPenalty: req.repetitionPenalty, presencePenalty: req.presencePenalty, frequencyPenalty: req.frequencyPenalty, logitBias: req.logitBias,
      onToken: (id) => {
        if (stopIds.has(id)) return false; // the scheduler ends the sequence; EOS is not text
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
      return { text, finishReason, promptTokens: r.promptTokens, completionTokens: r.tokens.length, tokens: r.tokens };
    });
    return { done, cancel: handle.cancel };
  }
}
