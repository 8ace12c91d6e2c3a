import { MlaError } from "../errors.js";
import type { MlaMode } from "../attention/mla.js";
import type { InferenceModel, SequenceState } from "../model/inference.js";
import { Sampler, type SamplingOptions } from "./sampler.js";
import type { ModelConfig } from "../model/config.js";

export interface GenerateOptions<S extends SequenceState = SequenceState> extends SamplingOptions {
  readonly maxNewTokens?: number;
  /** Stop after emitting one of these (default: the config's eos_token_id). */
  readonly eosTokenIds?: readonly number[];
  /** MLA form (MLA models only; GQA models ignore it). */
  readonly mode?: MlaMode;
  /** Called with each new token as soon as it is chosen (streaming). */
  readonly onToken?: (token: number, index: number) => void;
  /** Continue an existing sequence instead of starting a fresh cache. */
  readonly state?: S;
  /**
   * Aborting it stops generation before the next step: generate() then rejects with the signal's reason (an
   * AbortError DOMException by default), as fetch does; the tokens so far have reached onToken, the state holds
   * their rows.
   */
  readonly signal?: AbortSignal;
}

export interface GenerateResult<S extends SequenceState = SequenceState> {
  /** The new token ids (an EOS token that stopped generation is included, as transformers does). */
  readonly tokens: number[];
  readonly stopReason: "eos" | "length";
  readonly promptTokens: number;
  readonly prefillMs: number;
  /** Time of each decode step after the first token, in ms. */
  readonly decodeMs: number[];
  readonly state: S;
}

/**
 * What generate checks and sets up before the prefill: the options, the state (fresh, sized for the prompt and the
 * new tokens, or the caller's), the token budget the context allows, the stop set and the sampler.
 */
export function startGeneration<S extends SequenceState>(
  model: { readonly config: ModelConfig; newState(capacity?: number): S }, prompt: readonly number[],
  opts: SamplingOptions & { readonly maxNewTokens?: number; readonly eosTokenIds?: readonly number[]; readonly state?: S },
): { state: S; budget: number; eos: Set<number>; sampler: Sampler } {
  const c = model.config;
  const maxNew = opts.maxNewTokens ?? 32;
  if (!Number.isInteger(maxNew) || maxNew < 0) throw new MlaError(`max new tokens must be a non-negative integer, got ${maxNew}`);
  if (prompt.length === 0) throw new MlaError("the prompt is empty");
  const state = opts.state ?? model.newState(Math.min(prompt.length + maxNew, c.maxPositionEmbeddings));
  if (state.position + prompt.length > c.maxPositionEmbeddings) {
    throw new MlaError(`prompt of ${state.position + prompt.length} tokens is longer than the context length ${c.maxPositionEmbeddings}`);
  }
  const budget = Math.min(maxNew, c.maxPositionEmbeddings - state.position - prompt.length + 1);
  return { state, budget, eos: new Set(opts.eosTokenIds ?? c.eosTokenIds), sampler: new Sampler(opts, prompt) };
}

/**
 * Prefill the prompt, then decode one token at a time on the model's cache (latent or K/V), on any backend. Plain
 * greedy decoding asks the model for the argmax when it can compute it where the logits are (stepArgmax), so only
 * a token id crosses back from a GPU.
 */
export async function generate<S extends SequenceState>(model: InferenceModel<S>, prompt: readonly number[], opts: GenerateOptions<S> = {}): Promise<GenerateResult<S>> {
  const { state, budget, eos, sampler } = startGeneration(model, prompt, opts);
  const stepOpts = { mode: opts.mode };
  const onDevice = sampler.plainArgmax && model.stepArgmax ? model.stepArgmax.bind(model) : null;
  const next = async (ids: readonly number[]): Promise<number> => {
    opts.signal?.throwIfAborted();
    return onDevice ? (await onDevice([{ ids, state }], stepOpts))[0] : sampler.sample(await model.step([{ ids, state }], stepOpts));
  };
  const tokens: number[] = [];
  const decodeMs: number[] = [];
  let t0 = performance.now();
  let token = await next(prompt); // the prompt is prefilled even when no new token is asked for (the state is the result)
  const prefillMs = performance.now() - t0;
  let stopReason: "eos" | "length" = "length";
  for (let i = 0; i < budget; i++) {
    tokens.push(token);
    opts.onToken?.(token, i);
    if (eos.has(token)) {
      stopReason = "eos";
      break;
    }
    if (i + 1 === budget) break;
    t0 = performance.now();
    token = await next([token]);
    decodeMs.push(performance.now() - t0);
  }
  return { tokens, stopReason, promptTokens: prompt.length, prefillMs, decodeMs, state };
}
