import { bf16ToF32, f16Lut, f32ToF16 } from "../../tensor/dtype.js";

/**
 * How cache rows are stored: F32, or 16-bit words (rounded once, when a row is appended, to nearest even), which
 * halves the bytes attention reads per cached token and the cache's memory.
 */
export type CacheDType = "F32" | "F16" | "BF16";
export const CACHE_DTYPES: readonly CacheDType[] = ["F32", "F16", "BF16"];

/** A cache's storage: floats, or one 16-bit word per value. */
export type CacheData = Float32Array | Uint16Array;

export function cacheElementBytes(dtype: CacheDType): number {
  return dtype === "F32" ? 4 : 2;
}

/** Fresh storage of n values in plain JS memory. */
export function allocCacheData(n: number): Float32Array;
export function allocCacheData(n: number, dtype: CacheDType): CacheData;
export function allocCacheData(n: number, dtype: CacheDType = "F32"): CacheData {
  return dtype === "F32" ? new Float32Array(n) : new Uint16Array(n);
}

/** dst[o + i] = src[i] rounded to the cache dtype (dst is a Uint16Array exactly when dtype is 16-bit). */
export function encodeCacheRow(dst: CacheData, o: number, src: Float32Array, dtype: CacheDType): void {
  if (dtype === "F32") {
    dst.set(src, o);
    return;
  }
  if (dtype === "F16") {
    for (let i = 0; i < src.length; i++) dst[o + i] = f32ToF16(src[i]);
    return;
  }
  // BF16 inline on the bits (f32ToBf16's rounding, NaN kept quiet): a long synthetic context appends millions
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const b = bits[i];
    dst[o + i] = (b & 0x7fffffff) > 0x7f800000 ? (b >>> 16) | 0x40 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
}

/** The floats of src[start, end): a view when the cache is F32, else a widened copy (exact). */
export function decodeCacheValues(src: CacheData, start: number, end: number, dtype: CacheDType): Float32Array {
  if (src instanceof Float32Array) return src.subarray(start, end);
  const out = new Float32Array(end - start);
  if (dtype === "BF16") {
    const bits = new Uint32Array(out.buffer);
    for (let i = start; i < end; i++) bits[i - start] = src[i] << 16;
  } else {
    const lut = f16Lut();
    for (let i = start; i < end; i++) out[i - start] = lut[src[i]];
  }
  return out;
}

/** One stored value as a float (the scalar kernels' per-element read). */
export function cacheValueReader(data: CacheData, dtype: CacheDType): (i: number) => number {
  if (data instanceof Float32Array) return (i) => data[i];
  if (dtype === "BF16") return (i) => bf16ToF32(data[i]);
  const lut = f16Lut();
  return (i) => lut[data[i]];
}
