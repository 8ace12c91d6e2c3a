import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { MlaError } from "../errors.js";

/** Text <-> token ids for a checkpoint, from its tokenizer.json (+ tokenizer_config.json when present). */
export class TextTokenizer {
  private constructor(private readonly tok: Tokenizer, readonly config: Record<string, unknown>) {}

  static fromJson(tokenizerJson: object, tokenizerConfig: Record<string, unknown> = {}): TextTokenizer {
    try {
      return new TextTokenizer(new Tokenizer(tokenizerJson, tokenizerConfig), tokenizerConfig);
    } catch (e) {
      throw new MlaError(`tokenizer.json could not be loaded: ${(e as Error).message}`);
    }
  }

  /** The tokenizer in dir, or null when the folder has no tokenizer.json. */
  static load(dir: string): TextTokenizer | null {
    const path = join(dir, "tokenizer.json");
    if (!existsSync(path)) return null;
    const json = readJson(path);
    const cfgPath = join(dir, "tokenizer_config.json");
    return TextTokenizer.fromJson(json, existsSync(cfgPath) ? readJson(cfgPath) : {});
  }

  /** Token ids of text; special tokens (e.g. BOS) are added as tokenizer.json's post-processor says. */
  encode(text: string, addSpecialTokens = true): number[] {
    return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: readonly number[], skipSpecialTokens = false): string {
    return this.tok.decode([...ids], { skip_special_tokens: skipSpecialTokens });
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }
}

function readJson(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new MlaError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * Turns a growing list of token ids into text deltas. Decoding tokens one by one breaks multi-byte characters and
 * word-boundary spaces, so it decodes the whole tail and emits only what is new once it no longer ends in U+FFFD
 * (an incomplete UTF-8 sequence).
 */
export class StreamDecoder {
  private ids: number[] = [];
  private emitted = "";

  constructor(private readonly tok: TextTokenizer, private readonly skipSpecial = false) {}

  push(id: number): string {
    this.ids.push(id);
    const text = this.tok.decode(this.ids, this.skipSpecial);
    if (text.endsWith("\uFFFD") || !text.startsWith(this.emitted)) return "";
    const delta = text.slice(this.emitted.length);
    this.emitted = text;
    return delta;
  }

  /** Whatever is left (e.g. a final incomplete character). */
  flush(): string {
    const text = this.tok.decode(this.ids, this.skipSpecial);
    const delta = text.startsWith(this.emitted) ? text.slice(this.emitted.length) : "";
    this.emitted = text;
    return delta;
  }
}
