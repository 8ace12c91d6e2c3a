/**
 * A tokenizer's vocabulary as byte strings, and the tries the mask search walks. Built once per TextEngine.
 */
import { MlaError } from "../../errors.js";
import { bytesToUnicode } from "../../tokenizer/bpe-train.js";
import type { TextTokenizer } from "../../tokenizer/tokenizer.js";

/**
 * Token byte strings in a trie, flattened into typed arrays: node i has the tokens ids[tokStart[i] .. tokEnd[i])
 * ending there, and its edges, in byte order, from firstEdge[i] along edgeNext (-1 ends the list), each with its
 * byte and child. Node 0 is the root (the empty string).
 */
export class TokenTrie {
  readonly tokStart: Int32Array;
  readonly tokEnd: Int32Array;
  readonly firstEdge: Int32Array;
  readonly edgeNext: Int32Array;
  readonly edgeByte: Uint8Array;
  readonly edgeChild: Int32Array;
  readonly ids: Int32Array;

  /** `tokens`: ids whose byte strings (bytes[id], non-empty) the trie holds. */
  constructor(bytes: readonly (Uint8Array | null)[], tokens: readonly number[]) {
    // byte strings as latin1 strings, which the engine's native sort orders bytewise
    const byKey = new Map<string, number[]>();
    let total = 0;
    for (const id of tokens) {
      const b = bytes[id]!;
      total += b.length;
      const k = String.fromCharCode(...b);
      const same = byKey.get(k);
      if (same) same.push(id);
      else byKey.set(k, [id]);
    }
    const keys = [...byKey.keys()].sort();
    const ids = new Int32Array(tokens.length);
    const max = total + 1; // nodes (and edges) at most
    const tokStart = new Int32Array(max), tokEnd = new Int32Array(max), firstEdge = new Int32Array(max).fill(-1), lastEdge = new Int32Array(max);
    const edgeNext = new Int32Array(max).fill(-1), edgeByte = new Uint8Array(max), edgeChild = new Int32Array(max);
    // sorted keys: a key shares its first lcp bytes (a path of existing nodes) with the one before it and adds the
    // rest as new nodes, so every node's children arrive in byte order
    const path = [0];
    let nodes = 1, edges = 0, nIds = 0, prev = "";
    for (const k of keys) {
      let lcp = 0;
      while (lcp < prev.length && lcp < k.length && prev.charCodeAt(lcp) === k.charCodeAt(lcp)) lcp++;
      let node = path[lcp];
      for (let d = lcp; d < k.length; d++) {
        const child = nodes++, e = edges++;
        edgeByte[e] = k.charCodeAt(d);
        edgeChild[e] = child;
        if (firstEdge[node] < 0) firstEdge[node] = e;
        else edgeNext[lastEdge[node]] = e;
        lastEdge[node] = e;
        path[d + 1] = node = child;
      }
      tokStart[node] = nIds;
      for (const id of byKey.get(k)!) ids[nIds++] = id;
      tokEnd[node] = nIds;
      prev = k;
    }
    this.tokStart = tokStart.slice(0, nodes);
    this.tokEnd = tokEnd.slice(0, nodes);
    this.firstEdge = firstEdge.slice(0, nodes);
    this.edgeNext = edgeNext.slice(0, edges);
    this.edgeByte = edgeByte.slice(0, edges);
    this.edgeChild = edgeChild.slice(0, edges);
    this.ids = ids;
  }

  get nodes(): number {
    return this.tokStart.length;
  }
}

/**
 * Characters (code points) of a token that can only extend a JSON string: no quote, backslash or control byte,
 * and whole UTF-8 characters; -1 for any other token.
 */
function plainChars(b: Uint8Array): number {
  let chars = 0;
  for (let i = 0; i < b.length;) {
    const x = b[i];
    let need: number, lo = 0x80, hi = 0xbf;
    if (x < 0x80) {
      if (x < 0x20 || x === 0x22 || x === 0x5c) return -1;
      need = 0;
    } else if (x >= 0xc2 && x <= 0xdf) need = 1;
    else if (x >= 0xe0 && x <= 0xef) {
      need = 2;
      if (x === 0xe0) lo = 0xa0;
      else if (x === 0xed) hi = 0x9f;
    } else if (x >= 0xf0 && x <= 0xf4) {
      need = 3;
      if (x === 0xf0) lo = 0x90;
      else if (x === 0xf4) hi = 0x8f;
    } else return -1;
    i++;
    for (let k = 0; k < need; k++, i++) {
      if (i >= b.length || b[i] < lo || b[i] > hi) return -1;
      lo = 0x80;
      hi = 0xbf;
    }
    chars++;
  }
  return chars;
}

/** How a tokenizer's vocabulary strings become bytes. */
export type VocabKind = "byte-level" | "byte-fallback" | "text";

/** The vocabulary as the grammar sees it: each token id's bytes, and tries over them. */
export class TokenVocab {
  /** Width of a logits row (the model's vocab_size, which may pad past the tokenizer's). */
  readonly size: number;
  /** Uint32 words of a bitset over the vocabulary. */
  readonly words: number;
  /** Every token that writes text. */
  readonly trie: TokenTrie;
  /** The tokens that are not plain string text (quotes, backslashes, control bytes, partial UTF-8). */
  readonly stringTrie: TokenTrie;
  /** Characters of each plain token, -1 for the others. */
  readonly plain: Int32Array;
  private readonly longestPlain: number;
  private readonly plainBits = new Map<number, Uint32Array>();

  /** `bytes[id]`: what the token writes; null for special tokens and padding ids (never allowed as text). */
  constructor(readonly bytes: readonly (Uint8Array | null)[], size = bytes.length) {
    this.size = size;
    this.words = Math.ceil(size / 32);
    const text: number[] = [], other: number[] = [];
    this.plain = new Int32Array(size).fill(-1);
    let longest = 0;
    for (let id = 0; id < Math.min(size, bytes.length); id++) {
      const b = bytes[id];
      if (!b || b.length === 0) continue;
      text.push(id);
      const c = plainChars(b);
      this.plain[id] = c;
      if (c < 0) other.push(id);
      else longest = Math.max(longest, c);
    }
    this.longestPlain = longest;
    this.trie = new TokenTrie(bytes, text);
    this.stringTrie = new TokenTrie(bytes, other);
  }

  /** The plain tokens of at most `room` characters, as a bitset (cached; do not modify). */
  plainUpTo(room: number): Uint32Array {
    const r = Math.min(room, this.longestPlain);
    let bits = this.plainBits.get(r);
    if (!bits) {
      bits = new Uint32Array(this.words);
      for (let id = 0; id < this.size; id++) {
        const c = this.plain[id];
        if (c >= 0 && c <= r) bits[id >>> 5] |= 1 << (id & 31);
      }
      this.plainBits.set(r, bits);
    }
    return bits;
  }

  /**
   * The bytes each token writes, read from tokenizer.json: GPT-2's byte-level characters (ByteLevel decoder,
   * tiktoken and GGUF tokenizers made here), SentencePiece's `<0xAB>` byte tokens and `▁` spaces (ByteFallback,
   * Metaspace), or the text itself. Special added tokens write nothing the grammar may use. `size`: the logits
   * width (ids past the tokenizer's are never allowed).
   */
  static fromTokenizer(tok: TextTokenizer, size: number): TokenVocab {
    const j = tok.json as { model?: { type?: string; vocab?: unknown; byte_fallback?: boolean }; decoder?: unknown; added_tokens?: unknown };
    const kind = vocabKind(j);
    const bytes: (Uint8Array | null)[] = new Array(size).fill(null);
    const enc = new TextEncoder();
    const byteOf = new Map<string, number>(bytesToUnicode().map((c, b) => [c, b]));
    const spaced = hasMetaspace(j.decoder);
    const vocab = j.model?.vocab;
    const entries: [string, number][] = Array.isArray(vocab)
      ? (vocab as [string, number][]).map(([piece], id) => [piece, id]) // Unigram: [piece, score] by id
      : Object.entries((vocab ?? {}) as Record<string, number>);
    for (const [piece, id] of entries) {
      if (id < 0 || id >= size) continue;
      if (kind === "byte-level") {
        const out = new Uint8Array(piece.length);
        let ok = true;
        for (let i = 0; i < piece.length; i++) {
          const b = byteOf.get(piece[i]);
          if (b === undefined) ok = false;
          else out[i] = b;
        }
        // a string outside the byte alphabet is written as its UTF-8 (as the ByteLevel decoder passes it through)
        bytes[id] = ok ? out : enc.encode(piece);
      } else {
        const m = kind === "byte-fallback" ? /^<0x([0-9A-Fa-f]{2})>$/.exec(piece) : null;
        bytes[id] = m ? Uint8Array.of(parseInt(m[1], 16)) : enc.encode(spaced ? piece.replace(/\u2581/g, " ") : piece);
      }
    }
    if (Array.isArray(j.added_tokens)) {
      for (const t of j.added_tokens as { id?: unknown; content?: unknown; special?: unknown }[]) {
        if (typeof t.id !== "number" || t.id < 0 || t.id >= size || typeof t.content !== "string") continue;
        bytes[t.id] = t.special === true ? null : enc.encode(t.content);
      }
    }
    return new TokenVocab(bytes, size);
  }
}

function decoderTypes(d: unknown): string[] {
  if (!d || typeof d !== "object") return [];
  const o = d as { type?: unknown; decoders?: unknown };
  if (o.type === "Sequence" && Array.isArray(o.decoders)) return o.decoders.flatMap(decoderTypes);
  return typeof o.type === "string" ? [o.type] : [];
}

function hasMetaspace(d: unknown): boolean {
  const walk = (x: unknown): boolean => {
    if (!x || typeof x !== "object") return false;
    const o = x as { type?: unknown; decoders?: unknown; pattern?: { String?: unknown } };
    if (o.type === "Sequence" && Array.isArray(o.decoders)) return o.decoders.some(walk);
    return o.type === "Metaspace" || (o.type === "Replace" && o.pattern?.String === "\u2581");
  };
  return walk(d);
}

function vocabKind(j: { model?: { type?: string; byte_fallback?: boolean }; decoder?: unknown }): VocabKind {
  const types = decoderTypes(j.decoder);
  if (types.includes("ByteLevel")) return "byte-level";
  const bad = types.find((t) => t === "WordPiece" || t === "BPEDecoder" || t === "CTC");
  if (bad || (j.model?.type !== "BPE" && j.model?.type !== "Unigram")) {
    throw new MlaError(`response_format needs a byte-level BPE or SentencePiece tokenizer; this one is ${j.model?.type ?? "unknown"}${bad ? ` with a ${bad} decoder` : ""}`);
  }
  return types.includes("ByteFallback") || j.model?.byte_fallback === true ? "byte-fallback" : "text";
}
