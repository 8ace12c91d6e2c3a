import { MlaError } from "../../errors.js";
import type { MlaMode } from "../../attention/mla.js";
import { checkAttentionForm, loadModel } from "../load.js";
import type { Runtime } from "../../model/inference.js";
import { argmax } from "../../generate/sampler.js";

export interface LogitsOptions {
  readonly model: string;
  readonly ids: number[];
  readonly attention: MlaMode;
  readonly json?: boolean;
}

/** One row of vocab_size logits per input position. */
export async function logitsCommand(opts: LogitsOptions, runtime: Runtime): Promise<void> {
  const model = loadModel(opts.model, runtime);
  checkAttentionForm(model, opts.attention);
  const V = model.config.vocabSize, T = opts.ids.length;
  const logits = await model.step([{ ids: opts.ids, state: model.newState(T) }], { mode: opts.attention, allLogits: true });
  printLogits(logits, opts.ids, V, opts.json);
}

/** {"logits": rows} with --json, else each position's argmax. */
export function printLogits(logits: Float32Array, ids: readonly number[], V: number, json?: boolean): void {
  if (logits.some((x) => !Number.isFinite(x))) throw new MlaError("the model produced non-finite logits (corrupt weights?)");
  const T = ids.length;
  if (json) {
    const rows = Array.from({ length: T }, (_, t) => Array.from(logits.subarray(t * V, (t + 1) * V)));
    process.stdout.write(JSON.stringify({ logits: rows }) + "\n");
    return;
  }
  for (let t = 0; t < T; t++) {
    const row = logits.subarray(t * V, (t + 1) * V);
    const best = argmax(row);
    process.stdout.write(`position ${t} (token ${ids[t]}): argmax ${best} (${row[best].toFixed(4)})\n`);
  }
}
