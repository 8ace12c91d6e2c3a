// The F32 -> GGML block quantizers (src/tensor/ggml-quantize.ts): bytes equal to llama.cpp's reference quantizers on
// test/fixtures/ggml-quant (made by scripts/make-quant-fixture.py from ggml-quants.c and the gguf package), and
// dequantize(quantize(x)) within each type's error on Gaussian data.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { quantizeRows, quantizeTensor, nearestInt } from "../src/tensor/ggml-quantize.js";
import { dequantizeGgml, ggmlRowBytes } from "../src/tensor/ggml.js";
import { BLOCK_DTYPES, type BlockDType, f32ToF16 } from "../src/tensor/dtype.js";
import { f32Tensor, fromF32, quantizeQ8, toF32 } from "../src/tensor/tensor.js";
import { Rng } from "../src/tensor/rng.js";
import { FIXTURES, relErr } from "./helpers.js";

const DIR = join(FIXTURES, "ggml-quant");
const ROWS = 6, COLS = 512;

function fixtureInput(): Float32Array {
  const b = readFileSync(join(DIR, "input.f32"));
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

function gaussian(n: number, seed: number): Float32Array {
  const r = new Rng(seed), x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = r.normal();
  return x;
}

function dequantize(type: BlockDType, q: Uint8Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols), rb = ggmlRowBytes(type, cols);
  for (let r = 0; r < rows; r++) dequantizeGgml(type, q, r * rb, cols, out, r * cols);
  return out;
}

test("nearestInt rounds halves to even, as llama.cpp's float trick", () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999998, 3.7].map(nearestInt), [0, 2, 2, 0, -2, -2, 2, 4]);
});

for (const type of BLOCK_DTYPES) {
  test(`${type}: bytes equal llama.cpp's quantize_row_${type.toLowerCase()}_ref`, () => {
    const x = fixtureInput();
    const got = quantizeRows(type, ROWS, COLS, (r) => x.subarray(r * COLS, (r + 1) * COLS));
    const want = new Uint8Array(readFileSync(join(DIR, `${type}.bin`)));
    assert.equal(got.length, want.length);
    const bad = got.findIndex((v, i) => v !== want[i]);
    assert.equal(bad, -1, `first differing byte ${bad}: ${got[bad]} vs ${want[bad]}`);
  });
}

test("Q8: quantizeQ8 equals llama.cpp's Q8_0 (scales as f16, int8 values)", () => {
  const x = fixtureInput();
  const t = quantizeTensor(f32Tensor([ROWS, COLS], x), "Q8");
  const want = new Uint8Array(readFileSync(join(DIR, "Q8_0.bin")));
  const q = t.data as Int8Array, s = t.scales!;
  for (let b = 0; b < s.length; b++) {
    const h = f32ToF16(s[b]);
    assert.equal(want[34 * b] | (want[34 * b + 1] << 8), h, `block ${b} scale`);
    for (let j = 0; j < 32; j++) assert.equal((want[34 * b + 2 + j] << 24) >> 24, q[32 * b + j], `block ${b} value ${j}`);
  }
});

// Relative RMS error of the round trip on Gaussian data (measured over 5 seeds of 8 x 1024: Q4_0 0.085-0.087,
// Q4_K 0.070-0.072, Q5_K 0.036, Q6_K 0.0176-0.0179, Q5_0 0.042-0.043, Q8 0.0053-0.0055); bounds ~15% above, so a
// broken level or scale fails.
const BOUND: Record<BlockDType | "Q8", number> = { Q4_0: 0.1, Q4_K: 0.082, Q5_K: 0.042, Q6_K: 0.021, Q5_0: 0.05, Q8: 0.0063 };

for (const type of [...BLOCK_DTYPES, "Q8"] as const) {
  test(`${type}: dequantize(quantize(x)) within ${BOUND[type]} relative RMS on Gaussian data`, () => {
    const seed = (Math.random() * 2 ** 31) | 0;
    const rows = 5, cols = 1024, x = gaussian(rows * cols, seed);
    const t = quantizeTensor(f32Tensor([rows, cols], x), type);
    assert.equal(t.dtype, type);
    const back = toF32(t);
    const e = relErr(back, x);
    assert.ok(e < BOUND[type], `seed ${seed}: ${e}`);
  });
}

test("quantizeTensor reads any dtype row by row (BF16 and Q8 in, same result as their F32 values)", () => {
  const x = gaussian(3 * 256, 7);
  const bf = fromF32(x, "BF16", [3, 256]);
  const viaF32 = quantizeTensor(f32Tensor([3, 256], toF32(bf)), "Q4_K");
  assert.deepEqual(quantizeTensor(bf, "Q4_K").data, viaF32.data);
  const q8 = quantizeQ8(f32Tensor([3, 256], x));
  assert.deepEqual(quantizeTensor(q8, "Q6_K").data, quantizeTensor(f32Tensor([3, 256], toF32(q8)), "Q6_K").data);
});

test("blocks with inf/NaN or all zeros dequantize to zeros, never NaN", () => {
  for (const type of BLOCK_DTYPES) {
    const x = gaussian(3 * 256, 11);
    x.fill(0, 0, 256); // row 0: zeros
    x[256 + 5] = Infinity; // row 1: one block with inf
    x[512 + 300 - 256] = NaN; // row 2: one block with NaN
    const back = dequantize(type, quantizeRows(type, 3, 256, (r) => x.subarray(r * 256, (r + 1) * 256)), 3, 256);
    assert.ok(back.every(Number.isFinite), `${type}: non-finite output`);
    assert.ok(back.subarray(0, 256).every((v) => v === 0), `${type}: zeros`);
    const per = type === "Q4_0" || type === "Q5_0" ? 32 : 256;
    assert.ok(back.subarray(256, 256 + per).every((v) => v === 0), `${type}: inf block`);
  }
});

test("quantizeRows refuses rows that are not whole blocks", () => {
  assert.throws(() => quantizeRows("Q4_K", 1, 128, () => new Float32Array(128)), /blocks of 256/);
  assert.throws(() => quantizeRows("Q4_0", 1, 48, () => new Float32Array(48)), /blocks of 32/);
});
