import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { MlaError } from "../errors.js";
import { readTiktokenDir } from "./tiktoken.js";

/**
 * Text <-> token ids for a checkpoint, from its tokenizer.json (+ tokenizer_config.json when present), or from a
 * tiktoken.model converted to the same form (./tiktoken.ts).
 */
export class TextTokenizer {
  /**
   * No token covers more UTF-16 characters of input than this, so a text of n characters is at least
   * ceil(n / maxCharsPerToken) tokens; null when the tokenizer gives no such bound (see charsPerTokenBound).
   */
  get maxCharsPerToken(): number | null {
    // a pass over the whole vocabulary: made on first use (a server's first text prompt), not at every load
    if (this.bound === undefined) this.bound = charsPerTokenBound(this.json);
    return this.bound;
  }

  private bound: number | null | undefined;

  private constructor(
    private readonly tok: Tokenizer, readonly config: Record<string, unknown>,
    /** The parsed tokenizer.json, kept to start the same tokenizer on a worker thread (./encoder.ts). */
    readonly json: object,
  ) {}

  static fromJson(tokenizerJson: object, tokenizerConfig: Record<string, unknown> = {}, source = "tokenizer.json"): TextTokenizer {
    try {
      return new TextTokenizer(new Tokenizer(tokenizerJson, tokenizerConfig), tokenizerConfig, tokenizerJson);
    } catch (e) {
      throw new MlaError(`${source} could not be loaded: ${(e as Error).message}`);
    }
  }

  /** The fewest tokens a text of `chars` UTF-16 characters can encode to (0 when the tokenizer gives no bound). */
  minTokens(chars: number): number {
    const bound = this.maxCharsPerToken;
    return bound === null ? 0 : Math.ceil(chars / bound);
  }

  /**
   * The tokenizer in dir: its tokenizer.json, else its tiktoken.model (Kimi, Moonlight); null when it has neither.
   */
  static load(dir: string): TextTokenizer | null {
    const path = join(dir, "tokenizer.json");
    if (!existsSync(path)) {
      const tiktoken = readTiktokenDir(dir);
      return tiktoken ? TextTokenizer.fromJson(tiktoken.json, tiktoken.config, join(dir, "tiktoken.model")) : null;
    }
    const json = readJson(path);
    const cfgPath = join(dir, "tokenizer_config.json");
    return TextTokenizer.fromJson(json, existsSync(cfgPath) ? readJson(cfgPath) : {});
  }

  /** Token ids of text; special tokens (e.g. BOS) are added as tokenizer.json's post-processor says. */
  encode(text: string, addSpecialTokens = true): number[] {
    return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: readonly number[], skipSpecialTokens = false): string {
    // the library refuses an empty list; its text is ""
    if (ids.length === 0) return "";
    return this.tok.decode([...ids], { skip_special_tokens: skipSpecialTokens });
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  /** A special token named in tokenizer_config.json (bos_token, eos_token, ...), as a string or {content}. */
  specialToken(name: string): string | undefined {
    const v = this.config[name];
    if (typeof v === "string") return v;
    if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") return (v as { content: string }).content;
    return undefined;
  }
}

type JsonObject = Record<string, unknown>;
const asObject = (v: unknown): JsonObject | null => (v && typeof v === "object" && !Array.isArray(v) ? (v as JsonObject) : null);

/**
 * The longest input, in UTF-16 characters, that one token can stand for, read from tokenizer.json; null unless
 * that is sound. It is for BPE models whose every input character ends up in some token: byte-level pre-tokenizing
 * (a vocabulary string's characters are bytes, and a byte is at least one UTF-16 character of input), byte fallback,
 * or unknown characters not fused into one token. Normalizers that can shorten the text (Unicode composition,
 * stripping) and pre-tokenizers that drop characters (whitespace splitting) void the bound. Used to refuse a
 * prompt that cannot fit the context before spending time to tokenize it.
 */
export function charsPerTokenBound(json: object): number | null {
  const j = json as JsonObject;
  const model = asObject(j.model);
  if (!model || model.type !== "BPE") return null;
  const vocab = asObject(model.vocab);
  if (!vocab) return null;
  const byteLevel = (p: unknown): boolean => {
    const o = asObject(p);
    if (!o) return false;
    if (o.type === "ByteLevel") return true;
    return o.type === "Sequence" && Array.isArray(o.pretokenizers) && o.pretokenizers.some(byteLevel);
  };
  const keeps = (p: unknown): boolean => {
    const o = asObject(p);
    if (!o) return p === null || p === undefined;
    if (o.type === "Sequence") return Array.isArray(o.pretokenizers) && o.pretokenizers.every(keeps);
    if (o.type === "Split") return o.behavior !== "Removed";
    return ["ByteLevel", "Metaspace", "Digits", "Punctuation", "UnicodeScripts"].includes(String(o.type));
  };
  const lengthens = (n: unknown): boolean => {
    const o = asObject(n);
    if (!o) return n === null || n === undefined;
    if (o.type === "Sequence") return Array.isArray(o.normalizers) && o.normalizers.every(lengthens);
    if (o.type === "Prepend") return true;
    // a literal replacement that is not shorter than what it replaces (Metaspace-style " " -> "▁")
    const pattern = asObject(o.pattern);
    return o.type === "Replace" && typeof pattern?.String === "string" && typeof o.content === "string" && o.content.length >= pattern.String.length;
  };
  if (!keeps(j.pre_tokenizer) || !lengthens(j.normalizer)) return null;
  if (!byteLevel(j.pre_tokenizer) && model.byte_fallback !== true && model.fuse_unk === true) return null;
  let max = 1;
  for (const k of Object.keys(vocab)) if (k.length > max) max = k.length;
  if (Array.isArray(j.added_tokens)) {
    for (const t of j.added_tokens) {
      const c = asObject(t)?.content;
      if (typeof c === "string" && c.length > max) max = c.length;
    }
  }
  return max;
}

function readJson(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new MlaError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * Turns a growing list of token ids into text deltas without ever emitting broken UTF-8. Decoding tokens one by
 * one breaks multi-byte characters (byte-level BPE splits them across tokens) and the spaces that decoders add or
 * strip at word boundaries, so, as text-generation-inference does, it decodes a short window: the tokens already
 * emitted since the last boundary (prefix) plus the new ones, and emits the difference once the window's text no
 * longer ends in U+FFFD (an incomplete UTF-8 sequence). Each push decodes O(window) tokens, not the whole text.
 */
export class StreamDecoder {
  private ids: number[] = [];
  /** Window start: tokens before it are emitted and never decoded again. */
  private prefixOffset = 0;
  /** Tokens before it are emitted. */
  private readOffset = 0;

  constructor(private readonly tok: TextTokenizer, private readonly skipSpecial = false) {}

  /** Text that token `id` completes ("" while a character is still incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const prefix = this.decode(this.prefixOffset, this.readOffset);
    const text = this.decode(this.prefixOffset, this.ids.length);
    if (text.length <= prefix.length || text.endsWith("\uFFFD") || !text.startsWith(prefix)) return "";
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return text.slice(prefix.length);
  }

  /** Whatever is left at the end (an incomplete character comes out as U+FFFD, as a full decode would give it). */
  flush(): string {
    const prefix = this.decode(this.prefixOffset, this.readOffset);
    const text = this.decode(this.prefixOffset, this.ids.length);
    this.prefixOffset = this.readOffset = this.ids.length;
    return text.startsWith(prefix) ? text.slice(prefix.length) : "";
  }

  private decode(from: number, to: number): string {
    return from >= to ? "" : this.tok.decode(this.ids.slice(from, to), this.skipSpecial);
  }
}
