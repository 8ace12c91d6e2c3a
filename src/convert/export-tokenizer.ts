/**
 * A checkpoint's tokenizer as GGUF metadata (what convert_hf_to_gguf's _set_vocab_gpt2 and gguf-py's SpecialVocab
 * write): tokenizer.json's byte-level BPE as tokenizer.ggml.model "gpt2" with its tokens, token types and merges;
 * tokenizer.ggml.pre naming the llama.cpp pre-tokenizer whose regex is the tokenizer.json's (src/llama-vocab.cpp);
 * bos/eos ids, add_bos/add_eos, and the chat template.
 *
 * A checkpoint with a tiktoken.model instead (Kimi, Moonlight) is exported from its converted tokenizer.json
 * (src/tokenizer/tiktoken.ts) with tokenizer.ggml.pre "kimi-k2", as llama.cpp's converter does for these models;
 * its merges are every two-token split of each token (TikTokenConverter's list), a longer list than llama.cpp's
 * converter writes (one split per token: the one tiktoken's BPE reaches first within the token).
 *
 * A checkpoint with neither (random-weight benchmarks, test fixtures) gets a placeholder: byte-level
 * tokens for newline, space and printable ASCII first, then the other bytes, no merges. llama.cpp's "none"
 * vocabulary would say the truth better, but node-llama-cpp aborts on it (it tokenizes at load), so ids are all
 * such a file is good for.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { MlaError } from "../errors.js";
import { gv, type GgufTypedValue } from "../io/gguf-write.js";
import type { ModelConfig } from "../model/config.js";
import { GGUF_KEYS, TOKEN_TYPE } from "../model/gguf/names.js";
import { DEFAULT_CHAT_TEMPLATE } from "../tokenizer/chat.js";
import { KIMI_PAT_STR, KIMI_SPLIT_REGEX, readTiktokenDir } from "../tokenizer/tiktoken.js";

type Kv = readonly [string, GgufTypedValue];
type Json = Record<string, unknown>;

/**
 * tokenizer.json pre-tokenizer regexes (as Hugging Face writes them) and the tokenizer.ggml.pre value whose
 * llama.cpp regexes split the same way. ByteLevel with use_regex splits with GPT-2's regex.
 */
const GPT2_REGEX = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const PRE_BY_REGEX: readonly (readonly [string, readonly string[]])[] = [
  ["gpt-2", [GPT2_REGEX]],
  ["llama-bpe", ["(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"]],
  ["qwen2", ["(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"]],
  ["deepseek-v3", [
    "\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
  ]],
  // Kimi's pat_str as written, and as src/tokenizer/tiktoken.ts writes it (case-insensitive groups spelled out)
  ["kimi-k2", [KIMI_PAT_STR]],
  ["kimi-k2", [KIMI_SPLIT_REGEX]],
];
/** The pre-tokenizer names PRE_BY_REGEX knows, for messages. */
const KNOWN_PRE = [...new Set(PRE_BY_REGEX.map(([n]) => n))].join(", ");

/** GGUF tokenizer metadata of the checkpoint in `dir` (its vocabulary padded to the model's vocab_size). */
export function ggufTokenizer(dir: string, c: ModelConfig): Kv[] {
  const jsonPath = join(dir, "tokenizer.json");
  const tiktoken = existsSync(jsonPath) ? null : readTiktokenDir(dir);
  if (!existsSync(jsonPath) && !tiktoken) return placeholder(c);
  const path = tiktoken ? join(dir, "tiktoken.model") : jsonPath;
  const tok = tiktoken ? tiktoken.json : readJson(path);
  const model = (tok.model ?? {}) as Json;
  if (model.type !== "BPE") throw new MlaError(`${path}: model type ${JSON.stringify(model.type ?? null)} is not exported (byte-level BPE is)`);
  const cfg = tiktoken ? tiktoken.config : existsSync(join(dir, "tokenizer_config.json")) ? readJson(join(dir, "tokenizer_config.json")) : {};
  const { tokens, types } = vocabulary(tok, c.vocabSize, path);
  const kv: Kv[] = [
    [GGUF_KEYS.tokenizerModel, gv.str("gpt2")],
    [GGUF_KEYS.tokenizerPre, gv.str(preTokenizer(tok.pre_tokenizer, path))],
    [GGUF_KEYS.tokens, gv.arr("string", tokens)],
    [GGUF_KEYS.tokenType, gv.arr("i32", types)],
    [GGUF_KEYS.merges, gv.arr("string", merges(model.merges, path))],
  ];
  const id = (name: string, fallback: number | null) => specialId(cfg[name], tokens) ?? fallback;
  const bos = id("bos_token", c.bosTokenId), eos = id("eos_token", c.eosTokenIds[0] ?? null);
  if (bos !== null) kv.push([GGUF_KEYS.bosId, gv.u32(bos)]);
  if (eos !== null) kv.push([GGUF_KEYS.eosId, gv.u32(eos)]);
  for (const [key, name] of [[GGUF_KEYS.unkId, "unk_token"], [GGUF_KEYS.padId, "pad_token"]] as const) {
    const v = id(name, null);
    if (v !== null) kv.push([key, gv.u32(v)]);
  }
  kv.push([GGUF_KEYS.addBos, gv.bool(addsBos(cfg, tok))]);
  if (typeof cfg.add_eos_token === "boolean") kv.push([GGUF_KEYS.addEos, gv.bool(cfg.add_eos_token)]);
  kv.push([GGUF_KEYS.chatTemplate, gv.str(chatTemplate(dir, cfg))]);
  return kv;
}

/** GPT-2's byte -> printable character map (bytes_to_unicode): printable Latin-1 as itself, the rest from U+0100. */
function byteChar(b: number): string {
  const printable = (x: number) => (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255);
  if (printable(b)) return String.fromCharCode(b);
  let n = 0;
  for (let x = 0; x < b; x++) if (!printable(x)) n++;
  return String.fromCharCode(256 + n);
}

/** The placeholder vocabulary of a checkpoint without a tokenizer (see the header). */
function placeholder(c: ModelConfig): Kv[] {
  const order = [10, 32, ...Array.from({ length: 94 }, (_, i) => 33 + i)];
  for (let b = 0; b < 256; b++) if (!order.includes(b)) order.push(b);
  const tokens = Array.from({ length: c.vocabSize }, (_, i) => (i < 256 ? byteChar(order[i]) : `[PAD${i}]`));
  const types = tokens.map((_, i) => (i < 256 ? TOKEN_TYPE.normal : TOKEN_TYPE.unused));
  const kv: Kv[] = [
    [GGUF_KEYS.tokenizerModel, gv.str("gpt2")],
    [GGUF_KEYS.tokenizerPre, gv.str("gpt-2")],
    [GGUF_KEYS.tokens, gv.arr("string", tokens)],
    [GGUF_KEYS.tokenType, gv.arr("i32", types)],
    [GGUF_KEYS.merges, gv.arr("string", [])],
    [GGUF_KEYS.addBos, gv.bool(false)],
  ];
  if (c.bosTokenId !== null && c.bosTokenId < c.vocabSize) kv.push([GGUF_KEYS.bosId, gv.u32(c.bosTokenId)]);
  if (c.eosTokenIds.length && c.eosTokenIds[0] < c.vocabSize) kv.push([GGUF_KEYS.eosId, gv.u32(c.eosTokenIds[0])]);
  return kv;
}

function readJson(path: string): Json {
  try {
    const v: unknown = JSON.parse(readFileSync(path, "utf8"));
    if (typeof v === "object" && v !== null && !Array.isArray(v)) return v as Json;
  } catch {
    // reported below
  }
  throw new MlaError(`${path} is not a JSON object`);
}

/** Tokens by id (added tokens included), with llama.cpp's token types; ids the tokenizer lacks become [PADn]. */
function vocabulary(tok: Json, vocabSize: number, path: string): { tokens: string[]; types: number[] } {
  const tokens = new Array<string | undefined>(vocabSize), types = new Array<number>(vocabSize).fill(TOKEN_TYPE.normal);
  const put = (t: string, id: number) => {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new MlaError(`${path}: token ${JSON.stringify(t)} has id ${id}, outside the model's vocab_size ${vocabSize}`);
    tokens[id] = t;
  };
  for (const [t, id] of Object.entries(((tok.model as Json).vocab ?? {}) as Record<string, number>)) put(t, id);
  for (const a of (tok.added_tokens ?? []) as { id: number; content: string; special?: boolean }[]) {
    put(a.content, a.id);
    types[a.id] = a.special ? TOKEN_TYPE.control : TOKEN_TYPE.userDefined;
  }
  for (let i = 0; i < vocabSize; i++) {
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = TOKEN_TYPE.unused;
    }
  }
  return { tokens: tokens as string[], types };
}

/** Merges as "left right" strings (tokenizer.json writes them so, or as pairs since tokenizers 0.20). */
function merges(m: unknown, path: string): string[] {
  if (!Array.isArray(m)) throw new MlaError(`${path}: BPE model has no merges list`);
  return m.map((x) => (Array.isArray(x) ? x.join(" ") : String(x)));
}

/** The Split regexes of a pre_tokenizer (ByteLevel with use_regex: GPT-2's); refuses what splits otherwise. */
function splitRegexes(p: Json | null, path: string): string[] {
  if (!p) throw new MlaError(`${path}: no pre_tokenizer; llama.cpp's byte-level BPE needs one it knows`);
  if (p.type === "Sequence") return ((p.pretokenizers ?? []) as Json[]).flatMap((x) => splitRegexes(x, path));
  if (p.type === "ByteLevel") {
    if (p.add_prefix_space === true) throw new MlaError(`${path}: ByteLevel add_prefix_space is not exported (llama.cpp's BPE adds no space)`);
    return p.use_regex === false ? [] : [GPT2_REGEX];
  }
  if (p.type === "Split") {
    const pat = (p.pattern ?? {}) as Json;
    if (typeof pat.Regex === "string") return [pat.Regex];
  }
  throw new MlaError(`${path}: pre_tokenizer ${String(p.type)} is not exported (known: ByteLevel, Split with the regexes of ${KNOWN_PRE})`);
}

/** tokenizer.ggml.pre: the llama.cpp pre-tokenizer whose regexes are the tokenizer.json's. */
function preTokenizer(p: unknown, path: string): string {
  const rx = splitRegexes((p ?? null) as Json | null, path);
  const hit = PRE_BY_REGEX.find(([, r]) => r.length === rx.length && r.every((x, i) => x === rx[i]));
  if (!hit) throw new MlaError(`${path}: no llama.cpp pre-tokenizer splits with ${JSON.stringify(rx).slice(0, 200)} (known: ${KNOWN_PRE})`);
  return hit[0];
}

/** A special token of tokenizer_config.json (a string, or an AddedToken object) as its id. */
function specialId(v: unknown, tokens: readonly string[]): number | null {
  const s = typeof v === "string" ? v : typeof v === "object" && v !== null ? (v as Json).content : undefined;
  if (typeof s !== "string") return null;
  const i = tokens.indexOf(s);
  return i >= 0 ? i : null;
}

/** add_bos_token from tokenizer_config.json, else whether the post-processor puts a special token first. */
function addsBos(cfg: Json, tok: Json): boolean {
  if (typeof cfg.add_bos_token === "boolean") return cfg.add_bos_token;
  const single = ((tok.post_processor ?? {}) as Json).single;
  return Array.isArray(single) && single.length > 0 && typeof single[0] === "object" && single[0] !== null && "SpecialToken" in single[0];
}

/** The checkpoint's chat template (as ChatTemplate.load finds it), else the one mla-ts uses without one. */
function chatTemplate(dir: string, cfg: Json): string {
  let src: unknown = cfg.chat_template;
  if (Array.isArray(src)) {
    const named = src as { name?: unknown; template?: unknown }[];
    src = (named.find((t) => t.name === "default") ?? named[0])?.template;
  }
  if (typeof src === "string") return src;
  const file = join(dir, "chat_template.jinja");
  return existsSync(file) ? readFileSync(file, "utf8") : DEFAULT_CHAT_TEMPLATE;
}
