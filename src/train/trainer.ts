/**
 * A resumable training run in a folder (what `mla train` does):
 *
 *   DIR/tokenizer.json, tokenizer_config.json   the byte-level BPE tokenizer (trained here unless one is given)
 *   DIR/model.safetensors, config.json          the checkpoint (deepseek_v3, dense; see ./save.ts)
 *   DIR/optimizer.safetensors                   AdamW's moments: "m.<param>" and "v.<param>" (F32)
 *   DIR/trainer-state.json                      step, AdamW's t, the settings, loss and validation history
 *   DIR/metrics.jsonl                           one JSON line per step and per evaluation
 *   DIR/loss.svg                                the loss plot
 *
 * Every save writes each of these atomically (./save.ts), the optimizer and weights first and trainer-state.json
 * last; the step is also stored in both safetensors headers and checked on resume, so a run killed between two
 * renames is refused rather than resumed from a mixed state.
 *
 * Determinism: the model is initialized from `seed`, and the batch of (1-based) step s is drawn by a generator
 * seeded from (seed, s) alone (stepRng in ./loop.ts). Weights and moments are float32 and saved exactly, so a
 * resumed run computes bit-for-bit the losses an uninterrupted run computes.
 */
import * as fs from "node:fs";
import { join, resolve } from "node:path";
import { MlaError } from "../errors.js";
import { readHeader, readTensor } from "../io/safetensors.js";
import { f32Tensor, type Tensor } from "../tensor/tensor.js";
import { writeSafetensors } from "../io/safetensors.js";
import { ByteLevelBpe, trainByteLevelBpe, writeTokenizer, type TokenizerJson } from "../tokenizer/bpe-train.js";
import { AdamW, lrAt } from "./adamw.js";
import { accumulateGradients, sampleBatch, stepRng } from "./loop.js";
import { TrainModel, denseMlaConfig, llamaConfig, type Json } from "./model.js";
import { atomicWrite, saveCheckpoint, writeFileAtomic } from "./save.js";
import { lossSvg } from "./plot.js";
import { WasmBackend } from "../backends/wasm/index.js";

export interface TrainSettings {
  /** "brown" (train/validation split by document) or the path of a UTF-8 text file (last 10% held out). */
  readonly corpus: string;
  /** Folder with a tokenizer.json to use instead of training one. */
  readonly tokenizer: string | null;
  /** Vocabulary of the tokenizer trained when none is given. */
  readonly vocab: number;
  readonly layers: number;
  readonly hidden: number;
  readonly heads: number;
  /** mla: deepseek_v3 layout; mha / gqa / mqa: llama layout. */
  readonly attention: AttentionKind;
  /** KV heads of gqa (mha uses heads, mqa 1). */
  readonly kvHeads: number;
  /** Per-head width of mha / gqa / mqa (0: hidden / heads). */
  readonly headDim: number;
  readonly kvLoraRank: number;
  /** 0: no query compression. */
  readonly qLoraRank: number;
  readonly nope: number;
  readonly rope: number;
  readonly v: number;
  readonly intermediate: number;
  readonly steps: number;
  readonly batch: number;
  readonly seq: number;
  readonly lr: number;
  readonly minLr: number;
  readonly warmup: number;
  readonly accum: number;
  readonly clip: number;
  readonly wd: number;
  readonly seed: number;
  /** Validation windows (of seq + 1 tokens, evenly spaced over the held-out tokens) per evaluation. */
  readonly evalWindows: number;
}

export type AttentionKind = "mla" | "mha" | "gqa" | "mqa";
export const ATTENTION_KINDS: readonly AttentionKind[] = ["mla", "mha", "gqa", "mqa"];

export const DEFAULT_SETTINGS: TrainSettings = {
  corpus: "brown", tokenizer: null, vocab: 1024,
  layers: 2, hidden: 64, heads: 4, attention: "mla", kvHeads: 2, headDim: 0, kvLoraRank: 32, qLoraRank: 0, nope: 16, rope: 8, v: 16, intermediate: 172,
  steps: 200, batch: 8, seq: 64, lr: 3e-3, minLr: 3e-4, warmup: 20, accum: 1, clip: 1, wd: 0.1, seed: 0, evalWindows: 32,
};

/** Settings that may differ on --resume (the rest must match the saved run). */
const RESUME_MAY_CHANGE = new Set<keyof TrainSettings>(["steps"]);

export interface StepInfo {
  readonly step: number;
  readonly steps: number;
  readonly loss: number;
  readonly lr: number;
  readonly gradNorm: number;
  readonly tokensPerSecond: number;
  readonly elapsedSeconds: number;
  /** Seconds left at this run's average step time. */
  readonly etaSeconds: number;
}

export type TrainBackend = "cpu" | "cpu-scalar" | "webgpu";

export interface RunOptions {
  readonly out: string;
  /** Settings given explicitly; the rest come from DEFAULT_SETTINGS (or, with resume, from the saved run). */
  readonly settings: Partial<TrainSettings>;
  readonly saveEvery: number;
  readonly evalEvery: number;
  readonly resume?: boolean;
  /** Stop (after saving) once this step is done, as if the run were interrupted there. */
  readonly stopAt?: number;
  /**
   * Where the matrix products run: "cpu" (default) the WebAssembly SIMD kernels on a worker pool (./wasm-matmul.ts),
   * "cpu-scalar" the single-threaded scalar reference, "webgpu" the GPU through a worker (./gpu-matmul.ts). Not part of the saved settings (a run may resume on either).
   */
  readonly backend?: TrainBackend;
  /** Threads of the "cpu" backend (default: WasmBackend's, os.availableParallelism() capped at 8). */
  readonly threads?: number;
  readonly onStart?: (info: { startStep: number; steps: number; numParams: number; trainTokens: number; valTokens: number; vocabSize: number }) => void;
  readonly onStep?: (info: StepInfo) => void;
}

export interface RunSummary {
  readonly out: string;
  readonly startStep: number;
  readonly endStep: number;
  readonly steps: number;
  readonly numParams: number;
  readonly vocabSize: number;
  readonly trainTokens: number;
  readonly firstLoss: number;
  readonly lastLoss: number;
  readonly valLoss: number;
  readonly valPerplexity: number;
  readonly tokensPerSecond: number;
  readonly seconds: number;
  /** Numbers the model caches per token at inference, all layers (K and V, or c_KV and k_rope for MLA). */
  readonly kvCachePerToken: number;
}

interface TrainerState {
  format: "mla-ts-trainer-state";
  version: 1;
  step: number;
  t: number;
  settings: TrainSettings;
  /** Train loss of steps 1..step. */
  losses: number[];
  /** [step, validation loss]. */
  evals: [number, number][];
  elapsedSeconds: number;
}

const STATE = "trainer-state.json", OPTIMIZER = "optimizer.safetensors", METRICS = "metrics.jsonl";

function check(ok: boolean, msg: string): void {
  if (!ok) throw new MlaError(msg);
}

export function validateSettings(s: TrainSettings): void {
  const int = (v: number, name: string, min: number) => check(Number.isInteger(v) && v >= min, `${name} must be an integer >= ${min}, got ${v}`);
  int(s.vocab, "--vocab", 258);
  for (const [v, n] of [[s.layers, "--layers"], [s.hidden, "--hidden"], [s.heads, "--heads"], [s.kvLoraRank, "--kv-lora-rank"], [s.nope, "--nope"],
    [s.v, "--v"], [s.intermediate, "--intermediate"], [s.steps, "--steps"], [s.batch, "--batch"], [s.seq, "--seq"], [s.accum, "--accum"],
    [s.evalWindows, "--eval-windows"]] as const) int(v, n, 1);
  int(s.qLoraRank, "--q-lora-rank", 0);
  check(ATTENTION_KINDS.includes(s.attention), `--attention must be one of ${ATTENTION_KINDS.join(", ")}, got "${s.attention}"`);
  int(s.kvHeads, "--kv-heads", 1);
  int(s.headDim, "--head-dim", 0);
  if (s.attention === "gqa") check(s.heads % s.kvHeads === 0, `--heads ${s.heads} is not a multiple of --kv-heads ${s.kvHeads}`);
  if (s.attention !== "mla") {
    const hd = s.headDim || s.hidden / s.heads;
    check(Number.isInteger(hd) && hd % 2 === 0, `--head-dim must be an even integer (default hidden / heads = ${hd}); give --head-dim`);
  }
  int(s.rope, "--rope", 2);
  check(s.rope % 2 === 0, `--rope must be even (RoPE rotates pairs), got ${s.rope}`);
  int(s.warmup, "--warmup", 0);
  int(s.seed, "--seed", 0);
  check(s.batch % s.accum === 0, `--batch ${s.batch} does not split into --accum ${s.accum} micro-batches`);
  check(s.lr > 0, `--lr must be positive, got ${s.lr}`);
  check(s.minLr >= 0 && s.minLr <= s.lr, `--min-lr must be between 0 and --lr, got ${s.minLr}`);
  check(s.clip > 0, `--clip must be positive, got ${s.clip}`);
  check(s.wd >= 0, `--wd must be >= 0, got ${s.wd}`);
}

/** config.json of the model the settings describe: deepseek_v3 (MLA) or llama (MHA / GQA / MQA). */
export function modelConfig(s: TrainSettings, vocabSize: number, bosTokenId: number | null, eosTokenId: number | null): Json {
  const common = {
    vocabSize, hiddenSize: s.hidden, intermediateSize: s.intermediate, numLayers: s.layers, numHeads: s.heads,
    maxPositionEmbeddings: Math.max(2048, s.seq), bosTokenId, eosTokenId,
  };
  if (s.attention === "mla") {
    return denseMlaConfig({ ...common, kvLoraRank: s.kvLoraRank, qLoraRank: s.qLoraRank || null, qkNopeHeadDim: s.nope, qkRopeHeadDim: s.rope, vHeadDim: s.v });
  }
  const numKvHeads = s.attention === "mha" ? s.heads : s.attention === "mqa" ? 1 : s.kvHeads;
  return llamaConfig({ ...common, numKvHeads, headDim: s.headDim || s.hidden / s.heads });
}

/** Train and validation texts of a corpus setting. */
function loadTexts(corpus: string): Promise<{ train: string[]; validation: string[] }> | { train: string[]; validation: string[] } {
  if (corpus === "brown") return import("../data/brown.js").then((m) => m.loadBrown());
  if (!fs.existsSync(corpus)) throw new MlaError(`--text: ${corpus} does not exist`);
  const text = fs.readFileSync(corpus, "utf8");
  // the last 10%, from the first whitespace after the 90% mark
  let cut = Math.floor(text.length * 0.9);
  while (cut < text.length && !/\s/.test(text[cut])) cut++;
  return { train: [text.slice(0, cut)], validation: [text.slice(cut)] };
}

function encodeAll(tok: ByteLevelBpe, docs: readonly string[]): Int32Array {
  const out: number[] = [];
  for (const d of docs) for (const id of tok.encode(d, true)) out.push(id);
  return Int32Array.from(out);
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(path, "utf8"));
  } catch (e) {
    throw new MlaError(`cannot read ${path}: ${(e as Error).message}`);
  }
}

function loadTensors(path: string, expectStep: number): Map<string, Tensor> {
  if (!fs.existsSync(path)) throw new MlaError(`cannot resume: ${path} is missing`);
  const { tensors, metadata } = readHeader(path);
  if (Number(metadata.step) !== expectStep) {
    throw new MlaError(`cannot resume: ${path} is from step ${metadata.step}, ${STATE} from step ${expectStep} (interrupted save?)`);
  }
  const out = new Map<string, Tensor>();
  for (const [name, info] of tensors) out.set(name, readTensor(info));
  return out;
}

function copyInto(dst: Float32Array | Float64Array, t: Tensor | undefined, name: string, path: string): void {
  if (!t || t.dtype !== "F32" || t.data.length !== dst.length) throw new MlaError(`cannot resume: ${path} has no matching F32 tensor ${name}`);
  dst.set(t.data as Float32Array);
}

/** Mean validation loss over evenly spaced windows of the held-out tokens. */
function evaluate(model: TrainModel, val: Int32Array, s: TrainSettings): number {
  const span = val.length - s.seq - 1;
  const n = Math.min(s.evalWindows, Math.floor((val.length - 1) / s.seq));
  const offsets = Array.from({ length: n }, (_, i) => (n === 1 ? 0 : Math.floor((i * span) / (n - 1))));
  let sum = 0;
  for (let i = 0; i < n; i += s.batch) {
    const chunk = offsets.slice(i, i + s.batch);
    const ids = chunk.map((o) => Array.from(val.subarray(o, o + s.seq)));
    const targets = chunk.map((o) => Array.from(val.subarray(o + 1, o + s.seq + 1)));
    sum += model.forward(ids, targets) * chunk.length;
  }
  return sum / n;
}

/** Run (or resume) training in opts.out; returns a summary of this invocation. */
export async function runTraining(opts: RunOptions): Promise<RunSummary> {
  const out = resolve(opts.out);
  const statePath = join(out, STATE);
  let state: TrainerState | null = null;
  let settings: TrainSettings;
  if (opts.resume) {
    if (!fs.existsSync(statePath)) throw new MlaError(`--resume: ${out} has no ${STATE} (no saved run to continue)`);
    state = readJson(statePath) as TrainerState;
    if (state?.format !== "mla-ts-trainer-state" || state.version !== 1) throw new MlaError(`${statePath} is not an mla-ts trainer state`);
    for (const [k, v] of Object.entries(opts.settings) as [keyof TrainSettings, unknown][]) {
      if (v === undefined || RESUME_MAY_CHANGE.has(k)) continue;
      const saved = k === "corpus" && v !== "brown" ? resolve(String(v)) : v;
      if (saved !== state.settings[k]) throw new MlaError(`--resume continues the saved run, whose ${k} is ${JSON.stringify(state.settings[k])} (given: ${JSON.stringify(v)})`);
    }
    // runs saved before a setting existed used its default
    settings = { ...DEFAULT_SETTINGS, ...state.settings, steps: opts.settings.steps ?? state.settings.steps };
    if (state.step >= settings.steps) throw new MlaError(`--resume: the saved run is already at step ${state.step} of ${settings.steps} (raise --steps to continue)`);
  } else {
    if (fs.existsSync(statePath)) throw new MlaError(`${out} already holds a training run; pass --resume to continue it or choose another --out`);
    const merged = { ...DEFAULT_SETTINGS, ...Object.fromEntries(Object.entries(opts.settings).filter(([, v]) => v !== undefined)) } as TrainSettings;
    settings = { ...merged, corpus: merged.corpus === "brown" ? "brown" : resolve(merged.corpus), tokenizer: merged.tokenizer === null ? null : resolve(merged.tokenizer) };
  }
  validateSettings(settings);
  check(Number.isInteger(opts.saveEvery) && opts.saveEvery >= 1, `--save-every must be an integer >= 1, got ${opts.saveEvery}`);
  check(Number.isInteger(opts.evalEvery) && opts.evalEvery >= 1, `--eval-every must be an integer >= 1, got ${opts.evalEvery}`);
  const s = settings;

  // data and tokenizer
  const texts = await loadTexts(s.corpus);
  fs.mkdirSync(out, { recursive: true });
  let tokJson: TokenizerJson;
  if (state) {
    tokJson = readJson(join(out, "tokenizer.json")) as TokenizerJson;
  } else if (s.tokenizer !== null) {
    const src = join(s.tokenizer, "tokenizer.json");
    if (!fs.existsSync(src)) throw new MlaError(`--tokenizer: ${src} does not exist`);
    tokJson = readJson(src) as TokenizerJson;
    if (tokJson?.model?.type !== "BPE") throw new MlaError(`--tokenizer: ${src} is not a byte-level BPE tokenizer.json`);
    writeTokenizer(out, tokJson, { modelMaxLength: Math.max(2048, s.seq) });
  } else {
    tokJson = trainByteLevelBpe(texts.train, { vocabSize: s.vocab });
    writeTokenizer(out, tokJson, { modelMaxLength: Math.max(2048, s.seq) });
  }
  const tok = new ByteLevelBpe(tokJson);
  const vocabSize = Math.max(...Object.values(tokJson.model.vocab), ...tokJson.added_tokens.map((t) => t.id)) + 1;
  const trainTokens = encodeAll(tok, texts.train), valTokens = encodeAll(tok, texts.validation);
  check(trainTokens.length > s.seq + 1, `the training text has ${trainTokens.length} tokens, too few for --seq ${s.seq}`);
  check(valTokens.length > s.seq + 1, `the held-out text has ${valTokens.length} tokens, too few for --seq ${s.seq} (use a longer text or a smaller --seq)`);

  // model and optimizer
  const cfg = modelConfig(s, vocabSize, tokJson.added_tokens[0]?.id ?? null, tokJson.added_tokens[1]?.id ?? null);
  const backendKind = opts.backend ?? "cpu";
  check(backendKind === "cpu" || backendKind === "cpu-scalar" || backendKind === "webgpu", `--backend must be cpu, cpu-scalar or webgpu, got "${String(backendKind)}"`);
  check(opts.threads === undefined || (Number.isInteger(opts.threads) && opts.threads >= 1), `--threads must be an integer >= 1, got ${opts.threads}`);
  const backend = backendKind === "cpu" ? await WasmBackend.create({ threads: opts.threads }) : null;
  const gpu = backendKind === "webgpu" ? await (await import("./gpu-matmul.js")).GpuTrainMatmul.create() : null;
  try {
    return await trainWith(backend);
  } finally {
    await backend?.close();
    await gpu?.close();
  }

  async function trainWith(backend: WasmBackend | null): Promise<RunSummary> {
    const model = new TrainModel(cfg, { seed: s.seed, backend, matmul: gpu ?? undefined });
    const opt = new AdamW(model.params, model.shapes, { weightDecay: s.wd, clipNorm: s.clip });
    const losses: number[] = state ? [...state.losses] : [];
    const evals: [number, number][] = state ? state.evals.map(([a, b]) => [a, b]) : [];
    const elapsedBefore = state?.elapsedSeconds ?? 0;
    const startStep = state?.step ?? 0;
    if (state) {
      const wPath = join(out, "model.safetensors"), oPath = join(out, OPTIMIZER);
      const w = loadTensors(wPath, state.step), o = loadTensors(oPath, state.step);
      for (const [name, p] of model.params) {
        copyInto(p, w.get(name), name, wPath);
        copyInto(opt.m.get(name)!, o.get(`m.${name}`), `m.${name}`, oPath);
        copyInto(opt.v.get(name)!, o.get(`v.${name}`), `v.${name}`, oPath);
      }
      opt.t = state.t;
      check(losses.length === state.step, `${statePath}: ${losses.length} losses for step ${state.step}`);
      // drop what a killed run logged after its last save
      const mPath = join(out, METRICS);
      const kept = fs.existsSync(mPath)
        ? fs.readFileSync(mPath, "utf8").split("\n").filter((l) => {
          try {
            return l.trim() !== "" && (JSON.parse(l) as { step: number }).step <= state!.step;
          } catch {
            return false;
          }
        })
        : [];
      writeFileAtomic(mPath, kept.map((l) => l + "\n").join(""));
    } else {
      writeFileAtomic(join(out, METRICS), "");
    }
    opts.onStart?.({ startStep, steps: s.steps, numParams: model.numParams, trainTokens: trainTokens.length, valTokens: valTokens.length, vocabSize });

    const metrics = fs.openSync(join(out, METRICS), "a");
    const log = (o: object) => fs.writeSync(metrics, JSON.stringify(o) + "\n");
    const sched = { maxLr: s.lr, minLr: s.minLr, warmupSteps: s.warmup, totalSteps: s.steps };
    const t0 = performance.now();
    const elapsed = () => elapsedBefore + (performance.now() - t0) / 1000;
    const endStep = Math.min(s.steps, opts.stopAt ?? s.steps);
    let lastEval = evals.length ? evals[evals.length - 1] : null;

    const save = (step: number) => {
      const meta = { step: String(step) };
      const moments: Record<string, Tensor> = {};
      for (const name of model.params.keys()) {
        moments[`m.${name}`] = f32Tensor(model.shapes.get(name)!, opt.m.get(name)!);
        moments[`v.${name}`] = f32Tensor(model.shapes.get(name)!, opt.v.get(name)!);
      }
      atomicWrite(join(out, OPTIMIZER), (tmp) => writeSafetensors(tmp, moments, { format: "pt", ...meta }));
      saveCheckpoint(out, model, meta);
      fs.fsyncSync(metrics);
      const st: TrainerState = { format: "mla-ts-trainer-state", version: 1, step, t: opt.t, settings: s, losses, evals, elapsedSeconds: elapsed() };
      writeFileAtomic(join(out, "loss.svg"), lossSvg({ train: losses.map((l, i) => [i + 1, l]), eval: evals, title: `mla train: ${out}` }));
      writeFileAtomic(statePath, JSON.stringify(st) + "\n");
    };

    let runTokens = 0;
    try {
      for (let step = startStep + 1; step <= endStep; step++) {
        const st0 = performance.now();
        const { ids, targets } = sampleBatch(trainTokens, s.batch, s.seq, stepRng(s.seed, step));
        const loss = accumulateGradients(model, ids, targets, s.accum);
        const lr = lrAt(step - 1, sched);
        const { gradNorm } = opt.step(model.grads, lr);
        const sec = (performance.now() - st0) / 1000;
        runTokens += s.batch * s.seq;
        losses.push(loss);
        const info = { step, loss, lr, gradNorm, tokensPerSecond: (s.batch * s.seq) / sec, elapsedSeconds: elapsed() };
        log(info);
        if (step % opts.evalEvery === 0 || step === s.steps) {
          const valLoss = evaluate(model, valTokens, s);
          lastEval = [step, valLoss];
          evals.push(lastEval);
          log({ step, valLoss, valPerplexity: Math.exp(valLoss) });
        }
        if (step % opts.saveEvery === 0 || step === endStep) save(step);
        const done = step - startStep, runSec = (performance.now() - t0) / 1000;
        opts.onStep?.({ ...info, steps: s.steps, etaSeconds: (runSec / done) * (s.steps - step) });
      }
    } finally {
      fs.closeSync(metrics);
    }
    const seconds = (performance.now() - t0) / 1000;
    const valLoss = lastEval ? lastEval[1] : NaN;
    return {
      out, startStep, endStep, steps: s.steps, numParams: model.numParams, kvCachePerToken: model.attention.cachePerToken * s.layers, vocabSize, trainTokens: trainTokens.length,
      firstLoss: losses[startStep] ?? NaN, lastLoss: losses[losses.length - 1] ?? NaN, valLoss, valPerplexity: Math.exp(valLoss),
      tokensPerSecond: seconds > 0 ? runTokens / seconds : 0, seconds,
    };
  }
}
