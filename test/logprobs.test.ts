import { test, after } from "node:test";
import assert from "node:assert/strict";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { cpuOps } from "../src/backends/ops.js";
import { TextEngine } from "../src/generate/text.js";
import { ApiServer } from "../src/server/server.js";
import { TextTokenizer } from "../src/tokenizer/tokenizer.js";
import {
  TokenBytes, completionLogprobs, logSumExp, promptLogprobs, tokenLogprob, topK, type TokenLogprob,
} from "../src/generate/logprobs.js";
import { randn, relErr } from "./helpers.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const BROWN = join(ROOT, "models/mla-brown");

// ---- the math, against plain references ----

/** log softmax of a row the long way: probabilities in float64, then their logs. */
function refLogSoftmax(row: ArrayLike<number>): Float64Array {
  const xs = Array.from(row), m = Math.max(...xs);
  const e = xs.map((x) => Math.exp(x - m)), s = e.reduce((a, b) => a + b, 0);
  return Float64Array.from(e.map((v) => Math.log(v / s)));
}

/** The k largest ids by a full comparator sort (largest first, ties by the lower id). */
function refTopK(row: ArrayLike<number>, k: number): number[] {
  return Array.from({ length: row.length }, (_, i) => i).filter((i) => !Number.isNaN(row[i])).sort((a, b) => row[b] - row[a] || a - b).slice(0, k);
}

test("logSumExp and tokenLogprob equal log-softmax in float64 (odd vocabulary, large logits)", () => {
  for (const [V, scale, shift, seed] of [[1237, 8, 0, 1], [3, 1, 0, 2], [2049, 30, 700, 3], [1, 5, -40, 4]] as const) {
    const row = randn(V, seed, scale).map((x) => x + shift); // +700: exp overflows without the max shift
    const ref = refLogSoftmax(row);
    const got = Float64Array.from({ length: V }, (_, i) => tokenLogprob(row, i).logprob!);
    // a one-token vocabulary's reference is all zeros (log 1): no relative error there
    const err = V > 1 ? relErr(got, ref) : Math.abs(got[0] - ref[0]);
    assert.ok(err < 1e-12, `V=${V} shift=${shift}: error ${err}`);
    const sumP = got.reduce((a, b) => a + Math.exp(b), 0);
    assert.ok(Math.abs(sumP - 1) < 1e-12, `probabilities sum to 1 (${sumP})`);
  }
  assert.equal(logSumExp(new Float32Array([-Infinity, -Infinity])), -Infinity, "nothing possible: -inf, not NaN");
  const masked = new Float32Array([0, -Infinity, 0]);
  assert.equal(tokenLogprob(masked, 1).logprob, -Infinity, "a banned token has log-probability -inf");
  assert.ok(Math.abs(tokenLogprob(masked, 0).logprob! - Math.log(0.5)) < 1e-15, "the rest share the mass");
});

test("topK equals a full sort's head: ties by the lower id, NaN skipped, k past V", () => {
  for (const [V, seed] of [[1237, 5], [17, 6], [2048, 7]] as const) {
    const row = randn(V, seed, 4);
    for (const k of [0, 1, 2, 5, 20]) assert.deepEqual(topK(row, k), refTopK(row, k), `V=${V} k=${k}`);
    // coarse values: many ties
    const coarse = row.map((x) => Math.round(x));
    for (const k of [1, 3, 20]) assert.deepEqual(topK(coarse, k), refTopK(coarse, k), `ties V=${V} k=${k}`);
  }
  const odd = new Float32Array([NaN, -Infinity, 2, 2, NaN, 7, -Infinity]);
  assert.deepEqual(topK(odd, 10), [5, 2, 3, 1, 6], "NaN left out, -inf last by id, k > V gives all");
  assert.deepEqual(topK(new Float32Array([3, 3, 3]), 2), [0, 1], "equal values: the lower ids");
  const t = tokenLogprob(randn(101, 9, 3), 42, 4);
  const ref = refLogSoftmax(randn(101, 9, 3)), order = refTopK(randn(101, 9, 3), 4);
  assert.deepEqual(t.top.map((x) => x.id), order, "the top-k ids of a token's score");
  for (const x of t.top) assert.ok(Math.abs(x.logprob - ref[x.id]) < 1e-12, "their scores");
});

test("promptLogprobs: row j of a chunk scores the token after its position, and the last row of the prompt none", () => {
  const V = 7, prompt = [3, 1, 4, 1, 5, 2];
  const rows = randn(3 * V, 11, 2); // a chunk of positions 2, 3, 4
  const got = promptLogprobs(rows, V, prompt, 2, 2);
  assert.deepEqual(got.map((e) => e.id), [1, 5, 2], "tokens 3, 4, 5");
  got.forEach((e, j) => {
    const ref = refLogSoftmax(rows.subarray(j * V, (j + 1) * V));
    assert.ok(Math.abs(e.logprob! - ref[e.id]) < 1e-12, `row ${j}`);
    assert.equal(e.top.length, 2, "two alternatives");
  });
  assert.equal(promptLogprobs(randn(3 * V, 12), V, prompt, 3, 0).length, 2, "a final chunk: its last row predicts the first new token");
});

test("TokenBytes: byte-level pieces back to bytes; byte fallback, U+2581 and added tokens", () => {
  const tok = TextTokenizer.load(BROWN)!;
  const tb = new TokenBytes(tok);
  const text = "The naïve café — 日本語 ok";
  const ids = tok.encode(text, false);
  const bytes = ids.flatMap((id) => tb.bytes(id));
  assert.deepEqual(Buffer.from(bytes).toString("utf8"), tok.decode(ids), "the bytes of the tokens make the text");
  const partial = ids.find((id) => tb.text(id).startsWith("bytes:"));
  assert.ok(partial !== undefined, "some token holds part of a character (the test text has multi-byte ones)");
  assert.match(tb.text(partial), /^bytes:(\\x[0-9a-f]{2})+$/, "written as OpenAI does");
  assert.equal(tb.text(0), "<bos>", "an added token is its text");
  assert.equal(tb.text(tok.encode(" the", false)[0]), " the", "a whole word, its leading space included");

  // a sentencepiece-style vocabulary: U+2581 for spaces, <0xNN> pieces for bytes
  const sp = TextTokenizer.fromJson({
    version: "1.0", truncation: null, padding: null, normalizer: null, post_processor: null,
    added_tokens: [{ id: 1, content: "<s>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    pre_tokenizer: { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false },
    model: { type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab: { "<unk>": 0, "<s>": 1, "\u2581the": 2, "<0xC3>": 3, "<0xA9>": 4, a: 5 }, merges: [] },
    decoder: { type: "Sequence", decoders: [{ type: "Replace", pattern: { String: "\u2581" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }] },
  });
  const st = new TokenBytes(sp);
  assert.equal(st.text(2), " the", "U+2581 is a space");
  assert.deepEqual(st.bytes(3), [0xc3], "a byte piece is its byte");
  assert.equal(st.text(3), "bytes:\\xc3", "not text on its own");
  assert.deepEqual(Buffer.from([...st.bytes(3), ...st.bytes(4)]).toString("utf8"), "é", "two byte pieces make é");
  assert.equal(st.text(1), "<s>", "added token");
});

test("completionLogprobs: the chosen token in top_logprobs, -inf as -9999, offsets by token text", () => {
  const tb = new TokenBytes(TextTokenizer.load(BROWN)!);
  const a = 300, b = 301, c = 302;
  const entries: TokenLogprob[] = [
    { id: a, logprob: null, top: [] },
    { id: b, logprob: -2, top: [{ id: c, logprob: -0.5 }] },
    { id: c, logprob: -Infinity, top: [] },
  ];
  const out = completionLogprobs(entries, tb, 5);
  assert.deepEqual(out.tokens, [tb.text(a), tb.text(b), tb.text(c)], "tokens");
  assert.deepEqual(out.token_logprobs, [null, -2, -9999], "scores");
  assert.equal(out.top_logprobs[0], null, "none for the first prompt token");
  assert.deepEqual(out.top_logprobs[1], { [tb.text(c)]: -0.5, [tb.text(b)]: -2 }, "the alternative and the chosen token");
  assert.deepEqual(out.text_offset, [5, 5 + tb.text(a).length, 5 + tb.text(a).length + tb.text(b).length], "offsets");
});

// ---- the server: scores equal log-softmax of the logits the model computes ----

const engine = TextEngine.open(BROWN, { ops: cpuOps, maxCacheBytes: 64 << 20, maxBatch: 8, maxQueue: 16 });
const server = new ApiServer(engine);
const { port } = await server.listen(0, "127.0.0.1");
const BASE = `http://127.0.0.1:${port}`;
const client = new OpenAI({ baseURL: `${BASE}/v1`, apiKey: "unused", maxRetries: 0 });
after(() => server.close());
const V = engine.model.config.vocabSize;

/** Reference log-softmax rows of every position of `ids`, from one forward pass with allLogits. */
async function refRows(ids: readonly number[]): Promise<Float64Array[]> {
  const logits = await engine.model.step([{ ids, state: engine.model.newState(ids.length) }], { allLogits: true });
  return Array.from({ length: ids.length }, (_, t) => refLogSoftmax(logits.subarray(t * V, (t + 1) * V)));
}

async function post(path: string, body: unknown): Promise<{ status: number; body: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const r = await fetch(`${BASE}${path}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  return { status: r.status, body: await r.json() };
}

/** The data events of a streamed reply, parsed ([DONE] dropped, after checking it ends the stream). */
async function events(path: string, body: unknown): Promise<any[]> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const r = await fetch(`${BASE}${path}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  assert.equal(r.status, 200, "stream ok");
  const ev = (await r.text()).split("\n\n").filter((e) => e.length > 0);
  assert.equal(ev[ev.length - 1], "data: [DONE]", "ends with [DONE]");
  return ev.slice(0, -1).map((e) => JSON.parse(e.slice("data: ".length)));
}

const close = (a: number, b: number, tol: number, what: string) => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

test("completions, echo + logprobs + max_tokens 0: every prompt token scored as the model's forward pass says", async () => {
  const prompt = "The jury said that the city was";
  const ids = engine.encode(prompt);
  const r = await client.completions.create({ model: "mla-brown", prompt, max_tokens: 0, echo: true, logprobs: 3, temperature: 0 });
  const c = r.choices[0];
  assert.equal(c.text, prompt, "the text is the prompt");
  assert.equal(c.finish_reason, "length", "finish reason");
  assert.deepEqual(r.usage, { prompt_tokens: ids.length, completion_tokens: 0, total_tokens: ids.length }, "usage");
  const lp = c.logprobs!;
  assert.equal(lp.tokens!.length, ids.length, "one entry per prompt token");
  assert.equal(lp.token_logprobs![0], null, "the first token has no score");
  assert.equal(lp.top_logprobs![0], null, "nor alternatives");
  const ref = await refRows(ids);
  for (let i = 1; i < ids.length; i++) {
    close(lp.token_logprobs![i]!, ref[i - 1][ids[i]], 1e-9, `token ${i}`);
    const top = lp.top_logprobs![i]!;
    const want = refTopK(ref[i - 1], 3);
    for (const t of want) close(top[engine.tokenizer.decode([t])], ref[i - 1][t], 1e-9, `alternative ${t} at ${i}`);
    assert.ok(Object.keys(top).length >= 3 && Object.keys(top).length <= 4, "3 alternatives, plus the token when it is not among them");
  }
  assert.deepEqual(lp.text_offset!.slice(0, 2), [0, lp.tokens![0].length], "offsets from 0");
});

test("lm-evaluation-harness' loglikelihood request: token ids, echo, logprobs 1, max_tokens 1", async () => {
  // what lm_eval/models/openai_completions.py sends (batch size 1), and what parse_logprobs reads
  const ids = engine.encode("It was a long time before the");
  const ctxlen = 4;
  const r = await post("/v1/completions", { model: "mla-brown", prompt: [ids], temperature: 0, max_tokens: 1, logprobs: 1, seed: 1234, echo: true });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const lp = r.body.choices[0].logprobs;
  assert.equal(lp.token_logprobs.length, ids.length + 1, "the prompt's tokens and the new one (which [ctxlen:-1] drops)");
  const ref = await refRows(ids);
  const cont = lp.token_logprobs.slice(ctxlen, -1) as number[];
  const want = ids.slice(ctxlen).map((t, j) => ref[ctxlen + j - 1][t]);
  close(cont.reduce((a, b) => a + b, 0), want.reduce((a, b) => a + b, 0), 1e-8, "the continuation's log-likelihood");
  const greedy = (lp.top_logprobs.slice(ctxlen, -1) as Record<string, number>[]).every((top, j) => cont[j] === Math.max(...Object.values(top)));
  const refGreedy = ids.slice(ctxlen).every((t, j) => refTopK(ref[ctxlen + j - 1], 1)[0] === t);
  assert.equal(greedy, refGreedy, "is_greedy as the harness computes it");
  const last = lp.token_logprobs[ids.length];
  close(last, Math.max(...ref[ids.length - 1]), 1e-9, "the new token (greedy) has the row's best score");
  assert.equal(r.body.choices[0].text.startsWith(engine.tokenizer.decode(ids)), true, "token-id prompts echo their decoded text");
});

test("completions logprobs of generated tokens: the raw distribution (not the tempered one), streamed as in one piece", async () => {
  const prompt = "He said that";
  const ids = engine.encode(prompt);
  for (const temperature of [0, 1.5]) {
    const r = await client.completions.create({ model: "mla-brown", prompt, max_tokens: 6, logprobs: 2, temperature, seed: 7 });
    const lp = r.choices[0].logprobs!;
    const gen = lp.tokens!.map((_, i) => i);
    assert.equal(gen.length, r.usage!.completion_tokens, "one entry per new token");
    const newIds = engine.tokenizer.encode(r.choices[0].text, false);
    const all = [...ids, ...newIds.slice(0, gen.length)];
    if (newIds.length === gen.length) {
      // when the text re-encodes to the same tokens, score them with one forward pass (decode and prefill agree closely)
      const ref = await refRows(all);
      for (let i = 0; i < gen.length; i++) close(lp.token_logprobs![i]!, ref[ids.length - 1 + i][all[ids.length + i]], 1e-4, `T=${temperature} new token ${i}`);
    }
    const s = await client.completions.create({ model: "mla-brown", prompt, max_tokens: 6, logprobs: 2, temperature, seed: 7, stream: true });
    const tokens: string[] = [], scores: number[] = [];
    let text = "";
    for await (const ch of s) {
      text += ch.choices[0]?.text ?? "";
      tokens.push(...(ch.choices[0]?.logprobs?.tokens ?? []));
      scores.push(...((ch.choices[0]?.logprobs?.token_logprobs ?? []) as number[]));
    }
    assert.equal(text, r.choices[0].text, "same text");
    assert.deepEqual(tokens, lp.tokens, "same tokens streamed");
    assert.deepEqual(scores, lp.token_logprobs, "same scores streamed");
  }
  // the first new token's score from the prompt's last row: raw even at temperature 1.5
  const ref = await refRows(ids);
  const r = await client.completions.create({ model: "mla-brown", prompt, max_tokens: 1, logprobs: 0, temperature: 1.5, seed: 3 });
  const lp = r.choices[0].logprobs!;
  const id = engine.tokenizer.encode(r.choices[0].text, false)[0];
  if (engine.tokenizer.decode([id]) === lp.tokens![0]) close(lp.token_logprobs![0]!, ref[ids.length - 1][id], 1e-9, "raw score of a sampled token");
  assert.deepEqual(Object.keys(lp.top_logprobs![0]!), [lp.tokens![0]], "logprobs 0: the chosen token only");
});

test("completions echo streamed: the prompt (scored) first, then the completion", async () => {
  const body = { model: "mla-brown", prompt: "The city was", max_tokens: 3, echo: true, logprobs: 1, temperature: 0 };
  const whole = await post("/v1/completions", body);
  const ev = await events("/v1/completions", { ...body, stream: true });
  const text = ev.map((e) => e.choices[0]?.text ?? "").join("");
  assert.equal(text, whole.body.choices[0].text, "same text, the prompt included");
  assert.equal(ev[0].choices[0].text, "The city was", "the first chunk is the prompt");
  const streamed = ev.flatMap((e) => e.choices[0]?.logprobs?.token_logprobs ?? []);
  assert.deepEqual(streamed, whole.body.choices[0].logprobs.token_logprobs, "same scores");
  const offsets = ev.flatMap((e) => e.choices[0]?.logprobs?.text_offset ?? []);
  assert.deepEqual(offsets, whole.body.choices[0].logprobs.text_offset, "same offsets");
  const plain = await post("/v1/completions", { model: "mla-brown", prompt: "The city was", max_tokens: 2, echo: true, temperature: 0 });
  assert.ok(plain.body.choices[0].text.startsWith("The city was"), "echo without logprobs");
  assert.equal(plain.body.choices[0].logprobs, null, "and no scores");
});

test("chat logprobs with top_logprobs, streamed and not, equal log-softmax of the model's logits", async () => {
  const messages = [{ role: "user" as const, content: "Tell me about the jury." }];
  const r = await client.chat.completions.create({ model: "mla-brown", messages, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 3 });
  const content = r.choices[0].logprobs!.content!;
  assert.equal(content.length, r.usage!.completion_tokens, "one entry per new token");
  assert.equal(r.choices[0].logprobs!.refusal, null, "refusal: null");
  const promptIds = engine.encodeChat(messages);
  // greedy: each new token is its row's argmax, so the tokens are the top-1 alternatives' ids
  const newIds: number[] = [];
  let all = [...promptIds];
  for (let i = 0; i < content.length; i++) {
    const ref = (await refRows(all))[all.length - 1];
    const best = refTopK(ref, 3);
    assert.equal(content[i].top_logprobs.length, 3, "3 alternatives");
    best.forEach((t, j) => {
      assert.deepEqual(content[i].top_logprobs[j].bytes, [...new TokenBytes(engine.tokenizer).bytes(t)], `alternative ${j} bytes`);
      close(content[i].top_logprobs[j].logprob, ref[t], 1e-4, `alternative ${j} of token ${i}`);
    });
    close(content[i].logprob, ref[best[0]], 1e-4, `token ${i}: the greedy token's score`);
    newIds.push(best[0]);
    all = [...all, best[0]];
  }
  const text = Buffer.from(content.flatMap((c) => c.bytes ?? [])).toString("utf8");
  if (r.choices[0].finish_reason === "length") assert.equal(text, r.choices[0].message.content, "the bytes make the content");

  const ev = await events("/v1/chat/completions", { model: "mla-brown", messages, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 3, stream: true, stream_options: { include_usage: true } });
  const streamed = ev.flatMap((e) => e.choices[0]?.logprobs?.content ?? []);
  assert.deepEqual(streamed, content, "streamed scores equal the non-streamed ones");
  for (const e of ev.slice(0, -1)) assert.equal(e.usage, null, "include_usage: usage null on every chunk but the last");
  const last = ev[ev.length - 1];
  assert.deepEqual(last.choices, [], "the last chunk has no choices");
  assert.deepEqual(last.usage, r.usage, "and the usage");
  const plain = await client.chat.completions.create({ model: "mla-brown", messages, max_tokens: 2, temperature: 0 });
  assert.equal(plain.choices[0].logprobs, null, "no logprobs unless asked");
  const noTop = await client.chat.completions.create({ model: "mla-brown", messages, max_tokens: 2, temperature: 0, logprobs: true });
  assert.deepEqual(noTop.choices[0].logprobs!.content!.map((c) => c.top_logprobs.length), [0, 0], "logprobs without top_logprobs: no alternatives");
});

test("logprobs validation: one-line 400s that name the field", async () => {
  const cases: [string, object, string][] = [
    ["/v1/completions", { prompt: "a", max_tokens: 0 }, "max_tokens"],
    ["/v1/completions", { prompt: "a", logprobs: 21 }, "logprobs"],
    ["/v1/completions", { prompt: "a", logprobs: true }, "logprobs"],
    ["/v1/completions", { prompt: "a", logprobs: 1.5 }, "logprobs"],
    ["/v1/completions", { prompt: "a", echo: "yes" }, "echo"],
    ["/v1/chat/completions", { messages: [{ role: "user", content: "a" }], top_logprobs: 2 }, "top_logprobs"],
    ["/v1/chat/completions", { messages: [{ role: "user", content: "a" }], logprobs: true, top_logprobs: 21 }, "top_logprobs"],
    ["/v1/chat/completions", { messages: [{ role: "user", content: "a" }], logprobs: 1 }, "logprobs"],
    ["/v1/chat/completions", { messages: [{ role: "user", content: "a" }], max_tokens: 0 }, "max_tokens"],
  ];
  for (const [path, body, param] of cases) {
    const r = await post(path, body);
    assert.equal(r.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.param, param, `param of ${JSON.stringify(body)}`);
    assert.ok(!r.body.error.message.includes("\n") && r.body.error.message.includes(param), `one line naming ${param}: ${r.body.error.message}`);
  }
  const off = await post("/v1/completions", { prompt: "a", max_tokens: 1, logprobs: null, echo: false });
  assert.equal(off.status, 200, "null and false mean off");
  assert.equal(off.body.choices[0].logprobs, null, "no scores");
});

test("scheduler: sampled tokens' scores are of the raw logits, not the tempered ones, decoded as prefilled", async () => {
  const prompt = engine.encode("The members of the committee");
  const job = engine.start({ prompt, maxTokens: 6, temperature: 1.5, seed: 11, logprobs: 2, ignoreEos: true });
  const r = await job.done;
  assert.equal(r.logprobs!.length, 6, "one score per new token");
  const all = [...prompt, ...r.tokens];
  const logits = await engine.model.step([{ ids: all, state: engine.model.newState(all.length) }], { allLogits: true });
  let tempered = 0;
  r.logprobs!.forEach((e, i) => {
    const row = logits.subarray((prompt.length - 1 + i) * V, (prompt.length + i) * V);
    const raw = refLogSoftmax(row), hot = refLogSoftmax(row.map((x) => x / 1.5));
    assert.equal(e.id, r.tokens[i], "the score is of the chosen token");
    close(e.logprob!, raw[e.id], 1e-4, `token ${i}`);
    tempered = Math.max(tempered, Math.abs(hot[e.id] - raw[e.id]));
    assert.deepEqual(e.top.map((t) => t.id), refTopK(raw, 2), `token ${i}'s alternatives`);
  });
  assert.ok(tempered > 1e-2, `the tempered scores differ (${tempered}), so the check above tells them apart`);
});

test("a scored prompt longer than a prefill chunk, in company: the same scores, and the others' tokens unchanged", async () => {
  const long = engine.encode("The jury further said in term-end presentments that the City Executive Committee, which had over-all charge of the election, deserves the praise and thanks of the City of Atlanta for the manner in which the election was conducted. ".repeat(7));
  assert.ok(long.length > 256 && long.length < 512, `${long.length} tokens: two prefill chunks`);
  const others = ["It was", "He said that the"].map((p) => engine.encode(p));
  const alone = await Promise.all(others.map((prompt) => engine.start({ prompt, maxTokens: 12, ignoreEos: true }).done));
  const together = [
    engine.start({ prompt: long, maxTokens: 2, promptLogprobs: true, logprobs: 1 }).done,
    ...others.map((prompt) => engine.start({ prompt, maxTokens: 12, ignoreEos: true }).done),
  ];
  const [scored, ...rest] = await Promise.all(together);
  rest.forEach((r, i) => assert.deepEqual(r.tokens, alone[i].tokens, `sequence ${i} decodes the same beside a scored prompt`));
  const lps = scored.promptLogprobs!;
  assert.equal(lps.length, long.length, "every prompt token");
  assert.deepEqual(lps.map((e) => e.id), long, "in order");
  const ref = await refRows(long);
  const got = lps.slice(1).map((e) => e.logprob!), want = long.slice(1).map((t, i) => ref[i][t]);
  assert.ok(relErr(got, want) < 1e-5, `chunked prefill scores = one pass's (rel err ${relErr(got, want)})`);
  assert.equal(scored.logprobs!.length, 2, "and the new tokens are scored too");
});
