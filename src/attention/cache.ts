import { MlaError } from "../errors.js";

/** Where cache rows live: plain JS memory by default, a backend's memory when its kernels read the cache. */
export type CacheAlloc = (floats: number) => Float32Array;

/**
 * Growable per-layer cache of fixed-width F32 rows, one per token. Capacity doubles, so appends are amortised O(1)
 * and a caller that knows its context length can reserve it once.
 */
export class RowCache {
  data: Float32Array;
  length = 0;

  constructor(readonly width: number, capacity = 16, readonly maxLength = Infinity, private readonly alloc: CacheAlloc = (n) => new Float32Array(n)) {
    this.data = alloc(width * Math.max(1, capacity));
  }

  get capacity(): number {
    return this.data.length / this.width;
  }

  reserve(rows: number): void {
    if (rows > this.maxLength) throw new MlaError(`cache of ${rows} tokens exceeds the context length ${this.maxLength}`);
    if (rows <= this.capacity) return;
    const next = this.alloc(this.width * Math.min(Math.max(rows, this.capacity * 2), this.maxLength));
    next.set(this.data.subarray(0, this.length * this.width));
    this.data = next;
  }

  /** Append T rows taken from src (row stride srcStride, the first `width` values of each row). */
  append(src: Float32Array, T: number, srcStride = this.width, srcOffset = 0): void {
    this.reserve(this.length + T);
    for (let t = 0; t < T; t++) {
      const o = srcOffset + t * srcStride;
      this.data.set(src.subarray(o, o + this.width), (this.length + t) * this.width);
    }
    this.length += T;
  }

  /** Drop everything after the first n rows (e.g. to re-run a prompt suffix). */
  truncate(n: number): void {
    this.length = Math.min(this.length, n);
  }

  get bytes(): number {
    return this.length * this.width * 4;
  }
}

/**
 * MLA's latent cache: per token exactly [c_KV (d_c) | rotated k_rope (d_h^R)], shared by every head.
 * This row is the absorbed-attention key; its c_KV prefix is the absorbed value.
 */
export class LatentCache extends RowCache {
  constructor(readonly kvLoraRank: number, readonly ropeDim: number, capacity?: number, maxLength?: number, alloc?: CacheAlloc) {
    super(kvLoraRank + ropeDim, capacity, maxLength, alloc);
  }
}

/** Per-head K and V cache of MHA/GQA/MQA: K rows of nKv*dk, V rows of nKv*dv. */
export class KvCache {
  readonly k: RowCache;
  readonly v: RowCache;

  constructor(readonly nKvHeads: number, readonly dk: number, readonly dv: number, capacity?: number, maxLength?: number, alloc?: CacheAlloc) {
    this.k = new RowCache(nKvHeads * dk, capacity, maxLength, alloc);
    this.v = new RowCache(nKvHeads * dv, capacity, maxLength, alloc);
  }

  get length(): number {
    return this.k.length;
  }

  truncate(n: number): void {
    this.k.truncate(n);
    this.v.truncate(n);
  }

  get bytes(): number {
    return this.k.bytes + this.v.bytes;
  }
}
