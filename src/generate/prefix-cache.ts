/**
 * The prefix cache: cache rows of finished sequences, kept by the token ids they hold, so that a request that starts
 * with the same tokens (a system prompt, a chat's history, few-shot examples, the n choices of one request) copies
 * those rows into its own state instead of recomputing them.
 *
 * Design (docs/architecture.md, "The prefix cache"): vLLM's automatic prefix caching and SGLang's RadixAttention share
 * physical KV blocks between sequences through paged attention kernels. Here every attention kernel (scalar, WASM,
 * WGSL) reads one contiguous cache per sequence, and an MLA row is small (d_c + d_h^R numbers per layer, 576 for
 * DeepSeek-V3), so a hit is served by copying the rows (a memcpy, a copyBufferToBuffer): the states stay private and
 * the kernels unchanged. An entry is one compacted state; lookups compare token ids up to the first difference, so
 * a lookup costs at most the tokens held, which the cache budget bounds.
 */
import type { SequenceState } from "../model/inference.js";

/** One cached prefix: `state` holds the cache rows of `tokens` (state.position === tokens.length). */
export interface PrefixEntry {
  readonly tokens: readonly number[];
  readonly state: SequenceState;
  /** Cache bytes the state holds (its rows, exactly: entries are compacted). */
  readonly bytes: number;
  /** LRU clock of the last insert or hit. */
  lastUsed: number;
}

export interface PrefixCacheStats {
  readonly entries: number;
  /** Bytes the idle cached rows hold (counted against the scheduler's cache budget). */
  readonly bytes: number;
  /** Tokens whose rows the entries hold. */
  readonly tokens: number;
  /** Lookups served by an entry (touch), and entries evicted so far. */
  readonly hits: number;
  readonly evictions: number;
}

/** Tokens a and b share from the start, at most `limit`. */
export function commonPrefix(a: ArrayLike<number>, b: ArrayLike<number>, limit = Infinity): number {
  const n = Math.min(a.length, b.length, limit);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/**
 * Idle cached prefixes with LRU eviction. The scheduler owns the budget: it asks for room (`evictTo`) before it
 * admits a sequence, and hands finished sequences' compacted states to `insert`. An entry whose tokens start
 * another entry's is redundant (the longer one serves every lookup the shorter one would), so it is dropped.
 */
export class PrefixCache {
  private readonly entries = new Set<PrefixEntry>();
  private clock = 0;
  private heldBytes = 0;
  private heldTokens = 0;
  private hitCount = 0;
  private evicted = 0;

  /** release: gives an evicted entry's state back to its model. */
  constructor(private readonly release: (state: SequenceState) => void) {}

  get bytes(): number {
    return this.heldBytes;
  }

  stats(): PrefixCacheStats {
    return { entries: this.entries.size, bytes: this.heldBytes, tokens: this.heldTokens, hits: this.hitCount, evictions: this.evicted };
  }

  /** The entry sharing the longest prefix with `prompt` (at most `limit` tokens), or null when none shares a token. */
  match(prompt: readonly number[], limit: number): { entry: PrefixEntry; rows: number } | null {
    let best: PrefixEntry | null = null, rows = 0;
    for (const e of this.entries) {
      const n = commonPrefix(e.tokens, prompt, limit);
      if (n > rows || (n === rows && n > 0 && best && e.lastUsed > best.lastUsed)) (best = e), (rows = n);
    }
    return best ? { entry: best, rows } : null;
  }

  /** A hit on this entry: it becomes the most recently used. */
  touch(entry: PrefixEntry): void {
    entry.lastUsed = ++this.clock;
    this.hitCount++;
  }

  /** Whether an entry holds these tokens (and maybe more); that entry becomes the most recently used. */
  holds(tokens: readonly number[]): boolean {
    for (const e of this.entries) {
      if (commonPrefix(e.tokens, tokens) === tokens.length) {
        e.lastUsed = ++this.clock;
        return true;
      }
    }
    return false;
  }

  /**
   * Keep a state that holds the rows of `tokens`. Returns false (and keeps nothing) when an entry already holds
   * those tokens and more; entries that the new one extends are dropped.
   */
  insert(tokens: readonly number[], state: SequenceState, bytes: number): boolean {
    if (this.holds(tokens)) return false;
    for (const e of [...this.entries]) if (commonPrefix(e.tokens, tokens) === e.tokens.length) this.remove(e);
    this.entries.add({ tokens, state, bytes, lastUsed: ++this.clock });
    this.heldBytes += bytes;
    this.heldTokens += tokens.length;
    return true;
  }

  /**
   * Evict least recently used entries until at most `bytes` are held; `keep` (the entry a request about to be
   * admitted will copy) goes last. Returns the bytes held after.
   */
  evictTo(bytes: number, keep?: PrefixEntry | null): number {
    if (this.heldBytes <= bytes) return this.heldBytes;
    const order = [...this.entries].sort((a, b) => (a === keep ? 1 : 0) - (b === keep ? 1 : 0) || a.lastUsed - b.lastUsed);
    for (const e of order) {
      if (this.heldBytes <= bytes) break;
      this.remove(e);
      this.evicted++;
    }
    return this.heldBytes;
  }

  /** Drop every entry. */
  clear(): void {
    for (const e of [...this.entries]) this.remove(e);
  }

  private remove(e: PrefixEntry): void {
    if (!this.entries.delete(e)) return;
    this.heldBytes -= e.bytes;
    this.heldTokens -= e.tokens.length;
    this.release(e.state);
  }
}
