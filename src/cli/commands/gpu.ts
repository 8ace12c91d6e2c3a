/**
 * The CLI commands on `--backend webgpu`: the same output as on the CPU, through the asynchronous GPU model
 * (src/model/gpu/model.ts). Bench adds the GPU memory held.
 */
import { MlaError } from "../../errors.js";
import type { WebGpuBackend } from "../../backends/webgpu/backend.js";
import { GpuModel } from "../../model/gpu/model.js";
import { generateAsync } from "../../generate/generate-async.js";
import { mulberry32 } from "../../tensor/rng.js";
import { StreamDecoder, TextTokenizer } from "../../tokenizer/tokenizer.js";
import { describeModel } from "../../model/info.js";
import { loadingBar } from "../progress.js";
import { median, promptTokens, timing, type GenerateCliOptions } from "./generate.js";
import { printLogits, type LogitsOptions } from "./logits.js";
import { printBench, type BenchOptions, type BenchResult } from "./bench.js";
import { infoText } from "./info.js";
import { checkGpuMode } from "../text-backend.js";

function load(dir: string, gpu: WebGpuBackend): GpuModel {
  const bar = loadingBar("uploading weights");
  try {
    return GpuModel.load(dir, gpu, { onProgress: bar.onProgress });
  } finally {
    bar.stop();
  }
}

export async function gpuLogitsCommand(opts: LogitsOptions, gpu: WebGpuBackend): Promise<void> {
  checkGpuMode(opts.attention);
  const model = load(opts.model, gpu);
  printLogits(await model.forward(opts.ids, model.newState(opts.ids.length), { allLogits: true }), opts.ids, model.config.vocabSize, opts.json);
}

export async function gpuGenerateCommand(opts: GenerateCliOptions, gpu: WebGpuBackend): Promise<void> {
  checkGpuMode(opts.attention);
  const tok = TextTokenizer.load(opts.model);
  const prompt = promptTokens(opts, tok);
  const model = load(opts.model, gpu);
  const stream = tok ? new StreamDecoder(tok) : null, out = process.stdout;
  const onToken = opts.json ? undefined : (id: number, i: number) => void out.write(stream ? stream.push(id) : `${i ? " " : ""}${id}`);
  const r = await generateAsync(model, prompt, { ...opts, onToken });
  const t = timing(r);
  if (opts.json) {
    out.write(JSON.stringify({ tokens: r.tokens, text: tok?.decode(r.tokens), stopReason: r.stopReason, promptTokens: r.promptTokens, timing: t }) + "\n");
    return;
  }
  out.write((stream ? stream.flush() : "") + "\n");
  process.stderr.write(`[${r.tokens.length} tokens, stop: ${r.stopReason}; prefill ${r.promptTokens} tok at ${t.prefillTokensPerSecond.toFixed(1)} tok/s; ` +
    `decode ${Number.isNaN(t.decodeMsPerToken) ? "-" : t.decodeMsPerToken.toFixed(2)} ms/token; ${gpu.name}]\n`);
}

export interface GpuBenchResult extends BenchResult {
  /** Bytes of GPU buffers held (weights, caches, activations). */
  readonly gpuBytes: number;
}

/** Prefill a seeded random prompt, then greedy-decode with the argmax on the GPU; medians of per-step times. */
export async function runGpuBench(opts: BenchOptions, gpu: WebGpuBackend): Promise<GpuBenchResult> {
  checkGpuMode(opts.attention);
  const t0 = performance.now();
  const model = load(opts.model, gpu);
  const loadSeconds = (performance.now() - t0) / 1000;
  const c = model.config, context = opts.context ?? 0;
  if (context + opts.prompt + opts.decode > c.maxPositionEmbeddings) {
    throw new MlaError(`--context ${context} + --prompt ${opts.prompt} + --decode ${opts.decode} exceeds the context length ${c.maxPositionEmbeddings}`);
  }
  const rand = mulberry32(0);
  const ids = Array.from({ length: opts.prompt }, () => Math.floor(rand() * c.vocabSize));
  const state = model.newState(context + opts.prompt + opts.decode);
  if (context) {
    // random cache rows: what a context of n real tokens costs to read, without its prefill
    for (const layer of state.caches) {
      layer.forEach((buf, j) => {
        const rows = new Float32Array(context * model.cacheWidths[j]);
        for (let i = 0; i < rows.length; i++) rows[i] = rand() * 2 - 1;
        gpu.write(buf, rows);
      });
    }
    state.position = context;
  }
  const p0 = performance.now();
  let next = await model.forwardArgmax(ids, state);
  const prefillMs = performance.now() - p0;
  const steps: number[] = [];
  for (let i = 0; i < opts.decode; i++) {
    const s = performance.now();
    next = await model.forwardArgmax([next], state);
    steps.push(performance.now() - s);
  }
  const d = median(steps);
  return {
    model: opts.model, backend: "webgpu", kernels: gpu.name, threads: 1, attention: opts.attention, context,
    promptTokens: opts.prompt, decodeTokens: opts.decode, loadSeconds,
    prefillTokensPerSecond: (opts.prompt / prefillMs) * 1000, decodeMsPerToken: d, decodeTokensPerSecond: 1000 / d,
    peakRssBytes: process.resourceUsage().maxRSS * 1024, kvCacheBytes: state.cacheBytes,
    cacheKind: c.attention === "mla" ? "latent KV cache" : "KV cache", gpuBytes: model.gpuBytes,
  };
}

export async function gpuBenchCommand(opts: BenchOptions, gpu: WebGpuBackend): Promise<void> {
  printBench(await runGpuBench(opts, gpu), opts.json);
}

/** `npm start` on the GPU: the cache comparison and one sampled generation. */
export async function gpuDemoCommand(opts: { model: string; prompt: string; maxNewTokens: number }, gpu: WebGpuBackend): Promise<void> {
  const out = process.stdout;
  out.write(infoText(describeModel(opts.model)) + "\n\n");
  const tok = TextTokenizer.load(opts.model);
  const model = load(opts.model, gpu);
  out.write(`kernels: ${gpu.name}\n`);
  const prompt = tok ? tok.encode(opts.prompt) : [1, 2, 3, 4, 5, 6, 7, 8];
  const stream = tok ? new StreamDecoder(tok) : null;
  out.write(`\nabsorb > `);
  const r = await generateAsync(model, prompt, {
    temperature: 0.8, topP: 0.9, seed: 1, maxNewTokens: opts.maxNewTokens,
    onToken: (id, i) => void out.write(stream ? stream.push(id) : `${i ? " " : ""}${id}`),
  });
  out.write((stream?.flush() ?? "") + "\n");
  out.write(`         ${r.tokens.length} tokens, decode ${median(r.decodeMs).toFixed(2)} ms/token, cache ${r.state.cacheBytes} bytes\n`);
}
