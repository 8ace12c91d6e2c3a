/**
 * Byte-level BPE: a trainer that writes a Hugging Face tokenizer.json (GPT-2 style byte alphabet, ByteLevel
 * pre-tokenizer and decoder, BOS added by the post-processor) plus tokenizer_config.json, and a small encoder /
 * decoder for such files that gives the same ids as @huggingface/tokenizers. For the bundled and trained small
 * models; real checkpoints ship their own tokenizer.json.
 *
 * The trainer is the standard incremental algorithm (as in Hugging Face tokenizers' BpeTrainer): count the
 * pre-tokenized words once, keep the count of every adjacent symbol pair and, per pair, the words it occurs in;
 * each merge rewrites only the words that contain the chosen pair and adjusts the pair counts by the difference.
 * The next pair comes from a max-heap with lazy invalidation. Cost: O(total symbols touched by merges), not
 * O(merges x words).
 *
 * Merge order, fixed: the pair with the highest count (over the whole corpus) wins; ties go to the pair whose left
 * token id is smallest, then whose right token id is smallest (ids: special tokens first, then the 256 bytes in
 * byte order, then merged tokens in merge order). A pair must occur at least `minFrequency` times (default 2).
 * Within a word, occurrences are merged left to right without overlap ("a a a" + (a,a) -> "aa a").
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MlaError } from "../errors.js";

/** GPT-2's reversible byte -> printable character map used by ByteLevel tokenizers. */
export function bytesToUnicode(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const map: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) map[b] = String.fromCodePoint(keep.includes(b) ? b : 256 + n++);
  return map;
}

/** The ByteLevel pre-tokenizer's split (GPT-2 regex, as @huggingface/tokenizers applies it). */
const PRETOKENIZE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** Words as the ByteLevel pre-tokenizer splits them (before the byte mapping). */
export function pretokenize(text: string): string[] {
  return text.match(PRETOKENIZE) ?? [];
}

export interface BpeTrainOptions {
  /** Total vocabulary, special tokens included (at least special + 256). */
  readonly vocabSize: number;
  /** Special tokens, given the first ids; the first is used as BOS. */
  readonly specialTokens?: readonly string[];
  /** Pairs seen fewer times than this are never merged (default 2). */
  readonly minFrequency?: number;
}

/** The parts of a byte-level BPE tokenizer.json that this module reads and writes. */
export interface TokenizerJson {
  version: string;
  added_tokens: { id: number; content: string; special: boolean; [k: string]: unknown }[];
  model: { type: "BPE"; vocab: Record<string, number>; merges: string[]; [k: string]: unknown };
  [k: string]: unknown;
}

/**
 * Merges learned from word counts (word -> occurrences; words are pre-tokenized pieces, as text). Returns the
 * merges as token-string pairs, in order; `vocabSize` counts the special tokens and the 256 bytes.
 */
export function learnMerges(wordCounts: ReadonlyMap<string, number>, opts: BpeTrainOptions): [string, string][] {
  const specials = opts.specialTokens ?? ["<bos>", "<eos>"];
  const nSpecial = specials.length;
  const minFrequency = Math.max(1, opts.minFrequency ?? 2);
  const target = opts.vocabSize;
  // id -> token string: special tokens (never part of words), then the bytes, then merged tokens. A merge whose
  // text already is a token (another split of the same bytes, or a special token's text) reuses that id.
  const idToToken: string[] = [...specials, ...bytesToUnicode()];
  const tokenToId = new Map<string, number>();
  idToToken.forEach((t, i) => tokenToId.set(t, i));

  // Pair keys a * S + b order pairs by (a, b); S bounds every id ever created, so keys are exact integers.
  const S = Math.max(target, idToToken.length) + 1;
  const enc = new TextEncoder();
  const words: number[][] = [];
  const freq: number[] = [];
  for (const [w, n] of wordCounts) {
    const bytes = enc.encode(w);
    if (bytes.length === 0 || n <= 0) continue;
    words.push(Array.from(bytes, (b) => b + nSpecial));
    freq.push(n);
  }

  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  /** Add n to `counts` for every adjacent pair of word w's symbols s, and index w under each pair. */
  const addPairs = (counts: Map<number, number>, s: number[], n: number, w: number) => {
    for (let i = 0; i + 1 < s.length; i++) {
      const k = s[i] * S + s[i + 1];
      counts.set(k, (counts.get(k) ?? 0) + n);
      let set = pairWords.get(k);
      if (!set) pairWords.set(k, (set = new Set()));
      set.add(w);
    }
  };
  for (let w = 0; w < words.length; w++) addPairs(pairCount, words[w], freq[w], w);

  // Max-heap on (count desc, key asc). Entries may be stale: checked against pairCount when popped.
  const hc: number[] = [], hk: number[] = [];
  const above = (i: number, j: number) => hc[i] > hc[j] || (hc[i] === hc[j] && hk[i] < hk[j]);
  const swap = (i: number, j: number) => {
    const c = hc[i], k = hk[i];
    hc[i] = hc[j], hk[i] = hk[j], hc[j] = c, hk[j] = k;
  };
  const push = (count: number, key: number) => {
    hc.push(count), hk.push(key);
    for (let i = hc.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (!above(i, p)) break;
      swap(i, p), (i = p);
    }
  };
  const pop = () => {
    const last = hc.length - 1;
    swap(0, last);
    const c = hc.pop()!, k = hk.pop()!;
    for (let i = 0; ;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < hc.length && above(l, m)) m = l;
      if (r < hc.length && above(r, m)) m = r;
      if (m === i) break;
      swap(i, m), (i = m);
    }
    return [c, k] as const;
  };
  for (const [k, c] of pairCount) push(c, k);

  const merges: [string, string][] = [];
  const delta = new Map<number, number>();
  while (tokenToId.size < target && hc.length > 0) {
    const [c, key] = pop();
    const actual = pairCount.get(key) ?? 0;
    if (c !== actual) {
      if (actual > 0) push(actual, key);
      continue;
    }
    if (actual < minFrequency) break;
    const a = Math.floor(key / S), b = key - a * S;
    const token = idToToken[a] + idToToken[b];
    let id = tokenToId.get(token);
    if (id === undefined) {
      id = idToToken.length;
      idToToken.push(token);
      tokenToId.set(token, id);
    }
    merges.push([idToToken[a], idToToken[b]]);

    delta.clear();
    const where = pairWords.get(key)!;
    pairWords.delete(key);
    pairCount.delete(key);
    for (const w of where) {
      const s = words[w], n = freq[w];
      let has = false;
      for (let i = 0; i + 1 < s.length; i++) if (s[i] === a && s[i + 1] === b) { has = true; break; }
      if (!has) continue;
      for (let i = 0; i + 1 < s.length; i++) {
        const k = s[i] * S + s[i + 1];
        if (k !== key) delta.set(k, (delta.get(k) ?? 0) - n);
      }
      const out: number[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) out.push(id), i++;
        else out.push(s[i]);
      }
      words[w] = out;
      addPairs(delta, out, n, w);
    }
    for (const [k, d] of delta) {
      if (d === 0) continue;
      const now = (pairCount.get(k) ?? 0) + d;
      if (now > 0) pairCount.set(k, now);
      else pairCount.delete(k), pairWords.delete(k);
      if (d > 0) push(now, k);
    }
  }
  return merges;
}

/** Pre-tokenized word counts of one text or of several documents (pre-tokenized one by one). */
export function countWords(text: string | readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const doc of typeof text === "string" ? [text] : text) {
    for (const w of pretokenize(doc)) counts.set(w, (counts.get(w) ?? 0) + 1);
  }
  return counts;
}

/** Trains a byte-level BPE tokenizer on a text or a list of documents and returns its tokenizer.json. */
export function trainByteLevelBpe(text: string | readonly string[], opts: BpeTrainOptions): TokenizerJson {
  const specials = opts.specialTokens ?? ["<bos>", "<eos>"];
  if (specials.length === 0) throw new MlaError("at least one special token (BOS) is needed");
  if (new Set(specials).size !== specials.length) throw new MlaError("special tokens must be distinct");
  if (!Number.isInteger(opts.vocabSize) || opts.vocabSize < specials.length + 256) {
    throw new MlaError(`vocabulary size must be an integer >= ${specials.length + 256} (special tokens + 256 bytes), got ${opts.vocabSize}`);
  }
  const byteMap = bytesToUnicode();
  for (const s of specials) if (byteMap.includes(s)) throw new MlaError(`special token "${s}" collides with a byte token`);
  const merges = learnMerges(countWords(text), opts);
  const vocab: Record<string, number> = {};
  let size = 0;
  for (const s of specials) vocab[s] = size++;
  for (const ch of byteMap) vocab[ch] = size++;
  for (const [a, b] of merges) if (!Object.hasOwn(vocab, a + b)) vocab[a + b] = size++;
  const bos = specials[0];
  return {
    version: "1.0", truncation: null, padding: null,
    added_tokens: specials.map((s, id) => ({ id, content: s, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { [bos]: { id: bos, ids: [0], tokens: [bos] } },
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

export interface WriteTokenizerOptions {
  /** Longest sequence the model takes (tokenizer_config.json's model_max_length; default 2048). */
  readonly modelMaxLength?: number;
  /** BOS / EOS tokens (default: the first and second added tokens). */
  readonly bosToken?: string;
  readonly eosToken?: string;
}

/**
 * Writes tokenizer.json and tokenizer_config.json into dir (created if missing). The config names the BOS/EOS
 * tokens for transformers' PreTrainedTokenizerFast and turns off clean_up_tokenization_spaces, which would
 * otherwise rewrite " ." to "." on decode (the JS tokenizer defaults it to true) and break the round trip.
 */
export function writeTokenizer(dir: string, json: TokenizerJson, opts: WriteTokenizerOptions = {}): { tokenizer: string; config: string } {
  const bos = opts.bosToken ?? json.added_tokens[0]?.content;
  const eos = opts.eosToken ?? json.added_tokens[1]?.content ?? bos;
  if (bos === undefined) throw new MlaError("the tokenizer has no special tokens to use as BOS/EOS");
  const config = {
    tokenizer_class: "PreTrainedTokenizerFast",
    bos_token: bos,
    eos_token: eos,
    add_bos_token: true,
    add_eos_token: false,
    model_max_length: opts.modelMaxLength ?? 2048,
    clean_up_tokenization_spaces: false,
    added_tokens_decoder: Object.fromEntries(json.added_tokens.map((t) => [String(t.id), {
      content: t.content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: t.special,
    }])),
  };
  mkdirSync(dir, { recursive: true });
  const tokenizer = join(dir, "tokenizer.json"), cfg = join(dir, "tokenizer_config.json");
  writeFileSync(tokenizer, JSON.stringify(json));
  writeFileSync(cfg, JSON.stringify(config, null, 2) + "\n");
  return { tokenizer, config: cfg };
}

/**
 * Encoder/decoder for the byte-level BPE tokenizer.json files written above (same ids as @huggingface/tokenizers,
 * which the tests check): added tokens are matched literally first, the rest is pre-tokenized, byte-mapped and
 * merged by rank (lowest first, leftmost first). A few times faster than the general library for large texts.
 */
export class ByteLevelBpe {
  private readonly rank = new Map<number, number>();
  private readonly result = new Map<number, number>();
  private readonly byteId: number[];
  private readonly idBytes: (Uint8Array | null)[];
  private readonly specials: Map<string, number>;
  private readonly specialRe: RegExp | null;
  private readonly cache = new Map<string, number[]>();
  private readonly S: number;
  private readonly bosId: number | undefined;

  constructor(json: TokenizerJson) {
    const { vocab, merges } = json.model;
    const size = Math.max(...Object.values(vocab)) + 1;
    this.S = size + 1;
    const byteMap = bytesToUnicode();
    const charByte = new Map(byteMap.map((ch, b) => [ch, b]));
    this.byteId = byteMap.map((ch) => {
      const id = vocab[ch];
      if (id === undefined) throw new MlaError(`tokenizer.json lacks the byte token ${JSON.stringify(ch)}`);
      return id;
    });
    this.idBytes = new Array(size).fill(null);
    for (const [tok, id] of Object.entries(vocab)) {
      const bytes = Array.from(tok, (ch) => charByte.get(ch));
      if (bytes.every((b) => b !== undefined)) this.idBytes[id] = Uint8Array.from(bytes as number[]);
    }
    merges.forEach((m, r) => {
      const [a, b] = m.split(" ");
      const ia = vocab[a], ib = vocab[b], ic = vocab[a + b];
      if (ia === undefined || ib === undefined || ic === undefined) throw new MlaError(`merge "${m}" uses tokens missing from the vocabulary`);
      const k = ia * this.S + ib;
      if (!this.rank.has(k)) this.rank.set(k, r), this.result.set(k, ic);
    });
    this.specials = new Map(json.added_tokens.map((t) => [t.content, t.id]));
    this.specialRe = this.specials.size
      ? new RegExp(`(${[...this.specials.keys()].sort((x, y) => y.length - x.length).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})`)
      : null;
    this.bosId = json.added_tokens[0]?.id;
  }

  /** Ids of text; with addBos the first added token is put in front (what tokenizer.json's post-processor does). */
  encode(text: string, addBos = true): number[] {
    const ids: number[] = addBos && this.bosId !== undefined ? [this.bosId] : [];
    const parts = this.specialRe ? text.split(this.specialRe) : [text];
    const enc = new TextEncoder();
    parts.forEach((part, i) => {
      if (i % 2 === 1) return void ids.push(this.specials.get(part)!);
      for (const w of pretokenize(part)) {
        let toks = this.cache.get(w);
        if (!toks) {
          toks = this.bpe(Array.from(enc.encode(w), (b) => this.byteId[b]));
          if (this.cache.size < 100_000) this.cache.set(w, toks);
        }
        for (const t of toks) ids.push(t);
      }
    });
    return ids;
  }

  private bpe(s: number[]): number[] {
    for (;;) {
      let best = -1, bestRank = Infinity;
      for (let i = 0; i + 1 < s.length; i++) {
        const r = this.rank.get(s[i] * this.S + s[i + 1]);
        if (r !== undefined && r < bestRank) (bestRank = r), (best = i);
      }
      if (best < 0) return s;
      const a = s[best], b = s[best + 1], c = this.result.get(a * this.S + b)!;
      const out: number[] = s.slice(0, best);
      for (let i = best; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) out.push(c), i++;
        else out.push(s[i]);
      }
      s = out;
    }
  }

  /** Text of ids (special tokens written as their text). Invalid UTF-8 becomes U+FFFD. */
  decode(ids: readonly number[]): string {
    let out = "";
    let buf: number[] = [];
    const dec = new TextDecoder();
    const flush = () => {
      if (buf.length) out += dec.decode(Uint8Array.from(buf));
      buf = [];
    };
    const special = new Map([...this.specials].map(([s, id]) => [id, s]));
    for (const id of ids) {
      const sp = special.get(id);
      if (sp !== undefined) {
        flush();
        out += sp;
        continue;
      }
      const bytes = this.idBytes[id];
      if (!bytes) throw new MlaError(`token id ${id} is not in the vocabulary`);
      for (const b of bytes) buf.push(b);
    }
    flush();
    return out;
  }
}

/** UTF-8 bytes per token (no BOS) of a text under a tokenizer: the compression the tokenizer achieves. */
export function bytesPerToken(tok: ByteLevelBpe, text: string | readonly string[]): { bytes: number; tokens: number; bytesPerToken: number } {
  let bytes = 0, tokens = 0;
  for (const doc of typeof text === "string" ? [text] : text) {
    bytes += Buffer.byteLength(doc, "utf8");
    tokens += tok.encode(doc, false).length;
  }
  return { bytes, tokens, bytesPerToken: tokens ? bytes / tokens : 0 };
}
