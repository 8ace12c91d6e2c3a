import { cacheValueReader, type CacheData, type CacheDType } from "./cache-dtype.js";

/** A strided view of cached keys or values: element (s, g, i) is data[offset + s*rowStride + g*headStride + i]. */
export interface KvView {
  readonly data: Float32Array;
  readonly offset: number;
  readonly rowStride: number;
  /** 0 when every head reads the same vector (MQA, absorbed MLA). */
  readonly headStride: number;
}

/**
 * Causal scaled dot-product attention of T new queries against L cached positions (the new tokens are the last T).
 *   out[t, h] = sum_s softmax_s(scale * q[t, h] . k[s, g]) v[s, g],  s <= L - T + t,  g = h / (H / Hkv)
 * q is [T, H, dk] and out [T, H, dv], both contiguous. Hkv = H is MHA, 1 < Hkv < H GQA, Hkv = 1 MQA;
 * absorbed MLA is MQA whose key is the latent row [c_KV | k_rope] and whose value is its c_KV prefix.
 */
export function attend(
  out: Float32Array, q: Float32Array, T: number, H: number, dk: number,
  k: KvView, v: KvView, dv: number, Hkv: number, L: number, scale: number,
): void {
  const group = H / Hkv;
  const scores = new Float64Array(L);
  const acc = new Float64Array(dv);
  for (let t = 0; t < T; t++) {
    const visible = L - T + t + 1;
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / group);
      const qo = (t * H + h) * dk;
      let m = -Infinity;
      for (let s = 0; s < visible; s++) {
        const ko = k.offset + s * k.rowStride + g * k.headStride;
        let dot = 0;
        for (let i = 0; i < dk; i++) dot += q[qo + i] * k.data[ko + i];
        const sc = dot * scale;
        scores[s] = sc;
        if (sc > m) m = sc;
      }
      let sum = 0;
      for (let s = 0; s < visible; s++) {
        const e = Math.exp(scores[s] - m);
        scores[s] = e;
        sum += e;
      }
      acc.fill(0);
      for (let s = 0; s < visible; s++) {
        const p = scores[s] / sum;
        const vo = v.offset + s * v.rowStride + g * v.headStride;
        for (let i = 0; i < dv; i++) acc[i] += p * v.data[vo + i];
      }
      const oo = (t * H + h) * dv;
      for (let i = 0; i < dv; i++) out[oo + i] = acc[i];
    }
  }
}

/** A sequence's latent cache as attention reads it: `length` rows of `width` values at the start of `data`. */
export interface LatentRows {
  readonly data: CacheData;
  readonly length: number;
  readonly width: number;
  /** How `data` stores the rows (default F32; F16/BF16 data is a Uint16Array). */
  readonly dtype?: CacheDType;
}

/**
 * Absorbed-MLA decode of one query token over every row of a latent cache of any dtype (the scalar reference of
 * the WASM latent kernels): MQA whose key is the row [c_KV | k_rope] (w values) and whose value is its c_KV prefix
 * (dc). q is [H, w], out [H, dc]. 16-bit rows are widened exactly as they are read.
 */
export function attendLatent(out: Float32Array, q: Float32Array, H: number, w: number, dc: number, rows: LatentRows, scale: number): void {
  const L = rows.length, at = cacheValueReader(rows.data, rows.dtype ?? "F32");
  const scores = new Float64Array(L), acc = new Float64Array(dc);
  for (let h = 0; h < H; h++) {
    let m = -Infinity;
    for (let s = 0; s < L; s++) {
      let dot = 0;
      for (let i = 0; i < w; i++) dot += q[h * w + i] * at(s * rows.width + i);
      scores[s] = dot * scale;
      if (scores[s] > m) m = scores[s];
    }
    let sum = 0;
    for (let s = 0; s < L; s++) sum += scores[s] = Math.exp(scores[s] - m);
    acc.fill(0);
    for (let s = 0; s < L; s++) {
      const p = scores[s] / sum;
      for (let i = 0; i < dc; i++) acc[i] += p * at(s * rows.width + i);
    }
    for (let i = 0; i < dc; i++) out[h * dc + i] = acc[i];
  }
}
