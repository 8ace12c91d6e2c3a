/**
 * GGML's weight types as GGUF files store them (llama.cpp's ggml-common.h): their ids, block sizes, and the plain
 * reference dequantization of a row. These are the block formats that `--quantize` and GGUF loading share; the
 * fast kernels work on the packed blocks, and this file is what they are tested against.
 *
 * Block layouts (little-endian; d and dmin are f16):
 *   Q8_0  32 weights, 34 bytes: d, 32 x int8                                    w = d q
 *   Q4_0  32 weights, 18 bytes: d, 16 bytes of nibbles (low: 0-15, high: 16-31)  w = d (q - 8)
 *   Q4_1  32 weights, 20 bytes: d, m, 16 bytes of nibbles                        w = d q + m
 *   Q5_0  32 weights, 22 bytes: d, 4 bytes of fifth bits (qh), 16 of nibbles     w = d (q - 16)
 *   Q5_1  32 weights, 24 bytes: d, m, qh, 16 bytes of nibbles                    w = d q + m
 *   Q4_K 256 weights, 144 bytes: d, dmin, 12 bytes of 6-bit scales/mins for 8 sub-blocks of 32, 128 bytes of nibbles
 *                                                                               w = d sc q - dmin m
 *   Q5_K 256 weights, 176 bytes: as Q4_K plus 32 bytes of fifth bits (qh) before the nibbles
 *   Q6_K 256 weights, 210 bytes: 128 bytes of low nibbles, 64 of high 2-bit pairs, 16 int8 scales, d (last)
 *                                                                               w = d sc (q - 32)
 */
import { MlaError } from "../errors.js";
import { bf16ToF32, f16Lut } from "./dtype.js";

/** GGML type ids (enum ggml_type) of the types mla-ts reads, and the others by name for messages. */
export const GGML_TYPE = {
  F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q8_1: 9, Q2_K: 10, Q3_K: 11, Q4_K: 12, Q5_K: 13,
  Q6_K: 14, Q8_K: 15, IQ2_XXS: 16, IQ2_XS: 17, IQ3_XXS: 18, IQ1_S: 19, IQ4_NL: 20, IQ3_S: 21, IQ2_S: 22, IQ4_XS: 23,
  I8: 24, I16: 25, I32: 26, I64: 27, F64: 28, IQ1_M: 29, BF16: 30, TQ1_0: 34, TQ2_0: 35, MXFP4: 39,
} as const;

export type GgmlTypeName = keyof typeof GGML_TYPE;

/**
 * The types whose rows mla-ts dequantizes: the ones GGUF model files of MLA models use, and the legacy 32-wide types
 * llama-quantize falls back to where a K-type row does not divide 256 (attn_k_b's 128-wide rows in a Q4_K_M file).
 */
export const READABLE_GGML_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"] as const;
export type ReadableGgmlType = (typeof READABLE_GGML_TYPES)[number];

/** Weights per block and bytes per block. */
export const GGML_BLOCK: Readonly<Record<ReadableGgmlType, readonly [number, number]>> = {
  F32: [1, 4], F16: [1, 2], BF16: [1, 2], Q8_0: [32, 34], Q4_0: [32, 18], Q4_1: [32, 20], Q5_0: [32, 22], Q5_1: [32, 24],
  Q4_K: [256, 144], Q5_K: [256, 176], Q6_K: [256, 210],
};

/** The name of a GGML type id ("Q4_K"), or "type N" for ids this table does not know. */
export function ggmlTypeName(id: number): string {
  const e = Object.entries(GGML_TYPE).find(([, v]) => v === id);
  return e ? e[0] : `type ${id}`;
}

export function isReadableGgmlType(name: string): name is ReadableGgmlType {
  return (READABLE_GGML_TYPES as readonly string[]).includes(name);
}

/** Bytes of a row of n weights (n a multiple of the block size). */
export function ggmlRowBytes(type: ReadableGgmlType, n: number): number {
  const [per, bytes] = GGML_BLOCK[type];
  if (n % per) throw new MlaError(`${type} stores rows in blocks of ${per} weights; a row of ${n} does not divide`);
  return (n / per) * bytes;
}

/**
 * Dequantize n weights of `type` starting at byte `at` of `src` into out[o .. o + n): the reference every packed
 * kernel is checked against (llama.cpp's dequantize_row_* computed in float32).
 */
export function dequantizeGgml(type: ReadableGgmlType, src: Uint8Array, at: number, n: number, out: Float32Array, o = 0): Float32Array {
  ggmlRowBytes(type, n);
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const lut = f16Lut(), f16 = (p: number) => lut[view.getUint16(p, true)];
  switch (type) {
    case "F32":
      for (let i = 0; i < n; i++) out[o + i] = view.getFloat32(at + 4 * i, true);
      break;
    case "F16":
      for (let i = 0; i < n; i++) out[o + i] = f16(at + 2 * i);
      break;
    case "BF16":
      for (let i = 0; i < n; i++) out[o + i] = bf16ToF32(view.getUint16(at + 2 * i, true));
      break;
    case "Q8_0":
      for (let b = 0; b < n / 32; b++, at += 34, o += 32) {
        const d = f16(at);
        for (let j = 0; j < 32; j++) out[o + j] = d * ((src[at + 2 + j] << 24) >> 24);
      }
      break;
    case "Q4_0":
      for (let b = 0; b < n / 32; b++, at += 18, o += 32) {
        const d = f16(at);
        for (let j = 0; j < 16; j++) {
          const v = src[at + 2 + j];
          out[o + j] = d * ((v & 15) - 8);
          out[o + j + 16] = d * ((v >> 4) - 8);
        }
      }
      break;
    case "Q4_1":
    case "Q5_0":
    case "Q5_1":
      legacy32(type, src, view, at, n, out, o);
      break;
    case "Q4_K":
    case "Q5_K": {
      const five = type === "Q5_K", size = five ? 176 : 144;
      for (let b = 0; b < n / 256; b++, at += size, o += 256) {
        const d = f16(at), dmin = f16(at + 2), sc = at + 4, qh = at + 16, qs = at + (five ? 48 : 16);
        for (let j = 0, is = 0; j < 4; j++, is += 2) {
          const [s1, m1] = scaleMinK4(src, sc, is), [s2, m2] = scaleMinK4(src, sc, is + 1);
          const d1 = Math.fround(d * s1), dm1 = Math.fround(dmin * m1), d2 = Math.fround(d * s2), dm2 = Math.fround(dmin * m2);
          for (let l = 0; l < 32; l++) {
            const q = src[qs + 32 * j + l];
            const hi1 = five && src[qh + l] & (1 << (2 * j)) ? 16 : 0, hi2 = five && src[qh + l] & (2 << (2 * j)) ? 16 : 0;
            out[o + 64 * j + l] = d1 * ((q & 15) + hi1) - dm1;
            out[o + 64 * j + 32 + l] = d2 * ((q >> 4) + hi2) - dm2;
          }
        }
      }
      break;
    }
    case "Q6_K":
      for (let b = 0; b < n / 256; b++, at += 210, o += 256) {
        const d = f16(at + 208);
        for (let half = 0; half < 2; half++) {
          const ql = at + 64 * half, qh = at + 128 + 32 * half, sc = at + 192 + 8 * half, y = o + 128 * half;
          for (let l = 0; l < 32; l++) {
            const is = l >> 4, h = src[qh + l];
            const q1 = ((src[ql + l] & 15) | ((h & 3) << 4)) - 32;
            const q2 = ((src[ql + l + 32] & 15) | (((h >> 2) & 3) << 4)) - 32;
            const q3 = ((src[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
            const q4 = ((src[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
            const s = (k: number) => Math.fround(d * ((src[sc + is + k] << 24) >> 24));
            out[y + l] = s(0) * q1;
            out[y + l + 32] = s(2) * q2;
            out[y + l + 64] = s(4) * q3;
            out[y + l + 96] = s(6) * q4;
          }
        }
      }
      break;
  }
  return out;
}

/** Sub-block j's 6-bit scale and min of a Q4_K/Q5_K block (llama.cpp's get_scale_min_k4). */
function scaleMinK4(src: Uint8Array, sc: number, j: number): [number, number] {
  if (j < 4) return [src[sc + j] & 63, src[sc + j + 4] & 63];
  return [(src[sc + j + 4] & 15) | ((src[sc + j - 4] >> 6) << 4), (src[sc + j + 4] >> 4) | ((src[sc + j] >> 6) << 4)];
}

/** Q4_1, Q5_0, Q5_1 (llama.cpp's dequantize_row_q4_1/q5_0/q5_1): nibbles, a fifth bit from qh, an offset or a min. */
function legacy32(type: "Q4_1" | "Q5_0" | "Q5_1", src: Uint8Array, view: DataView, at: number, n: number, out: Float32Array, o: number): void {
  const lut = f16Lut(), [, size] = GGML_BLOCK[type];
  const hasMin = type !== "Q5_0", five = type !== "Q4_1";
  for (let b = 0; b < n / 32; b++, at += size, o += 32) {
    const d = lut[view.getUint16(at, true)], m = hasMin ? lut[view.getUint16(at + 2, true)] : 0;
    const qhAt = at + (hasMin ? 4 : 2), qs = five ? qhAt + 4 : at + 4;
    const qh = five ? view.getUint32(qhAt, true) : 0;
    for (let j = 0; j < 16; j++) {
      const x0 = (src[qs + j] & 15) | (((qh >>> j) << 4) & 16), x1 = (src[qs + j] >> 4) | ((qh >>> (j + 12)) & 16);
      if (type === "Q5_0") {
        out[o + j] = (x0 - 16) * d;
        out[o + j + 16] = (x1 - 16) * d;
      } else {
        out[o + j] = Math.fround(x0 * d) + m;
        out[o + j + 16] = Math.fround(x1 * d) + m;
      }
    }
  }
}
