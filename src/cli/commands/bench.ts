import { MlaError } from "../../errors.js";
import type { MlaMode } from "../../attention/mla.js";
import { mulberry32 } from "../../tensor/rng.js";
import { argmax } from "../../generate/sampler.js";
import { checkAttentionForm, loadModel } from "../load.js";
import type { Ops } from "../../backends/ops.js";
import { median } from "./generate.js";
import type { RowCache } from "../../attention/cache.js";

export interface BenchOptions {
  readonly model: string;
  readonly prompt: number;
  readonly decode: number;
  readonly threads?: number;
  readonly backend: string;
  readonly quantize?: string;
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
}

/** Prefill a seeded random prompt, then greedy-decode, timing each step (median reported: machines are noisy). */
export function runBench(opts: BenchOptions, ops?: Ops): BenchResult {
  if (opts.prompt < 1) throw new MlaError("--prompt must be at least 1 token");
  const t0 = performance.now();
  const model = loadModel(opts.model, ops);
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
  if (context) fillSyntheticCache(state.rowCaches, context, rand);
  const p0 = performance.now();
  let logits = model.forward(ids, state, { mode: opts.attention });
  const prefillMs = performance.now() - p0;
  const steps: number[] = [];
  for (let i = 0; i < opts.decode; i++) {
    const s = performance.now();
    logits = model.forward([argmax(logits)], state, { mode: opts.attention });
    steps.push(performance.now() - s);
  }
  const d = median(steps);
  return {
    model: opts.model, backend: opts.backend, kernels: model.ops.name, threads: model.ops.threads, attention: opts.attention, context,
    promptTokens: opts.prompt, decodeTokens: opts.decode, loadSeconds,
    prefillTokensPerSecond: (opts.prompt / prefillMs) * 1000,
    decodeMsPerToken: d, decodeTokensPerSecond: 1000 / d,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    kvCacheBytes: state.cacheBytes,
    cacheKind: c.attention === "mla" ? "latent KV cache" : "KV cache",
  };
}

/** Random cache rows (latents or K/V): what a cache of `n` real tokens costs to read, without the prefill. */
function fillSyntheticCache(caches: readonly RowCache[], n: number, rand: () => number): void {
  for (const cache of caches) {
    const rows = new Float32Array(n * cache.width);
    for (let i = 0; i < rows.length; i++) rows[i] = rand() * 2 - 1;
    cache.append(rows, n);
  }
}

export function benchCommand(opts: BenchOptions, ops?: Ops): void {
  printBench(runBench(opts, ops), opts.json);
}

/** Both backends' report; `gpuBytes` (webgpu) adds the GPU memory held. */
export function printBench(r: BenchResult & { readonly gpuBytes?: number }, json?: boolean): void {
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
