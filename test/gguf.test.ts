// The GGUF reader and GGML's block formats against test/fixtures/ggml-types.gguf, written by the gguf Python package
// (scripts/make-gguf-fixture.py): every type's tensor next to its dequantized values as that package's reference
// code computes them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readGguf, readGgufTensor } from "../src/io/gguf.js";
import { READABLE_GGML_TYPES, dequantizeGgml, ggmlRowBytes } from "../src/tensor/ggml.js";
import { MlaError } from "../src/errors.js";
import { FIXTURES, relErr } from "./helpers.js";

const FILE = join(FIXTURES, "ggml-types.gguf");

test("gguf: header, metadata of every value type, tensor directory", () => {
  const f = readGguf(FILE);
  assert.equal(f.version, 3);
  assert.equal(f.alignment, 32);
  assert.equal(f.dataOffset % 32, 0);
  const m = f.metadata;
  assert.equal(m.get("general.architecture"), "llama");
  assert.equal(m.get("general.name"), "ggml-types fixture");
  assert.equal(m.get("test.u32"), 4000000000);
  assert.equal(m.get("test.i32"), -7);
  assert.equal(m.get("test.f32"), 0.5);
  assert.equal(m.get("test.f64"), 1e-300);
  assert.equal(m.get("test.bool"), true);
  assert.equal(m.get("test.u64"), 2 ** 40 + 3);
  assert.equal(m.get("test.i64"), -(2 ** 40));
  assert.equal(m.get("test.u8"), 200);
  assert.equal(m.get("test.i8"), -100);
  assert.equal(m.get("test.u16"), 65000);
  assert.equal(m.get("test.i16"), -30000);
  assert.deepEqual(m.get("test.strings"), ["a", "é€", ""]);
  assert.deepEqual(m.get("test.ints"), [1, -2, 3]);
  assert.equal(f.tensors.size, 2 * READABLE_GGML_TYPES.length);
  for (const t of READABLE_GGML_TYPES) {
    const info = f.tensors.get(t)!;
    assert.equal(info.type, t);
    assert.deepEqual(info.dims, [256, 2], "GGML order: innermost first");
    assert.deepEqual(info.shape, [2, 256], "row-major");
    assert.equal(info.bytes, 2 * ggmlRowBytes(t, 256));
  }
});

test("ggml: every type's rows dequantize to the reference values (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, F16, BF16, F32)", () => {
  const f = readGguf(FILE);
  for (const t of READABLE_GGML_TYPES) {
    const { data } = readGgufTensor(f, t);
    const expect = new Float32Array(readGgufTensor(f, `${t}.expect`).data.buffer.slice(0));
    const got = new Float32Array(512);
    // row by row, each from its own byte offset, as the kernels address them
    for (let r = 0; r < 2; r++) dequantizeGgml(t, data, r * ggmlRowBytes(t, 256), 256, got, r * 256);
    const e = relErr(got, expect);
    assert.ok(e < 1e-6, `${t}: relative error ${e}`);
    assert.ok(got.some((v) => v !== 0) && got.every(Number.isFinite), `${t}: finite, not all zero`);
  }
  // the check can fail: Q4_K read as Q5_K layout is far off
  const q4 = readGgufTensor(f, "Q4_K").data, exp = new Float32Array(readGgufTensor(f, "Q4_K.expect").data.buffer.slice(0));
  const wrong = dequantizeGgml("Q4_0", q4, 0, 256, new Float32Array(256));
  assert.ok(relErr(wrong, exp.subarray(0, 256)) > 0.1);
});

test("gguf: clear errors for files that are not GGUF, truncated ones, and unknown tensors", () => {
  const dir = mkdtempSync(join(tmpdir(), "mla-gguf-"));
  const notGguf = join(dir, "x.gguf");
  writeFileSync(notGguf, "not a gguf file at all, just text......");
  assert.throws(() => readGguf(notGguf), (e: unknown) => e instanceof MlaError && /not a GGUF file/.test(e.message));
  const bytes = readFileSync(FILE);
  const cut = join(dir, "cut.gguf");
  writeFileSync(cut, bytes.subarray(0, 600));
  assert.throws(() => readGguf(cut), (e: unknown) => e instanceof MlaError && /truncated GGUF header/.test(e.message));
  const v1 = Buffer.from(bytes);
  v1.writeUInt32LE(1, 4);
  const old = join(dir, "v1.gguf");
  writeFileSync(old, v1);
  assert.throws(() => readGguf(old), (e: unknown) => e instanceof MlaError && /version 1 is not supported/.test(e.message));
  assert.throws(() => readGgufTensor(readGguf(FILE), "nope"), (e: unknown) => e instanceof MlaError && /has no tensor nope/.test(e.message));
  assert.throws(() => dequantizeGgml("Q4_K", new Uint8Array(144), 0, 100, new Float32Array(100)), /blocks of 256/);
});
