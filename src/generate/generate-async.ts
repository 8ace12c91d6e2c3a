/**
 * generate() for models whose forward is asynchronous (the WebGPU model): the same loop, sampling, EOS and
 * context checks. Greedy decoding asks the model for the argmax when it can compute it itself, so only a token
 * id crosses back from the GPU.
 */
import { startGeneration, type GenerateOptions, type GenerateResult } from "./generate.js";
import type { ModelConfig } from "../model/config.js";

export interface AsyncState {
  readonly position: number;
}

export interface AsyncCausalLM<S extends AsyncState> {
  readonly config: ModelConfig;
  newState(capacity?: number): S;
  forward(ids: ArrayLike<number>, state: S): Promise<Float32Array>;
  /** The argmax of the last position's logits, when the model can compute it where the logits are. */
  forwardArgmax?(ids: ArrayLike<number>, state: S): Promise<number>;
}

/** The result of generateAsync: generate's. */
export type AsyncGenerateResult<S extends AsyncState> = GenerateResult<S>;

export async function generateAsync<S extends AsyncState>(
  model: AsyncCausalLM<S>, prompt: readonly number[], opts: Omit<GenerateOptions, "state" | "mode"> & { state?: S } = {},
): Promise<AsyncGenerateResult<S>> {
  const { state, budget, eos, sampler } = startGeneration(model, prompt, opts);
  const onDevice = sampler.plainArgmax && model.forwardArgmax ? model.forwardArgmax.bind(model) : null;
  const step = async (ids: readonly number[]) => (onDevice ? onDevice(ids, state) : sampler.sample(await model.forward(ids, state)));
  const tokens: number[] = [], decodeMs: number[] = [];
  let t0 = performance.now();
  let next = budget > 0 ? await step(prompt) : -1;
  const prefillMs = performance.now() - t0;
  let stopReason: "eos" | "length" = "length";
  for (let i = 0; i < budget; i++) {
    tokens.push(next);
    opts.onToken?.(next, i);
    if (eos.has(next)) {
      stopReason = "eos";
      break;
    }
    if (i + 1 === budget) break;
    t0 = performance.now();
    next = await step([next]);
    decodeMs.push(performance.now() - t0);
  }
  return { tokens, stopReason, promptTokens: prompt.length, prefillMs, decodeMs, state };
}
