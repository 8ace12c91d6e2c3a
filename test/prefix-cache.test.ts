import { test, after } from "node:test";
import assert from "node:assert/strict";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel } from "../src/model/load.js";
import type { CausalLM, ModelState } from "../src/model/causal-lm.js";
import type { InferenceModel, SequenceState } from "../src/model/inference.js";
import { cpuOps, type Ops } from "../src/backends/ops.js";
import { WasmOps } from "../src/backends/wasm/ops.js";
import type { CacheDType } from "../src/attention/cache.js";
import { generate } from "../src/generate/generate.js";
import { BatchScheduler, type SequenceRequest, type SequenceResult } from "../src/generate/batch.js";
import { PrefixCache, commonPrefix } from "../src/generate/prefix-cache.js";
import { TextEngine } from "../src/generate/text.js";
import { ChatTemplate } from "../src/tokenizer/chat.js";
import { FIXTURES, relErr } from "./helpers.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const ops2 = await WasmOps.create({ threads: 2, minParallelWork: 0 });
after(() => ops2.close());
const BACKENDS: [string, Ops][] = [["cpu-scalar", cpuOps], ["wasm 2 threads", ops2]];
/** MLA with MoE (F32 and both 16-bit latent caches), and GQA's K/V caches. */
const CASES: [string, CacheDType][] = [["tiny-deepseek-v3", "F32"], ["tiny-deepseek-v3", "F16"], ["tiny-deepseek-v3", "BF16"], ["tiny-llama", "F32"]];

function ids(n: number, seed: number, vocab: number): number[] {
  return Array.from({ length: n }, (_, i) => (seed * 31 + i * 17 + 3) % vocab);
}

type Model = CausalLM<ModelState> & InferenceModel<ModelState> & { forkState(src: ModelState, n: number, capacity?: number): ModelState };

function load(name: string, ops: Ops, cacheType: CacheDType): Model {
  return loadModel(join(FIXTURES, name), { ops, cacheType }) as unknown as Model;
}

/** The model, counting the tokens its steps compute (what a prefix hit saves). */
function counting<S extends SequenceState>(m: InferenceModel<S>): { model: InferenceModel<S>; computed: () => number } {
  let n = 0;
  const model: InferenceModel<S> = {
    config: m.config, backendName: m.backendName, cacheBytesPerToken: m.cacheBytesPerToken,
    newState: (c) => m.newState(c), releaseState: (s) => m.releaseState(s), fillContext: (s, k, r) => m.fillContext(s, k, r),
    forkState: (s, k, c) => m.forkState!(s, k, c),
    step: (items, o) => {
      for (const it of items) n += it.ids.length;
      return m.step(items, o);
    },
  };
  return { model, computed: () => n };
}

const run = (s: BatchScheduler, req: SequenceRequest): Promise<SequenceResult> => s.submit(req).done;

for (const [bname, ops] of BACKENDS) {
  for (const [name, dt] of CASES) {
    test(`${name} (${dt} cache) on ${bname}: a forked state continues bit for bit as its source, and independently`, () => {
      const m = load(name, ops, dt);
      const V = m.config.vocabSize, p = ids(13, 7, V);
      const a = m.newState(4); // grows while prefilling
      m.forward(p.slice(0, 8), a);
      const la = m.forward(p.slice(8), a);
      const b = m.forkState(a, 8, 20);
      assert.equal(b.position, 8, "the fork holds 8 positions");
      assert.equal(b.cacheBytes, 8 * m.cacheBytesPerToken, "exact bytes");
      const lb = m.forward(p.slice(8), b);
      assert.deepEqual(Array.from(lb), Array.from(la), "the same rows give the same logits, bit for bit");
      // decoding on the fork leaves the source's rows alone: both decode the same next tokens alike
      const da = m.forward([5], a), db = m.forward([5], b);
      assert.deepEqual(Array.from(db), Array.from(da), "decode after the fork");
      // against one prefill of the whole prompt (other chunk boundaries): equal up to rounding
      const full = m.forward(p, m.newState());
      const e = relErr(lb, full);
      assert.ok(e < (dt === "F32" ? 1e-5 : 1e-4), `fork + suffix vs full prefill: rel err ${e}`);
      assert.throws(() => m.forkState(a, a.position + 1), /cannot fork/);
      const empty = m.forkState(a, 0, 3);
      assert.equal(empty.position, 0, "a fork of nothing is a fresh state");
    });
  }
}

for (const [bname, ops] of BACKENDS) {
  for (const [name, dt] of CASES) {
    test(`${name} (${dt} cache) on ${bname}: the scheduler's prefix hits (repeat, extension, partial) give the tokens a scheduler without the cache gives`, async () => {
      const m = load(name, ops, dt);
      const V = m.config.vocabSize;
      const plain = new BatchScheduler(m, { maxCacheBytes: 1 << 24, prefillChunk: 4 });
      const { model, computed } = counting(m);
      const cached = new BatchScheduler(model, { maxCacheBytes: 1 << 24, prefillChunk: 4, prefixCache: true });
      const base = ids(12, 3, V);
      // each request after the first shares a prefix with what is cached: the base prompt and its 5 new tokens
      const first = await run(plain, { prompt: base, maxNewTokens: 5, eosTokenIds: [] });
      const prompts = [
        base, // the same prompt again: all but its last token
        [...base, ...first.tokens, 9, 10], // the first turn's prompt and reply, then more (a chat's next turn)
        [...base.slice(0, 6), 77 % V, 78 % V, 79 % V], // a partial match
        [...base, ...first.tokens.slice(0, 2)],
      ];
      const want = [0, 11, 12 + 4, 6, 12 + 2 - 1];
      let before = computed();
      const r0 = await run(cached, { prompt: base, maxNewTokens: 5, eosTokenIds: [] });
      assert.deepEqual(r0.tokens, first.tokens, "the first request, nothing cached");
      assert.equal(r0.cachedTokens, 0);
      assert.equal(computed() - before, base.length + 4, "the prompt and 4 decode steps");
      for (const [i, prompt] of prompts.entries()) {
        const ref = await run(plain, { prompt, maxNewTokens: 5, eosTokenIds: [] });
        before = computed();
        const got = await run(cached, { prompt, maxNewTokens: 5, eosTokenIds: [] });
        assert.equal(got.cachedTokens, want[i + 1], `request ${i}: cached tokens`);
        assert.equal(computed() - before, prompt.length - got.cachedTokens + 4, `request ${i}: only the uncached prompt tokens were computed`);
        assert.deepEqual(got.tokens, ref.tokens, `request ${i}: greedy tokens equal those without the cache`);
        assert.equal(got.promptTokens, prompt.length);
      }
      const st = cached.stats();
      assert.equal(st.prefixCache, true);
      assert.equal(st.promptTokens, base.length + prompts.reduce((s, p) => s + p.length, 0), "prompt tokens of every request");
      assert.equal(st.cachedPromptTokens, want.reduce((a, b) => a + b, 0), "cached prompt tokens");
      assert.equal(st.prefixCacheHits, 4, "four hits");
      assert.equal(st.prefixCacheBytes, st.prefixCacheTokens * m.cacheBytesPerToken, "entries hold exactly their rows");
      assert.equal(st.reservedBytes, 0, "nothing reserved once idle");
      assert.equal(st.cacheBytes, 0, "no running sequence holds rows");
      cached.close();
      assert.equal(cached.stats().prefixCacheEntries, 0, "close empties the cache");
    });
  }
}

for (const name of ["tiny-deepseek-v3", "tiny-mistral"]) {
  test(`${name}: concurrent requests that share a prompt compute it once (the others wait for its rows) and equal alone`, async () => {
    const m = loadModel(join(FIXTURES, name));
    const V = m.config.vocabSize;
    const p = ids(21, 5, V);
    const alone = await generate(m, p, { maxNewTokens: 4, eosTokenIds: [] });
    const { model, computed } = counting(m);
    // no scheduler-wide cache: the requests themselves share (as the server's n > 1 choices do)
    const s = new BatchScheduler(model, { maxCacheBytes: 1 << 24, prefillChunk: 8 });
    const rs = await Promise.all([0, 1, 2, 3].map(() => run(s, { prompt: p, maxNewTokens: 4, eosTokenIds: [], cache: true })));
    assert.deepEqual(rs.map((r) => r.cachedTokens), [0, 20, 20, 20], "the first computes the prompt, the others copy all but its last token");
    assert.equal(computed(), p.length + 3 * 1 + 4 * 3, "the prompt once, three last tokens, three decode steps each");
    for (const r of rs) assert.deepEqual(r.tokens, rs[0].tokens, "the same greedy tokens");
    // a single prefill (one chunk) and the scheduler's chunks of 8 round alike here
    assert.deepEqual(rs[0].tokens, alone.tokens, "and those of generate()");
    const st = s.stats();
    assert.equal(st.prefixCacheEntries, 1, "the four finished sequences hold the same prefix: one entry is kept");
    assert.equal(st.prefixCacheHits, 3, "three sequences started from copied rows");
    assert.ok(st.maxBatchSeen >= 4, "decoded together");
    // a request without `cache` does not share while running, and is not kept
    const t = new BatchScheduler(m, { maxCacheBytes: 1 << 24, prefillChunk: 8 });
    const ts = await Promise.all([0, 1].map(() => run(t, { prompt: p, maxNewTokens: 2, eosTokenIds: [] })));
    assert.deepEqual(ts.map((r) => r.cachedTokens), [0, 0]);
    assert.equal(t.stats().prefixCacheEntries, 0);
  });
}

test("eviction: cached rows use the idle budget only; admissions evict the least recently used, the one they copy last; results stay exact", async () => {
  const m = loadModel(join(FIXTURES, "tiny-deepseek-v3"));
  const V = m.config.vocabSize, bpt = m.cacheBytesPerToken;
  const plain = new BatchScheduler(m, { maxCacheBytes: 1 << 24 });
  // room for 64 tokens: a running sequence of 16 + 8 leaves 40 for cached prefixes (23 tokens each)
  const s = new BatchScheduler(m, { maxCacheBytes: 64 * bpt, prefixCache: true });
  let worst = 0;
  const watch = (): void => {
    const st = s.stats();
    worst = Math.max(worst, st.reservedBytes + st.prefixCacheBytes);
  };
  const a = ids(16, 1, V), b = ids(16, 2, V), c = ids(16, 3, V);
  const go = (prompt: number[]) => run(s, { prompt, maxNewTokens: 8, eosTokenIds: [], onToken: watch });
  const exact = async (r: SequenceResult, prompt: number[]) =>
    assert.deepEqual(r.tokens, (await run(plain, { prompt, maxNewTokens: 8, eosTokenIds: [] })).tokens, "the tokens computed without a cache");
  assert.equal((await go(a)).cachedTokens, 0);
  assert.equal(s.stats().prefixCacheTokens, 23, "a's prompt and the 7 new tokens fed back are cached");
  assert.equal((await go(b)).cachedTokens, 0);
  assert.deepEqual([s.stats().prefixCacheEntries, s.stats().prefixCacheEvictions], [2, 0], "both fit beside nothing running");
  assert.equal((await go(c)).cachedTokens, 0);
  assert.equal(s.stats().prefixCacheEvictions, 1, "c's admission evicted the least recently used (a)");
  const rb = await go(b);
  assert.equal(rb.cachedTokens, 15, "b's entry, older than c's, was kept for it: c's went instead");
  assert.equal(s.stats().prefixCacheEvictions, 2);
  await exact(rb, b);
  const ra = await go(a);
  assert.equal(ra.cachedTokens, 0, "a was evicted");
  await exact(ra, a);
  const all = await Promise.all([go(a), go(b), go(c)]);
  for (const [i, p] of [a, b, c].entries()) await exact(all[i], p);
  assert.ok(worst <= 64 * bpt, `reserved + cached stayed within the budget (${worst} of ${64 * bpt} bytes)`);
  const st = s.stats();
  assert.ok(st.prefixCacheBytes + st.reservedBytes <= st.maxCacheBytes);
  assert.equal(st.reservedBytes, 0);
});

test("PrefixCache: longest match, LRU eviction with the kept entry last, redundant entries dropped", () => {
  const released: string[] = [];
  const st = (name: string): SequenceState => ({ position: 0, cacheBytes: 0, name }) as unknown as SequenceState;
  const pc = new PrefixCache((s) => released.push((s as unknown as { name: string }).name));
  assert.equal(commonPrefix([1, 2, 3], [1, 2, 4]), 2);
  assert.equal(commonPrefix([1, 2, 3], [1, 2, 3], 2), 2, "limit");
  assert.ok(pc.insert([1, 2, 3], st("a"), 30));
  assert.ok(pc.insert([5, 6], st("b"), 20));
  assert.ok(pc.insert([1, 2, 3, 4, 5], st("c"), 50), "c extends a");
  assert.deepEqual(released, ["a"], "a is redundant now");
  assert.equal(pc.insert([5], st("d"), 10), false, "b holds [5] already");
  assert.equal(pc.stats().entries, 2);
  assert.equal(pc.stats().bytes, 70);
  const m = pc.match([1, 2, 3, 9], 3)!;
  assert.equal(m.rows, 3);
  pc.touch(m.entry); // c most recent; b least
  pc.evictTo(50, null);
  assert.deepEqual(released, ["a", "b"], "the least recently used goes first");
  assert.ok(pc.insert([7, 7], st("e"), 20));
  pc.evictTo(50, m.entry); // e is newer than c, but c is kept
  assert.deepEqual(released, ["a", "b", "e"], "the kept entry goes last");
  pc.evictTo(0, m.entry);
  assert.deepEqual(released, ["a", "b", "e", "c"], "and goes when nothing else is left");
  assert.equal(pc.stats().evictions, 3);
  assert.equal(pc.match([1], 1), null);
});

test("AbortSignal: an aborted request leaves the queue, an abort stops a running sequence at once; generate() rejects", async () => {
  const m = loadModel(join(FIXTURES, "tiny-mla-dense"));
  const s = new BatchScheduler(m, { maxCacheBytes: 1 << 24, prefixCache: true });
  const pre = new AbortController();
  pre.abort();
  const r0 = await run(s, { prompt: [1, 2, 3], maxNewTokens: 5, signal: pre.signal });
  assert.deepEqual([r0.finishReason, r0.tokens.length], ["cancelled", 0], "already aborted: nothing runs");
  const ctl = new AbortController();
  let seen = 0;
  const h = s.submit({
    prompt: [4, 5, 6, 7], maxNewTokens: 200, eosTokenIds: [], signal: ctl.signal,
    onToken: () => {
      if (++seen === 3) ctl.abort();
    },
  });
  const r = await h.done;
  assert.equal(r.finishReason, "cancelled");
  assert.equal(r.tokens.length, 3, "no token after the abort");
  const st = s.stats();
  assert.equal(st.reservedBytes, 0, "its reservation returned");
  assert.equal(st.prefixCacheTokens, 4 + 2, "its computed rows stay cached: the prompt and the new tokens fed back");
  // a queued request that is aborted never starts
  const busy = new BatchScheduler(m, { maxCacheBytes: 1 << 24, maxBatch: 1 });
  const long = busy.submit({ prompt: [1], maxNewTokens: 50, eosTokenIds: [] });
  const q = new AbortController();
  const queued = busy.submit({ prompt: [2], maxNewTokens: 5, signal: q.signal });
  q.abort();
  assert.deepEqual((await queued.done).tokens, []);
  assert.equal((await long.done).tokens.length, 50);

  const g = new AbortController();
  const got: number[] = [];
  await assert.rejects(generate(m, [1, 2, 3], { maxNewTokens: 50, eosTokenIds: [], signal: g.signal, onToken: (t, i) => (got.push(t), i === 4 && g.abort()) }), { name: "AbortError" });
  assert.equal(got.length, 5, "stopped before the next step");
});

// A ChatML-like template whose generation prompt is followed directly by the reply, with mla-brown's tokenizer
const TEMPLATE = "{{ bos_token }}{% for message in messages %}### {{ message['role'] }}\n{{ message['content'] }}{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}### assistant\n{% endif %}";

test("chatSession: turn 2 computes only its new tokens (the history's rows come from the cache); send and stream; abort keeps the history", async () => {
  const dir = join(ROOT, "models/mla-brown");
  const base = TextEngine.open(dir, { ops: cpuOps, maxCacheBytes: 64 << 20 });
  const { model, computed } = counting(base.model);
  const chat = new ChatTemplate(TEMPLATE, { bos_token: "<bos>", eos_token: "<eos>" });
  const engine = new TextEngine("brown", model, base.tokenizer, chat, base.stopIds, { maxCacheBytes: 64 << 20 });
  const session = engine.chatSession({ system: "You answer in one sentence.", greedy: true, maxTokens: 12 });
  const r1 = await session.send("Tell me about the jury.");
  assert.equal(r1.cachedTokens, 0, "turn 1: nothing cached");
  const reply = r1.tokens.filter((t) => !engine.stopIds.includes(t));
  const before = computed();
  const deltas: string[] = [];
  const it = session.stream("What did they say?");
  let next = await it.next();
  for (; !next.done; next = await it.next()) deltas.push(next.value);
  const r2 = next.value;
  // turn 1's rows: its prompt and every reply token fed back (the last one is not, when the reply ran to its limit)
  const held = r1.promptTokens + reply.length - (r1.finishReason === "length" ? 1 : 0);
  assert.equal(r2.cachedTokens, held, "turn 2 copies turn 1's prompt and reply rows");
  const newTokens = r2.promptTokens - held;
  assert.equal(computed() - before, newTokens + r2.completionTokens - 1, `turn 2 computed its ${newTokens} new prompt tokens and its decode steps only`);
  assert.equal(deltas.join(""), r2.text, "streamed deltas make the reply");
  assert.deepEqual(session.messages.map((x) => x.role), ["system", "user", "assistant", "user", "assistant"]);
  assert.equal(session.messages[2].content, r1.text);
  // the same prompt without any cache gives the same reply
  const fresh = new TextEngine("brown", base.model, base.tokenizer, chat, base.stopIds, { maxCacheBytes: 64 << 20 });
  // turn 2's prompt: turn 1's prompt ids and reply ids, then the rest of the rendered history encoded
  const text1 = engine.renderChat(session.messages.slice(0, 2)), text2 = engine.renderChat(session.messages.slice(0, 4));
  const ids2 = [...engine.tokenizer.encode(text1, false), ...reply, ...engine.tokenizer.encode(text2.slice(text1.length + r1.text.length), false)];
  assert.equal(ids2.length, r2.promptTokens, "turn 2's prompt");
  assert.equal(engine.tokenizer.decode(ids2, false), text2, "which reads as the rendered history");
  const ref = await fresh.start({ prompt: ids2, maxTokens: 12, greedy: true }).done;
  assert.deepEqual(r2.tokens, ref.tokens, "turn 2 equals the same chat computed from scratch");
  // an aborted turn leaves the history as it was
  const ctl = new AbortController();
  const r3 = await session.send("And then?", { signal: ctl.signal, onText: () => ctl.abort() });
  assert.equal(r3.finishReason, "cancelled");
  assert.equal(session.messages.length, 5, "no turn was added");
  // leaving a streamed turn early cancels it
  for await (const piece of session.stream("Tell me more.")) {
    assert.ok(piece.length > 0);
    break;
  }
  assert.equal(session.messages.length, 5, "the abandoned turn was not added");
  await assert.rejects(Promise.all([session.send("a"), session.send("b")]), /one turn at a time/);
  // the default template (a space after "assistant:" that the reply does not start with) still reuses the prompt
  const plainSession = base.chatSession({ greedy: true, maxTokens: 6 });
  const p1 = await plainSession.send("Hello there.");
  const p2 = await plainSession.send("Go on.");
  assert.ok(p2.cachedTokens >= p1.promptTokens, `turn 2 reuses at least turn 1's prompt (${p2.cachedTokens} of ${p1.promptTokens})`);
  await Promise.all([engine.close(), base.close(), fresh.close()]);
});
