import type { TextTokenizer } from "../tokenizer/tokenizer.js";

/**
 * Log-probabilities of tokens, for the API's `logprobs` (completions: the legacy {tokens, token_logprobs,
 * top_logprobs, text_offset}; chat: content[] of {token, logprob, bytes, top_logprobs}) and `echo` (the prompt's
 * own tokens scored, as lm-evaluation-harness' loglikelihood tasks read them).
 *
 * They are of the model's raw distribution, log_softmax(logits), before logit bias, penalties, temperature, top-k/p
 * and min-p, as vLLM returns them by default (its logprobs_mode "raw_logprobs"): a token's score then does not
 * depend on how the text was sampled, and a prompt's score (no sampling at all) is on the same scale as an output's.
 */

export interface TopLogprob {
  readonly id: number;
  readonly logprob: number;
}

export interface TokenLogprob {
  readonly id: number;
  /** log p(id | the tokens before it); null for a prompt's first token, which nothing before it predicts. */
  readonly logprob: number | null;
  /** The most likely tokens at this position, most likely first (ties: the lower id first, as argmax). */
  readonly top: readonly TopLogprob[];
}

/** Most alternatives a request may ask for per position (OpenAI's chat top_logprobs limit; vLLM's default max_logprobs). */
export const MAX_TOP_LOGPROBS = 20;

/** log(sum(exp(row))) in float64, shifted by the row's maximum so no exp overflows. */
export function logSumExp(row: ArrayLike<number>): number {
  let m = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i] > m) m = row[i];
  if (m === -Infinity || !Number.isFinite(m)) return m; // all -inf (nothing possible), or +inf / NaN in the row
  let s = 0;
  for (let i = 0; i < row.length; i++) s += Math.exp(row[i] - m);
  return m + Math.log(s);
}

/**
 * Ids of the k largest entries of a row, largest first, ties by the lower id, in one pass: a sorted list of k
 * candidates that an entry enters only when it beats the k-th (O(V) for a row whose top is found early, O(V k) at
 * worst, with k <= 20), instead of sorting the whole vocabulary.
 */
export function topK(row: ArrayLike<number>, k: number): number[] {
  const n = Math.min(Math.max(0, Math.floor(k)), row.length);
  if (n === 0) return [];
  const ids: number[] = [];
  const vals: number[] = [];
  for (let i = 0; i < row.length; i++) {
    const v = row[i];
    if (Number.isNaN(v)) continue;
    // ids arrive in increasing order, so an equal value never displaces an earlier one
    if (ids.length === n && !(v > vals[n - 1])) continue;
    let j = ids.length < n ? ids.length : n - 1;
    while (j > 0 && v > vals[j - 1]) {
      ids[j] = ids[j - 1];
      vals[j] = vals[j - 1];
      j--;
    }
    ids[j] = i;
    vals[j] = v;
  }
  return ids;
}

/** Log-probability of token `id` under softmax(row) and the `k` most likely tokens with theirs, in float64. */
export function tokenLogprob(row: ArrayLike<number>, id: number, k = 0): TokenLogprob {
  const lse = logSumExp(row);
  return { id, logprob: row[id] - lse, top: topK(row, k).map((t) => ({ id: t, logprob: row[t] - lse })) };
}

/**
 * Scores of prompt positions from logits that cover them: `rows` holds [n, V] logits of positions `start` ..
 * start + n - 1, row j predicting the token at start + j + 1. Returns the scores of tokens start + 1 .. start + n
 * that exist in `prompt` (the last row predicts the first new token when the chunk ends the prompt).
 */
export function promptLogprobs(rows: Float32Array, vocabSize: number, prompt: readonly number[], start: number, k: number): TokenLogprob[] {
  const n = rows.length / vocabSize, out: TokenLogprob[] = [];
  for (let j = 0; j < n && start + j + 1 < prompt.length; j++) {
    out.push(tokenLogprob(rows.subarray(j * vocabSize, (j + 1) * vocabSize), prompt[start + j + 1], k));
  }
  return out;
}

/** The score of a prompt's first token: none (nothing before it predicts it). */
export function firstPromptToken(id: number): TokenLogprob {
  return { id, logprob: null, top: [] };
}

/**
 * What each token is as bytes and as text, read from tokenizer.json: byte-level BPE vocabularies (GPT-2, Llama 3,
 * DeepSeek) map their characters back to bytes, byte-fallback pieces (<0x0A>) are their byte, sentencepiece's
 * U+2581 is a space; added tokens (<bos>) are their own text. Anything else is the token decoded alone.
 */
export class TokenBytes {
  private readonly vocab: (string | undefined)[] = [];
  private readonly added = new Set<number>();
  private readonly byteLevel: boolean;
  private readonly byteFallback: boolean;
  private readonly metaspace: boolean;
  private readonly cache = new Map<number, { bytes: number[]; text: string }>();

  constructor(private readonly tok: TextTokenizer) {
    const json = tok.json as { model?: { vocab?: unknown }; added_tokens?: unknown; decoder?: unknown };
    const vocab = json.model?.vocab;
    if (Array.isArray(vocab)) vocab.forEach((e, i) => Array.isArray(e) && typeof e[0] === "string" && (this.vocab[i] = e[0])); // unigram: [piece, score]
    else if (vocab && typeof vocab === "object") for (const [s, i] of Object.entries(vocab)) if (typeof i === "number") this.vocab[i] = s;
    if (Array.isArray(json.added_tokens)) {
      for (const t of json.added_tokens as { id?: unknown; content?: unknown }[]) {
        if (typeof t.id === "number" && typeof t.content === "string") (this.vocab[t.id] = t.content), this.added.add(t.id);
      }
    }
    const decoders = flattenDecoders(json.decoder);
    this.byteLevel = decoders.some((d) => d.type === "ByteLevel");
    this.byteFallback = decoders.some((d) => d.type === "ByteFallback");
    this.metaspace = decoders.some((d) => d.type === "Metaspace" || (d.type === "Replace" && JSON.stringify(d.pattern ?? "").includes("\u2581")));
  }

  /** The token's bytes (UTF-8 for text; a byte-level piece may hold part of a character). */
  bytes(id: number): number[] {
    return this.entry(id).bytes;
  }

  /** The token as text; a token that is not whole UTF-8 (part of a character) as "bytes:\xe2\x80", as OpenAI's API writes it. */
  text(id: number): string {
    return this.entry(id).text;
  }

  private entry(id: number): { bytes: number[]; text: string } {
    let e = this.cache.get(id);
    if (!e) {
      const bytes = this.rawBytes(id);
      e = { bytes, text: bytesText(bytes) };
      this.cache.set(id, e);
    }
    return e;
  }

  private rawBytes(id: number): number[] {
    const s = this.vocab[id];
    if (s !== undefined && this.added.has(id)) return utf8(s);
    if (s !== undefined && this.byteLevel) {
      const out: number[] = [];
      for (const ch of s) {
        const b = UNICODE_TO_BYTE.get(ch);
        if (b !== undefined) out.push(b);
        else out.push(...utf8(ch));
      }
      return out;
    }
    if (s !== undefined && this.byteFallback && /^<0x[0-9A-Fa-f]{2}>$/.test(s)) return [parseInt(s.slice(3, 5), 16)];
    if (s !== undefined && this.metaspace) return utf8(s.replace(/\u2581/g, " "));
    return utf8(this.tok.decode([id]));
  }
}

function flattenDecoders(d: unknown): { type?: unknown; pattern?: unknown }[] {
  if (!d || typeof d !== "object") return [];
  const o = d as { type?: unknown; decoders?: unknown; pattern?: unknown };
  return Array.isArray(o.decoders) ? [o, ...o.decoders.flatMap(flattenDecoders)] : [o];
}

const encoder = new TextEncoder();
const strict = new TextDecoder("utf-8", { fatal: true });

function utf8(s: string): number[] {
  return [...encoder.encode(s)];
}

function bytesText(bytes: readonly number[]): string {
  try {
    return strict.decode(new Uint8Array(bytes));
  } catch {
    return "bytes:" + bytes.map((b) => `\\x${b.toString(16).padStart(2, "0")}`).join("");
  }
}

/** GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the others for U+0100 onwards. */
const UNICODE_TO_BYTE: ReadonlyMap<string, number> = (() => {
  const m = new Map<string, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    m.set(String.fromCharCode(printable ? b : 256 + extra++), b);
  }
  return m;
})();

/** A score as JSON can hold it: -Infinity (a banned token) as -9999, as OpenAI's API and vLLM report it. */
function finite(x: number): number {
  return x === -Infinity ? -9999 : x;
}

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

/**
 * The legacy completions format. `top_logprobs` maps each alternative's text to its score and, as OpenAI's API
 * ("up to logprobs + 1 elements") and vLLM, also holds the chosen token; two tokens with the same text keep the
 * better score. `text_offset`: where each token starts in the choice's text, from `offset`, by the lengths of the
 * token texts before it (as vLLM counts them).
 */
export function completionLogprobs(entries: readonly TokenLogprob[], strings: TokenBytes, offset = 0): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  appendCompletionLogprobs(out, entries, strings, offset);
  return out;
}

/** As completionLogprobs, appending to `out` (the offsets go on from `offset`); returns the offset after the last token. */
export function appendCompletionLogprobs(out: CompletionLogprobs, entries: readonly TokenLogprob[], strings: TokenBytes, offset: number): number {
  for (const e of entries) {
    const text = strings.text(e.id);
    out.tokens.push(text);
    out.token_logprobs.push(e.logprob === null ? null : finite(e.logprob));
    if (e.logprob === null) out.top_logprobs.push(null);
    else {
      const top: Record<string, number> = {};
      for (const t of e.top) {
        const s = strings.text(t.id);
        if (!(s in top)) top[s] = finite(t.logprob);
      }
      if (!(text in top)) top[text] = finite(e.logprob);
      out.top_logprobs.push(top);
    }
    out.text_offset.push(offset);
    offset += text.length;
  }
  return offset;
}

export interface ChatTopLogprob {
  token: string;
  logprob: number;
  bytes: number[];
}

export interface ChatTokenLogprob extends ChatTopLogprob {
  top_logprobs: ChatTopLogprob[];
}

/** The chat format: choices[].logprobs.content[], one entry per generated token with its `top_logprobs` alternatives. */
export function chatLogprobs(entries: readonly TokenLogprob[], strings: TokenBytes): ChatTokenLogprob[] {
  const one = (id: number, logprob: number): ChatTopLogprob => ({ token: strings.text(id), logprob: finite(logprob), bytes: strings.bytes(id) });
  return entries.map((e) => ({ ...one(e.id, e.logprob ?? 0), top_logprobs: e.top.map((t) => one(t.id, t.logprob)) }));
}

/**
 * A choice's scores as the server sends them, in one piece or chunk by chunk (the completions format's text
 * offsets go on across chunks): completions' legacy object, or chat's {content, refusal}.
 */
export class LogprobsWriter {
  private offset = 0;

  constructor(private readonly strings: TokenBytes, readonly kind: "completion" | "chat") {}

  /** The scores of `entries`, the next tokens of the choice. */
  next(entries: readonly TokenLogprob[]): CompletionLogprobs | { content: ChatTokenLogprob[]; refusal: null } {
    if (this.kind === "chat") return { content: chatLogprobs(entries, this.strings), refusal: null };
    const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    this.offset = appendCompletionLogprobs(out, entries, this.strings, this.offset);
    return out;
  }

  /** A whole choice's scores: the new tokens', after the echoed prompt's (completions with echo). */
  choice(entries: readonly TokenLogprob[], echoed?: { readonly entries: readonly TokenLogprob[]; readonly text: string }): ReturnType<LogprobsWriter["next"]> {
    if (this.kind === "chat" || !echoed) return this.next(entries);
    const head = this.prompt(echoed.entries, echoed.text), tail = this.next(entries) as CompletionLogprobs;
    return {
      tokens: [...head.tokens, ...tail.tokens], token_logprobs: [...head.token_logprobs, ...tail.token_logprobs],
      top_logprobs: [...head.top_logprobs, ...tail.top_logprobs], text_offset: [...head.text_offset, ...tail.text_offset],
    };
  }

  /** The echoed prompt's scores: its tokens from offset 0, and the new tokens' offsets from the end of its text. */
  prompt(entries: readonly TokenLogprob[], promptText: string): CompletionLogprobs {
    const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    appendCompletionLogprobs(out, entries, this.strings, 0);
    this.offset = promptText.length;
    return out;
  }
}
