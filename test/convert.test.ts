import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { TrainModel, llamaConfig, type LlamaSpec } from "../src/train/model.js";
import { saveCheckpoint } from "../src/train/save.js";
import { convertModel, readSource, writeConverted, type ConvertOptions, type ReadOptions } from "../src/convert/convert.js";

import { writeSafetensors } from "../src/io/safetensors.js";
import { f32Tensor } from "../src/tensor/tensor.js";
import { calibrate } from "../src/convert/calibrate.js";
import { evaluate } from "../src/convert/evaluate.js";
import { finetune, loadTrainModel } from "../src/convert/finetune.js";
import { loadModel } from "../src/model/load.js";

import { FIXTURES, randn, relErr, tempDirs } from "./helpers.js";
import { expectedTensors, parseConfig } from "../src/model/families/index.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const tmp = tempDirs("mla-convert-", after);

const D = 24, d = 6;
const spec = (G: number, extra: Partial<LlamaSpec> = {}): LlamaSpec => ({
  vocabSize: 37, hiddenSize: D, intermediateSize: 30, numLayers: 2, numHeads: 4, numKvHeads: G, headDim: d,
  rmsNormEps: 1e-6, maxPositionEmbeddings: 64, ...extra,
});

/**
 * A random llama checkpoint (weights ~ 1.5/sqrt(fan-in), norms 1 +- 0.3). `proportional`: every KV head's key rows
 * of pair j are f_{g,j} times head 0's, so one shared RoPE key holds them all; `zeroPairs`: these pairs carry no key.
 */
function makeLlama(G: number, seed: number, o: { proportional?: boolean; zeroPairs?: number[]; spec?: Partial<LlamaSpec> } = {}): string {
  const s = spec(G, o.spec);
  const m = new TrainModel(llamaConfig(s));
  let k = seed * 100;
  for (const [name, p] of m.params) {
    const shape = m.shapes.get(name)!;
    const r = randn(p.length, k++);
    for (let i = 0; i < p.length; i++) p[i] = shape.length === 1 ? 1 + 0.3 * r[i] : (1.5 * r[i]) / Math.sqrt(shape[1]);
  }
  const half = d / 2;
  for (let l = 0; l < s.numLayers; l++) {
    const wk = m.params.get(`model.layers.${l}.self_attn.k_proj.weight`)!;
    const f = randn(G * half, seed * 7 + l);
    for (let g = 0; g < G; g++) for (let j = 0; j < half; j++) for (const c of [j, j + half]) for (let x = 0; x < D; x++) {
      if (o.zeroPairs?.includes(j)) wk[(g * d + c) * D + x] = 0;
      else if (o.proportional && g > 0) wk[(g * d + c) * D + x] = (1 + f[g * half + j]) * wk[c * D + x];
    }
  }
  const dir = tmp();
  saveCheckpoint(dir, m);
  return dir;
}

const IDS = [[1, 5, 9, 3, 7, 30, 2, 11, 4, 8, 36, 0], [17, 17, 2, 25, 5]];

function convertTo(src: string, opts: ConvertOptions, read: ReadOptions = {}): string {
  const out = tmp();
  writeConverted(out, convertModel(readSource(src, read), opts), src);
  return out;
}

/** Worst relative logit error of the converted model (naive and absorbed MLA) against the source. */
function worstError(src: string, dst: string): number {
  const a = loadModel(src), b = loadModel(dst);
  let worst = 0;
  for (const ids of IDS) {
    const ref = a.forward(ids, a.newState(), { allLogits: true });
    for (const mode of ["naive", "absorb"] as const) worst = Math.max(worst, relErr(b.forward(ids, b.newState(), { allLogits: true, mode }), ref));
  }
  return worst;
}

test("full-rank conversion is exact (1e-4): MQA with every RoPE pair, GQA and MHA whose per-pair keys are proportional across heads", () => {
  for (const [G, name] of [[1, "MQA"], [2, "GQA 4/2"], [4, "MHA"]] as const) {
    const src = makeLlama(G, 10 + G, { proportional: G > 1 });
    const dst = convertTo(src, { kvRank: D, ropeDim: d });
    const err = worstError(src, dst);
    assert.ok(err < 1e-4, `${name}: logits differ by ${err}`);
  }
});

test("grouped RoPE key (longrope table): full-rank conversion of any GQA and MHA is exact (1e-4), also from llama3-scaled RoPE", () => {
  for (const [G, name] of [[2, "GQA 4/2"], [4, "MHA"]] as const) {
    for (const rope of [undefined, { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 }]) {
      const src = makeLlama(G, 30 + G);
      if (rope) {
        // the same weights read with Llama 3.1's frequency scaling (training itself writes plain RoPE)
        const cfgPath = join(src, "config.json"), cfg = JSON.parse(readFileSync(cfgPath, "utf8"));
        writeFileSync(cfgPath, JSON.stringify({ ...cfg, rope_scaling: rope }));
      }
      // (plain RoPE cannot express llama3's scaled pairs at all: the shared key refuses that source)
      const shared = rope ? Infinity : worstError(src, convertTo(src, { kvRank: D, ropeDim: d }));
      const dst = convertTo(src, { kvRank: D, ropeDim: G * d, ropeKey: "grouped" });
      const err = worstError(src, dst);
      assert.ok(err < 1e-4, `${name}${rope ? " llama3" : ""}: logits differ by ${err}`);
      assert.ok(shared > 1e-3, `${name}: the shared key (one slot per frequency) is not exact here (${shared})`);
      const cfg = JSON.parse(readFileSync(join(dst, "config.json"), "utf8"));
      assert.equal(cfg.qk_rope_head_dim, G * d);
      assert.equal(cfg.rope_scaling.rope_type, "longrope");
      assert.deepEqual(cfg.rope_scaling.short_factor, cfg.rope_scaling.long_factor);
    }
  }
  // partial: one pair per group of the 3, the rest as NoPE: a smaller cache, no longer exact but close to the shared key's error
  const src = makeLlama(2, 40);
  const part = worstError(src, convertTo(src, { kvRank: D, ropeDim: 4, ropeKey: "grouped" }));
  assert.ok(part < 1, `partial grouped key: ${part}`);
  assert.throws(() => convertModel(readSource(src), { kvRank: D, ropeDim: 6, ropeKey: "grouped" }), /multiple of 4/);
  assert.throws(() => convertModel(readSource(src), { kvRank: D, ropeDim: 16, ropeKey: "grouped" }), /between 4 and 12/);
});

test("exact with partial RoPE too, for every representable choice of pairs, when the dropped pairs carry no key; and with calibration data", () => {
  // only pairs 0 and 2 have keys: stride 2 keeps exactly them (rope_theta = base^(2 r / d)); "high" (stride 1)
  // keeps pair 1 instead and pair 2 loses its rotation
  const src = makeLlama(2, 30, { proportional: true, zeroPairs: [1] });
  const conv = convertModel(readSource(src), { kvRank: D, ropeDim: 4, ropeSelect: "norm" });
  assert.deepEqual(conv.summary.rope.pairs, [0, 2], "norm finds the stride whose pairs carry the keys");
  assert.ok(worstError(src, convertTo(src, { kvRank: D, ropeDim: 4, ropeSelect: "norm" })) < 1e-4, "stride 2 is exact");
  assert.ok(worstError(src, convertTo(src, { kvRank: D, ropeDim: 4, ropeSelect: "high" })) > 1e-3, "high keeps pair 1 instead and loses pair 2's rotation");
  const calibration = calibrate(loadModel(src), [[3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4], [2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4, 5, 9, 0, 4, 5]]);
  assert.equal(calibration.n, 36, "36 calibration tokens");
  const dst = convertTo(src, { kvRank: D, ropeDim: 4, ropeSelect: "norm", calibration });
  assert.ok(worstError(src, dst) < 1e-4, `calibrated (least-squares B, mean rotation): ${worstError(src, dst)}`);
});

test("compression: a smaller latent or RoPE width costs accuracy; the summary reports cache sizes and kept energy", () => {
  const src = makeLlama(4, 40);
  const conv = convertModel(readSource(src), { kvRank: 8, ropeDim: 2 });
  const s = conv.summary;
  assert.equal(s.source.kvPerTokenPerLayer, 2 * 4 * d, "MHA caches 2 n_kv d");
  assert.equal(s.target.kvPerTokenPerLayer, 8 + 2, "MLA caches d_c + d_h^R");
  assert.ok(Math.abs(s.cacheRatio - 10 / 48) < 1e-12, "cache ratio");
  assert.ok(s.layers.every((l) => l.latentEnergy > 0 && l.latentEnergy < 1 && l.ropeCaptured > 0 && l.ropeCaptured <= 1), "energies in (0, 1]");
  const small = tmp();
  writeConverted(small, conv, src);
  const full = convertTo(src, { kvRank: D, ropeDim: d });
  assert.ok(worstError(src, small) > worstError(src, full), "rank 8 / rope 2 is further from the source than full rank");
  assert.ok(JSON.parse(readFileSync(join(small, "conversion.json"), "utf8")).target.kvLoraRank === 8, "conversion.json records the summary");
});

test("the converted checkpoint is a dense deepseek_v3 that the trainer loads (same logits as the engine) and can fine-tune", () => {
  const src = makeLlama(2, 50);
  const dst = convertTo(src, { kvRank: 10, ropeDim: 4 });
  const cfg = JSON.parse(readFileSync(join(dst, "config.json"), "utf8"));
  assert.equal(cfg.model_type, "deepseek_v3", "model_type");
  assert.equal(cfg.first_k_dense_replace, cfg.num_hidden_layers, "every layer dense for transformers");
  assert.equal(cfg.n_routed_experts, null, "no experts");
  assert.equal(cfg.rope_interleave, true, "interleaved RoPE, as the engine applies it");
  assert.deepEqual([cfg.kv_lora_rank, cfg.qk_rope_head_dim, cfg.qk_nope_head_dim, cfg.v_head_dim, cfg.q_lora_rank], [10, 4, d, d, null], "MLA sizes");
  assert.ok(Math.abs(cfg.rope_theta - 10000 ** (4 / 6)) < 1e-6 * cfg.rope_theta, `rope_theta ${cfg.rope_theta} = base^(r/d) for the fastest pairs`);
  assert.equal(parseConfig(cfg).attention, "mla", "the engine's parser accepts it");

  const model = loadTrainModel(dst);
  const engine = loadModel(dst);
  const ids = IDS[0];
  const err = relErr(model.logits([ids]), engine.forward(ids, engine.newState(), { allLogits: true }));
  assert.ok(err < 1e-5, `TrainModel and engine logits differ by ${err}`);
  const tokens = Int32Array.from(randn(400, 51), (x) => Math.floor((x + 1) * 6)); // a skewed little language
  const losses = finetune(model, tokens, { steps: 12, batch: 4, seq: 8, lr: 1e-2 });
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  assert.ok(mean(losses.slice(-3)) < mean(losses.slice(0, 3)), `fine-tune lowers the loss: ${losses.map((l) => l.toFixed(3)).join(" ")}`);
  saveCheckpoint(dst, model);
  const val = { ids: [Array.from(tokens.subarray(0, 8))], targets: [Array.from(tokens.subarray(1, 9))] };
  const ref = evaluate(loadModel(src), val), tuned = evaluate(loadModel(dst), val, ref.logits);
  assert.ok(Number.isFinite(tuned.loss), "the fine-tuned checkpoint loads in the engine");
  assert.ok(tuned.logitError! > 0, "logit error against the source is measurable");
  // the reference: the same logits straight from the engine
  const eng = loadModel(dst), a = eng.forward(val.ids[0], eng.newState(), { allLogits: true }), b = ref.logits[0];
  assert.ok(Math.abs(tuned.logitError! - relErr(a, b)) < 1e-9, "logitError is ||a - b|| / ||b||");
  let ce = 0;
  for (let t = 0; t < 8; t++) {
    const row = Array.from(a.subarray(t * 37, (t + 1) * 37)), mx = Math.max(...row);
    ce += Math.log(row.reduce((s2, v) => s2 + Math.exp(v - mx), 0)) + mx - row[val.targets[0][t]];
  }
  assert.ok(Math.abs(tuned.loss - ce / 8) < 1e-9, `loss ${tuned.loss} vs ${ce / 8}`);
});

test("qwen2 with --biases drop: converts (tied embeddings written out), approximate and reported as such; without the biases the same source converts exactly", (t) => {
  const q = join(FIXTURES, "tiny-qwen2");
  const src = readSource(q, { dropBiases: true });
  const c = src.config, G = c.numKvHeads, hd = c.headDim;
  const conv = convertModel(src, { kvRank: c.hiddenSize, ropeDim: G * hd, ropeKey: "grouped" });
  assert.ok(conv.summary.notes.some((n) => /attention biases left out \(q_proj\.bias, k_proj\.bias, v_proj\.bias\)/.test(n)), "the summary says what was left out");
  const dst = tmp();
  writeConverted(dst, conv, q);
  const err = worstError(q, dst);
  t.diagnostic(`tiny-qwen2, full rank, biases dropped: logit rel. error ${err.toExponential(2)}`);
  assert.ok(Number.isFinite(err) && err > 1e-4, `approximate (${err})`);
  // the same checkpoint with its biases zeroed converts exactly: all of the error above is the biases
  const zeroed = tmp(), shapes = expectedTensors(c);
  // (rms_norm_eps 1e-5 would also show: at R = D the latent RMSNorm divides out the input norm's eps damping, a
  // relative eps / (2 mean(h^2)) that this random fixture's small hidden states make 1e-4; trained models' are far larger)
  writeFileSync(join(zeroed, "config.json"), JSON.stringify({ ...JSON.parse(readFileSync(join(q, "config.json"), "utf8")), rms_norm_eps: 1e-7 }));
  writeSafetensors(join(zeroed, "model.safetensors"), Object.fromEntries(Array.from(src.tensors, ([k, v]) =>
    [k, f32Tensor(shapes.get(k)!, /_proj\.bias$/.test(k) ? new Float32Array(v.length) : v)])));
  const exact = worstError(zeroed, convertTo(zeroed, { kvRank: c.hiddenSize, ropeDim: G * hd, ropeKey: "grouped" }, { dropBiases: true }));
  assert.ok(exact < 1e-4, `zero biases: ${exact}`);
});

test("bad input gets a clear error: MLA or unsupported sources, biases, rank or RoPE width out of range, missing tensors, unrepresentable RoPE scaling", () => {
  assert.throws(() => readSource(join(FIXTURES, "tiny-mla-dense")), /already uses MLA; convert reads llama, qwen2 and mistral/, "an MLA source");
  assert.throws(() => readSource(join(FIXTURES, "tiny-qwen2")), /attention biases \(qwen2: q_proj\.bias, k_proj\.bias, v_proj\.bias\).*--biases drop/, "qwen2's q/k/v biases");
  const src = makeLlama(2, 60);
  const s = readSource(src);
  assert.throws(() => convertModel(s, { kvRank: D + 1, ropeDim: 4 }), /--kv-rank 25 is larger than possible.*at most 24/, "rank above hidden_size");
  assert.throws(() => convertModel(s, { kvRank: 0, ropeDim: 4 }), /--kv-rank must be a positive integer/, "rank 0");
  assert.throws(() => convertModel(s, { kvRank: 8, ropeDim: 3 }), /--rope-dim must be an even integer/, "odd RoPE width");
  assert.throws(() => convertModel(s, { kvRank: 8, ropeDim: 8 }), /--rope-dim 8 exceeds the source's head_dim 6/, "RoPE width above head_dim");
  assert.throws(() => convertModel(s, { kvRank: 8, ropeDim: 4, nope: "mean" }), /--nope mean needs calibration/, "mean rotation without data");
  assert.throws(() => readSource(join(FIXTURES, "tiny-llama")) && convertModel(readSource(join(FIXTURES, "tiny-llama")), { kvRank: 8, ropeDim: 16 }), /llama3.*cannot reproduce/, "llama3-scaled pairs");
  const gpt2 = tmp();
  writeFileSync(join(gpt2, "config.json"), JSON.stringify({ model_type: "gpt2", vocab_size: 10 }));
  assert.throws(() => readSource(gpt2), /model_type "gpt2" is not supported/, "an unsupported layout");
  // a checkpoint without one layer's k_proj
  const m = loadTrainModel(src);
  m.params.delete("model.layers.1.self_attn.k_proj.weight");
  const broken = tmp();
  saveCheckpoint(broken, m);
  assert.throws(() => readSource(broken), /missing 1 tensor\(s\): model\.layers\.1\.self_attn\.k_proj\.weight/, "a missing tensor is named");
});

test("mla convert (CLI): calibrates on a text file, converts, measures and fine-tunes; errors are one line", () => {
  const src = makeLlama(2, 70, { spec: { vocabSize: 512 } });
  cpSync(join(FIXTURES, "tokenizer-bpe512.json"), join(src, "tokenizer.json"));
  const text = join(tmp(), "text.txt");
  writeFileSync(text, "The jury said the city had no evidence. ".repeat(40) + "It was a quiet evening in the hills. ".repeat(10));
  const out = join(tmp(), "mla");
  const run = (...args: string[]) => spawnSync(process.execPath, ["--import", "tsx", join(ROOT, "src/cli/main.ts"), "convert", ...args], { cwd: ROOT, encoding: "utf8" });
  const r = run("--model", src, "--out", out, "--kv-rank", "12", "--rope-dim", "4", "--calibration", text, "--calibration-windows", "4",
    "--seq", "16", "--finetune-steps", "2", "--batch", "2", "--eval-windows", "2", "--backend", "cpu-scalar", "--json");
  assert.equal(r.status, 0, `convert failed: ${r.stderr}`);
  const res = JSON.parse(r.stdout);
  assert.equal(res.summary.target.kvPerTokenPerLayer, 16, "12 + 4 cached numbers");
  assert.equal(res.summary.rope.nope, "mean", "calibration turns on the mean rotation");
  assert.ok(res.eval.logitError > 0 && Number.isFinite(res.eval.finetunedPerplexity), "logit error and perplexities reported");
  assert.ok(existsSync(join(out, "tokenizer.json")), "the tokenizer is copied");
  // a grouped RoPE key (longrope config) goes through calibration, the engine and the trainer alike
  const g = run("--model", src, "--out", join(tmp(), "g"), "--kv-rank", "12", "--rope-dim", "4", "--rope-key", "grouped", "--calibration", text,
    "--calibration-windows", "4", "--seq", "16", "--finetune-steps", "2", "--batch", "2", "--eval-windows", "2", "--backend", "cpu-scalar", "--json");
  assert.equal(g.status, 0, `grouped convert failed: ${g.stderr}`);
  const gr = JSON.parse(g.stdout);
  assert.equal(gr.summary.rope.key, "grouped");
  assert.ok(Number.isFinite(gr.eval.finetunedPerplexity), "fine-tuned with the longrope table");
  assert.match(run("--model", src, "--out", join(tmp(), "y"), "--kv-rank", "12", "--rope-dim", "4", "--rope-key", "both").stderr.trim(), /^error: --rope-key must be one of shared, grouped/);
  assert.match(run("--model", src, "--out", join(tmp(), "z"), "--kv-rank", "12", "--rope-dim", "4", "--biases", "keep").stderr.trim(), /^error: --biases must be one of refuse, drop/);
  const bad = run("--model", src, "--out", join(tmp(), "x"), "--kv-rank", "99", "--rope-dim", "4");
  assert.notEqual(bad.status, 0, "rank 99 fails");
  assert.match(bad.stderr.trim(), /^error: --kv-rank 99 is larger than possible/, "one clear line");
  assert.equal(bad.stderr.trim().split("\n").length, 1, "no stack trace");
});
