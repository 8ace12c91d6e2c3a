/**
 * F32 rows -> GGML's packed block formats (Q4_0, Q4_K, Q5_K, Q6_K, Q5_0), following llama.cpp's reference quantizers
 * (ggml-quants.c: quantize_row_q4_0_ref, quantize_row_q5_0_ref, quantize_row_q4_K_ref / q5_K_ref with make_qkx2_quants,
 * quantize_row_q6_K_ref with make_qx_quants) operation by operation in float32, so the bytes match llama.cpp's
 * (test/ggml-quantize.test.ts checks them against the C reference and the gguf package). Block layouts: ggml.ts.
 *
 * Every float32 operation of the C code is one Math.fround here (`f`), in C's order (no fused multiply-add).
 * llama.cpp rounds with nearest_int (x + 1.5 * 2^23 in float32: round half to even) in the K-quants and truncates
 * x + 8.5 in Q4_0. A block holding inf or NaN is stored as the quantization of zeros (llama.cpp would store a NaN
 * or an infinite scale), so dequantized weights are never NaN.
 */
import { MlaError } from "../errors.js";
import { type BlockDType, f16Lut, f32ToF16, isBlockDType, isDType } from "./dtype.js";
import { GGML_BLOCK, ggmlRowBytes } from "./ggml.js";
import { numel, quantizeQ8, rowF32, tensor, type Tensor } from "./tensor.js";

const f = Math.fround;
/** float32 0.1f and 1e-15f (GROUP_MAX_EPS) as C spells them. */
const TENTH = f(0.1);
const GROUP_MAX_EPS = f(1e-15);
/** Working buffers of one block (quantization is synchronous, so one set serves every call). */
const LEVELS = new Uint8Array(256), AUX = new Uint8Array(32), WEIGHTS = new Float32Array(32), SCALES = new Float32Array(16), MINS = new Float32Array(8);

/** llama.cpp's nearest_int: the float32 sum with 1.5 * 2^23 rounds half to even (|v| < 2^22). */
export function nearestInt(v: number): number {
  return f(v + 12582912) - 12582912;
}

/** float32 -> the f16 bits GGML stores, and the f32 value they hold. */
function half(v: number): [number, number] {
  const h = f32ToF16(v);
  return [h, f16Lut()[h]];
}

function finite(x: Float32Array, o: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (!Number.isFinite(x[o + i])) return false;
  return true;
}

/** Quantize `rows` rows of `cols` values (read through `row(r)`) into packed blocks of `type`. */
export function quantizeRows(type: BlockDType, rows: number, cols: number, row: (r: number) => Float32Array): Uint8Array {
  const rb = ggmlRowBytes(type, cols);
  const out = new Uint8Array(rows * rb);
  const [per, bytes] = GGML_BLOCK[type];
  const zeros = new Float32Array(per);
  const block = BLOCK_QUANTIZERS[type];
  for (let r = 0; r < rows; r++) {
    const x = row(r);
    if (x.length < cols) throw new MlaError(`quantizeRows: row ${r} has ${x.length} values, expected ${cols}`);
    for (let b = 0, o = r * rb; b < cols / per; b++, o += bytes) {
      const ok = finite(x, b * per, per);
      block(ok ? x : zeros, ok ? b * per : 0, out, o);
    }
  }
  return out;
}

/** Quantize a matrix (any dtype; the last dimension a multiple of the block) to Q8 or a block dtype, row by row. */
export function quantizeTensor(t: Tensor, type: "Q8" | BlockDType): Tensor {
  if (type === "Q8") return quantizeQ8(t);
  if (!isBlockDType(type)) throw new MlaError(`quantizeTensor: unknown type ${String(type)}`);
  const cols = t.shape.length ? t.shape[t.shape.length - 1] : 1;
  const rows = cols ? numel(t.shape) / cols : 0;
  const scratch = new Float32Array(cols);
  return tensor(type, t.shape, quantizeRows(type, rows, cols, (r) => rowF32(t, r, cols, scratch)));
}

type BlockQuantizer = (x: Float32Array, o: number, y: Uint8Array, at: number) => void;

const BLOCK_QUANTIZERS: Record<BlockDType, BlockQuantizer> = {
  Q4_0: quantizeQ4_0,
  Q4_K: (x, o, y, at) => quantizeQ45K(x, o, y, at, false),
  Q5_K: (x, o, y, at) => quantizeQ45K(x, o, y, at, true),
  Q6_K: quantizeQ6K,
  Q5_0: quantizeQ5_0,
};

function putF16(y: Uint8Array, at: number, h: number): void {
  y[at] = h & 255;
  y[at + 1] = h >> 8;
}

/** The signed value of largest magnitude among x[o .. o + 32) (the first of equals, as llama.cpp's loop keeps). */
function largestMagnitude(x: Float32Array, o: number): number {
  let amax = 0, max = 0;
  for (let j = 0; j < 32; j++) {
    const v = x[o + j];
    if (amax < Math.abs(v)) {
      amax = Math.abs(v);
      max = v;
    }
  }
  return max;
}

/** quantize_row_q4_0_ref, one block of 32: d = (the value of largest magnitude) / -8, q = min(15, trunc(x / d + 8.5)). */
function quantizeQ4_0(x: Float32Array, o: number, y: Uint8Array, at: number): void {
  const d = f(largestMagnitude(x, o) / -8), id = d ? f(1 / d) : 0;
  putF16(y, at, half(d)[0]);
  const q = (v: number) => Math.min(15, Math.trunc(f(f(v * id) + 8.5)));
  for (let j = 0; j < 16; j++) y[at + 2 + j] = q(x[o + j]) | (q(x[o + 16 + j]) << 4);
}

/**
 * quantize_row_q5_0_ref, one block of 32: d = (the value of largest magnitude) / -16, q = min(31, trunc(x / d + 16.5)),
 * the nibbles as Q4_0's and the fifth bits in qh (bit j for weight j).
 */
function quantizeQ5_0(x: Float32Array, o: number, y: Uint8Array, at: number): void {
  const d = f(largestMagnitude(x, o) / -16), id = d ? f(1 / d) : 0;
  putF16(y, at, half(d)[0]);
  const q = (v: number) => Math.min(31, Math.trunc(f(f(v * id) + 16.5)));
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    const q0 = q(x[o + j]), q1 = q(x[o + 16 + j]);
    y[at + 6 + j] = (q0 & 15) | ((q1 & 15) << 4);
    qh |= ((q0 >> 4) << j) | ((q1 >> 4) << (j + 16));
  }
  for (let i = 0; i < 4; i++) y[at + 2 + i] = (qh >>> (8 * i)) & 255;
}

/**
 * make_qkx2_quants for one sub-block of 32 (weighted least squares over a scale and a min <= 0, trying nstep + 1
 * scales around the range's): levels into L[lo..lo+32), returns [scale, -min].
 */
function makeQkx2(x: Float32Array, o: number, w: Float32Array, nmax: number, L: Uint8Array, lo: number, rmin: number, nstep: number): [number, number] {
  const n = 32;
  let min = x[o], max = x[o], sumW = w[0], sumX = f(sumW * x[o]);
  for (let i = 1; i < n; i++) {
    const v = x[o + i];
    if (v < min) min = v;
    if (v > max) max = v;
    sumW = f(sumW + w[i]);
    sumX = f(sumX + f(w[i] * v));
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0, lo, lo + n);
    return [0, -min];
  }
  let iscale = f(nmax / f(max - min)), scale = f(1 / iscale), best = 0;
  for (let i = 0; i < n; i++) {
    const l = Math.max(0, Math.min(nmax, nearestInt(f(iscale * f(x[o + i] - min)))));
    L[lo + i] = l;
    const diff = f(f(f(scale * l) + min) - x[o + i]);
    best = f(best + f(w[i] * f(diff * diff)));
  }
  const aux = AUX;
  for (let is = 0; is <= nstep; is++) {
    // (max - min) with the best min so far: llama.cpp moves min as it finds better fits
    iscale = f(f(f(rmin + f(TENTH * is)) + nmax) / f(max - min));
    let sumL = 0, sumL2 = 0, sumXL = 0;
    for (let i = 0; i < n; i++) {
      const l = Math.max(0, Math.min(nmax, nearestInt(f(iscale * f(x[o + i] - min)))));
      aux[i] = l;
      const wl = f(w[i] * l);
      sumL = f(sumL + wl);
      sumL2 = f(sumL2 + f(wl * l));
      sumXL = f(sumXL + f(wl * x[o + i]));
    }
    const D = f(f(sumW * sumL2) - f(sumL * sumL));
    if (!(D > 0)) continue;
    let thisScale = f(f(f(sumW * sumXL) - f(sumX * sumL)) / D);
    let thisMin = f(f(f(sumL2 * sumX) - f(sumL * sumXL)) / D);
    if (thisMin > 0) {
      thisMin = 0;
      thisScale = f(sumXL / sumL2);
    }
    let cur = 0;
    for (let i = 0; i < n; i++) {
      const diff = f(f(f(thisScale * aux[i]) + thisMin) - x[o + i]);
      cur = f(cur + f(w[i] * f(diff * diff)));
    }
    if (cur < best) {
      L.set(aux, lo);
      best = cur;
      scale = thisScale;
      min = thisMin;
    }
  }
  return [scale, -min];
}

/**
 * quantize_row_q4_K_ref / quantize_row_q5_K_ref, one block of 256: 8 sub-blocks fitted by makeQkx2 (weights
 * sqrt(mean x^2) + |x|), their scales and mins quantized to 6 bits against d = max scale / 63, dmin = max min / 63,
 * then every value re-quantized against its sub-block's stored scale and min.
 */
function quantizeQ45K(x: Float32Array, o: number, y: Uint8Array, at: number, five: boolean): void {
  const nmax = five ? 31 : 15;
  const L = LEVELS, w = WEIGHTS, scales = SCALES, mins = MINS;
  let maxScale = 0, maxMin = 0;
  for (let j = 0; j < 8; j++) {
    const s = o + 32 * j;
    let sumX2 = 0;
    for (let l = 0; l < 32; l++) sumX2 = f(sumX2 + f(x[s + l] * x[s + l]));
    const av = f(Math.sqrt(f(sumX2 / 32)));
    for (let l = 0; l < 32; l++) w[l] = f(av + Math.abs(x[s + l]));
    [scales[j], mins[j]] = five ? makeQkx2(x, s, w, 31, L, 32 * j, -0.5, 15) : makeQkx2(x, s, w, 15, L, 32 * j, -1, 20);
    if (scales[j] > maxScale) maxScale = scales[j];
    if (mins[j] > maxMin) maxMin = mins[j];
  }
  const invScale = maxScale > 0 ? f(63 / maxScale) : 0, invMin = maxMin > 0 ? f(63 / maxMin) : 0;
  const sc = at + 4;
  y.fill(0, sc, sc + 12);
  for (let j = 0; j < 8; j++) {
    // (uint8_t) of the int, then MIN(63, .)
    const ls = Math.min(63, nearestInt(f(invScale * scales[j])) & 255), lm = Math.min(63, nearestInt(f(invMin * mins[j])) & 255);
    if (j < 4) {
      y[sc + j] = ls;
      y[sc + j + 4] = lm;
    } else {
      y[sc + j + 4] = (ls & 15) | ((lm & 15) << 4);
      y[sc + j - 4] |= (ls >> 4) << 6;
      y[sc + j] |= (lm >> 4) << 6;
    }
  }
  const [dh, d] = half(f(maxScale / 63)), [mh, dmin] = half(f(maxMin / 63));
  putF16(y, at, dh);
  putF16(y, at + 2, mh);
  for (let j = 0; j < 8; j++) {
    const [s, m] = scaleMinK4(y, sc, j);
    const dj = f(d * s);
    if (!dj) continue; // keeps makeQkx2's levels, as llama.cpp does
    const dm = f(dmin * m);
    for (let i = 0; i < 32; i++) L[32 * j + i] = Math.max(0, Math.min(nmax, nearestInt(f(f(x[o + 32 * j + i] + dm) / dj))));
  }
  packQ45K(L, y, at, five);
}

/** Levels 0..nmax into the nibbles (and Q5_K's fifth bits): each 32 bytes hold sub-blocks 2j (low) and 2j+1 (high). */
function packQ45K(L: Uint8Array, y: Uint8Array, at: number, five: boolean): void {
  const qh = at + 16, qs = at + (five ? 48 : 16);
  if (five) y.fill(0, qh, qh + 32);
  for (let j = 0; j < 4; j++) {
    for (let l = 0; l < 32; l++) {
      let l1 = L[64 * j + l], l2 = L[64 * j + 32 + l];
      if (five && l1 > 15) {
        l1 -= 16;
        y[qh + l] |= 1 << (2 * j);
      }
      if (five && l2 > 15) {
        l2 -= 16;
        y[qh + l] |= 2 << (2 * j);
      }
      y[qs + 32 * j + l] = l1 | (l2 << 4);
    }
  }
}

/** Sub-block j's 6-bit scale and min (get_scale_min_k4). */
function scaleMinK4(y: Uint8Array, sc: number, j: number): [number, number] {
  if (j < 4) return [y[sc + j] & 63, y[sc + j + 4] & 63];
  return [(y[sc + j + 4] & 15) | ((y[sc + j - 4] >> 6) << 4), (y[sc + j + 4] >> 4) | ((y[sc + j] >> 6) << 4)];
}

/**
 * make_qx_quants with rmse_type 1 (weights x^2) for one sub-block of 16: symmetric levels -nmax..nmax-1 stored
 * + nmax into L[lo..lo+16); tries 18 scales around nmax / max|x| and keeps the best weighted fit. Returns the scale.
 */
function makeQx(x: Float32Array, o: number, nmax: number, L: Uint8Array, lo: number): number {
  const n = 16;
  let max = 0, amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[o + i]);
    if (ax > amax) {
      amax = ax;
      max = x[o + i];
    }
  }
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, lo, lo + n);
    return 0;
  }
  const level = (iscale: number, v: number) => Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * v))));
  const sums = (iscale: number): [number, number] => {
    let sumlx = 0, suml2 = 0;
    for (let i = 0; i < n; i++) {
      const v = x[o + i], l = level(iscale, v), w = f(v * v);
      sumlx = f(sumlx + f(f(w * v) * l));
      suml2 = f(suml2 + f(f(w * l) * l));
    }
    return [sumlx, suml2];
  };
  const store = (iscale: number) => {
    for (let i = 0; i < n; i++) L[lo + i] = nmax + level(iscale, x[o + i]);
  };
  let iscale = f(-nmax / max);
  store(iscale);
  let [sumlx, suml2] = sums(iscale);
  let scale = suml2 ? f(sumlx / suml2) : 0, best = f(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = f(-f(nmax + f(TENTH * is)) / max);
    [sumlx, suml2] = sums(iscale);
    if (suml2 > 0 && f(sumlx * sumlx) > f(best * suml2)) {
      store(iscale);
      scale = f(sumlx / suml2);
      best = f(scale * sumlx);
    }
  }
  return scale;
}

/**
 * quantize_row_q6_K_ref, one block of 256: 16 sub-blocks of 16 fitted by makeQx, their scales quantized to int8
 * against d = (the scale of largest magnitude) / -128, then every value re-quantized to -32..31 against its stored scale.
 */
function quantizeQ6K(x: Float32Array, o: number, y: Uint8Array, at: number): void {
  const L = LEVELS, scales = SCALES;
  let maxScale = 0, maxAbs = 0;
  for (let ib = 0; ib < 16; ib++) {
    const s = makeQx(x, o + 16 * ib, 32, L, 16 * ib);
    scales[ib] = s;
    if (Math.abs(s) > maxAbs) {
      maxAbs = Math.abs(s);
      maxScale = s;
    }
  }
  y.fill(0, at, at + 210);
  if (maxAbs < GROUP_MAX_EPS) return;
  const iscale = f(-128 / maxScale);
  const [dh, d] = half(f(1 / iscale));
  putF16(y, at + 208, dh);
  for (let ib = 0; ib < 16; ib++) y[at + 192 + ib] = Math.min(127, nearestInt(f(iscale * scales[ib]))) & 255;
  for (let j = 0; j < 16; j++) {
    const dj = f(d * ((y[at + 192 + j] << 24) >> 24));
    if (!dj) continue;
    for (let i = 0; i < 16; i++) L[16 * j + i] = 32 + Math.max(-32, Math.min(31, nearestInt(f(x[o + 16 * j + i] / dj))));
  }
  for (let h = 0; h < 2; h++) {
    const ql = at + 64 * h, qh = at + 128 + 32 * h, b = 128 * h;
    for (let l = 0; l < 32; l++) {
      const q1 = L[b + l], q2 = L[b + l + 32], q3 = L[b + l + 64], q4 = L[b + l + 96];
      y[ql + l] = (q1 & 15) | ((q3 & 15) << 4);
      y[ql + l + 32] = (q2 & 15) | ((q4 & 15) << 4);
      y[qh + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
    }
  }
}

/**
 * What quantizing weights to `type` at load makes of a matrix: `type` when its rows divide the block, else Q8 when
 * they divide 32, else nothing (kept as is). Only float matrices are quantized: Q8 and block tensors (a GGUF file's)
 * are kept, as re-quantizing them would only add error.
 */
export function quantizeTarget(type: "q8" | BlockDType, t: Tensor): "Q8" | BlockDType | undefined {
  if (t.shape.length !== 2 || !isDType(t.dtype)) return undefined;
  const cols = t.shape[1];
  if (type !== "q8" && cols % GGML_BLOCK[type][0] === 0) return type;
  return cols % 32 === 0 ? "Q8" : undefined;
}
