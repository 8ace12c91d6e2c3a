import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DeepseekModel } from "../src/model/deepseek-model.js";

const root = fileURLToPath(new URL("..", import.meta.url));
const cli = (args: string[]) => {
  const r = spawnSync(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { cwd: root, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

let tmp: string, text: string;
const micro = ["--vocab", "300", "--layers", "1", "--hidden", "32", "--heads", "2", "--kv-lora-rank", "16", "--nope", "8", "--rope", "8", "--v", "8",
  "--intermediate", "64", "--batch", "4", "--seq", "32", "--lr", "1e-2", "--warmup", "3"];

before(() => {
  tmp = mkdtempSync(join(tmpdir(), "mla-train-cli-"));
  const sentences = [
    "The cat sat on the mat.", "A dog ran in the park and the children laughed.",
    "It was a bright cold day in April, and the clocks were striking thirteen.", "She sells sea shells by the sea shore.",
    "The quick brown fox jumps over the lazy dog.", "We went to the market to buy bread and milk.",
  ];
  // deterministic pseudo-random order of repeated English sentences (~5 KB)
  let x = 7;
  const words: string[] = [];
  for (let i = 0; i < 120; i++) words.push(sentences[(x = (x * 1103515245 + 12345) % 2147483648) % sentences.length]);
  text = join(tmp, "text.txt");
  writeFileSync(text, words.join(" ") + "\n");
});
after(() => rmSync(tmp, { recursive: true, force: true }));

interface StepLine { step: number; loss: number; lr: number; gradNorm: number; tokensPerSecond: number; elapsedSeconds: number }
const metrics = (dir: string) => readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, number>);
const stepLosses = (dir: string) => metrics(dir).filter((m) => "loss" in m).map((m) => [m.step, m.loss]);

test("mla train: a micro model's loss falls; checkpoint, metrics, plot and tokenizer are written and load", (t) => {
  const out = join(tmp, "run");
  const r = cli(["train", "--out", out, "--text", text, ...micro, "--steps", "30", "--save-every", "10", "--eval-every", "10"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^trained steps 1-30 in .* s: loss .* -> .*, validation loss .* \(perplexity .*\), \d+ tokens\/s; saved to /);
  t.diagnostic(r.stdout.trim());
  for (const f of ["model.safetensors", "config.json", "optimizer.safetensors", "trainer-state.json", "metrics.jsonl", "loss.svg", "tokenizer.json", "tokenizer_config.json"]) {
    assert.ok(existsSync(join(out, f)), `${f} exists`);
  }
  const m = metrics(out);
  const steps = m.filter((l) => "loss" in l) as unknown as StepLine[];
  assert.deepEqual(steps.map((l) => l.step), Array.from({ length: 30 }, (_, i) => i + 1));
  for (const l of steps) for (const k of ["loss", "lr", "gradNorm", "tokensPerSecond", "elapsedSeconds"] as const) assert.ok(Number.isFinite(l[k]), `${k} finite`);
  const evals = m.filter((l) => "valLoss" in l);
  assert.deepEqual(evals.map((l) => l.step), [10, 20, 30]);
  for (const e of evals) assert.ok(Math.abs(e.valPerplexity - Math.exp(e.valLoss)) < 1e-9);
  const mean = (a: StepLine[]) => a.reduce((s, l) => s + l.loss, 0) / a.length;
  const first = mean(steps.slice(0, 5)), last = mean(steps.slice(-5));
  t.diagnostic(`loss first-5 mean ${first.toFixed(3)}, last-5 mean ${last.toFixed(3)}; ${Math.round(mean(steps.map((l) => ({ ...l, loss: l.tokensPerSecond }))))} tok/s`);
  assert.ok(last < first - 1, `loss falls: ${first} -> ${last}`);
  assert.ok(evals[2].valLoss < evals[0].valLoss);
  const svg = readFileSync(join(out, "loss.svg"), "utf8");
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(svg, /<polyline [^>]*points="[\d., ]+"/);
  assert.equal((svg.match(/<circle /g) ?? []).length, 3 + 1); // 3 evaluations + the legend dot

  const model = DeepseekModel.load(out);
  assert.equal(model.config.vocabSize, 300);
  assert.equal(model.config.numLayers, 1);
  const g = cli(["generate", "--model", out, "--prompt", "The cat", "-n", "5", "--json"]);
  assert.equal(g.code, 0, g.stderr);
  const gen = JSON.parse(g.stdout) as { tokens: number[] };
  assert.equal(gen.tokens.length, 5);
});

test("mla train --resume: losses after the resume are bitwise those of an uninterrupted run", () => {
  const full = join(tmp, "full"), part = join(tmp, "part");
  const common = ["--text", text, ...micro, "--steps", "20", "--save-every", "10", "--eval-every", "10", "--accum", "2"];
  assert.equal(cli(["train", "--out", full, ...common]).code, 0);
  const a = cli(["train", "--out", part, ...common, "--stop-at", "10"]);
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stdout, /stopped at step 10 of 20/);
  assert.deepEqual(stepLosses(part), stepLosses(full).slice(0, 10));
  // a run killed after its last save has logged steps beyond it: resume drops them
  writeFileSync(join(part, "metrics.jsonl"), readFileSync(join(part, "metrics.jsonl"), "utf8") + '{"step":11,"loss":99}\n');
  const b = cli(["train", "--out", part, "--resume", "--save-every", "10", "--eval-every", "10"]);
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stdout, /^trained steps 11-20 /);
  assert.deepEqual(stepLosses(part), stepLosses(full));
  assert.deepEqual(metrics(part).filter((l) => "valLoss" in l), metrics(full).filter((l) => "valLoss" in l));
  assert.deepEqual(readFileSync(join(part, "model.safetensors")), readFileSync(join(full, "model.safetensors")));
  const state = JSON.parse(readFileSync(join(part, "trainer-state.json"), "utf8")) as { step: number; t: number; losses: number[] };
  assert.equal(state.step, 20);
  assert.equal(state.t, 20);
  assert.deepEqual(state.losses, stepLosses(full).map(([, l]) => l));
});

test("mla train: bad flags and states are one-line errors", () => {
  const out = join(tmp, "bad");
  const cases: [string[], RegExp][] = [
    [["train", "--out", out, "--text", text, "--corpus", "brown"], /either --corpus or --text/],
    [["train", "--out", out, "--corpus", "wiki"], /--corpus must be brown/],
    [["train", "--out", out, "--text", join(tmp, "missing.txt")], /does not exist/],
    [["train", "--out", out, "--text", text, "--steps", "0"], /--steps must be an integer >= 1/],
    [["train", "--out", out, "--text", text, "--lr", "fast"], /--lr must be a number/],
    [["train", "--out", out, "--text", text, "--rope", "7"], /--rope must be even/],
    [["train", "--out", out, "--text", text, "--batch", "6", "--accum", "4"], /does not split into --accum 4/],
    [["train", "--out", out, "--text", text, "--vocab", "100"], /--vocab must be an integer >= 258/],
    [["train", "--out", out, "--text", text, "--tokenizer", tmp, "--vocab", "300"], /either --tokenizer or --vocab/],
    [["train", "--out", out, "--resume"], /has no trainer-state.json/],
    [["train", "--out", join(tmp, "run"), "--text", text], /already holds a training run; pass --resume/],
    [["train", "--out", join(tmp, "run"), "--resume", "--hidden", "48"], /--resume continues the saved run, whose hidden is 32/],
    [["train", "--out", join(tmp, "run"), "--resume"], /already at step 30 of 30/],
  ];
  for (const [args, re] of cases) {
    const r = cli(args);
    assert.equal(r.code, 1, `${args.join(" ")}: ${r.stdout}`);
    assert.match(r.stderr, re, args.join(" "));
    assert.match(r.stderr, /^error: [^\n]*\n$/, `one line: ${r.stderr}`);
  }
});

test("mla train --attention mqa|gqa writes a llama checkpoint that the engine runs; bad attention flags are clear errors", () => {
  const out = join(tmp, "run-mqa");
  const args = ["--vocab", "300", "--layers", "1", "--hidden", "32", "--heads", "4", "--intermediate", "48", "--batch", "2", "--seq", "16", "--warmup", "1"];
  const r = cli(["train", "--out", out, "--text", text, ...args, "--attention", "mqa", "--steps", "4", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout);
  assert.equal(summary.kvCachePerToken, 2 * 1 * 8, "MQA caches one K and one V head of 8 per token");
  const cfg = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
  assert.equal(cfg.model_type, "llama");
  assert.equal(cfg.num_key_value_heads, 1);
  const g = cli(["generate", "--model", out, "--prompt", "The cat", "-n", "3", "--json"]);
  assert.equal(g.code, 0, g.stderr);
  assert.equal(JSON.parse(g.stdout).tokens.length, 3);
  const bad = cli(["train", "--out", join(tmp, "bad"), "--text", text, ...args, "--attention", "foo"]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /--attention must be one of mla, mha, gqa, mqa/);
  const badKv = cli(["train", "--out", join(tmp, "bad2"), "--text", text, ...args, "--attention", "gqa", "--kv-heads", "3"]);
  assert.equal(badKv.code, 1);
  assert.match(badKv.stderr, /--heads 4 is not a multiple of --kv-heads 3/);
});
