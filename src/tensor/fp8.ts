/**
 * The 8-bit float formats of block-scaled FP8 checkpoints (DeepSeek-V3/R1/V3.1, Kimi-K2): the weights are
 * float8_e4m3fn, each 2-D block of them multiplied by one scale (`<name>_scale_inv`, F32, or UE8M0 as
 * float8_e8m0fnu in V4-style files). Decoding is exact (a table of all 256 bytes); dequantizing rounds the product
 * once, to F32 then BF16, as DeepSeek's weight_dequant (inference/kernel.py) does when it writes BF16.
 */
import { f32ToBf16 } from "./dtype.js";

/** float8_e4m3fn: sign, 4 exponent bits (bias 7), 3 mantissa bits; no infinities, 0x7f/0xff NaN; max 448. */
export function e4m3ToF32(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const e = (b >> 3) & 0xf, m = b & 7;
  if (e === 0xf && m === 7) return NaN;
  if (e === 0) return sign * m * 2 ** -9; // subnormal: m/8 * 2^(1-7)
  return sign * (1 + m / 8) * 2 ** (e - 7);
}

/** float8_e8m0fnu (UE8M0): an unsigned power of two 2^(b-127); 0xff is NaN, there is no zero. */
export function e8m0ToF32(b: number): number {
  return b === 0xff ? NaN : 2 ** (b - 127);
}

let e4m3Table: Float32Array | null = null;
let e8m0Table: Float32Array | null = null;

/** All 256 float8_e4m3fn values. */
export function e4m3Lut(): Float32Array {
  return (e4m3Table ??= Float32Array.from({ length: 256 }, (_, b) => e4m3ToF32(b)));
}

/** All 256 float8_e8m0fnu values (2^-127 is an F32 subnormal, still exact). */
export function e8m0Lut(): Float32Array {
  return (e8m0Table ??= Float32Array.from({ length: 256 }, (_, b) => e8m0ToF32(b)));
}

/** A block-scaled FP8 matrix's layout: its shape, the block (rows x cols) one scale covers, the scale grid. */
export interface Fp8Layout {
  readonly rows: number;
  readonly cols: number;
  readonly block: readonly [number, number];
}

/** The scale grid of a matrix: [ceil(rows / bm), ceil(cols / bn)] (edge blocks may be ragged). */
export function fp8ScaleShape(l: Fp8Layout): [number, number] {
  return [Math.ceil(l.rows / l.block[0]), Math.ceil(l.cols / l.block[1])];
}

/**
 * Dequantize whole row-blocks of an FP8 matrix: `src` holds rows [r0, r0 + n) (r0 a multiple of the block's rows)
 * as e4m3 bytes, `scales` the whole grid as F32 (row-major); writes those rows of `out` (the whole matrix, BF16
 * words or F32). Each element is fround(e4m3 * scale): exact in a double, rounded once to F32 as an F32 product is,
 * then (BF16) rounded to nearest even. One 256-entry table per block turns the inner loop into a lookup.
 */
export function dequantizeFp8Rows(l: Fp8Layout, src: Uint8Array, r0: number, n: number, scales: Float32Array, out: Uint16Array | Float32Array): void {
  const [bm, bn] = l.block, cols = l.cols, gridCols = Math.ceil(cols / bn);
  const lut = e4m3Lut(), bf16 = out instanceof Uint16Array;
  const table = bf16 ? new Uint16Array(256) : new Float32Array(256);
  for (let rb = r0; rb < r0 + n; rb += bm) {
    const rEnd = Math.min(rb + bm, r0 + n);
    for (let cb = 0; cb < cols; cb += bn) {
      const s = scales[(rb / bm) * gridCols + cb / bn];
      for (let b = 0; b < 256; b++) {
        const v = Math.fround(lut[b] * s);
        table[b] = bf16 ? f32ToBf16(v) : v;
      }
      const cEnd = Math.min(cb + bn, cols);
      for (let r = rb; r < rEnd; r++) {
        const so = (r - r0) * cols, oo = r * cols;
        for (let c = cb; c < cEnd; c++) out[oo + c] = table[src[so + c]];
      }
    }
  }
}
