import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { exitAfterTests, gpuBackend } from "./gpu-env.js";
import { GpuModel } from "../src/model/gpu/model.js";
import { TextEngine } from "../src/generate/text.js";
import { cpuOps } from "../src/backends/ops.js";
import { FIXTURES, relErr } from "./helpers.js";

// The prefix cache on the WebGPU decoder (SwiftShader where no GPU is present): forked states copy their rows with
// copyBufferToBuffer, queued after the steps that wrote them.
exitAfterTests();
const gpu = await gpuBackend();

test("webgpu forkState: a forked state continues bit for bit as its source; releasing frees its buffers", async () => {
  for (const name of ["tiny-deepseek-v3", "tiny-llama"]) {
    const m = GpuModel.load(join(FIXTURES, name), gpu);
    const V = m.config.vocabSize, p = Array.from({ length: 13 }, (_, i) => (i * 17 + 3) % V);
    // the same steps once before the count, so that the scratch buffers of each form (a prefill chunk runs naive,
    // a short chunk over cached rows absorbed) have reached their sizes
    const warm = [m.newState(4), m.newState()];
    await m.forward(p.slice(0, 8), warm[0]);
    await m.forward(p.slice(8), warm[0]);
    warm.push(m.forkState(warm[0], 8, 2));
    await m.forward(p.slice(8), warm[2]);
    await m.forward([5], warm[2]);
    await m.forward(p, warm[1]);
    for (const w of warm) m.releaseState(w);
    await gpu.device.queue.onSubmittedWorkDone();
    await new Promise((r) => setTimeout(r, 20));
    const base = gpu.allocatedBytes;
    const a = m.newState(4);
    await m.forward(p.slice(0, 8), a);
    const la = await m.forward(p.slice(8), a);
    const b = m.forkState(a, 8, 2); // capacity below n: the fork holds n
    assert.equal(b.position, 8);
    const lb = await m.forward(p.slice(8), b); // grows b past its capacity
    assert.deepEqual(Array.from(lb), Array.from(la), `${name}: the copied rows give the same logits`);
    const [da, db] = [await m.forward([5], a), await m.forward([5], b)];
    assert.deepEqual(Array.from(db), Array.from(da), `${name}: decode after the fork`);
    const one = m.newState();
    const full = await m.forward(p, one);
    m.releaseState(one);
    const e = relErr(lb, full);
    assert.ok(e < 1e-5, `${name}: fork + suffix vs one prefill: rel err ${e}`);
    assert.throws(() => m.forkState(a, 99), /cannot fork/);
    m.releaseState(a);
    m.releaseState(b);
    await gpu.device.queue.onSubmittedWorkDone();
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(gpu.allocatedBytes, base, `${name}: the states' buffers were released`);
  }
});

test("webgpu scheduler with the prefix cache: hits, shared prompts of concurrent requests, exact against the CPU engine; close frees every cached buffer", async () => {
  const dir = join(FIXTURES, "..", "..", "models", "mla-brown");
  const model = GpuModel.load(dir, gpu);
  const ce = TextEngine.open(dir, { ops: cpuOps, maxCacheBytes: 64 << 20 });
  const history = ce.encode("The jury said it did not know how the election was conducted, and that the city had been");
  const first = await ce.start({ prompt: history, maxTokens: 6, greedy: true }).done;
  const prompts = [history, [...history, ...first.tokens, 5, 6, 7], history.slice(0, 9)];
  // the same work without the cache first, so that the step's scratch buffers have reached their sizes
  const cold = TextEngine.withModel(dir, model, { maxCacheBytes: 64 << 20, maxBatch: 8 });
  for (const p of prompts) await cold.start({ prompt: p, maxTokens: 6, greedy: true }).done;
  await Promise.all([0, 1, 2, 3].map(() => cold.start({ prompt: [...history, 9], maxTokens: 5, greedy: true }).done));
  await cold.close();
  // and once with the cache: a hit's short suffix over copied rows runs the absorbed form, whose scratch differs
  const warm = TextEngine.withModel(dir, model, { maxCacheBytes: 64 << 20, maxBatch: 8, prefixCache: true });
  for (const p of [history, ...prompts]) await warm.start({ prompt: p, maxTokens: 6, greedy: true }).done;
  await Promise.all([0, 1, 2, 3].map(() => warm.start({ prompt: [...history, 9], maxTokens: 5, greedy: true, cache: true }).done));
  await warm.close();
  await gpu.device.queue.onSubmittedWorkDone();
  await new Promise((r) => setTimeout(r, 50));
  const base = gpu.allocatedBytes;
  const ge = TextEngine.withModel(dir, model, { maxCacheBytes: 64 << 20, maxBatch: 8, prefixCache: true });
  assert.deepEqual((await ge.start({ prompt: history, maxTokens: 6, greedy: true }).done).tokens, first.tokens, "the first request, nothing cached");
  for (const p of prompts) {
    const got = await ge.start({ prompt: p, maxTokens: 6, greedy: true }).done;
    const want = await ce.start({ prompt: p, maxTokens: 6, greedy: true }).done;
    assert.ok(got.cachedTokens > 0, "a hit");
    assert.deepEqual(got.tokens, want.tokens, `greedy tokens equal the CPU engine's (${got.cachedTokens} cached)`);
  }
  const four = await Promise.all([0, 1, 2, 3].map(() => ge.start({ prompt: [...history, 9], maxTokens: 5, greedy: true, cache: true }).done));
  const want = await ce.start({ prompt: [...history, 9], maxTokens: 5, greedy: true }).done;
  for (const r of four) assert.deepEqual(r.tokens, want.tokens, "concurrent requests on copied rows");
  assert.ok(four.slice(1).every((r) => r.cachedTokens === history.length), "the later ones copied all but the last prompt token");
  const st = ge.scheduler.stats();
  assert.ok(st.prefixCacheEntries > 0 && st.prefixCacheBytes === st.prefixCacheTokens * ge.model.cacheBytesPerToken);
  await ge.close();
  await gpu.device.queue.onSubmittedWorkDone();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(ge.scheduler.stats().prefixCacheEntries, 0);
  assert.equal(gpu.allocatedBytes, base, "every cached state's buffers were released");
  await ce.close();
});
