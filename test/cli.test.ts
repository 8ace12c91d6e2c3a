import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, readSync, closeSync, statSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { FIXTURES, batchRow, loadReference, relErr } from "./helpers.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const V3 = join(FIXTURES, "tiny-deepseek-v3");

function mla(...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, ["--import", "tsx", join(ROOT, "src/cli/main.ts"), ...args], { cwd: ROOT, encoding: "utf8" });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

/** A bad input must give exactly one line on stderr starting with "error:" that matches `re`, and no stack trace. */
function assertCleanError(r: { code: number; out: string; err: string }, re: RegExp): void {
  assert.notEqual(r.code, 0, `expected failure, stdout: ${r.out}`);
  const lines = r.err.trim().split("\n");
  assert.equal(lines.length, 1, `one line expected, got:\n${r.err}`);
  assert.match(lines[0], /^error: /);
  assert.match(lines[0], re);
  assert.doesNotMatch(r.err, /\n\s+at /);
}

/** A writable copy of a fixture folder without its reference files. */
function copyFixture(name = "tiny-deepseek-v3"): string {
  const dir = mkdtempSync(join(tmpdir(), "mla-cli-"));
  cpSync(join(FIXTURES, name), dir, { recursive: true });
  for (const f of ["reference.json", "reference.safetensors"]) rmSync(join(dir, f));
  return dir;
}

function headerLength(path: string): number {
  const fd = openSync(path, "r");
  const b = Buffer.alloc(8);
  readSync(fd, b, 0, 8, 0);
  closeSync(fd);
  return Number(b.readBigUInt64LE(0));
}

/** Rewrite the JSON header of a safetensors file, keeping its data section. */
function patchHeader(path: string, edit: (h: Record<string, any>) => void): void {
  const buf = readFileSync(path);
  const n = headerLength(path);
  const h = JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
  edit(h);
  let s = JSON.stringify(h);
  s = s.padEnd(Math.ceil(s.length / 8) * 8, " ");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(s)), 0);
  writeFileSync(path, Buffer.concat([len, Buffer.from(s, "utf8"), buf.subarray(8 + n)]));
}

test("logits --json matches the transformers reference in both MLA forms", () => {
  const ref = loadReference("tiny-deepseek-v3");
  for (const mode of ["naive", "absorb", "auto"]) {
    const r = mla("logits", "--model", V3, "--ids", ref.inputIds[0].join(","), "--attention", mode, "--json");
    assert.equal(r.code, 0, r.err);
    const rows: number[][] = JSON.parse(r.out).logits;
    assert.equal(rows.length, ref.inputIds[0].length);
    assert.equal(rows[0].length, 512);
    const e = relErr(rows.flat(), batchRow(ref.tensors.get("logits")!, 0));
    assert.ok(e < 1e-4, `${mode}: rel err ${e}`);
  }
});

test("generate --json gives transformers' greedy tokens and timing", () => {
  const ref = loadReference("tiny-deepseek-v3");
  const r = mla("generate", "--model", V3, "--prompt-ids", ref.greedyPrompt.join(","), "--max-new-tokens", String(ref.greedyTokens.length), "--greedy", "--json");
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.deepEqual(j.tokens, ref.greedyTokens);
  assert.ok(j.timing.decodeTokensPerSecond > 0, `timing ${JSON.stringify(j.timing)}`);
});

test("generate streams ids without --json; sampling with a seed is reproducible", () => {
  const r = mla("generate", "--model", V3, "--prompt-ids", "5,6,7", "-n", "5");
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out.trim().split(" ").length, 5);
  const a = mla("generate", "--model", V3, "--prompt-ids", "5,6,7", "-n", "8", "--temperature", "1.2", "--top-k", "50", "--top-p", "0.9", "--seed", "7", "--json");
  const b = mla("generate", "--model", V3, "--prompt-ids", "5,6,7", "-n", "8", "--temperature", "1.2", "--top-k", "50", "--top-p", "0.9", "--seed", "7", "--json");
  assert.equal(a.code, 0, a.err);
  assert.deepEqual(JSON.parse(a.out).tokens, JSON.parse(b.out).tokens);
});

test("generate --prompt uses tokenizer.json and prints text", () => {
  const dir = copyFixture();
  cpSync(join(FIXTURES, "tokenizer-bpe512.json"), join(dir, "tokenizer.json"));
  const r = mla("generate", "--model", dir, "--prompt", "The latent cache", "-n", "6", "--json");
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.tokens.length, 6);
  assert.equal(typeof j.text, "string");
  assert.ok(j.promptTokens > 1, `prompt tokens ${j.promptTokens}`);
});

test("info --json reports the KV cache by the paper's definitions", () => {
  const r = mla("info", "--model", V3, "--json");
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  // d_c + d_h^R = 32 + 8; MHA with identical scores: n_h (d_h + d_h^R) + n_h d_v = 4*24 + 4*16
  assert.equal(j.kvCache.mla.elementsPerTokenPerLayer, 40);
  assert.equal(j.kvCache.mha.elementsPerTokenPerLayer, 160);
  assert.equal(j.kvCache.mqa.elementsPerTokenPerLayer, 40);
  assert.equal(j.kvCache.gqa.elementsPerTokenPerLayer, j.kvCache.gqa.kvHeads * 40);
  assert.equal(j.kvCache.mla.bytesPerToken, 40 * 4 * 3);
  assert.equal(j.parameters, 250000);
  const t = mla("info", "--model", V3);
  assert.match(t.out, /MLA\s+latent\s+40/);
});

test("bad input: missing folder, missing config, missing weights", () => {
  assertCleanError(mla("info", "--model", "/nonexistent/model"), /not found.*\/nonexistent\/model/);
  const dir = copyFixture();
  rmSync(join(dir, "config.json"));
  assertCleanError(mla("logits", "--model", dir, "--ids", "1,2"), /no config\.json/);
  const dir2 = copyFixture();
  rmSync(join(dir2, "model.safetensors"));
  assertCleanError(mla("generate", "--model", dir2, "--prompt-ids", "1,2"), /no model\.safetensors/);
});

test("bad input: truncated and corrupt safetensors", () => {
  const trunc = copyFixture();
  const f = join(trunc, "model.safetensors");
  truncateSync(f, Math.floor(statSync(f).size / 2));
  assertCleanError(mla("logits", "--model", trunc, "--ids", "1,2"), /model\.safetensors.*(truncated|past the end|only)/);

  const hdr = copyFixture();
  const g = join(hdr, "model.safetensors");
  const buf = readFileSync(g);
  buf.writeBigUInt64LE(BigInt(buf.length * 2), 0);
  writeFileSync(g, buf);
  assertCleanError(mla("info", "--model", hdr), /model\.safetensors.*header/i);

  const offs = copyFixture();
  patchHeader(join(offs, "model.safetensors"), (h) => {
    h["model.norm.weight"].data_offsets = [10_000_000, 10_000_256];
  });
  assertCleanError(mla("logits", "--model", offs, "--ids", "1,2"), /model\.norm\.weight.*offsets/);

  const shape = copyFixture();
  patchHeader(join(shape, "model.safetensors"), (h) => {
    h["model.norm.weight"].shape = [65];
  });
  assertCleanError(mla("logits", "--model", shape, "--ids", "1,2"), /model\.norm\.weight.*(bytes|span)/);
});

test("bad input: missing tensors are named, unsupported model_type and dtype", () => {
  const miss = copyFixture();
  patchHeader(join(miss, "model.safetensors"), (h) => {
    h["model.layers.1.self_attn.kv_b_proj.wXight"] = h["model.layers.1.self_attn.kv_b_proj.weight"];
    delete h["model.layers.1.self_attn.kv_b_proj.weight"];
  });
  assertCleanError(mla("logits", "--model", miss, "--ids", "1,2"), /missing.*model\.layers\.1\.self_attn\.kv_b_proj\.weight/);

  const mt = copyFixture();
  const cfg = JSON.parse(readFileSync(join(mt, "config.json"), "utf8"));
  writeFileSync(join(mt, "config.json"), JSON.stringify({ ...cfg, model_type: "gpt2" }));
  assertCleanError(mla("info", "--model", mt), /model_type "gpt2" is not supported \(supported: deepseek_v2, deepseek_v3, llama, qwen2, mistral, glm4_moe_lite, kimi_k2, youtu, minicpm3\)/);

  const dt = copyFixture();
  patchHeader(join(dt, "model.safetensors"), (h) => {
    const t = h["model.norm.weight"];
    // 64 F32 values = 256 bytes = 256 one-byte FP8 values: a consistent header with an unsupported dtype
    h["model.norm.weight"] = { ...t, dtype: "F8_E4M3", shape: [256] };
  });
  assertCleanError(mla("logits", "--model", dt, "--ids", "1,2"), /model\.norm\.weight.*F8_E4M3/);
});

test("bad input: token ids out of range, prompt longer than the context, bad flags", () => {
  assertCleanError(mla("logits", "--model", V3, "--ids", "1,512"), /token id 512 is out of range \(vocab_size 512\)/);
  assertCleanError(mla("logits", "--model", V3, "--ids", "1,x"), /--ids: "x" is not a token id/);
  const long = Array.from({ length: 513 }, (_, i) => i % 500).join(",");
  assertCleanError(mla("generate", "--model", V3, "--prompt-ids", long), /longer than the context length 512/);
  assertCleanError(mla("generate", "--model", V3, "--prompt", "hi"), /needs a tokenizer \(tokenizer\.json or tiktoken\.model\)/);
  assertCleanError(mla("generate", "--model", V3, "--prompt-ids", "1", "--attention", "fast"), /--attention must be auto, naive or absorb/);
  assertCleanError(mla("generate", "--model", V3, "--prompt-ids", "1", "--top-p", "1.5", "--temperature", "1"), /top-p/);
});

test("the bundled default model (models/mla-brown) loads and generates text without --model", () => {
  const r = mla("generate", "--prompt", "The jury said", "-n", "8", "--temperature", "0.8", "--seed", "1", "--json");
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.tokens.length, 8);
  assert.ok(typeof j.text === "string" && j.text.length > 0, `text ${JSON.stringify(j.text)}`);
  const info = JSON.parse(mla("info", "--json").out);
  assert.equal(info.kvCache.mla.elementsPerTokenPerLayer, 80); // d_c 64 + d_h^R 16
});
