/**
 * Running a loaded model (./models.ts): WebGPU (GpuModel on navigator.gpu) when the browser has it, else the engine's
 * plain-JavaScript CPU kernels (DeepseekModel or LlamaModel on cpuOps; the WebAssembly backend needs Node's
 * worker_threads). Both stream tokens through generate (the one inference contract) and report their cache size.
 * Also the download of the bundled model's files from the page's origin.
 */
import { WebGpuBackend } from "../../src/backends/webgpu/backend.js";
import { cpuOps } from "../../src/backends/ops.js";
import { generate } from "../../src/generate/generate.js";
import type { InferenceModel, SequenceState } from "../../src/model/inference.js";
import { DeepseekModel } from "../../src/model/deepseek-model.js";
import { LlamaModel } from "../../src/model/llama.js";
import { GpuModel } from "../../src/model/gpu/model.js";
import { MlaError } from "../../src/errors.js";
import { StreamDecoder, type TextTokenizer } from "../../src/tokenizer/tokenizer.js";
import { assemble, assembleLlama } from "../../src/model/families/index.js";
import type { Tensor } from "../../src/tensor/tensor.js";
import type { OpenModel } from "./models.js";

/** Fetch a file as a Blob, reporting bytes as they arrive. */
async function fetchBlob(url: string, onBytes: (n: number, total: number | null) => void): Promise<Blob> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  const len = Number(res.headers.get("content-length")) || null;
  if (!res.body) {
    const b = await res.blob();
    onBytes(b.size, len);
    return b;
  }
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    got += value.byteLength;
    onBytes(got, len);
  }
  return new Blob(chunks as BlobPart[]);
}

/** Files of a model folder served at `base` (a folder URL), as Blobs; onProgress(fraction 0..1, bytes so far). */
export async function fetchModelFiles(base: string, files: readonly string[], onProgress: (fraction: number, bytes: number) => void): Promise<Map<string, Blob>> {
  const got = files.map(() => 0), totals = files.map((): number | null => null);
  const report = () => {
    const bytes = got.reduce((a, b) => a + b, 0);
    const known = totals.every((t) => t !== null);
    const total = known ? totals.reduce((a: number, b) => a + b!, 0) : 0;
    onProgress(known && total ? Math.min(1, bytes / total) : 0, bytes);
  };
  const blobs = await Promise.all(files.map((f, i) => fetchBlob(`${base}/${f}`, (n, total) => ((got[i] = n), (totals[i] = total ?? n), report()))));
  return new Map(files.map((f, i) => [f, blobs[i]]));
}

export interface StepInfo {
  /** The token id chosen. */
  readonly id: number;
  /** Text this token completes ("" while a character is incomplete). */
  readonly text: string;
  /** Tokens in the cache after this step. */
  readonly position: number;
  /** Bytes the model's cache holds now, as the state reports it. */
  readonly cacheBytes: number;
  readonly index: number;
  readonly prefillMs: number;
  /** Milliseconds since the first token (decode time so far). */
  readonly decodeMs: number;
}

export interface GenerateSettings {
  readonly maxNewTokens: number;
  readonly temperature: number;
  readonly topP: number;
  readonly seed: number;
}

export interface GenerateSummary {
  readonly promptTokens: number;
  readonly newTokens: number;
  readonly prefillMs: number;
  readonly decodeMs: number;
  readonly stopReason: "eos" | "length" | "stopped";
  /** Text the stream decoder still held at the end (an incomplete character). */
  readonly tail: string;
}

/** A backend with the model on it. */
export interface Runner {
  readonly kind: "webgpu" | "cpu";
  /** What runs it, for the page ("WebGPU: <adapter>", "CPU: ..."). */
  readonly label: string;
  generate(prompt: number[], settings: GenerateSettings, onStep: (s: StepInfo) => void, signal: AbortSignal): Promise<GenerateSummary>;
  /** Free what the model holds on the backend (a GPU's buffers go with its device). */
  close(): void;
}

export class StoppedError extends Error {
  constructor() {
    super("stopped");
  }
}

/** Yield to the page between steps (so it repaints), and stop when asked. */
function stoppable<S extends SequenceState>(inner: InferenceModel<S>, signal: AbortSignal): InferenceModel<S> {
  const check = async () => {
    await new Promise<void>((r) => {
      const ch = new MessageChannel();
      ch.port1.onmessage = () => r();
      ch.port2.postMessage(0);
    });
    if (signal.aborted) throw new StoppedError();
  };
  const m: InferenceModel<S> = {
    config: inner.config, backendName: inner.backendName, cacheBytesPerToken: inner.cacheBytesPerToken,
    newState: (c) => inner.newState(c), releaseState: (s) => inner.releaseState(s), fillContext: (s, n, r) => inner.fillContext(s, n, r),
    step: async (items, o) => (await check(), inner.step(items, o)),
  };
  if (inner.stepArgmax) {
    const argmax = inner.stepArgmax.bind(inner);
    return { ...m, stepArgmax: async (items, o) => (await check(), argmax(items, o)) };
  }
  return m;
}

async function run<S extends SequenceState>(
  model: InferenceModel<S>, tok: TextTokenizer, prompt: number[], settings: GenerateSettings,
  onStep: (s: StepInfo) => void, signal: AbortSignal, mode?: "absorb",
): Promise<GenerateSummary> {
  const state = model.newState(Math.min(prompt.length + settings.maxNewTokens, model.config.maxPositionEmbeddings));
  const decoder = new StreamDecoder(tok, true);
  const t0 = performance.now();
  let tFirst = 0, prefillMs = 0, count = 0;
  try {
    const r = await generate(stoppable(model, signal), prompt, {
      state, mode, maxNewTokens: settings.maxNewTokens, temperature: settings.temperature, topP: settings.topP, seed: settings.seed,
      onToken: (id, index) => {
        const now = performance.now();
        if (index === 0) (tFirst = now), (prefillMs = now - t0);
        count = index + 1;
        onStep({ id, text: decoder.push(id), position: state.position, cacheBytes: state.cacheBytes, index, prefillMs, decodeMs: now - tFirst });
      },
    });
    return {
      promptTokens: prompt.length, newTokens: r.tokens.length, prefillMs: r.prefillMs, decodeMs: r.decodeMs.reduce((a, b) => a + b, 0),
      stopReason: r.stopReason, tail: decoder.flush(),
    };
  } catch (e) {
    if (!(e instanceof StoppedError)) throw e;
    return { promptTokens: prompt.length, newTokens: count, prefillMs, decodeMs: tFirst ? performance.now() - tFirst : 0, stopReason: "stopped", tail: decoder.flush() };
  } finally {
    model.releaseState(state);
  }
}

/**
 * The model on WebGPU, its tensors read and uploaded a layer at a time (onProgress(bytes read, bytes in all, tensor));
 * throws (with the reason) when the browser has no usable adapter.
 */
export async function webgpuRunner(m: OpenModel, onProgress: (done: number, total: number, name: string) => void): Promise<Runner> {
  if (!(globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu) throw new Error("this browser has no navigator.gpu");
  const gpu = await WebGpuBackend.create();
  let model: GpuModel;
  try {
    model = await GpuModel.fromStore(m.configJson, m.store, m.read, gpu, { onProgress });
  } catch (e) {
    gpu.destroy();
    throw e;
  }
  return {
    kind: "webgpu",
    label: `WebGPU: ${gpu.name.replace(/^webgpu \((.*)\)$/, "$1")}`,
    generate: (prompt, settings, onStep, signal) => run(model, m.tokenizer, prompt, settings, onStep, signal),
    close: () => gpu.destroy(),
  };
}

/** The model on the plain-JavaScript CPU kernels (MLA absorbed), from its tensors read into memory. */
export function cpuRunner(m: OpenModel, tensors: ReadonlyMap<string, Tensor>): Runner {
  const c = m.config, get = (n: string) => {
    const t = tensors.get(n);
    if (!t) throw new MlaError(`${m.name} has no tensor ${n}`);
    return t;
  };
  const label = "CPU: the engine's plain-JavaScript kernels, one thread";
  const close = () => {};
  if (c.attention === "mla") {
    const model = new DeepseekModel(c, assemble(c, get), cpuOps);
    return { kind: "cpu", label, close, generate: (prompt, settings, onStep, signal) => run(model, m.tokenizer, prompt, settings, onStep, signal, "absorb") };
  }
  const model = new LlamaModel(c, assembleLlama(c, get), cpuOps);
  return { kind: "cpu", label, close, generate: (prompt, settings, onStep, signal) => run(model, m.tokenizer, prompt, settings, onStep, signal) };
}
