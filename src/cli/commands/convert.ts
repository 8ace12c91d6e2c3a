import { resolve } from "node:path";
import { MlaError } from "../../errors.js";
import { parseFloatArg, parseInt10 } from "../args.js";
import { loadModel } from "../../model/load.js";
import { calibrate } from "../../convert/calibrate.js";
import { ROPE_KEYS, convertModel, readSource, writeConverted, type ConversionSummary, type RopeKey } from "../../convert/convert.js";
import { corpusTokens, evalWindows, sampleWindows, type CorpusTokens } from "../../convert/data.js";
import { evaluate } from "../../convert/evaluate.js";
import { finetune, loadTrainModel } from "../../convert/finetune.js";
import { NOPE_ROTATIONS, type NopeRotation } from "../../convert/nope-rotation.js";
import { ROPE_SELECTS, type RopeSelect } from "../../convert/rope-select.js";
import { saveCheckpoint } from "../../train/save.js";
import { WasmBackend } from "../../backends/wasm/index.js";

/** Flags as commander gives them. */
export interface ConvertFlags {
  model: string;
  out: string;
  kvRank: string;
  ropeDim: string;
  ropeSelect?: string;
  ropeKey?: string;
  biases?: string;
  nope?: string;
  calibration?: string;
  calibrationWindows?: string;
  finetuneSteps?: string;
  finetuneLr?: string;
  batch?: string;
  seq?: string;
  evalWindows?: string;
  seed?: string;
  backend?: string;
  threads?: string;
  json?: boolean;
}

export interface ConvertResult {
  readonly out: string;
  readonly summary: ConversionSummary;
  /** Present when text was available (calibration or fine-tuning): measured on the corpus's held-out windows. */
  readonly eval?: {
    readonly windows: number;
    readonly logitError: number;
    readonly sourcePerplexity: number;
    readonly convertedPerplexity: number;
    readonly finetunedPerplexity?: number;
    readonly finetuneLogitError?: number;
  };
  readonly finetune?: { readonly steps: number; readonly firstLoss: number; readonly lastLoss: number; readonly seconds: number };
  readonly seconds: number;
}

function oneOf<T extends string>(v: string | undefined, all: readonly T[], flag: string): T | undefined {
  if (v === undefined) return undefined;
  if (!(all as readonly string[]).includes(v)) throw new MlaError(`${flag} must be one of ${all.join(", ")}, got "${v}"`);
  return v as T;
}

/** mla convert: the conversion, then (with text) the measurements and the fine-tune. */
export async function convertCommand(o: ConvertFlags, log: (line: string) => void = () => {}): Promise<ConvertResult> {
  const t0 = performance.now();
  if (resolve(o.out) === resolve(o.model)) throw new MlaError("--out must differ from --model (the source is not overwritten)");
  const kvRank = parseInt10(o.kvRank, "--kv-rank", 1), ropeDim = parseInt10(o.ropeDim, "--rope-dim", 2);
  const ropeSelect = oneOf<RopeSelect>(o.ropeSelect, ROPE_SELECTS, "--rope-select");
  const ropeKey = oneOf<RopeKey>(o.ropeKey, ROPE_KEYS, "--rope-key");
  const nope = oneOf<NopeRotation>(o.nope, NOPE_ROTATIONS, "--nope");
  const calWindows = parseInt10(o.calibrationWindows ?? "32", "--calibration-windows", 1);
  const steps = parseInt10(o.finetuneSteps ?? "0", "--finetune-steps", 0);
  const lr = o.finetuneLr === undefined ? undefined : parseFloatArg(o.finetuneLr, "--finetune-lr");
  const batch = parseInt10(o.batch ?? "16", "--batch", 1), seq = parseInt10(o.seq ?? "64", "--seq", 1);
  const nEval = parseInt10(o.evalWindows ?? "64", "--eval-windows", 1), seed = parseInt10(o.seed ?? "0", "--seed", 0);
  if (o.backend !== undefined && o.backend !== "cpu" && o.backend !== "cpu-scalar") throw new MlaError(`--backend must be cpu or cpu-scalar, got "${o.backend}"`);
  const threads = o.threads === undefined ? undefined : parseInt10(o.threads, "--threads", 1);

  const biases = oneOf<"refuse" | "drop">(o.biases, ["refuse", "drop"], "--biases");
  const src = readSource(o.model, { dropBiases: biases === "drop" });
  const corpus = o.calibration ?? (steps > 0 ? "brown" : null);
  let tokens: CorpusTokens | null = null;
  if (corpus !== null) {
    tokens = await corpusTokens(o.model, corpus);
    log(`text: ${corpus}, ${tokens.train.length} training and ${tokens.validation.length} held-out tokens`);
  }
  const source = tokens ? loadModel(o.model) : null;
  const calibration = o.calibration !== undefined ? calibrate(source!, sampleWindows(tokens!.train, calWindows, seq, seed)) : null;
  const conv = convertModel(src, { kvRank, ropeDim, ropeSelect, ropeKey, nope, calibration });
  writeConverted(o.out, conv, o.model);
  const s = conv.summary;
  log(`converted: KV cache ${s.source.kvPerTokenPerLayer} -> ${s.target.kvPerTokenPerLayer} numbers per token and layer (${(s.cacheRatio * 100).toFixed(1)}%)`);
  for (const n of s.notes) log(`note: ${n}`);
  if (!tokens || !source) return { out: o.out, summary: s, seconds: (performance.now() - t0) / 1000 };

  const val = evalWindows(tokens.validation, nEval, seq);
  const ref = evaluate(source, val);
  const before = evaluate(loadModel(o.out), val, ref.logits);
  const err = before.logitError!;
  log(`held-out perplexity: source ${ref.perplexity.toFixed(2)}, converted ${before.perplexity.toFixed(2)}; logit error ${err.toExponential(2)}`);
  if (steps === 0) {
    return {
      out: o.out, summary: s, seconds: (performance.now() - t0) / 1000,
      eval: { windows: val.ids.length, logitError: err, sourcePerplexity: ref.perplexity, convertedPerplexity: before.perplexity },
    };
  }
  const backend = o.backend === "cpu-scalar" ? null : await WasmBackend.create({ threads });
  let losses: number[];
  const ft0 = performance.now();
  try {
    const model = loadTrainModel(o.out, backend);
    losses = finetune(model, tokens.train, {
      steps, batch, seq, lr, seed,
      onStep: (i) => {
        if ((i.step + 1) % 10 === 0 || i.step + 1 === steps) log(`fine-tune step ${i.step + 1}/${steps}: loss ${i.loss.toFixed(4)}`);
      },
    });
    saveCheckpoint(o.out, model, { finetune_steps: String(steps) });
  } finally {
    await backend?.close();
  }
  const ftSeconds = (performance.now() - ft0) / 1000;
  const after = evaluate(loadModel(o.out), val, ref.logits);
  log(`after ${steps} fine-tune steps (${ftSeconds.toFixed(0)} s): held-out perplexity ${after.perplexity.toFixed(2)}`);
  return {
    out: o.out, summary: s, seconds: (performance.now() - t0) / 1000,
    eval: {
      windows: val.ids.length, logitError: err, sourcePerplexity: ref.perplexity, convertedPerplexity: before.perplexity,
      finetunedPerplexity: after.perplexity, finetuneLogitError: after.logitError!,
    },
    finetune: { steps, firstLoss: losses[0], lastLoss: losses[losses.length - 1], seconds: ftSeconds },
  };
}
