import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { DeepseekModel } from "../src/model/deepseek-model.js";
import { generate } from "../src/generate/generate.js";
import { rmsNorm } from "../src/backends/cpu/index.js";
import { FIXTURES, FIXTURE_NAMES, batchRow, loadReference, relErr } from "./helpers.js";

const TOL = 1e-4;

for (const name of FIXTURE_NAMES) {
  const model = DeepseekModel.load(join(FIXTURES, name));
  const ref = loadReference(name);
  const c = model.config;

  for (const mode of ["naive", "absorb", "auto"] as const) {
    test(`${name}: logits and hidden states match transformers (${mode})`, () => {
      ref.inputIds.forEach((ids, b) => {
        const hidden: Float32Array[] = [];
        const logits = model.forward(ids, model.newState(), { mode, allLogits: true, hiddenStates: hidden });
        const e = relErr(logits, batchRow(ref.tensors.get("logits")!, b));
        assert.ok(e < TOL, `logits row ${b}: rel err ${e}`);
        assert.equal(hidden.length, ref.numHiddenStates);
        for (let i = 0; i < ref.numHiddenStates; i++) {
          let ours = hidden[i];
          // transformers' last hidden state is taken after the final norm
          if (i === ref.numHiddenStates - 1) {
            ours = new Float32Array(ours.length);
            rmsNorm(ours, hidden[i], ids.length, c.hiddenSize, model.weights.norm, c.rmsNormEps);
          }
          const eh = relErr(ours, batchRow(ref.tensors.get(`hidden_states.${i}`)!, b));
          assert.ok(eh < TOL, `hidden_states.${i} row ${b}: rel err ${eh}`);
        }
      });
    });

    test(`${name}: greedy continuation equals transformers (${mode})`, async () => {
      const r = await generate(model, ref.greedyPrompt, { greedy: true, maxNewTokens: ref.greedyTokens.length, eosTokenIds: [], mode });
      assert.deepEqual(r.tokens, ref.greedyTokens);
    });
  }

  test(`${name}: token-by-token decode reproduces prefill logits (naive and absorbed)`, () => {
    const ids = ref.inputIds[1];
    const full = model.forward(ids, model.newState(), { mode: "naive", allLogits: true });
    for (const mode of ["naive", "absorb"] as const) {
      const state = model.newState();
      const steps: number[] = [];
      // prefill a few tokens, then decode the rest one at a time
      steps.push(...model.forward(ids.slice(0, 5), state, { mode, allLogits: true }));
      for (let t = 5; t < ids.length; t++) steps.push(...model.forward([ids[t]], state, { mode }));
      const e = relErr(steps, full);
      assert.ok(e < 1e-5, `${mode}: rel err ${e}`);
      assert.equal(state.position, ids.length);
    }
  });
}
