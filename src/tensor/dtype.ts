/**
 * Storage dtypes that mla-ts keeps in memory. Activations are always F32; weights keep their stored dtype
 * (F32/BF16/F16 from files), or are block-quantized (at load, or as a GGUF file stores them):
 * - Q8: GGML's Q8_0 (int8 in blocks of 32, one scale each) with the int8 values and the scales kept apart, the
 *   scales widened from f16 to f32 (exactly: they are f16 values), so the SIMD kernels load aligned int8 rows.
 * - Q4_0, Q4_K, Q5_K, Q6_K, Q5_0: GGML's packed blocks byte for byte, as in a GGUF file (see ggml.ts). Q5_0 comes only
 *   from GGUF files (llama.cpp's fallback where a Q4_K row does not divide 256); `--quantize` does not make it.
 */
export type DType = "F32" | "BF16" | "F16" | "Q8" | BlockDType;

/** The block-quantized dtypes kept as GGML's packed blocks (a Uint8Array of whole blocks per row). */
export type BlockDType = "Q4_0" | "Q4_K" | "Q5_K" | "Q6_K" | "Q5_0";
export const BLOCK_DTYPES: readonly BlockDType[] = ["Q4_0", "Q4_K", "Q5_K", "Q6_K", "Q5_0"];

export function isBlockDType(d: string): d is BlockDType {
  return (BLOCK_DTYPES as readonly string[]).includes(d);
}

/** Bytes per element, on average (Q8: plus one f32 scale per 32 elements; blocks: block bytes / block weights). */
export const DTYPE_BYTES: Record<DType, number> = { F32: 4, BF16: 2, F16: 2, Q8: 1, Q4_0: 18 / 32, Q4_K: 144 / 256, Q5_K: 176 / 256, Q6_K: 210 / 256, Q5_0: 22 / 32 };

/** The dtypes a checkpoint file may hold and mla-ts keeps as stored. */
export function isDType(s: string): s is "F32" | "BF16" | "F16" {
  return s === "F32" || s === "BF16" || s === "F16";
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** BF16 is the top half of an F32: widening is a shift. */
export function bf16ToF32(h: number): number {
  u32[0] = h << 16;
  return f32[0];
}

/** F32 -> BF16 with round-to-nearest-even, as PyTorch's `.to(torch.bfloat16)`; NaN stays NaN. */
export function f32ToBf16(x: number): number {
  f32[0] = x;
  const b = u32[0];
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** IEEE half -> number, including subnormals, infinities and NaN. */
export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** number -> IEEE half with round-to-nearest-even (overflow to infinity). */
export function f32ToF16(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let man = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (man ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    man |= 0x800000;
    const shift = 14 - e;
    let h = man >>> shift;
    const rem = man & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (man >>> 13);
  const rem = man & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

let f16Table: Float32Array | null = null;
/** All 65536 half values widened: one table lookup per weight in the scalar kernels. */
export function f16Lut(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16Table[i] = f16ToF32(i);
  }
  return f16Table;
}
