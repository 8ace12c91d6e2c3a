import { test, describe, after, mock } from "node:test";
import { syncBuiltinESMExports } from "node:module";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import fsDefault from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { MlaError } from "../src/errors.js";
import { type Tensor, tensor, fromF32 } from "../src/tensor/tensor.js";
import { type F64Array, readHeader, readTensor, writeSafetensors } from "../src/io/safetensors.js";
import { Checkpoint } from "../src/model/checkpoint.js";
import { tempDirs } from "./helpers.js";
import { mulberry32 } from "../src/tensor/rng.js";

const freshDir = tempDirs("mla-st-", after);

function randF32(n: number, rnd: () => number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rnd() - 0.5) * 8;
  return a;
}

/** Random bit patterns, not just rounded floats: NaNs, infinities and subnormals must survive too. */
function randU16(n: number, rnd: () => number): Uint16Array {
  const a = new Uint16Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.floor(rnd() * 65536);
  return a;
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function assertSameBits(a: Tensor, b: Tensor): void {
  assert.equal(a.dtype, b.dtype);
  assert.deepEqual([...a.shape], [...b.shape]);
  assert.deepEqual(bytesOf(a.data), bytesOf(b.data));
}

/** Runs fn, requires an MlaError whose message names the file and matches the problem. */
function assertMlaError(fn: () => unknown, file: string, problem: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof MlaError, `expected MlaError, got ${String(e)}`);
    assert.ok(e.message.includes(path.basename(file)), `message does not name ${path.basename(file)}: ${e.message}`);
    assert.match(e.message, problem);
    assert.ok(!e.message.includes("\n"), "message should be one line");
    return true;
  });
}

function sampleTensors(seed: number): Record<string, Tensor | F64Array> {
  const rnd = mulberry32(seed);
  const f64 = new Float64Array(3 * 5);
  for (let i = 0; i < f64.length; i++) f64[i] = (rnd() - 0.5) * 1e3;
  return {
    "a.f32": tensor("F32", [3, 7, 5], randF32(105, rnd)),
    "b.bf16": tensor("BF16", [13, 1], randU16(13, rnd)),
    "c.f16": tensor("F16", [1, 9, 3], randU16(27, rnd)),
    "d.f64": { dtype: "F64", shape: [3, 5], data: f64 },
    "e.scalar": tensor("F32", [], randF32(1, rnd)),
    "f.empty": tensor("BF16", [0, 4], new Uint16Array(0)),
    "g.rounded": fromF32(randF32(11, rnd), "BF16", [11]),
  };
}

/** Writes a file whose header is `header` verbatim followed by `data` bytes (for corrupt-file tests). */
function writeRaw(file: string, header: string, data: Uint8Array, declaredLen?: bigint): void {
  const h = new TextEncoder().encode(header);
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, declaredLen ?? BigInt(h.length), true);
  fs.writeFileSync(file, Buffer.concat([len, h, data]));
}

describe("safetensors round trip", () => {
  test("F32/BF16/F16/F64 with odd shapes are bit-exact; F64 becomes F32", () => {
    const file = path.join(freshDir(), "model.safetensors");
    const src = sampleTensors(1);
    writeSafetensors(file, src, { format: "pt", note: "héllo" });
    const { tensors, metadata } = readHeader(file);
    assert.deepEqual(metadata, { format: "pt", note: "héllo" });
    assert.deepEqual([...tensors.keys()], Object.keys(src));
    for (const [name, t] of Object.entries(src)) {
      const info = tensors.get(name)!;
      assert.equal(info.dtype, t.dtype);
      assert.equal(info.name, name);
      assert.equal(info.file, path.resolve(file));
      const got = readTensor(info);
      if (t.dtype === "F64") {
        assert.equal(got.dtype, "F32");
        assert.deepEqual(got.data, Float32Array.from(t.data));
      } else assertSameBits(got, t as Tensor);
    }
  });

  test("offsets are absolute and the data section is 8-byte aligned", () => {
    const file = path.join(freshDir(), "model.safetensors");
    writeSafetensors(file, { x: tensor("F32", [3], new Float32Array([1, 2, 3])) });
    const buf = fs.readFileSync(file);
    const hlen = Number(buf.readBigUInt64LE(0));
    assert.equal(hlen % 8, 0);
    const info = readHeader(file).tensors.get("x")!;
    assert.equal(info.begin, 8 + hlen);
    assert.equal(info.end, 8 + hlen + 12);
    assert.equal(buf.length, info.end);
    assert.deepEqual(JSON.parse(buf.subarray(8, 8 + hlen).toString()), { x: { dtype: "F32", shape: [3], data_offsets: [0, 12] } });
  });

  test("reads into a SharedArrayBuffer from the allocator", () => {
    const file = path.join(freshDir(), "model.safetensors");
    const src = sampleTensors(2);
    writeSafetensors(file, src);
    const { tensors } = readHeader(file);
    const sizes: number[] = [];
    const alloc = (n: number): SharedArrayBuffer => (sizes.push(n), new SharedArrayBuffer(n));
    for (const name of ["a.f32", "b.bf16", "c.f16"]) {
      const got = readTensor(tensors.get(name)!, { alloc });
      assert.ok(got.data.buffer instanceof SharedArrayBuffer, "got.data.buffer instanceof SharedArrayBuffer");
      assertSameBits(got, src[name] as Tensor);
    }
    const d = readTensor(tensors.get("d.f64")!, { alloc });
    assert.ok(d.data.buffer instanceof SharedArrayBuffer, "d.data.buffer instanceof SharedArrayBuffer");
    assert.deepEqual(sizes, [105 * 4, 13 * 2, 27 * 2, 15 * 4]);
  });

  test("multi-chunk reads (tiny chunk size) give the same bytes", () => {
    const file = path.join(freshDir(), "model.safetensors");
    const src = sampleTensors(3);
    writeSafetensors(file, src);
    const { tensors } = readHeader(file);
    for (const chunkBytes of [1, 3, 7, 8, 64]) {
      for (const [name, t] of Object.entries(src)) {
        const got = readTensor(tensors.get(name)!, { chunkBytes });
        if (t.dtype === "F64") assert.deepEqual(got.data, Float32Array.from(t.data));
        else assertSameBits(got, t as Tensor);
      }
    }
  });

  test("chunk size bounds every single read", () => {
    const file = path.join(freshDir(), "model.safetensors");
    const src = sampleTensors(5);
    writeSafetensors(file, src);
    const { tensors } = readHeader(file);
    const lengths: number[] = [];
    // Spy on the builtin so the reader's own `import * as fs` sees it too.
    const original = fsDefault.readSync;
    type PositionalRead = (fd: number, b: Uint8Array, off: number, len: number, pos: number) => number;
    const spy = mock.method(fsDefault, "readSync", ((fd, b, off, len, pos) => {
      lengths.push(len);
      return original(fd, b, off, len, pos);
    }) as PositionalRead);
    syncBuiltinESMExports();
    try {
      assertSameBits(readTensor(tensors.get("a.f32")!, { chunkBytes: 7 }), src["a.f32"] as Tensor);
      readTensor(tensors.get("d.f64")!, { chunkBytes: 20 });
    } finally {
      spy.mock.restore();
      syncBuiltinESMExports();
    }
    assert.equal(lengths.length, Math.ceil(420 / 7) + Math.ceil(15 / 2));
    assert.ok(lengths.every((n) => n <= 20), `read lengths ${lengths}`);
  });

  test("writer rejects data that does not match the shape", () => {
    const file = path.join(freshDir(), "model.safetensors");
    const bad = { dtype: "F32", shape: [2, 2], data: new Float32Array(3) } as Tensor;
    assert.throws(() => writeSafetensors(file, { bad }), MlaError);
  });
});

describe("safetensors errors name the file and the problem", () => {
  test("missing file", () => {
    const file = path.join(freshDir(), "nope.safetensors");
    assertMlaError(() => readHeader(file), file, /not found/);
  });

  test("file shorter than 8 bytes", () => {
    const file = path.join(freshDir(), "short.safetensors");
    fs.writeFileSync(file, Buffer.from([1, 2, 3]));
    assertMlaError(() => readHeader(file), file, /only 3 bytes/);
  });

  test("header length past the end of the file", () => {
    const file = path.join(freshDir(), "hlen.safetensors");
    writeRaw(file, "{}      ", new Uint8Array(0), 4096n);
    assertMlaError(() => readHeader(file), file, /header length 4096 runs past the end/);
  });

  test("absurd header length", () => {
    const file = path.join(freshDir(), "huge.safetensors");
    writeRaw(file, "{}      ", new Uint8Array(0), 1n << 40n);
    assertMlaError(() => readHeader(file), file, /absurd/);
  });

  test("garbage JSON and non-object JSON", () => {
    const file = path.join(freshDir(), "garbage.safetensors");
    writeRaw(file, "{not json", new Uint8Array(0));
    assertMlaError(() => readHeader(file), file, /not valid JSON/);
    writeRaw(file, "[1, 2]  ", new Uint8Array(0));
    assertMlaError(() => readHeader(file), file, /not an object/);
  });

  test("entries without dtype, shape or data_offsets", () => {
    const file = path.join(freshDir(), "fields.safetensors");
    const data = new Uint8Array(8);
    writeRaw(file, JSON.stringify({ x: { shape: [2], data_offsets: [0, 8] } }), data);
    assertMlaError(() => readHeader(file), file, /tensor "x" has no dtype/);
    writeRaw(file, JSON.stringify({ x: { dtype: "F32", data_offsets: [0, 8] } }), data);
    assertMlaError(() => readHeader(file), file, /tensor "x" has no valid shape/);
    writeRaw(file, JSON.stringify({ x: { dtype: "F32", shape: [2, -1], data_offsets: [0, 8] } }), data);
    assertMlaError(() => readHeader(file), file, /tensor "x" has no valid shape/);
    writeRaw(file, JSON.stringify({ x: { dtype: "F32", shape: [2] } }), data);
    assertMlaError(() => readHeader(file), file, /tensor "x" has invalid data_offsets/);
  });

  test("data_offsets malformed or reversed", () => {
    const file = path.join(freshDir(), "offs.safetensors");
    const data = new Uint8Array(8);
    for (const offs of [[0], [0, 8, 9], [-1, 7], [0.5, 8], [8, 0], ["0", "8"]]) {
      writeRaw(file, JSON.stringify({ x: { dtype: "U8", shape: [8], data_offsets: offs } }), data);
      assertMlaError(() => readHeader(file), file, /tensor "x" has invalid data_offsets/);
    }
  });

  test("offsets outside the file", () => {
    const file = path.join(freshDir(), "model.safetensors");
    writeRaw(file, JSON.stringify({ "x.weight": { dtype: "F32", shape: [100], data_offsets: [0, 400] } }), new Uint8Array(300));
    assertMlaError(
      () => readHeader(file),
      file,
      /tensor "x.weight" has offsets \[0, 400\] but the file's data section is only 300 bytes \(truncated or corrupt file\?\)/,
    );
  });

  test("truncated file cut in the middle of the data", () => {
    const dir = freshDir();
    const file = path.join(dir, "model.safetensors");
    writeSafetensors(file, sampleTensors(4));
    const size = fs.statSync(file).size;
    fs.truncateSync(file, size - 37);
    assertMlaError(() => readHeader(file), file, /data section is only \d+ bytes \(truncated/);
    // Also cut between headers and reads: a reader holding stale offsets gets a clean error, not garbage.
    const full = path.join(dir, "full.safetensors");
    writeSafetensors(full, sampleTensors(4));
    const info = readHeader(full).tensors.get("a.f32")!;
    fs.truncateSync(full, info.begin + 10);
    assertMlaError(() => readTensor(info), full, /unexpected end of file/);
  });

  test("shape/dtype not matching the byte length", () => {
    const file = path.join(freshDir(), "model.safetensors");
    writeRaw(file, JSON.stringify({ "x.weight": { dtype: "BF16", shape: [4, 8], data_offsets: [0, 60] } }), new Uint8Array(64));
    assertMlaError(() => readHeader(file), file, /tensor "x.weight" is BF16 \[4, 8\] = 64 bytes but its offsets span 60 bytes/);
    writeRaw(file, JSON.stringify({ y: { dtype: "I64", shape: [3], data_offsets: [0, 16] } }), new Uint8Array(64));
    assertMlaError(() => readHeader(file), file, /tensor "y" is I64 \[3\] = 24 bytes but its offsets span 16 bytes/);
  });

  test("unknown dtypes are kept; unsupported dtypes fail on readTensor", () => {
    const file = path.join(freshDir(), "model.safetensors");
    const header = {
      ids: { dtype: "I64", shape: [2], data_offsets: [0, 16] },
      odd: { dtype: "F4_MYSTERY", shape: [5], data_offsets: [16, 19] },
    };
    writeRaw(file, JSON.stringify(header), new Uint8Array(19));
    const { tensors } = readHeader(file);
    assert.equal(tensors.get("odd")!.dtype, "F4_MYSTERY");
    assertMlaError(
      () => readTensor(tensors.get("ids")!),
      file,
      /tensor "ids" has dtype I64, which mla-ts does not support \(supported: F32, BF16, F16, F64\)/,
    );
    assertMlaError(() => readTensor(tensors.get("odd")!), file, /tensor "odd" has dtype F4_MYSTERY, which mla-ts does not support/);
  });

  test("non-string metadata is rejected", () => {
    const file = path.join(freshDir(), "meta.safetensors");
    writeRaw(file, JSON.stringify({ __metadata__: { n: 3 } }), new Uint8Array(0));
    assertMlaError(() => readHeader(file), file, /__metadata__ value for "n" is not a string/);
  });
});

/** A small random tensor set keyed by name, written as one shard. */
function shard(file: string, names: string[], seed: number): Record<string, Tensor> {
  const rnd = mulberry32(seed);
  const out: Record<string, Tensor> = {};
  names.forEach((n, i) => (out[n] = tensor("F32", [i + 1, 3], randF32((i + 1) * 3, rnd))));
  writeSafetensors(file, out);
  return out;
}

function writeIndex(dir: string, weightMap: Record<string, string>): void {
  fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
}

function assertCkptError(fn: () => unknown, problem: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof MlaError, `expected MlaError, got ${String(e)}`);
    assert.match(e.message, problem);
    return true;
  });
}

describe("Checkpoint", () => {
  test("single model.safetensors: names, has, info, load, missing", () => {
    const dir = freshDir();
    const src = shard(path.join(dir, "model.safetensors"), ["w.a", "w.b", "w.c"], 10);
    const ck = Checkpoint.open(dir);
    assert.equal(ck.dir, dir);
    assert.deepEqual(ck.files, [path.join(dir, "model.safetensors")]);
    assert.deepEqual(ck.names(), ["w.a", "w.b", "w.c"]);
    assert.ok(ck.has("w.b") && !ck.has("w.z"), "ck.has(\"w.b\") && !ck.has(\"w.z\")");
    assert.equal(ck.info("w.c").end - ck.info("w.c").begin, 9 * 4);
    assertSameBits(ck.load("w.b"), src["w.b"]);
    assert.deepEqual(ck.missing(["w.a", "x", "w.c", "y"]), ["x", "y"]);
    assert.equal(ck.totalBytes(), (3 + 6 + 9) * 4);
    assert.equal(ck.totalBytes(["w.a"]), 12);
    ck.close();
  });

  test("missing tensor names are named in the message", () => {
    const dir = freshDir();
    shard(path.join(dir, "model.safetensors"), ["w.a"], 11);
    const ck = Checkpoint.open(dir);
    assertCkptError(() => ck.info("model.layers.7.mlp.gate.weight"), new RegExp(`missing tensor model\\.layers\\.7\\.mlp\\.gate\\.weight in ${dir}`));
    assertCkptError(() => ck.load("nope"), /missing tensor nope/);
    assertCkptError(() => ck.loadMany(["w.a", "gone.1", "gone.2"]), /gone\.1, gone\.2/);
  });

  test("sharded with index.json (2 shards)", () => {
    const dir = freshDir();
    const s1 = shard(path.join(dir, "model-00001-of-00002.safetensors"), ["a", "b"], 12);
    const s2 = shard(path.join(dir, "model-00002-of-00002.safetensors"), ["c"], 13);
    writeIndex(dir, { a: "model-00001-of-00002.safetensors", b: "model-00001-of-00002.safetensors", c: "model-00002-of-00002.safetensors" });
    const ck = Checkpoint.open(dir);
    assert.equal(ck.files.length, 2);
    assert.deepEqual(ck.names().sort(), ["a", "b", "c"]);
    assertSameBits(ck.load("c"), s2.c);
    assertSameBits(ck.load("b"), s1.b);
  });

  test("index.json naming a missing shard", () => {
    const dir = freshDir();
    shard(path.join(dir, "model-00001-of-00002.safetensors"), ["a"], 14);
    writeIndex(dir, { a: "model-00001-of-00002.safetensors", c: "model-00002-of-00002.safetensors" });
    assertCkptError(() => Checkpoint.open(dir), /model-00002-of-00002\.safetensors.*missing/);
  });

  test("index.json that disagrees with its shards, or escapes the folder", () => {
    const dir = freshDir();
    shard(path.join(dir, "model-00001-of-00001.safetensors"), ["a"], 15);
    writeIndex(dir, { a: "model-00001-of-00001.safetensors", ghost: "model-00001-of-00001.safetensors" });
    assertCkptError(() => Checkpoint.open(dir), /ghost/);
    writeIndex(dir, { a: "../model-00001-of-00001.safetensors" });
    assertCkptError(() => Checkpoint.open(dir), /not a plain file name/);
  });

  test("numbered shards without an index", () => {
    const dir = freshDir();
    shard(path.join(dir, "model-00002-of-00002.safetensors"), ["c", "d"], 16);
    shard(path.join(dir, "model-00001-of-00002.safetensors"), ["a", "b"], 17);
    const ck = Checkpoint.open(dir);
    assert.deepEqual(ck.files.map((f) => path.basename(f)), ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]);
    assert.deepEqual(ck.names(), ["a", "b", "c", "d"]);
  });

  test("numbered shards with one missing", () => {
    const dir = freshDir();
    shard(path.join(dir, "model-00001-of-00003.safetensors"), ["a"], 18);
    shard(path.join(dir, "model-00003-of-00003.safetensors"), ["c"], 19);
    assertCkptError(() => Checkpoint.open(dir), /model-00002-of-00003\.safetensors is missing/);
  });

  test("a tensor duplicated across shards", () => {
    const dir = freshDir();
    shard(path.join(dir, "model-00001-of-00002.safetensors"), ["a", "dup"], 20);
    shard(path.join(dir, "model-00002-of-00002.safetensors"), ["dup", "z"], 21);
    assertCkptError(() => Checkpoint.open(dir), /tensor dup appears in both model-00001-of-00002\.safetensors and model-00002-of-00002\.safetensors/);
  });

  test("missing directory and directory without weights", () => {
    const gone = path.join(freshDir(), "does-not-exist");
    assertCkptError(() => Checkpoint.open(gone), new RegExp(`model directory not found: ${gone}`));
    const empty = freshDir();
    assertCkptError(() => Checkpoint.open(empty), new RegExp(`no model.safetensors or model.safetensors.index.json in ${empty}`));
  });

  test("reference*.safetensors and unrelated files are ignored", () => {
    const dir = freshDir();
    shard(path.join(dir, "reference.safetensors"), ["a", "ref.only"], 22);
    shard(path.join(dir, "reference-logits.safetensors"), ["a"], 23);
    assertCkptError(() => Checkpoint.open(dir), /no model\.safetensors/);
    const src = shard(path.join(dir, "model.safetensors"), ["a"], 24);
    const ck = Checkpoint.open(dir);
    assert.deepEqual(ck.names(), ["a"]);
    assertSameBits(ck.load("a"), src.a);
  });

  test("loadMany reports monotone progress ending at totalBytes", () => {
    const dir = freshDir();
    const s1 = shard(path.join(dir, "model-00001-of-00002.safetensors"), ["a", "b", "c"], 25);
    const s2 = shard(path.join(dir, "model-00002-of-00002.safetensors"), ["d", "e"], 26);
    const ck = Checkpoint.open(dir);
    const names = ["e", "a", "c", "d", "b", "a"];
    const calls: [number, number, string][] = [];
    const got = ck.loadMany(names, {
      alloc: (n) => new SharedArrayBuffer(n),
      onProgress: (done, total, name) => calls.push([done, total, name]),
    });
    const total = ck.totalBytes(["a", "b", "c", "d", "e"]);
    assert.equal(calls.length, 5);
    assert.deepEqual(calls.map((c) => c[2]), ["e", "a", "c", "d", "b"]);
    for (let i = 0; i < calls.length; i++) {
      assert.equal(calls[i][1], total);
      assert.ok(calls[i][0] > (i ? calls[i - 1][0] : 0), "calls[i][0] > (i ? calls[i - 1][0] : 0)");
    }
    assert.equal(calls[calls.length - 1][0], total);
    const all = { ...s1, ...s2 };
    for (const [n, t] of got) {
      assert.ok(t.data.buffer instanceof SharedArrayBuffer, "t.data.buffer instanceof SharedArrayBuffer");
      assertSameBits(t, all[n]);
    }
  });

  test("closed checkpoints refuse further loads", () => {
    const dir = freshDir();
    shard(path.join(dir, "model.safetensors"), ["a"], 27);
    const ck = Checkpoint.open(dir);
    ck.close();
    assertCkptError(() => ck.load("a"), /closed/);
  });

  test("tiny-deepseek-v3 fixture headers", () => {
    const dir = fileURLToPath(new URL("./fixtures/tiny-deepseek-v3", import.meta.url));
    const ck = Checkpoint.open(dir);
    assert.deepEqual(ck.files.map((f) => path.basename(f)), ["model.safetensors"]);
    const info = ck.info("model.layers.0.self_attn.kv_a_proj_with_mqa.weight");
    assert.equal(info.dtype, "F32");
    assert.deepEqual(info.shape, [40, 64]);
    const t = ck.load("model.layers.0.self_attn.kv_a_proj_with_mqa.weight");
    assert.equal(t.data.length, 40 * 64);
    assert.ok(ck.has("model.embed_tokens.weight"), "ck.has(\"model.embed_tokens.weight\")");
    assert.equal(ck.totalBytes(), ck.names().reduce((s, n) => s + ck.info(n).end - ck.info(n).begin, 0));
  });
});
