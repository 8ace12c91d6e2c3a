import { MlaError } from "../../errors.js";
import type { MlaMode } from "../../attention/mla.js";
import { mulberry32 } from "../../tensor/rng.js";
import { argmax } from "../../generate/sampler.js";
import { checkAttentionForm, loadModel } from "../load.js";
import type { InferenceModel, Runtime, SequenceState } from "../../model/inference.js";
import { median } from "./generate.js";

export interface BenchOptions {
  readonly model: string;
  readonly prompt: number;
  readonly decode: number;
  readonly threads?: number;
  readonly backend: string;
  readonly quantize?: string;
  /** --cache-type as given (the runtime applies it); named in the report. */
  readonly cacheType?: string;
  /** Decode after a synthetic cache of this many tokens instead of a real prefill (long-context rows). */
  readonly context?: number;
  readonly attention: MlaMode;
  readonly json?: boolean;
}

export interface BenchResult {
  readonly model: string;
  readonly backend: string;
  readonly kernels: string;
  readonly threads: number;
  readonly attention: MlaMode;
  readonly context: number;
  readonly promptTokens: number;
  readonly decodeTokens: number;
  readonly loadSeconds: number;
  readonly prefillTokensPerSecond: number;
  readonly decodeMsPerToken: number;
  readonly decodeTokensPerSecond: number;
  readonly peakRssBytes: number;
  readonly kvCacheBytes: number;
  /** "latent KV cache" (MLA) or "KV cache" (GQA). */
  readonly cacheKind: string;
  /** Bytes of GPU buffers held (weights, caches, activations), on webgpu. */
  readonly gpuBytes?: number;
}

/** The greedy next token of one sequence: the model's own argmax where it has one (the GPU), else the host's. */
async function greedyStep<S extends SequenceState>(model: InferenceModel<S>, ids: readonly number[], state: S, mode: MlaMode): Promise<number> {
  if (model.stepArgmax) return (await model.stepArgmax([{ ids, state }], { mode }))[0];
  return argmax(await model.step([{ ids, state }], { mode }));
}

/** Prefill a seeded random prompt, then greedy-decode, timing each step (median reported: machines are noisy). */
export async function runBench(opts: BenchOptions, runtime: Runtime): Promise<BenchResult> {
  if (opts.prompt < 1) throw new MlaError("--prompt must be at least 1 token");
  const t0 = performance.now();
  const model = loadModel(opts.model, runtime);
  const loadSeconds = (performance.now() - t0) / 1000;
  checkAttentionForm(model, opts.attention);
  const c = model.config;
  const context = opts.context ?? 0;
  if (context + opts.prompt + opts.decode > c.maxPositionEmbeddings) {
    throw new MlaError(`--context ${context} + --prompt ${opts.prompt} + --decode ${opts.decode} exceeds the context length ${c.maxPositionEmbeddings}`);
  }
  const rand = mulberry32(0);
  const ids = Array.from({ length: opts.prompt }, () => Math.floor(rand() * c.vocabSize));
  const state = model.newState(context + opts.prompt + opts.decode);
  if (context) model.fillContext(state, context, rand);
  const p0 = performance.now();
  let next = await greedyStep(model, ids, state, opts.attention);
  const prefillMs = performance.now() - p0;
  const steps: number[] = [];
  for (let i = 0; i < opts.decode; i++) {
    const s = performance.now();
    next = await greedyStep(model, [next], state, opts.attention);
    steps.push(performance.now() - s);
  }
  const d = median(steps);
  return {
    model: opts.model, backend: opts.backend, kernels: model.backendName, threads: runtime.threads, attention: opts.attention, context,
    promptTokens: opts.prompt, decodeTokens: opts.decode, loadSeconds,
    prefillTokensPerSecond: (opts.prompt / prefillMs) * 1000,
    decodeMsPerToken: d, decodeTokensPerSecond: 1000 / d,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    kvCacheBytes: state.cacheBytes,
    cacheKind: c.attention === "mla" ? `latent KV cache (${(opts.cacheType ?? "f32").toLowerCase()})` : "KV cache",
    ...(model.deviceBytes === undefined ? {} : { gpuBytes: model.deviceBytes }),
  };
}

export async function benchCommand(opts: BenchOptions, runtime: Runtime): Promise<void> {
  printBench(await runBench(opts, runtime), opts.json);
}

/** The report; `gpuBytes` (webgpu) adds the GPU memory held. */
export function printBench(r: BenchResult, json?: boolean): void {
  if (json) {
    process.stdout.write(JSON.stringify(r) + "\n");
    return;
  }
  const gpu = r.gpuBytes === undefined ? "" : `, GPU memory ${(r.gpuBytes / 2 ** 20).toFixed(1)} MiB`;
  process.stdout.write(
    `${r.model} (${r.kernels}, attention ${r.attention}${r.context ? `, after a synthetic ${r.context}-token cache` : ""})\n` +
      `prefill ${r.promptTokens} tokens: ${r.prefillTokensPerSecond.toFixed(1)} tok/s\n` +
      `decode  ${r.decodeTokens} tokens: ${r.decodeMsPerToken.toFixed(2)} ms/token (median), ${r.decodeTokensPerSecond.toFixed(1)} tok/s\n` +
      `peak RSS ${(r.peakRssBytes / 2 ** 20).toFixed(0)} MiB${gpu}, ${r.cacheKind} ${(r.kvCacheBytes / 2 ** 20).toFixed(2)} MiB\n`,
  );
}
