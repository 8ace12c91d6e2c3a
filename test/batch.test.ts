import { test, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModel } from "../src/model/load.js";
import { forwardBatch, type CausalLM, type ModelState } from "../src/model/causal-lm.js";
import { cpuOps, type Ops } from "../src/backends/ops.js";
import { WasmOps } from "../src/backends/wasm/ops.js";
import { generate } from "../src/generate/generate.js";
import { BatchScheduler, BusyError, type SequenceResult } from "../src/generate/batch.js";
import { MlaError } from "../src/errors.js";
import { FIXTURES, relErr } from "./helpers.js";

const ops2 = await WasmOps.create({ threads: 2, minParallelWork: 0 });
after(() => ops2.close());
const BACKENDS: [string, Ops][] = [["cpu-scalar", cpuOps], ["wasm 2 threads", ops2]];
// MoE + YaRN + q-LoRA (MLA), dense MLA, GQA with llama3 rope, MQA with a sliding window of 5
const MODELS = ["tiny-deepseek-v3", "tiny-mla-dense", "tiny-llama", "tiny-mistral"];

function ids(n: number, seed: number, vocab: number): number[] {
  return Array.from({ length: n }, (_, i) => (seed * 31 + i * 17 + 3) % vocab);
}

for (const name of MODELS) {
  for (const [bname, ops] of BACKENDS) {
    test(`${name} on ${bname}: batched decode and mixed prefill equal one forward per sequence`, () => {
      const m = loadModel(join(FIXTURES, name), { ops });
      const V = m.config.vocabSize;
      // six sequences: more than the 4 heads, so MLA's absorbed decodes take the per-head batched path
      const prompts = [ids(3, 1, V), ids(7, 2, V), ids(1, 3, V), ids(9, 4, V), ids(2, 5, V), ids(4, 6, V)];
      const alone = prompts.map(() => m.newState());
      const batched = prompts.map(() => m.newState());
      // prefill: sequences 0 and 1 alone, the others in one batched step with different lengths
      for (let b = 0; b < prompts.length; b++) m.forward(prompts[b], alone[b]);
      m.forward(prompts[0], batched[0]);
      m.forward(prompts[1], batched[1]);
      m.forwardBatch!(prompts.slice(2).map((p, i) => ({ ids: p, state: batched[i + 2] })));
      // decode steps of all together (positions up to 9: past mistral's window of 5), then a step where
      // one sequence prefills two tokens while the others decode one
      for (let step = 0; step < 4; step++) {
        const items = prompts.map((_, b) => ({ ids: step === 3 && b === 1 ? [(step * 7 + b) % V, 5] : [(step * 7 + b) % V], state: batched[b] }));
        const got = m.forwardBatch!(items);
        assert.equal(got.length, prompts.length * V, "one row of logits per sequence");
        for (let b = 0; b < prompts.length; b++) {
          const want = m.forward(items[b].ids, alone[b]);
          const e = relErr(got.subarray(b * V, (b + 1) * V), want);
          assert.ok(e <= 1e-5, `${name} ${bname} step ${step} sequence ${b}: rel err ${e}`);
          if (ops === cpuOps) assert.deepEqual(Array.from(got.subarray(b * V, (b + 1) * V)), Array.from(want), "the scalar kernels give identical numbers");
          assert.equal(batched[b].position, alone[b].position, "caches advance alike");
        }
      }
    });
  }
}

test("forwardBatch rejects a state twice, bad ids and foreign states before touching any cache", () => {
  const m = loadModel(join(FIXTURES, "tiny-deepseek-v3"));
  const llama = loadModel(join(FIXTURES, "tiny-llama"));
  const s = m.newState(), t = m.newState();
  assert.throws(() => m.forwardBatch!([{ ids: [1], state: s }, { ids: [2], state: s }]), /same sequence state twice/);
  assert.throws(() => m.forwardBatch!([{ ids: [1], state: s }, { ids: [m.config.vocabSize], state: t }]), /out of range/);
  assert.throws(() => m.forwardBatch!([{ ids: [1], state: llama.newState() as unknown as ModelState as never }]), /another kind of model/);
  assert.throws(() => m.forwardBatch!([]), /empty batch/);
  assert.equal(s.position, 0, "nothing was appended");
  assert.equal(t.position, 0, "nothing was appended");
});

test("forwardBatch() falls back to one forward per item for a model without a batched forward", () => {
  const m = loadModel(join(FIXTURES, "tiny-llama"));
  const plain: CausalLM = { config: m.config, ops: m.ops, newState: (c) => m.newState(c), forward: (i, s, o) => m.forward(i, s, o) };
  const a = [m.newState(), m.newState()], b = [m.newState(), m.newState()];
  const got = forwardBatch(plain, [{ ids: [1, 2], state: a[0] }, { ids: [3], state: a[1] }]);
  const want = m.forwardBatch!([{ ids: [1, 2], state: b[0] }, { ids: [3], state: b[1] }]);
  assert.deepEqual(Array.from(got), Array.from(want), "same logits");
});

/** Run requests through a scheduler; all submitted at once, so they are decoded together. */
async function runAll(s: BatchScheduler, prompts: number[][], maxNew: number): Promise<SequenceResult[]> {
  return Promise.all(prompts.map((prompt) => s.submit({ prompt, maxNewTokens: maxNew, eosTokenIds: [] }).done));
}

for (const name of ["tiny-deepseek-v3", "tiny-mistral"]) {
  test(`${name}: the scheduler's concurrent greedy sequences equal generate() one at a time`, async () => {
    const m = loadModel(join(FIXTURES, name));
    const V = m.config.vocabSize;
    // prefillChunk 4: the 9- and 11-token prompts are prefilled in chunks while the others decode
    const s = new BatchScheduler(m, { maxCacheBytes: 1 << 24, prefillChunk: 4, prefillBudget: 6 });
    const prompts = [ids(2, 1, V), ids(9, 2, V), ids(5, 3, V), ids(11, 4, V), ids(1, 5, V)];
    const got = await runAll(s, prompts, 6);
    for (let i = 0; i < prompts.length; i++) {
      // the same chunking alone: prefill in 4-token pieces, then greedy decode
      const st = m.newState();
      for (let p = 0; p + 4 < prompts[i].length; p += 4) m.forward(prompts[i].slice(p, p + 4), st);
      const rest = prompts[i].slice(Math.floor((prompts[i].length - 1) / 4) * 4);
      const want = await generate(m, rest, { state: st, maxNewTokens: 6, eosTokenIds: [] });
      assert.deepEqual(got[i].tokens, want.tokens, `sequence ${i}`);
      assert.equal(got[i].finishReason, "length", "stopped at max new tokens");
      assert.equal(got[i].promptTokens, prompts[i].length, "prompt tokens");
    }
    const st = s.stats();
    assert.ok(st.maxBatchSeen >= 4, `sequences were decoded together (max batch ${st.maxBatchSeen})`);
    assert.equal(st.active + st.waiting, 0, "everything finished");
    assert.equal(st.reservedBytes, 0, "every reservation returned");
  });
}

test("scheduler: cache budget in exact bytes per token, queue bound, cancellation frees the cache", async () => {
  const m = loadModel(join(FIXTURES, "tiny-deepseek-v3"));
  const c = m.config;
  const perToken = c.numLayers * (c.kvLoraRank + c.qkRopeHeadDim) * 4;
  // room for exactly two sequences of 4 + 6 tokens
  const s = new BatchScheduler(m, { maxCacheBytes: 20 * perToken, maxQueue: 2 });
  assert.equal(s.cacheBytesPerToken, perToken, "latent row bytes of every layer");
  assert.equal(s.bytesFor(4, 6), 10 * perToken, "prompt + new tokens");
  assert.throws(() => s.submit({ prompt: [1, 2, 3, 4], maxNewTokens: 30 }), (e: unknown) => e instanceof MlaError && /budget/.test((e as Error).message));
  assert.throws(() => s.submit({ prompt: [], maxNewTokens: 3 }), /empty/);
  assert.throws(() => s.submit({ prompt: [c.vocabSize], maxNewTokens: 3 }), /out of range/);
  assert.throws(() => s.submit({ prompt: Array(c.maxPositionEmbeddings).fill(1), maxNewTokens: 1 }), /context length/);

  let seen = 0;
  const a = s.submit({ prompt: [1, 2, 3, 4], maxNewTokens: 6, eosTokenIds: [], onToken: () => void seen++ });
  const b = s.submit({ prompt: [5, 6, 7, 8], maxNewTokens: 6, eosTokenIds: [] });
  assert.throws(() => s.submit({ prompt: [9], maxNewTokens: 2 }), (e: unknown) => e instanceof BusyError && e.retryAfterSeconds > 0);
  const cBefore = s.stats();
  assert.equal(cBefore.waiting, 2, "both wait until the first step");
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  const mid = s.stats();
  assert.equal(mid.active, 2, "both admitted: they fit the budget together");
  assert.equal(mid.reservedBytes, 20 * perToken, "the whole budget is reserved");
  // a third request waits (no room), a fourth still fits the queue
  const d = s.submit({ prompt: [1, 2], maxNewTokens: 3, eosTokenIds: [] });
  assert.equal(s.stats().waiting, 1, "waiting for room");
  a.cancel();
  const ra = await a.done;
  assert.equal(ra.finishReason, "cancelled", "cancelled");
  assert.equal(ra.tokens.length, seen, "tokens up to the cancel");
  assert.equal(s.stats().reservedBytes, 10 * perToken, "the cancelled sequence's reservation returned at once");
  const [rb, rd] = await Promise.all([b.done, d.done]);
  assert.equal(rb.tokens.length, 6, "b ran to its limit");
  assert.equal(rd.tokens.length, 3, "d ran once there was room");
  const end = s.stats();
  assert.equal(end.active + end.waiting, 0, "all done");
  assert.equal(end.reservedBytes, 0, "nothing reserved");
  assert.equal(end.cacheBytes, 0, "no cache held");
});

test("scheduler: onToken can stop a sequence, EOS ends it, a waiting request can be cancelled", async () => {
  const m = loadModel(join(FIXTURES, "tiny-mla-dense"));
  const s = new BatchScheduler(m, { maxCacheBytes: 1 << 20, maxBatch: 1 });
  const first = (await generate(m, [3, 4, 5], { maxNewTokens: 4, eosTokenIds: [] })).tokens;
  const a = s.submit({ prompt: [3, 4, 5], maxNewTokens: 10, eosTokenIds: [], onToken: (_, i) => i === 1 });
  const b = s.submit({ prompt: [3, 4, 5], maxNewTokens: 10, eosTokenIds: [first[2]] });
  const w = s.submit({ prompt: [1], maxNewTokens: 10 });
  w.cancel();
  const [ra, rb, rw] = await Promise.all([a.done, b.done, w.done]);
  assert.deepEqual(ra.tokens, first.slice(0, 2), "stopped after the second token");
  assert.equal(ra.finishReason, "stopped", "stopped by the callback");
  assert.deepEqual(rb.tokens, first.slice(0, 3), "the EOS token is included");
  assert.equal(rb.finishReason, "eos", "eos");
  assert.deepEqual(rw.tokens, [], "never ran");
  assert.equal(rw.finishReason, "cancelled", "cancelled while waiting");
});
