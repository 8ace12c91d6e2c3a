/**
 * tiktoken tokenizers (Kimi-K2, Moonlight): test/fixtures/tiktoken is a 3,000-rank tiktoken.model with Kimi's
 * special-token layout and chat template, and reference.json what Python's tiktoken (Kimi's pat_str, allowed_special
 * "all") and transformers' TikTokenConverter make of it (scripts/make-tiktoken-fixture.py).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { FIXTURES } from "./helpers.js";
import { MlaError } from "../src/errors.js";
import { TextTokenizer, StreamDecoder } from "../src/tokenizer/tokenizer.js";
import { AsyncEncoder } from "../src/tokenizer/encoder.js";
import { ChatTemplate, type ChatMessage } from "../src/tokenizer/chat.js";
import { bytesToUnicode } from "../src/tokenizer/bpe-train.js";
import {
  KIMI_PAT_PARTS, KIMI_PAT_STR, KIMI_SPLIT_REGEX, parseTiktokenRanks, readTiktokenDir, tiktokenPatStr, tiktokenSplitRegex,
} from "../src/tokenizer/tiktoken.js";
import { ggufTokenizer } from "../src/convert/export-tokenizer.js";
import { loadConfig } from "../src/model/families/index.js";
import { GGUF_KEYS, TOKEN_TYPE } from "../src/model/gguf/names.js";
import { encoderOf } from "../src/convert/data.js";

const DIR = join(FIXTURES, "tiktoken");

interface Case {
  readonly text: string;
  readonly ids: number[];
  readonly pieces?: string[];
}

interface Reference {
  readonly pat_str: string;
  readonly n_ranks: number;
  readonly specials: Record<string, number>;
  readonly vocab_sha256: string;
  readonly merges: number;
  readonly merges_sha256: string;
  readonly cases: Case[];
  readonly random: Case[];
  readonly long: Case;
  readonly decodes: { ids: number[]; text: string }[];
  readonly chat: { messages: ChatMessage[]; rendered: string; ids: number[] };
  readonly extra_tokens: string[];
}

const ref: Reference = JSON.parse(readFileSync(join(DIR, "reference.json"), "utf8"));
const tok = TextTokenizer.load(DIR)!;
const sha = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");

test("tiktoken: the fixture folder has no tokenizer.json, and load() reads its tiktoken.model", () => {
  assert.throws(() => readFileSync(join(DIR, "tokenizer.json")), /ENOENT/);
  assert.ok(tok instanceof TextTokenizer);
  assert.equal(ref.pat_str, KIMI_PAT_STR);
});

test("tiktoken: vocab and merges are what transformers' TikTokenConverter makes of tiktoken.model", () => {
  const model = (tok.json as { model: { vocab: Record<string, number>; merges: [string, string][]; ignore_merges: boolean } }).model;
  const vocab = Object.entries(model.vocab).sort((a, b) => a[1] - b[1]);
  assert.equal(vocab.length, ref.n_ranks);
  assert.equal(sha(vocab.map(([t, r]) => `${t} ${r}`).join("\n")), ref.vocab_sha256);
  assert.equal(model.merges.length, ref.merges);
  assert.equal(sha(model.merges.map(([a, b]) => `${a} ${b}`).join("\n")), ref.merges_sha256);
  assert.equal(model.ignore_merges, true);
});

test("tiktoken: the split regex cuts text into the pieces tiktoken's regex does", () => {
  const hf = new Tokenizer(tok.json, tok.config);
  const charByte = new Map(bytesToUnicode().map((c, b) => [c, b]));
  const utf8 = new TextDecoder();
  const cases = [...ref.cases, ...ref.random].filter((c) => c.pieces);
  assert.ok(cases.length > 300);
  for (const c of cases) {
    const bytePieces: string[] = hf.pre_tokenizer!.pre_tokenize(c.text);
    const pieces = bytePieces.map((p) => utf8.decode(Uint8Array.from(Array.from(p, (ch) => charByte.get(ch)!))));
    assert.deepEqual(pieces, c.pieces, JSON.stringify(c.text));
  }
});

test("tiktoken: spelling out (?i:...) groups keeps the long s that tiktoken folds into 's", () => {
  assert.equal(tiktokenSplitRegex("(?i:'s|'re)x"), "(?:'[sSſ]|'[rR][eE])x");
  assert.ok(!KIMI_SPLIT_REGEX.includes("(?i:"));
  const cased = ref.cases.find((c) => c.text.startsWith("it'ſ"))!;
  assert.deepEqual(cased.pieces!.slice(0, 1), ["it'ſ"]);
  // tiktoken gives the whole piece its token, which no merge makes
  assert.equal(cased.ids[0], tok.tokenToId(ref.extra_tokens[0].replace("ſ", "Å¿")));
});

test("tiktoken: encode gives Python tiktoken's ids (fixed, random, chat and long texts)", () => {
  const all = [...ref.cases, ...ref.random, ref.long, { text: ref.chat.rendered, ids: ref.chat.ids }];
  for (const c of all) {
    assert.deepEqual(tok.encode(c.text), c.ids, JSON.stringify(c.text.slice(0, 80)));
    // no BOS: the Python tokenizer's encode adds none, so neither does addSpecialTokens
    assert.deepEqual(tok.encode(c.text, false), c.ids);
  }
});

test("tiktoken: decode round-trips and matches tiktoken's decode of ids that cut characters", () => {
  for (const c of [...ref.cases, ...ref.random, ref.long]) assert.equal(tok.decode(c.ids), c.text, JSON.stringify(c.text.slice(0, 80)));
  assert.ok(ref.decodes.some((d) => d.text.includes("\uFFFD")));
  for (const d of ref.decodes) assert.equal(tok.decode(d.ids), d.text, JSON.stringify(d.ids));
});

test("tiktoken: special tokens sit in Kimi's reserved range after the ranks", () => {
  for (const [name, id] of Object.entries(ref.specials)) {
    assert.equal(tok.tokenToId(name), id, name);
    assert.deepEqual(tok.encode(name), [id], name);
    assert.equal(tok.decode([id]), name);
  }
  assert.equal(ref.specials["[BOS]"], ref.n_ranks);
  // unnamed ids of the range get tiktoken's reserved names; the range ends 256 ids after the ranks
  assert.equal(tok.tokenToId(`<|reserved_token_${ref.n_ranks + 5}|>`), ref.n_ranks + 5);
  assert.equal(tok.tokenToId(`<|reserved_token_${ref.n_ranks + 255}|>`), undefined);
  assert.equal(tok.specialToken("bos_token"), "[BOS]");
  assert.equal(tok.tokenToId(tok.specialToken("eos_token")!), ref.specials["[EOS]"]);
  const ids = tok.encode("[BOS]hi<|im_end|>");
  assert.equal(tok.decode(ids, true), "hi");
});

test("tiktoken: the chat template of tokenizer_config.json renders as transformers renders it", () => {
  const chat = ChatTemplate.load(DIR, tok);
  assert.equal(chat.isDefault, false);
  assert.equal(chat.render(ref.chat.messages, true), ref.chat.rendered);
  assert.deepEqual(tok.encode(chat.render(ref.chat.messages, true)), ref.chat.ids);
});

test("tiktoken: StreamDecoder emits whole characters of multi-byte tokens", () => {
  let held = 0;
  for (const c of [...ref.cases, ...ref.random.slice(0, 100)]) {
    const s = new StreamDecoder(tok);
    let out = "";
    for (const id of c.ids) {
      const piece = s.push(id);
      if (piece === "") held++;
      if (!c.text.includes("\uFFFD")) assert.ok(!piece.includes("\uFFFD"), JSON.stringify(c.text));
      out += piece;
    }
    out += s.flush();
    assert.equal(out, c.text);
  }
  // characters split across byte tokens (CJK, emoji) were held back until complete
  assert.ok(held > 50, `held ${held}`);
});

test("tiktoken: the worker-thread encoder builds the same tokenizer from the converted JSON", async () => {
  const enc = new AsyncEncoder(tok, 100);
  try {
    assert.ok(ref.long.text.length > 100);
    assert.deepEqual(await enc.encode(ref.long.text, false), ref.long.ids);
    assert.deepEqual(await enc.encode(ref.chat.rendered, true), ref.chat.ids);
  } finally {
    await enc.close();
  }
});

test("tiktoken: a text's token count is at least minTokens(its length)", () => {
  assert.ok(tok.maxCharsPerToken !== null && tok.maxCharsPerToken > 1);
  for (const c of [...ref.cases, ...ref.random]) assert.ok(c.ids.length >= tok.minTokens(c.text.length), JSON.stringify(c.text));
});

test("tiktoken: the calibration-text encoder of `mla convert` reads tiktoken.model", () => {
  const enc = encoderOf(DIR);
  assert.deepEqual(enc(ref.cases[0].text), ref.cases[0].ids);
});

test("tiktoken: GGUF export writes the converted vocabulary with pre-tokenizer kimi-k2", () => {
  const base = loadConfig(join(FIXTURES, "tiny-deepseek-v3"));
  const c = { ...base, vocabSize: ref.n_ranks + 256 + 4 };
  const kv = new Map(ggufTokenizer(DIR, c).map(([k, v]) => [k, v]));
  const value = (k: string) => (kv.get(k) as { value: unknown } | undefined)?.value;
  assert.equal(value(GGUF_KEYS.tokenizerModel), "gpt2");
  assert.equal(value(GGUF_KEYS.tokenizerPre), "kimi-k2");
  const tokens = value(GGUF_KEYS.tokens) as string[];
  const types = value(GGUF_KEYS.tokenType) as number[];
  assert.equal(tokens.length, c.vocabSize);
  assert.equal(tokens[ref.specials["<|im_end|>"]], "<|im_end|>");
  assert.equal(types[ref.specials["<|im_end|>"]], TOKEN_TYPE.control);
  assert.equal(types[100], TOKEN_TYPE.normal);
  assert.equal(types[c.vocabSize - 1], TOKEN_TYPE.unused);
  assert.equal((value(GGUF_KEYS.merges) as string[]).length, ref.merges);
  assert.equal(value(GGUF_KEYS.bosId), ref.specials["[BOS]"]);
  assert.equal(value(GGUF_KEYS.eosId), ref.specials["[EOS]"]);
  assert.equal(value(GGUF_KEYS.addBos), false);
});

test("tiktoken: malformed tiktoken.model files are refused with the file and line", () => {
  const bytes = Array.from({ length: 256 }, (_, b) => `${btoa(String.fromCharCode(b))} ${b}`);
  assert.equal(parseTiktokenRanks(bytes.join("\n") + "\n\n").size, 256);
  assert.throws(() => parseTiktokenRanks([...bytes, "YWI= x"].join("\n"), "m/tiktoken.model"), (e: Error) => e instanceof MlaError && /m\/tiktoken.model:257: expected "base64 rank"/.test(e.message));
  assert.throws(() => parseTiktokenRanks([...bytes, "YWI= 5"].join("\n")), /rank 5 appears twice/);
  assert.throws(() => parseTiktokenRanks([...bytes, "YQ== 300"].join("\n")), /appears twice/);
  assert.throws(() => parseTiktokenRanks([...bytes, "@@@ 300"].join("\n")), /is not base64/);
  assert.throws(() => parseTiktokenRanks(bytes.slice(1).join("\n")), /lacks the single-byte token 0x00/);
  const dir = mkdtempSync(join(tmpdir(), "mla-tiktoken-"));
  try {
    // a gap in the ranks would put a special token on a rank
    writeFileSync(join(dir, "tiktoken.model"), [...bytes, "YWI= 257"].join("\n"));
    assert.throws(() => readTiktokenDir(dir), /rank 257 is not below the token count 257/);
    rmSync(join(dir, "tiktoken.model"));
    assert.equal(TextTokenizer.load(dir), null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("tiktoken: pat_str is read from the folder's Python tokenizer when it ships one", () => {
  const dir = mkdtempSync(join(tmpdir(), "mla-tiktoken-"));
  try {
    assert.equal(tiktokenPatStr(dir), KIMI_PAT_STR);
    // as tokenization_kimi.py writes it, with a comment and without the last part (to tell it from the default)
    const parts = KIMI_PAT_PARTS.slice(0, -1);
    writeFileSync(join(dir, "tokenization_kimi.py"), `class T:\n    pat_str = "|".join(\n        [\n${parts.map((p) => `            r"""${p}""",  # part\n`).join("")}        ]\n    )\n`);
    assert.equal(tiktokenPatStr(dir), parts.join("|"));
    writeFileSync(join(dir, "tokenization_kimi.py"), `pat_str = r"\\d+|\\s+"\n`);
    assert.equal(tiktokenPatStr(dir, { auto_map: { AutoTokenizer: ["tokenization_kimi.TikTokenTokenizer", null] } }), String.raw`\d+|\s+`);
    writeFileSync(join(dir, "tokenization_kimi.py"), `pat_str = "|".join([PATTERN, r"\\s+"])\n`);
    assert.throws(() => tiktokenPatStr(dir), /tokenization_kimi.py: pat_str is not a raw string or a "\|".join of raw strings/);
    // the fixture's own folder: a tiktoken.model and config only, so Kimi's pat_str
    for (const f of ["tiktoken.model", "tokenizer_config.json"]) copyFileSync(join(DIR, f), join(dir, f));
    rmSync(join(dir, "tokenization_kimi.py"));
    assert.deepEqual(TextTokenizer.load(dir)!.encode(ref.cases[1].text), ref.cases[1].ids);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
