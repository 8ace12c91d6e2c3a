/**
 * Token masks for constrained decoding: which tokens may come next so that the text stays a prefix of a document
 * the grammar accepts, found by walking the vocabulary's byte trie from the automaton's state (a token's bytes
 * are stepped once per trie edge, shared with every token that starts the same way, and a branch is dropped at
 * its first impossible byte). Inside a string, plain-text tokens are taken from a precomputed set and only the
 * rest of the vocabulary is walked. Masks are cached by (grammar, state), so a schema's repeated states (every
 * string body, every item of an array) cost one walk each, then a lookup.
 */
import { States, advance, canEnd, initialStates, plainStringRoom, statesKey } from "./automaton.js";
import type { JsonGrammar } from "./schema.js";
import type { TokenTrie, TokenVocab } from "./vocab.js";

/** The tokens allowed at one step. */
export interface TokenMask {
  /** How many tokens are allowed. */
  readonly allowed: number;
  /** Whether token id is allowed. */
  has(id: number): boolean;
  /** Set every disallowed token's logit to -Infinity, in place. */
  apply(row: Float32Array): void;
}

/** A per-sequence constraint on the tokens a sampler may choose (the scheduler asks it at every step). */
export interface TokenConstraint {
  /** The tokens that may come next; null when none may (the document is complete and no stop token exists). */
  next(): TokenMask | null;
  /** Move past the chosen token; false (and no change) when it was not allowed. */
  accept(id: number): boolean;
}

class BitMask implements TokenMask {
  constructor(private readonly bits: Uint32Array, readonly allowed: number) {}

  has(id: number): boolean {
    return ((this.bits[id >>> 5] >>> (id & 31)) & 1) === 1;
  }

  apply(row: Float32Array): void {
    const bits = this.bits, V = row.length;
    for (let w = 0; w < bits.length; w++) {
      let z = ~bits[w]; // the disallowed ids of this word, lowest first
      const base = w << 5;
      while (z !== 0) {
        const low = z & -z;
        const id = base + 31 - Math.clz32(low);
        if (id >= V) break;
        row[id] = -Infinity;
        z ^= low;
      }
    }
  }

  get bytes(): number {
    return this.bits.byteLength;
  }
}

/** Few tokens allowed (outside strings): their ids, sorted. */
class ListMask implements TokenMask {
  private static keep = new Float32Array(0);

  constructor(private readonly ids: Int32Array) {}

  get allowed(): number {
    return this.ids.length;
  }

  has(id: number): boolean {
    const ids = this.ids;
    let lo = 0, hi = ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ids[mid] < id) lo = mid + 1;
      else hi = mid;
    }
    return lo < ids.length && ids[lo] === id;
  }

  apply(row: Float32Array): void {
    const ids = this.ids;
    if (ListMask.keep.length < ids.length) ListMask.keep = new Float32Array(ids.length);
    const keep = ListMask.keep;
    for (let k = 0; k < ids.length; k++) keep[k] = row[ids[k]];
    row.fill(-Infinity);
    for (let k = 0; k < ids.length; k++) row[ids[k]] = keep[k];
  }

  get bytes(): number {
    return this.ids.byteLength;
  }
}

type CachedMask = BitMask | ListMask;

export interface StructuredOutputOptions {
  /** Bytes of cached masks at most, over all grammars (default 64 MiB); the least recently used go first. */
  readonly maxMaskBytes?: number;
}

export interface MaskCacheStats {
  readonly masks: number;
  readonly bytes: number;
  readonly hits: number;
  readonly misses: number;
}

/**
 * Constrained decoding for one tokenizer: builds per-sequence constraints for compiled grammars and keeps the
 * masks they compute (an LRU bounded in bytes, shared by all grammars and sequences).
 */
export class StructuredOutput {
  private readonly masks = new Map<string, CachedMask>();
  private readonly maxBytes: number;
  private bytes = 0;
  private hits = 0;
  private misses = 0;
  /** Per trie depth: the states after that many bytes of the token being walked. */
  private readonly scratch: States[] = [];

  constructor(readonly vocab: TokenVocab, opts: StructuredOutputOptions = {}) {
    this.maxBytes = opts.maxMaskBytes ?? 64 << 20;
  }

  /** A fresh constraint for one sequence: documents of `grammar`, ended by one of `stopIds` once complete. */
  constraint(grammar: JsonGrammar, stopIds: readonly number[]): JsonConstraint {
    return new JsonConstraint(this, grammar, [...new Set(stopIds)].filter((id) => id >= 0 && id < this.vocab.size).sort((a, b) => a - b));
  }

  stats(): MaskCacheStats {
    return { masks: this.masks.size, bytes: this.bytes, hits: this.hits, misses: this.misses };
  }

  /** The mask of a state (cached). `prefix` names the grammar and the stop tokens. */
  mask(prefix: string, states: States, stopIds: readonly number[]): CachedMask {
    const key = prefix + statesKey(states);
    const hit = this.masks.get(key);
    if (hit) {
      this.hits++;
      this.masks.delete(key); // most recently used last
      this.masks.set(key, hit);
      return hit;
    }
    this.misses++;
    const m = this.compute(states, stopIds);
    this.masks.set(key, m);
    this.bytes += m.bytes + key.length * 2;
    for (const [k, old] of this.masks) {
      if (this.bytes <= this.maxBytes || this.masks.size <= 1) break;
      this.masks.delete(k);
      this.bytes -= old.bytes + k.length * 2;
    }
    return m;
  }

  private compute(states: States, stopIds: readonly number[]): CachedMask {
    const v = this.vocab;
    const bits = new Uint32Array(v.words);
    const room = plainStringRoom(states);
    if (room >= 0) {
      bits.set(v.plainUpTo(room));
      this.walk(v.stringTrie, 0, states, 0, bits);
    } else this.walk(v.trie, 0, states, 0, bits);
    const end = canEnd(states);
    for (const id of stopIds) {
      if (end) bits[id >>> 5] |= 1 << (id & 31);
      else bits[id >>> 5] &= ~(1 << (id & 31)); // a stop token that is also text ends the sequence: only at the end
    }
    let allowed = 0;
    for (let w = 0; w < bits.length; w++) allowed += popcount(bits[w]);
    // a list of ids when it is smaller than the bitset (32 bits per id against 1 per vocabulary entry)
    if (allowed * 32 >= v.size) return new BitMask(bits, allowed);
    const ids = new Int32Array(allowed);
    let k = 0;
    for (let w = 0; w < bits.length; w++) {
      let m = bits[w];
      while (m !== 0) {
        const low = m & -m;
        ids[k++] = (w << 5) + 31 - Math.clz32(low);
        m ^= low;
      }
    }
    return new ListMask(ids);
  }

  /** Mark every token below trie node `node` whose bytes the states accept. */
  private walk(t: TokenTrie, node: number, states: States, depth: number, bits: Uint32Array): void {
    const out = (this.scratch[depth] ??= new States());
    for (let e = t.firstEdge[node]; e >= 0; e = t.edgeNext[e]) {
      advance(states, t.edgeByte[e], out.clear());
      if (out.n === 0) continue;
      const child = t.edgeChild[e];
      for (let i = t.tokStart[child]; i < t.tokEnd[child]; i++) {
        const id = t.ids[i];
        bits[id >>> 5] |= 1 << (id & 31);
      }
      if (t.firstEdge[child] >= 0) this.walk(t, child, out, depth + 1, bits); // deeper levels use their own scratch
    }
  }
}

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** One sequence's place in its document. */
export class JsonConstraint implements TokenConstraint {
  private states: States;
  /** Two buffers the bytes of a token are stepped through (the state lives in `states`, one of three). */
  private spare = [new States(), new States()];
  private readonly prefix: string;
  private readonly stops: ReadonlySet<number>;
  private ended = false;
  /** The last single-stack state asked about and its mask: inside a string body the state object repeats. */
  private lastTop: unknown = null;
  private lastMask: TokenMask | null = null;

  constructor(private readonly owner: StructuredOutput, readonly grammar: JsonGrammar, private readonly stopIds: readonly number[]) {
    this.states = initialStates(grammar.root);
    this.prefix = `${grammar.id}/${stopIds.join(",")}/`;
    this.stops = new Set(stopIds);
  }

  next(): TokenMask | null {
    if (this.ended) return null;
    const top = this.states.n === 1 ? this.states.items[0] : null;
    if (top !== null && top === this.lastTop) return this.lastMask;
    const m = this.owner.mask(this.prefix, this.states, this.stopIds);
    this.lastTop = top;
    this.lastMask = m.allowed > 0 ? m : null;
    return this.lastMask;
  }

  accept(id: number): boolean {
    if (this.ended) return false;
    if (this.stops.has(id)) {
      if (!canEnd(this.states)) return false;
      this.ended = true;
      return true;
    }
    const b = this.owner.vocab.bytes[id];
    if (!b || b.length === 0) return false;
    let cur = this.states;
    for (let i = 0; i < b.length; i++) {
      const out = (this.spare[0] === cur ? this.spare[1] : this.spare[0]).clear();
      advance(cur, b[i], out);
      if (out.n === 0) return false; // this.states is untouched: it is neither spare buffer
      cur = out;
    }
    // the new state takes its buffer; the old state's buffer becomes a spare
    const i = this.spare.indexOf(cur);
    this.spare[i] = this.states;
    this.states = cur;
    return true;
  }

  /** Whether the text so far is a whole document. */
  get complete(): boolean {
    return canEnd(this.states);
  }
}

/**
 * A JSON document, then a fixed token sequence, then a stop token: a tool call's arguments and the markers that close
 * the call (src/server/tools: a named tool_choice). Once the document is complete (its root value closed, as a tool's
 * arguments object is by its last brace) the tail's tokens are forced one by one, as the tokenizer encodes the tail,
 * so the markers come out as the special tokens the parsers read. A token that would run from the document into
 * the tail ("}\n") is not offered: the document ends on a token boundary.
 */
export class TailedConstraint implements TokenConstraint {
  private at = 0;
  /** The mask of each tail token, then of the stop tokens (null when there are none: the text then ends). */
  private readonly masks: readonly (TokenMask | null)[];

  /** stopIds: sorted, as StructuredOutput.constraint keeps them. */
  constructor(private readonly doc: JsonConstraint, private readonly tail: readonly number[], private readonly stopIds: readonly number[]) {
    const stops = stopIds.length ? new ListMask(Int32Array.from(stopIds)) : null;
    this.masks = [...tail.map((id) => new ListMask(Int32Array.of(id))), stops];
  }

  private get inTail(): boolean {
    return this.at > 0 || this.doc.complete;
  }

  next(): TokenMask | null {
    return this.inTail ? this.masks[this.at] : this.doc.next();
  }

  accept(id: number): boolean {
    if (!this.inTail) return this.doc.accept(id);
    if (this.at < this.tail.length) {
      if (id !== this.tail[this.at]) return false;
      this.at++;
      return true;
    }
    return this.stopIds.includes(id);
  }
}
