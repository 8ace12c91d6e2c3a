/**
 * tiktoken tokenizers (Moonlight-16B-A3B, Kimi-K2 and the other Moonshot models): `tiktoken.model` holds one
 * `base64(token bytes) rank` line per BPE token, the pre-tokenizer regex (`pat_str`) lives in the repository's
 * tokenization_kimi.py / tokenization_moonshot.py, and the special tokens are a reserved range of ids after the
 * ranks, named by tokenizer_config.json's added_tokens_decoder.
 *
 * Such a folder is turned into the byte-level BPE tokenizer.json that Hugging Face's TikTokenConverter writes, so
 * the one tokenizer path (@huggingface/tokenizers, also on the encoder's worker thread) runs it:
 * - vocab: every token's bytes in GPT-2's byte -> character form, id = rank;
 * - merges: every split of a token into two tokens, ordered by the token's rank, then by the ranks of the halves
 *   (TikTokenConverter's order). tiktoken merges the adjacent pair whose concatenation has the lowest rank, the
 *   leftmost on a tie; with every split listed, BPE merges the same pair, except when two different splits of one
 *   token are both present at once (then the listed order, not the position, decides);
 * - ignore_merges: a whole pre-tokenized piece that is a token is that token, as in tiktoken;
 * - pre-tokenizer: Split on pat_str, then the byte mapping; decoder: ByteLevel;
 * - added tokens: the reserved range, all special, matched as exact text (tiktoken's allowed_special="all",
 *   which is what the Python tokenizer's encode uses).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { MlaError } from "../errors.js";
import { bytesToUnicode } from "./bpe-train.js";

/** The pre-tokenizer of Moonlight's tokenization_moonshot.py and Kimi-K2's tokenization_kimi.py (the same in both). */
export const KIMI_PAT_PARTS: readonly string[] = [
  String.raw`[\p{Han}]+`,
  String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?`,
  String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?`,
  String.raw`\p{N}{1,3}`,
  String.raw` ?[^\s\p{L}\p{N}]+[\r\n]*`,
  String.raw`\s*[\r\n]+`,
  String.raw`\s+(?!\S)`,
  String.raw`\s+`,
];
export const KIMI_PAT_STR = KIMI_PAT_PARTS.join("|");

/** Reserved special-token ids after the BPE ranks (num_reserved_special_tokens of the Python tokenizer). */
export const TIKTOKEN_RESERVED_SPECIALS = 256;

/**
 * Letters that Unicode simple case folding adds to an ASCII letter (tiktoken's regex engine folds `(?i:'s)` to match
 * "'ſ" too; @huggingface/tokenizers folds ASCII only).
 */
const EXTRA_FOLDS: Record<string, string> = { s: "\u017F", k: "\u212A" };

/**
 * pat_str with its case-insensitive groups of ASCII literals spelled out as classes (`(?i:'s|'re)` ->
 * `(?:'[sSſ]|'[rR][eE])`), so that @huggingface/tokenizers, which folds only ASCII, splits as tiktoken does. The
 * result is an equivalent regex in Oniguruma syntax too. Groups with anything but letters, apostrophes and `|` are
 * left as they are.
 */
export function tiktokenSplitRegex(pat: string): string {
  return pat.replace(/\(\?i:([A-Za-z'|]*)\)/g, (_, body: string) => {
    const spelled = body.replace(/[A-Za-z]/g, (c) => `[${c.toLowerCase()}${c.toUpperCase()}${EXTRA_FOLDS[c.toLowerCase()] ?? ""}]`);
    return `(?:${spelled})`;
  });
}

/** The split regex that Kimi / Moonlight tokenizer.json objects made here carry (GGUF export recognizes it). */
export const KIMI_SPLIT_REGEX = tiktokenSplitRegex(KIMI_PAT_STR);

/**
 * Tokens of a tiktoken.model text in GPT-2's byte -> character form, with their ranks, in file order. Lines are
 * `base64 rank`; empty lines are skipped (as tiktoken's load_tiktoken_bpe does).
 */
export function parseTiktokenRanks(text: string, path = "tiktoken.model"): Map<string, number> {
  const byteChar = bytesToUnicode();
  const byteCode = byteChar.map((c) => c.charCodeAt(0));
  const ranks = new Map<string, number>();
  const seen = new Set<number>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    const [b64, rankText, extra] = line.split(/\s+/);
    const rank = Number(rankText);
    if (extra !== undefined || !/^\d+$/.test(rankText ?? "") || !Number.isSafeInteger(rank)) {
      throw new MlaError(`${path}:${i + 1}: expected "base64 rank", got ${JSON.stringify(line.slice(0, 80))}`);
    }
    let binary: string;
    try {
      binary = atob(b64);
    } catch {
      throw new MlaError(`${path}:${i + 1}: ${JSON.stringify(b64.slice(0, 40))} is not base64`);
    }
    if (!binary) throw new MlaError(`${path}:${i + 1}: empty token`);
    const codes = new Array<number>(binary.length);
    for (let j = 0; j < binary.length; j++) codes[j] = byteCode[binary.charCodeAt(j)];
    // one flat string (not a rope of appended characters): it is sliced and hashed often below
    const token = String.fromCharCode(...codes);
    if (ranks.has(token)) throw new MlaError(`${path}:${i + 1}: token ${JSON.stringify(b64)} appears twice`);
    if (seen.has(rank)) throw new MlaError(`${path}:${i + 1}: rank ${rank} appears twice`);
    ranks.set(token, rank);
    seen.add(rank);
  }
  for (const ch of byteChar) {
    if (!ranks.has(ch)) throw new MlaError(`${path} lacks the single-byte token 0x${byteChar.indexOf(ch).toString(16).padStart(2, "0")}: byte-level BPE needs all 256`);
  }
  return ranks;
}

/**
 * BPE merges of tiktoken ranks, as TikTokenConverter lists them: for each token in rank order, every split into two
 * tokens, ordered by the left half's rank, then the right half's.
 */
export function tiktokenMerges(ranks: ReadonlyMap<string, number>): [string, string][] {
  const merges: [string, string][] = [];
  const byRank = [...ranks].sort((a, b) => a[1] - b[1]);
  for (const [token] of byRank) {
    // a byte-level token string has one character per byte
    const local: [string, string, number, number][] = [];
    for (let i = 1; i < token.length; i++) {
      const left = token.slice(0, i);
      const rl = ranks.get(left);
      if (rl === undefined) continue;
      const right = token.slice(i);
      const rr = ranks.get(right);
      if (rr !== undefined) local.push([left, right, rl, rr]);
    }
    local.sort((a, b) => a[2] - b[2] || a[3] - b[3]);
    for (const [left, right] of local) merges.push([left, right]);
  }
  return merges;
}

/** A special token: its id and its text. */
export interface TiktokenSpecial {
  readonly id: number;
  readonly content: string;
}

/**
 * The special tokens of a Kimi-style tokenizer: ids base .. base+255 (base = the number of ranks), named by
 * tokenizer_config.json's added_tokens_decoder ({"163584": {"content": "[BOS]", ...}}), the rest
 * `<|reserved_token_{id}|>`. Entries of added_tokens_decoder outside that range are not tiktoken tokens.
 */
export function tiktokenSpecials(config: Record<string, unknown>, base: number, path = "tokenizer_config.json"): TiktokenSpecial[] {
  const decoder = config.added_tokens_decoder;
  const named = new Map<number, string>();
  if (decoder !== undefined && decoder !== null) {
    if (typeof decoder !== "object" || Array.isArray(decoder)) throw new MlaError(`${path}: added_tokens_decoder must be an object of id -> {content}`);
    for (const [key, v] of Object.entries(decoder as Record<string, unknown>)) {
      const content = typeof v === "string" ? v : (v as { content?: unknown } | null)?.content;
      if (!/^\d+$/.test(key) || typeof content !== "string") throw new MlaError(`${path}: added_tokens_decoder["${key}"] needs an integer id and a string content`);
      named.set(Number(key), content);
    }
  }
  const out: TiktokenSpecial[] = [];
  for (let id = base; id < base + TIKTOKEN_RESERVED_SPECIALS; id++) out.push({ id, content: named.get(id) ?? `<|reserved_token_${id}|>` });
  return out;
}

/** The tokenizer.json object of tiktoken ranks, special tokens and a pat_str (see the header). */
export function tiktokenTokenizerJson(ranks: ReadonlyMap<string, number>, specials: readonly TiktokenSpecial[], patStr = KIMI_PAT_STR): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  for (const [token, rank] of ranks) vocab[token] = rank;
  const contents = new Set<string>();
  for (const s of specials) {
    if (contents.has(s.content)) throw new MlaError(`special token ${JSON.stringify(s.content)} is named twice`);
    contents.add(s.content);
  }
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: specials.map((s) => ({ id: s.id, content: s.content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: tiktokenSplitRegex(patStr) }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: true, vocab, merges: tiktokenMerges(ranks),
    },
  };
}

/**
 * The pat_str of the folder's Python tokenizer (the module tokenizer_config.json's auto_map names, else any
 * tokenization_*.py that sets pat_str), written as `pat_str = "|".join([r"""...""", ...])` or `pat_str = r"..."`;
 * KIMI_PAT_STR when the folder has no such file.
 */
export function tiktokenPatStr(dir: string, config: Record<string, unknown> = {}): string {
  for (const file of pythonTokenizerFiles(dir, config)) {
    const src = readFileSync(join(dir, file), "utf8");
    const m = /^[ \t]*pat_str\s*=\s*("\|"\.join\(\s*\[)?/m.exec(src);
    if (!m) continue;
    const parts = rawStrings(src, m.index + m[0].length, m[1] !== undefined);
    if (!parts) throw new MlaError(`${join(dir, file)}: pat_str is not a raw string or a "|".join of raw strings; mla-ts needs it as the pre-tokenizer regex`);
    return parts.join("|");
  }
  return KIMI_PAT_STR;
}

/**
 * The raw strings (r"""...""", r'...') of Python source from `at`: one, or (list) a list's items up to its "]",
 * with commas and comments between them; null at anything else.
 */
function rawStrings(src: string, at: number, list: boolean): string[] | null {
  const parts: string[] = [];
  const item = /r("""|'''|"|')([\s\S]*?)\1/y;
  const gap = /(?:\s|,|#[^\n]*)*/y;
  for (let i = at; ; ) {
    gap.lastIndex = i;
    i += gap.exec(src)![0].length;
    if (list && src[i] === "]") return parts.length ? parts : null;
    item.lastIndex = i;
    const m = item.exec(src);
    if (!m || (m[1].length === 1 && m[2].includes("\n"))) return null;
    parts.push(m[2]);
    i += m[0].length;
    if (!list) return parts;
  }
}

function pythonTokenizerFiles(dir: string, config: Record<string, unknown>): string[] {
  const files: string[] = [];
  const auto = (config.auto_map as { AutoTokenizer?: unknown } | undefined)?.AutoTokenizer;
  const first = Array.isArray(auto) ? auto[0] : auto;
  if (typeof first === "string" && first.includes(".")) files.push(`${first.split(".")[0]}.py`);
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    // an unreadable folder has no Python tokenizer to read
  }
  for (const f of names.sort()) if (/^tokenization_.*\.py$/.test(f) && !files.includes(f)) files.push(f);
  return files.filter((f) => existsSync(join(dir, f)));
}

/**
 * The tokenizer.json object and tokenizer_config.json of a folder with a tiktoken.model, or null when it has none.
 * The config gets clean_up_tokenization_spaces: false, since the Python tokenizer never cleans up decoded text.
 */
export function readTiktokenDir(dir: string): { json: Record<string, unknown>; config: Record<string, unknown> } | null {
  const path = join(dir, "tiktoken.model");
  if (!existsSync(path)) return null;
  const cfgPath = join(dir, "tokenizer_config.json");
  let config: Record<string, unknown> = {};
  if (existsSync(cfgPath)) {
    try {
      config = JSON.parse(readFileSync(cfgPath, "utf8"));
    } catch (e) {
      throw new MlaError(`${cfgPath} is not valid JSON: ${(e as Error).message}`);
    }
  }
  const ranks = parseTiktokenRanks(readFileSync(path, "utf8"), path);
  // the Python tokenizer puts the specials right after the ranks: at len(mergeable_ranks)
  const specials = tiktokenSpecials(config, ranks.size, cfgPath);
  for (const rank of ranks.values()) {
    if (rank >= ranks.size) throw new MlaError(`${path}: rank ${rank} is not below the token count ${ranks.size}, where the special tokens start`);
  }
  const json = tiktokenTokenizerJson(ranks, specials, tiktokenPatStr(dir, config));
  return { json, config: { ...config, clean_up_tokenization_spaces: false } };
}
