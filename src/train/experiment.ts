/**
 * The attention experiment of issue 4: MHA, GQA, MQA and MLA (plus an MLA ablation) trained on the same data,
 * token budget and schedule, at matched parameter count, over several seeds; validation loss against KV-cache
 * numbers per token.
 *
 * Parameters are matched by the SwiGLU width alone: attention variants differ in projection sizes, so each
 * variant's intermediate_size is chosen to bring its total closest to the reference (MHA with `baseIntermediate`).
 * The seed sets both the initialization and the data order, so variant comparisons at one seed are paired (every
 * variant sees the same batches).
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { MlaError } from "../errors.js";
import { DEFAULT_SETTINGS, modelConfig, runTraining, type StepInfo, type TrainSettings } from "./trainer.js";
import { TrainModel } from "./model.js";

export interface Variant {
  readonly name: string;
  readonly label: string;
  /** Settings that define the attention (intermediate is filled in by matching). */
  readonly settings: Partial<TrainSettings>;
}

export interface ExperimentPlan {
  /** Shared by every run: sizes, schedule, tokenizer, corpus. */
  readonly base: Partial<TrainSettings>;
  /** The reference's SwiGLU width; every variant's is matched to its parameter count. */
  readonly baseIntermediate: number;
  readonly variants: readonly Variant[];
  readonly seeds: readonly number[];
}

/** Defaults: 4 layers, hidden 128, 8 heads of 16; 200 steps x 16 x 64 tokens. About 4 minutes a run on 2 cores. */
export function defaultPlan(tokenizer: string): ExperimentPlan {
  const heads = { heads: 8, headDim: 16 };
  const mla = { attention: "mla" as const, heads: 8, kvLoraRank: 64, nope: 16, rope: 8, v: 16 };
  return {
    base: {
      corpus: "brown", tokenizer, layers: 4, hidden: 128, steps: 200, batch: 16, seq: 64, lr: 3e-3, minLr: 3e-4, warmup: 20,
      evalWindows: 64,
    },
    baseIntermediate: 344,
    variants: [
      { name: "mha", label: "MHA (8 KV heads)", settings: { attention: "mha", ...heads } },
      { name: "gqa4", label: "GQA (4 KV heads)", settings: { attention: "gqa", kvHeads: 4, ...heads } },
      { name: "mqa", label: "MQA (1 KV head)", settings: { attention: "mqa", ...heads } },
      { name: "mla", label: "MLA (d_c 64, d_h^R 8, q_lora 64)", settings: { ...mla, qLoraRank: 64 } },
      { name: "mla-noqc", label: "MLA without query compression", settings: { ...mla, qLoraRank: 0 } },
    ],
    seeds: [0, 1],
  };
}

function settingsOf(plan: ExperimentPlan, v: Variant, intermediate: number, seed: number): TrainSettings {
  return { ...DEFAULT_SETTINGS, ...plan.base, ...v.settings, intermediate, seed } as TrainSettings;
}

/** Parameter count and KV numbers per token of a variant at a SwiGLU width (vocabulary from the tokenizer). */
export function measure(s: TrainSettings, vocabSize: number): { params: number; kvPerToken: number } {
  const m = new TrainModel(modelConfig(s, vocabSize, null, null));
  return { params: m.numParams, kvPerToken: m.attention.cachePerToken * s.layers };
}

/** The SwiGLU width of each variant that brings its parameter count closest to the reference's. */
export function matchIntermediate(plan: ExperimentPlan, vocabSize: number): Map<string, { intermediate: number; params: number; kvPerToken: number }> {
  const ref = plan.variants[0];
  const target = measure(settingsOf(plan, ref, plan.baseIntermediate, 0), vocabSize).params;
  const out = new Map<string, { intermediate: number; params: number; kvPerToken: number }>();
  for (const v of plan.variants) {
    // params are affine in the width: two probes give the slope
    const a = measure(settingsOf(plan, v, plan.baseIntermediate, 0), vocabSize);
    const b = measure(settingsOf(plan, v, plan.baseIntermediate + 1, 0), vocabSize);
    const intermediate = Math.max(1, Math.round(plan.baseIntermediate + (target - a.params) / (b.params - a.params)));
    const m = measure(settingsOf(plan, v, intermediate, 0), vocabSize);
    if (Math.abs(m.params - target) / target > 0.03) throw new MlaError(`experiment: ${v.name} cannot be matched within 3% (${m.params} vs ${target})`);
    out.set(v.name, { intermediate, ...m });
  }
  return out;
}

export interface RunResult {
  readonly variant: string;
  readonly seed: number;
  readonly params: number;
  readonly kvPerToken: number;
  readonly intermediate: number;
  readonly valLoss: number;
  readonly seconds: number;
  readonly tokens: number;
}

interface SavedState { step: number; evals: [number, number][]; elapsedSeconds: number; settings: { steps: number } }

/** Train (or resume, or reuse a finished) run of every variant and seed under dir/<variant>-s<seed>. */
export async function runExperiment(plan: ExperimentPlan, dir: string, vocabSize: number, onProgress?: (run: string, i: StepInfo) => void, log?: (line: string) => void): Promise<RunResult[]> {
  const match = matchIntermediate(plan, vocabSize);
  const results: RunResult[] = [];
  for (const seed of plan.seeds) {
    for (const v of plan.variants) {
      const m = match.get(v.name)!;
      const s = settingsOf(plan, v, m.intermediate, seed);
      const out = join(dir, `${v.name}-s${seed}`);
      const statePath = join(out, "trainer-state.json");
      const read = () => JSON.parse(fs.readFileSync(statePath, "utf8")) as SavedState;
      let st = fs.existsSync(statePath) ? read() : null;
      if (!st || st.step < s.steps) {
        if (!st && fs.existsSync(out)) fs.rmSync(out, { recursive: true, force: true });
        await runTraining({
          out, settings: st ? { steps: s.steps } : s, resume: !!st, saveEvery: 50, evalEvery: s.steps,
          onStep: (i) => onProgress?.(`${v.name} seed ${seed}`, i),
        });
        st = read();
      }
      const valLoss = st.evals[st.evals.length - 1]?.[1] ?? NaN;
      const r: RunResult = {
        variant: v.name, seed, params: m.params, kvPerToken: m.kvPerToken, intermediate: m.intermediate, valLoss,
        seconds: st.elapsedSeconds, tokens: s.steps * s.batch * s.seq,
      };
      log?.(`${v.name} seed ${seed}: validation loss ${valLoss.toFixed(4)} (ppl ${Math.exp(valLoss).toFixed(2)}), ${r.seconds.toFixed(0)} s`);
      results.push(r);
    }
  }
  return results;
}

export interface VariantSummary {
  readonly variant: Variant;
  readonly params: number;
  readonly kvPerToken: number;
  readonly intermediate: number;
  readonly losses: readonly number[];
  readonly meanLoss: number;
  /** Half the range (max - min) / 2 over seeds. */
  readonly spread: number;
  readonly meanPpl: number;
  readonly pplSpread: number;
}

export function summarize(plan: ExperimentPlan, results: readonly RunResult[]): VariantSummary[] {
  return plan.variants.map((v) => {
    const rs = results.filter((r) => r.variant === v.name);
    const losses = rs.map((r) => r.valLoss), ppl = losses.map(Math.exp);
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    return {
      variant: v, params: rs[0].params, kvPerToken: rs[0].kvPerToken, intermediate: rs[0].intermediate, losses,
      meanLoss: mean(losses), spread: (Math.max(...losses) - Math.min(...losses)) / 2,
      meanPpl: mean(ppl), pplSpread: (Math.max(...ppl) - Math.min(...ppl)) / 2,
    };
  });
}
