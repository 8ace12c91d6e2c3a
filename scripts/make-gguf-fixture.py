"""
test/fixtures/ggml-types.gguf: one tensor of every GGML weight type mla-ts reads (F32, F16, BF16, Q8_0, Q4_0, Q4_1,
Q5_0, Q5_1, Q4_K, Q5_K, Q6_K), each [2, 256], next to its dequantized values as written by the gguf package's reference code
("<type>.expect", F32), plus metadata of every GGUF value type. The GGUF reader and the block dequantizers are
tested against it (test/gguf.test.ts), so the tests need no Python.

    python3 -m venv /tmp/gv && /tmp/gv/bin/pip install gguf && /tmp/gv/bin/python scripts/make-gguf-fixture.py
"""
import sys
import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
import gguf.quants as q

out = sys.argv[1] if len(sys.argv) > 1 else "test/fixtures/ggml-types.gguf"
rng = np.random.default_rng(1234)
rows, cols = 2, 256
w = gguf.GGUFWriter(out, arch="llama")
w.add_string("general.name", "ggml-types fixture")
w.add_uint32("test.u32", 4000000000)
w.add_int32("test.i32", -7)
w.add_float32("test.f32", 0.5)
w.add_float64("test.f64", 1e-300)
w.add_bool("test.bool", True)
w.add_uint64("test.u64", 2**40 + 3)
w.add_int64("test.i64", -(2**40))
w.add_uint8("test.u8", 200)
w.add_int8("test.i8", -100)
w.add_uint16("test.u16", 65000)
w.add_int16("test.i16", -30000)
w.add_array("test.strings", ["a", "é€", ""])
w.add_array("test.ints", [1, -2, 3])

x = rng.standard_normal((rows, cols)).astype(np.float32)


def f16_field(n):
    """n finite f16 values as bytes (block scales)"""
    return (rng.uniform(0.001, 0.05, n).astype(np.float16)).view(np.uint8).reshape(n, 2)


def kquant_blocks(qtype, nblocks):
    """random K-quant blocks whose f16 scales are finite (the rest of the bytes may be anything)"""
    _, size = gguf.GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, (nblocks, size), dtype=np.uint8)
    if qtype in (T.Q4_K, T.Q5_K):
        b[:, 0:2] = f16_field(nblocks)  # d
        b[:, 2:4] = f16_field(nblocks)  # dmin
    elif qtype == T.Q6_K:
        b[:, size - 2:size] = f16_field(nblocks)  # d (last)
    return b


for name, qtype in [("F32", T.F32), ("F16", T.F16), ("BF16", T.BF16), ("Q8_0", T.Q8_0), ("Q4_0", T.Q4_0),
                    ("Q4_1", T.Q4_1), ("Q5_0", T.Q5_0), ("Q5_1", T.Q5_1), ("Q4_K", T.Q4_K), ("Q5_K", T.Q5_K), ("Q6_K", T.Q6_K)]:
    if qtype == T.F32:
        data, raw = x, None
    elif qtype == T.F16:
        data, raw = x.astype(np.float16), None
    elif qtype in (T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1):
        data, raw = q.quantize(x, qtype), qtype
    else:
        blocks_per_row = cols // gguf.GGML_QUANT_SIZES[qtype][0]
        data = kquant_blocks(qtype, rows * blocks_per_row).reshape(rows, -1)
        raw = qtype
    if raw is None:
        w.add_tensor(name, data)
        expect = data.astype(np.float32)
    else:
        w.add_tensor(name, data, raw_dtype=raw)
        expect = q.dequantize(data, raw).astype(np.float32).reshape(rows, cols)
    w.add_tensor(f"{name}.expect", expect)

w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(f"wrote {out}")
