/**
 * The short fine-tune after conversion (as TransMLA and MHA2MLA do to recover what the low-rank latent and the
 * partial RoPE lose): load a checkpoint folder into the trainer's TrainModel (deepseek_v3 for converted models,
 * llama for the source itself, e.g. as a control that gets the same extra training), run AdamW steps on text
 * windows with mla train's loop (./../train/loop.ts: warmup + cosine, clipping, weight decay), and save it back.
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { MlaError } from "../errors.js";
import { Checkpoint } from "../model/checkpoint.js";
import { toF32 } from "../tensor/tensor.js";
import { TrainModel, type Json } from "../train/model.js";
import { train } from "../train/loop.js";
import type { WasmBackend } from "../backends/wasm/index.js";

export interface FinetuneOptions {
  readonly steps: number;
  /** Sequences per step (default 16) of seq tokens (default 64). */
  readonly batch?: number;
  readonly seq?: number;
  /** Peak learning rate (default 3e-4), decayed to minLr (default lr / 10) by a cosine after `warmup` steps (default steps / 10). */
  readonly lr?: number;
  readonly minLr?: number;
  readonly warmup?: number;
  readonly weightDecay?: number;
  /** Seed of the window sampler (default 0). */
  readonly seed?: number;
  readonly onStep?: (info: { step: number; loss: number; lr: number; gradNorm: number }) => void;
}

/** A checkpoint folder as a TrainModel (its config.json and every tensor; float32). */
export function loadTrainModel(dir: string, backend: WasmBackend | null = null): TrainModel {
  const cfgPath = join(dir, "config.json");
  if (!fs.existsSync(cfgPath)) throw new MlaError(`no config.json in ${dir}`);
  const configJson = JSON.parse(fs.readFileSync(cfgPath, "utf8")) as Json;
  const model = new TrainModel(configJson, { backend });
  const ckpt = Checkpoint.open(dir);
  try {
    const missing = ckpt.missing([...model.params.keys()]);
    if (missing.length) throw new MlaError(`checkpoint ${dir} is missing ${missing.length} tensor(s) the trainer needs: ${missing.slice(0, 5).join(", ")}`);
    for (const [name, p] of model.params) {
      const data = toF32(ckpt.load(name));
      if (data.length !== p.length) throw new MlaError(`tensor ${name} in ${dir} has ${data.length} values, the config implies ${p.length}`);
      p.set(data);
    }
  } finally {
    ckpt.close();
  }
  return model;
}

/** Train `model` in place on windows of `tokens`; returns each step's loss. */
export function finetune(model: TrainModel, tokens: Int32Array, o: FinetuneOptions): number[] {
  if (!Number.isInteger(o.steps) || o.steps < 1) throw new MlaError(`--finetune-steps must be a positive integer, got ${o.steps}`);
  const lr = o.lr ?? 3e-4;
  if (!(lr > 0)) throw new MlaError(`--finetune-lr must be positive, got ${lr}`);
  return train(model, tokens, {
    steps: o.steps, batchSize: o.batch ?? 16, seqLen: o.seq ?? 64, maxLr: lr, minLr: o.minLr ?? lr / 10,
    warmupSteps: o.warmup ?? Math.floor(o.steps / 10), seed: o.seed ?? 0, weightDecay: o.weightDecay ?? 0.1, clipNorm: 1,
    onStep: o.onStep,
  });
}
