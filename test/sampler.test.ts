import { test } from "node:test";
import assert from "node:assert/strict";
import { Sampler, argmax, byLogitDesc } from "../src/generate/sampler.js";
import { MlaError } from "../src/errors.js";
import { randn } from "./helpers.js";

/** Reference: softmax(logits / T) restricted to `keep` (indices), renormalised; zero elsewhere. */
function probs(logits: ArrayLike<number>, T: number, keep?: number[]): number[] {
  const idx = keep ?? Array.from({ length: logits.length }, (_, i) => i);
  const m = Math.max(...idx.map((i) => logits[i] / T));
  const p = new Array(logits.length).fill(0);
  let z = 0;
  for (const i of idx) z += p[i] = Math.exp(logits[i] / T - m);
  return p.map((v) => v / z);
}

function frequencies(s: Sampler, logits: Float32Array, n: number): number[] {
  const f = new Array(logits.length).fill(0);
  for (let i = 0; i < n; i++) f[s.sample(logits)]++;
  return f.map((c) => c / n);
}

/** Frequencies within 5 binomial standard deviations (+0.002) of the probabilities: about 1.5 points at p = 0.4. */
function assertClose(freq: number[], p: number[], n: number, tag: string): void {
  for (let i = 0; i < p.length; i++) {
    const tol = 5 * Math.sqrt((p[i] * (1 - p[i])) / n) + 0.002;
    assert.ok(Math.abs(freq[i] - p[i]) <= tol, `${tag}: token ${i} frequency ${freq[i].toFixed(4)} vs probability ${p[i].toFixed(4)}`);
    if (p[i] === 0) assert.equal(freq[i], 0, `${tag}: token ${i} must never be drawn`);
  }
}

const N = 20000;
// 9 tokens, distinct logits (no ties), a spread of probabilities
const LOGITS = new Float32Array([0.3, 2.1, -1.2, 1.4, 0.9, -0.4, 1.9, -2.5, 0.05]);

test("argmax picks the first of tied maxima, honours offset and length", () => {
  assert.equal(argmax([1, 3, 3, 2]), 1);
  assert.equal(argmax([5, 5, 5]), 0);
  assert.equal(argmax(new Float32Array([-1, -0.5, -0.5, -3])), 1);
  assert.equal(argmax([9, 1, 4, 4, 2, 9], 1, 4), 1); // relative to the offset: element 2
  assert.equal(argmax([9, 1, 2, 3, 7, 9], 1, 4), 3);
  const r = randn(37, 4001);
  let best = 0;
  for (let i = 1; i < r.length; i++) if (r[i] > r[best]) best = i;
  assert.equal(argmax(r), best);
});

test("greedy ignores the seed and the sampling settings; temperature 0 is greedy", () => {
  for (let row = 0; row < 20; row++) {
    const l = randn(37, 4100 + row, 3);
    const want = argmax(l);
    for (const opts of [{ greedy: true, seed: 1 }, { greedy: true, seed: 999 }, { greedy: true, temperature: 5, topK: 3, seed: 7 }, { temperature: 0, seed: 3 }, { temperature: 0 }]) {
      const s = new Sampler(opts);
      assert.equal(s.greedy, true);
      assert.equal(s.sample(l), want, JSON.stringify(opts));
    }
  }
  // ties under greedy: the first
  assert.equal(new Sampler({ greedy: true }).sample(new Float32Array([0, 2, 1, 2])), 1);
  assert.equal(new Sampler({ temperature: 1, seed: 1 }).greedy, false);
});

test("same seed gives the same sequence, different seeds differ", () => {
  const rows = Array.from({ length: 60 }, (_, i) => randn(13, 4200 + i, 1));
  const run = (seed: number, extra = {}) => {
    const s = new Sampler({ temperature: 1, seed, ...extra });
    return rows.map((r) => s.sample(r));
  };
  assert.deepEqual(run(42), run(42));
  assert.deepEqual(run(42, { topK: 5, topP: 0.9 }), run(42, { topK: 5, topP: 0.9 }));
  assert.notDeepEqual(run(42), run(43));
  assert.notDeepEqual(run(1), run(2));
  // not all the same token (the draws are actually random)
  assert.ok(new Set(run(42)).size > 3, "expected new Set(run(42)).size > 3");
});

test("top-k = 1 and a tiny top-p equal greedy; temperature -> 0 behaves greedily", () => {
  for (let row = 0; row < 40; row++) {
    const l = randn(37, 4300 + row, 2);
    const want = argmax(l);
    assert.equal(new Sampler({ temperature: 1, topK: 1, seed: row }).sample(l), want, `top-k 1 row ${row}`);
    assert.equal(new Sampler({ temperature: 1.5, topP: 1e-9, seed: row }).sample(l), want, `top-p tiny row ${row}`);
    assert.equal(new Sampler({ temperature: 1e-4, seed: row }).sample(l), want, `temperature 1e-4 row ${row}`);
  }
  // over many draws too
  const s = new Sampler({ temperature: 1e-3, seed: 5 });
  for (let i = 0; i < 500; i++) assert.equal(s.sample(LOGITS), 1);
});

test("empirical frequencies match softmax(logits / T) (seeded, 20000 draws)", () => {
  for (const [T, seed] of [[1, 11], [0.7, 12], [2, 13]] as const) {
    const f = frequencies(new Sampler({ temperature: T, seed }), LOGITS, N);
    assertClose(f, probs(LOGITS, T), N, `T=${T}`);
  }
  // the check can fail: frequencies at T=1 do not match T=0.5 probabilities
  const f1 = frequencies(new Sampler({ temperature: 1, seed: 14 }), LOGITS, N);
  const p05 = probs(LOGITS, 0.5);
  assert.ok(f1.some((v, i) => Math.abs(v - p05[i]) > 0.05), "expected f1.some((v, i) => Math.abs(v - p05[i]) > 0.05)");
});

test("top-k and top-p keep the right tokens and renormalise", () => {
  const order = Array.from(LOGITS.keys()).sort((a, b) => LOGITS[b] - LOGITS[a]); // 1, 6, 3, 4, 0, 8, 5, 2, 7
  // top-k 3 at T=0.8
  {
    const f = frequencies(new Sampler({ temperature: 0.8, topK: 3, seed: 21 }), LOGITS, N);
    assertClose(f, probs(LOGITS, 0.8, order.slice(0, 3)), N, "top-k 3");
  }
  // top-p 0.8 at T=1: the smallest prefix of the sorted probabilities whose sum reaches 0.8
  {
    const p = probs(LOGITS, 1);
    let acc = 0, keep = 0;
    while (acc < 0.8) acc += p[order[keep++]];
    assert.ok(keep > 1 && keep < LOGITS.length, "expected keep > 1 && keep < LOGITS.length");
    const f = frequencies(new Sampler({ temperature: 1, topP: 0.8, seed: 22 }), LOGITS, N);
    assertClose(f, probs(LOGITS, 1, order.slice(0, keep)), N, "top-p 0.8");
  }
  // top-k then top-p (transformers' order): top-k 4, then top-p 0.7 of the renormalised four
  {
    const p4 = probs(LOGITS, 1.3, order.slice(0, 4));
    let acc = 0, keep = 0;
    while (acc < 0.7) acc += p4[order[keep++]];
    const f = frequencies(new Sampler({ temperature: 1.3, topK: 4, topP: 0.7, seed: 23 }), LOGITS, N);
    assertClose(f, probs(LOGITS, 1.3, order.slice(0, keep)), N, "top-k 4 + top-p 0.7");
  }
  // top-k 0 and top-k >= V keep everything; top-p 1 keeps everything
  for (const opts of [{ topK: 0 }, { topK: 9 }, { topK: 50 }, { topP: 1 }]) {
    const f = frequencies(new Sampler({ temperature: 1, seed: 24, ...opts }), LOGITS, N);
    assertClose(f, probs(LOGITS, 1), N, JSON.stringify(opts));
  }
});

test("invalid temperature, top-k and top-p throw MlaError", () => {
  for (const temperature of [-1, -1e-9, NaN, Infinity]) assert.throws(() => new Sampler({ temperature }), MlaError, `temperature ${temperature}`);
  for (const topK of [-1, 1.5, NaN]) assert.throws(() => new Sampler({ topK }), MlaError, `topK ${topK}`);
  for (const topP of [0, -0.1, 1.5, NaN]) assert.throws(() => new Sampler({ topP }), MlaError, `topP ${topP}`);
  // valid edge values do not throw
  new Sampler({ temperature: 0 });
  new Sampler({ topK: 0 });
  new Sampler({ topP: 1 });
  new Sampler({ topP: 1e-9 });
});

test("no temperature means greedy (the library's default, like the CLI's)", () => {
  const l = new Float32Array([0.1, 3, 2.9, -1]);
  const s = new Sampler({ seed: 3 });
  assert.equal(s.greedy, true, "greedy without a temperature");
  for (let i = 0; i < 20; i++) assert.equal(s.sample(l), 1, `draw ${i}`);
});

test("byLogitDesc orders like the comparator sort: logit descending, ties by id (-0 and +0 tie)", () => {
  for (let trial = 0; trial < 60; trial++) {
    const V = [3, 100, 2048, 32000][trial % 4];
    const l = new Float32Array(V);
    for (let i = 0; i < V; i++) l[i] = trial % 3 === 0 ? Math.round(Math.sin(i * 7.1 + trial) * 4) : Math.sin(i * 12.9898 + trial) * 10;
    if (trial % 5 === 0) (l[0] = -0), (l[1] = 0), (l[2] = -1e30);
    const want = Array.from({ length: V }, (_, i) => i).sort((a, b) => l[b] - l[a] || a - b);
    assert.deepEqual(byLogitDesc(l), want, `trial ${trial}`);
  }
});

/** Reference logit processors, written from their definitions (transformers' RepetitionPenaltyLogitsProcessor, OpenAI's penalties). */
function processed(logits: Float32Array, opts: { bias?: Map<number, number>; rep?: number; pres?: number; freq?: number; suppress?: number[] }, prompt: number[], out: number[]): number[] {
  const r = Array.from(logits);
  for (const [id, b] of opts.bias ?? []) r[id] += b;
  for (const id of new Set([...prompt, ...out])) if (opts.rep) r[id] = r[id] > 0 ? r[id] / opts.rep : r[id] * opts.rep;
  const counts = new Map<number, number>();
  for (const id of out) counts.set(id, (counts.get(id) ?? 0) + 1);
  for (const [id, n] of counts) r[id] -= (opts.pres ?? 0) + (opts.freq ?? 0) * n;
  for (const id of opts.suppress ?? []) r[id] = -Infinity;
  return r;
}

test("logit bias, repetition/presence/frequency penalties and suppression match a plain reference (greedy, 40 steps)", () => {
  for (const [trial, opts] of [
    { rep: 1.7 }, { pres: 1.3 }, { freq: 0.9 }, { pres: -0.5, freq: 1.1, rep: 1.2 }, { bias: new Map([[3, 2.5], [30, -100]]), freq: 0.4 },
  ].entries()) {
    const V = 37 + trial * 11;
    const prompt = Array.from({ length: 9 }, (_, i) => (i * 13 + trial) % V);
    const s = new Sampler({ greedy: true, repetitionPenalty: opts.rep, presencePenalty: opts.pres, frequencyPenalty: opts.freq, logitBias: opts.bias }, prompt);
    const out: number[] = [];
    for (let step = 0; step < 40; step++) {
      // near-flat logits, so the penalties decide: the reference's argmax is the one to pick
      const l = randn(V, 5000 + trial * 100 + step, 0.5);
      const suppress = step < 5 ? [argmax(l)] : [];
      const want = argmax(processed(l, { ...opts, suppress }, prompt, out));
      const copy = l.slice();
      assert.equal(s.sample(l, new Set(suppress)), want, `trial ${trial} step ${step}`);
      assert.deepEqual(l, copy, "the row is not modified");
      out.push(want);
    }
    assert.ok(new Set(out).size > 5, `trial ${trial}: the penalties spread the picks (${new Set(out).size} distinct)`);
  }
  // only plain greedy decoding may be left to a model's own argmax (the GPU's)
  assert.equal(new Sampler({ greedy: true }).plainArgmax, true);
  assert.equal(new Sampler({ greedy: true, repetitionPenalty: 1 }).plainArgmax, true, "1 is off");
  assert.equal(new Sampler({ greedy: true, logitBias: new Map([[1, 5]]) }).plainArgmax, false);
  assert.equal(new Sampler({ greedy: true, frequencyPenalty: 0.5 }).plainArgmax, false);
  assert.equal(new Sampler({ temperature: 1 }).plainArgmax, false);
});

test("min-p keeps the tokens at least min_p times as likely as the best, after top-p (seeded, 20000 draws)", () => {
  const order = Array.from(LOGITS.keys()).sort((a, b) => LOGITS[b] - LOGITS[a]);
  for (const [minP, T] of [[0.3, 1], [0.05, 1.4], [0.6, 0.8]] as const) {
    const p = probs(LOGITS, T);
    const keep = order.filter((i) => p[i] >= minP * p[order[0]]);
    assert.ok(keep.length > 1 && keep.length < LOGITS.length, `min_p ${minP} keeps some, not all`);
    const f = frequencies(new Sampler({ temperature: T, minP, seed: 31 }), LOGITS, N);
    assertClose(f, probs(LOGITS, T, keep), N, `min_p ${minP} T ${T}`);
  }
  // min_p 1 keeps only the best; 0 keeps all
  const one = new Sampler({ temperature: 2, minP: 1, seed: 32 });
  for (let i = 0; i < 200; i++) assert.equal(one.sample(LOGITS), 1);
  assertClose(frequencies(new Sampler({ temperature: 1, minP: 0, seed: 33 }), LOGITS, N), probs(LOGITS, 1), N, "min_p 0");
  // invalid values
  for (const bad of [{ minP: -0.1 }, { minP: 1.5 }, { repetitionPenalty: 0 }, { repetitionPenalty: -1 }, { presencePenalty: 2.5 }, { frequencyPenalty: -3 }, { logitBias: new Map([[1, 101]]) }, { logitBias: new Map([[-1, 1]]) }]) {
    assert.throws(() => new Sampler(bad), MlaError, JSON.stringify(bad, (_, v) => (v instanceof Map ? [...v] : v)));
  }
});
