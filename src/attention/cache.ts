import { MlaError } from "../errors.js";
import { allocCacheData, cacheElementBytes, decodeCacheValues, encodeCacheRow, type CacheData, type CacheDType } from "../backends/cpu/index.js";

export type { CacheData, CacheDType } from "../backends/cpu/index.js";

/**
 * Where cache rows live: plain JS memory by default, a backend's memory when its kernels read the cache. Called
 * with the cache's dtype; it returns a Uint16Array for F16/BF16.
 */
export type CacheAlloc<A extends CacheData = Float32Array> = (values: number, dtype: CacheDType) => A;

/**
 * Growable per-layer cache of fixed-width rows, one per token, stored as F32 or (A = Uint16Array) as F16/BF16
 * words rounded once when appended. Capacity doubles, so appends are amortised O(1) and a caller that knows its
 * context length can reserve it once.
 */
export class RowCache<A extends CacheData = Float32Array> {
  data: A;
  length = 0;

  constructor(
    readonly width: number, capacity = 16, readonly maxLength = Infinity,
    // plain JS storage of the dtype: the constructor's check below holds A to it
    private readonly alloc: CacheAlloc<A> = (n, dt) => allocCacheData(n, dt) as A, readonly dtype: CacheDType = "F32",
  ) {
    this.data = alloc(width * Math.max(1, capacity), dtype);
    if (this.data instanceof Float32Array !== (dtype === "F32")) throw new MlaError(`cache storage does not match its dtype ${dtype}`);
  }

  get capacity(): number {
    return this.data.length / this.width;
  }

  reserve(rows: number): void {
    if (rows > this.maxLength) throw new MlaError(`cache of ${rows} tokens exceeds the context length ${this.maxLength}`);
    if (rows <= this.capacity) return;
    const next = this.alloc(this.width * Math.min(Math.max(rows, this.capacity * 2), this.maxLength), this.dtype);
    next.set(this.data.subarray(0, this.length * this.width));
    this.data = next;
  }

  /** Append T rows taken from src (row stride srcStride, the first `width` values of each row), rounded to the dtype. */
  append(src: Float32Array, T: number, srcStride = this.width, srcOffset = 0): void {
    this.reserve(this.length + T);
    for (let t = 0; t < T; t++) {
      const o = srcOffset + t * srcStride;
      encodeCacheRow(this.data, (this.length + t) * this.width, src.subarray(o, o + this.width), this.dtype);
    }
    this.length += T;
  }

  /** Rows [start, end) as floats: a view of an F32 cache, a widened copy of a 16-bit one (exact, what kernels read). */
  rowsF32(start = 0, end = this.length): Float32Array {
    return decodeCacheValues(this.data, start * this.width, end * this.width, this.dtype);
  }

  /** Bytes one row takes. */
  get rowBytes(): number {
    return this.width * cacheElementBytes(this.dtype);
  }

  /** Drop everything after the first n rows (e.g. to re-run a prompt suffix). */
  truncate(n: number): void {
    this.length = Math.min(this.length, n);
  }

  /**
   * Become the first n rows of src (same width and dtype): their stored words copied as they are, so a sequence that
   * starts from a cached prefix reads exactly the rows that prefix's own prefill wrote.
   */
  copyFrom(src: RowCache<CacheData>, n: number): void {
    if (src.width !== this.width || src.dtype !== this.dtype) {
      throw new MlaError(`cannot copy ${src.dtype} rows of width ${src.width} into a ${this.dtype} cache of width ${this.width}`);
    }
    if (!Number.isInteger(n) || n < 0 || n > src.length) throw new MlaError(`cannot copy ${n} rows from a cache of ${src.length}`);
    this.length = 0;
    this.reserve(n);
    (this.data as CacheData).set(src.data.subarray(0, n * this.width));
    this.length = n;
  }

  get bytes(): number {
    return this.length * this.rowBytes;
  }
}

/**
 * MLA's latent cache: per token exactly [c_KV (d_c) | rotated k_rope (d_h^R)], shared by every head.
 * This row is the absorbed-attention key; its c_KV prefix is the absorbed value. F32, F16 or BF16 (`dtype`).
 */
export class LatentCache extends RowCache<CacheData> {
  constructor(readonly kvLoraRank: number, readonly ropeDim: number, capacity?: number, maxLength?: number, alloc?: CacheAlloc<CacheData>, dtype?: CacheDType) {
    super(kvLoraRank + ropeDim, capacity, maxLength, alloc, dtype);
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
