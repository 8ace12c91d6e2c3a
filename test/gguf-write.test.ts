// The GGUF writer against the reader (src/io/gguf.ts): metadata of every value type, the tensor directory, data at
// general.alignment, and the refusals that keep a half-written file from looking whole.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GgufWriter, ggufTensorBytes, gv, type GgufTensorSpec } from "../src/io/gguf-write.js";
import { readGguf, readGgufTensor } from "../src/io/gguf.js";
import { dequantizeGgml } from "../src/tensor/ggml.js";
import { f32ToF16 } from "../src/tensor/dtype.js";
import { MlaError } from "../src/errors.js";

const dir = mkdtempSync(join(tmpdir(), "gguf-write-"));

const META = [
  ["general.architecture", gv.str("llama")],
  ["t.u8", gv.u8(200)], ["t.i8", gv.i8(-100)], ["t.u16", gv.u16(65000)], ["t.i16", gv.i16(-30000)],
  ["t.u32", gv.u32(4000000000)], ["t.i32", gv.i32(-7)], ["t.f32", gv.f32(0.5)], ["t.f64", gv.f64(1e-300)],
  ["t.u64", gv.u64(2 ** 40 + 3)], ["t.i64", gv.i64(-(2n ** 62n))], ["t.bool", gv.bool(true)], ["t.str", gv.str("é€ unicode")],
  ["t.strings", gv.arr("string", ["a", "é€", ""])], ["t.ints", gv.arr("i32", [1, -2, 3])], ["t.empty", gv.arr("f32", [])],
  ["t.nested", { type: "array", itemType: "array", value: [gv.arr("u8", [1, 2]), gv.arr("u8", [])] }],
] as const;

function q8Block(values: Float32Array): Uint8Array {
  // one Q8_0 block by hand: d = max|w| / 127 as f16, then int8
  const out = new Uint8Array(34), dv = new DataView(out.buffer);
  const d = Math.max(...values.map(Math.abs)) / 127;
  dv.setUint16(0, f32ToF16(d), true);
  for (let i = 0; i < 32; i++) dv.setInt8(2 + i, Math.round(values[i] / d));
  return out;
}

test("gguf-write: metadata of every value type and tensors round-trip through the reader", () => {
  const path = join(dir, "all.gguf");
  const f32 = Float32Array.from({ length: 6 }, (_, i) => i - 2.5);
  const f16 = Uint16Array.from([0x3c00, 0xc000, 0x3800]); // 1, -2, 0.5
  const qv = Float32Array.from({ length: 32 }, (_, i) => Math.sin(i));
  const q8 = q8Block(qv);
  const specs: GgufTensorSpec[] = [
    { name: "a", shape: [2, 3], type: "F32" },
    { name: "b.weight", shape: [3], type: "F16" },
    { name: "q", shape: [1, 32], type: "Q8_0" },
  ];
  const w = GgufWriter.open(path, META, specs);
  assert.equal(w.expected?.name, "a");
  w.writeTensor("a", f32);
  w.writeTensor("b.weight", f16);
  w.writeTensor("q", q8);
  assert.equal(w.expected, undefined);
  w.close();

  const g = readGguf(path);
  assert.equal(g.version, 3);
  assert.equal(g.alignment, 32);
  const m = g.metadata;
  assert.equal(m.get("general.alignment"), 32, "added when absent");
  assert.equal(m.get("t.u8"), 200);
  assert.equal(m.get("t.i8"), -100);
  assert.equal(m.get("t.u16"), 65000);
  assert.equal(m.get("t.i16"), -30000);
  assert.equal(m.get("t.u32"), 4000000000);
  assert.equal(m.get("t.i32"), -7);
  assert.equal(m.get("t.f32"), 0.5);
  assert.equal(m.get("t.f64"), 1e-300);
  assert.equal(m.get("t.u64"), 2 ** 40 + 3);
  assert.equal(m.get("t.i64"), -(2n ** 62n));
  assert.equal(m.get("t.bool"), true);
  assert.equal(m.get("t.str"), "é€ unicode");
  assert.deepEqual(m.get("t.strings"), ["a", "é€", ""]);
  assert.deepEqual(m.get("t.ints"), [1, -2, 3]);
  assert.deepEqual(m.get("t.empty"), []);
  assert.deepEqual(m.get("t.nested"), [[1, 2], []]);

  const a = g.tensors.get("a")!;
  assert.deepEqual(a.dims, [3, 2], "GGML dims: the row-major shape reversed");
  assert.deepEqual(a.shape, [2, 3]);
  for (const t of g.tensors.values()) assert.equal(t.offset % 32, 0, `${t.name} aligned`);
  assert.deepEqual([...new Float32Array(readGgufTensor(g, "a").data.buffer)], [...f32]);
  assert.deepEqual([...new Uint16Array(readGgufTensor(g, "b.weight").data.buffer)], [...f16]);
  const back = dequantizeGgml("Q8_0", readGgufTensor(g, "q").data, 0, 32, new Float32Array(32));
  for (let i = 0; i < 32; i++) assert.ok(Math.abs(back[i] - qv[i]) < 0.01, `q[${i}]`);
  const last = g.tensors.get("q")!;
  assert.equal(statSync(path).size, last.offset + 64, "the last tensor padded to the alignment");
});

test("gguf-write: a header past the writer's first buffer (a tokenizer's tens of thousands of strings)", () => {
  const path = join(dir, "big.gguf");
  // odd lengths, so that values straddle every growth of the header buffer
  const tokens = Array.from({ length: 30001 }, (_, i) => `tok${i}${"é".repeat(i % 7)}`);
  const ids = Array.from({ length: 30001 }, (_, i) => i * 3 - 5);
  const w = GgufWriter.open(path, [["tokens", gv.arr("string", tokens)], ["ids", gv.arr("i64", ids)], ["after", gv.u64(2n ** 63n)]], [{ name: "x", shape: [3], type: "F32" }]);
  w.writeTensor("x", Float32Array.from([1, 2, 3]));
  w.close();
  const g = readGguf(path);
  assert.deepEqual(g.metadata.get("tokens"), tokens);
  assert.deepEqual(g.metadata.get("ids"), ids);
  assert.equal(g.metadata.get("after"), 2n ** 63n);
  assert.deepEqual([...new Float32Array(readGgufTensor(g, "x").data.buffer)], [1, 2, 3]);
});

test("gguf-write: a custom alignment is honoured", () => {
  const path = join(dir, "align64.gguf");
  const w = GgufWriter.open(path, [["general.alignment", gv.u32(64)]], [{ name: "x", shape: [5], type: "F32" }, { name: "y", shape: [5], type: "F32" }]);
  w.writeTensor("x", new Float32Array(5).fill(1));
  w.writeTensor("y", new Float32Array(5).fill(2));
  w.close();
  const g = readGguf(path);
  assert.equal(g.alignment, 64);
  assert.equal(g.tensors.get("y")!.offset - g.tensors.get("x")!.offset, 64);
  assert.deepEqual([...new Float32Array(readGgufTensor(g, "y").data.buffer)], [2, 2, 2, 2, 2]);
});

test("gguf-write: sizes of block types follow GGML's blocks", () => {
  assert.equal(ggufTensorBytes({ name: "k", shape: [4, 512], type: "Q4_K" }), 4 * 2 * 144);
  assert.equal(ggufTensorBytes({ name: "e", shape: [3, 2, 64], type: "Q8_0" }), 6 * 2 * 34);
  assert.throws(() => ggufTensorBytes({ name: "k", shape: [4, 100], type: "Q4_K" }), MlaError);
});

test("gguf-write: refuses wrong order, wrong sizes, mistyped values and an incomplete file", () => {
  const specs: GgufTensorSpec[] = [{ name: "x", shape: [4], type: "F32" }, { name: "y", shape: [4], type: "F32" }];
  const w = GgufWriter.open(join(dir, "bad.gguf"), [], specs);
  assert.throws(() => w.writeTensor("y", new Float32Array(4)), /directory has x next/);
  assert.throws(() => w.writeTensor("x", new Float32Array(3)), /needs 16 bytes, got 12/);
  w.writeTensor("x", new Float32Array(4));
  assert.throws(() => w.close(), /closed after 1 of 2 tensors/);
  assert.throws(() => GgufWriter.open(join(dir, "v.gguf"), [["k", gv.u8(300)]], []), /300 is not a u8/);
  assert.throws(() => GgufWriter.open(join(dir, "v.gguf"), [["k", gv.u32(1.5)]], []), /is not a u32/);
  assert.throws(() => GgufWriter.open(join(dir, "v.gguf"), [["k", gv.arr("string", ["a", 1])]], []), /is not a string/);
  assert.throws(() => GgufWriter.open(join(dir, "v.gguf"), [], [specs[0], specs[0]]), /listed twice/);
});
