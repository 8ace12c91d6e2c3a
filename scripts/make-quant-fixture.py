"""
test/fixtures/ggml-quant/: inputs and the bytes llama.cpp's reference quantizers make of them, for
test/ggml-quantize.test.ts (so the test needs neither Python nor a C compiler).

  input.f32      6 rows x 512 float32 (Gaussian, tiny with an outlier, all positive, ties on a half grid,
                 a zero block then large values, heavy tails)
  <TYPE>.bin     the quantized rows, TYPE in Q8_0 Q4_0 Q4_K Q5_K Q6_K Q5_0

Two independent implementations: ggml-quants.c itself (quantize_row_*_ref, compiled here with gcc -O2, which on
x86-64 does not contract float operations into FMA), for every type; and the gguf package (gguf.quants.quantize,
numpy), for the types it quantizes (Q8_0, Q4_0, Q5_0), which must agree with the C bytes.

  PYTHONPATH=.cache/llama.cpp/gguf-py python3 scripts/make-quant-fixture.py [llama.cpp dir]
"""
import os
import subprocess
import sys
import tempfile
import numpy as np
from gguf import GGMLQuantizationType as T
import gguf.quants as q

LLAMA = sys.argv[1] if len(sys.argv) > 1 else ".cache/llama.cpp"
OUT = "test/fixtures/ggml-quant"
ROWS, COLS = 6, 512
TYPES = {"Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210), "Q5_0": (32, 22)}

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
void quantize_row_q8_0_ref(const float*, void*, int64_t);
void quantize_row_q4_0_ref(const float*, void*, int64_t);
void quantize_row_q4_K_ref(const float*, void*, int64_t);
void quantize_row_q5_K_ref(const float*, void*, int64_t);
void quantize_row_q6_K_ref(const float*, void*, int64_t);
void quantize_row_q5_0_ref(const float*, void*, int64_t);
void ggml_abort(const char* f, int l, const char* fmt, ...) { abort(); }
size_t ggml_row_size(int t, long n) { abort(); }
const char* ggml_type_name(int t) { return "?"; }
size_t ggml_type_size(int t) { abort(); }
int main(int argc, char** argv) {  /* TYPE N BYTES: N floats on stdin -> BYTES bytes on stdout */
  int n = atoi(argv[2]), bytes = atoi(argv[3]);
  float* x = malloc(n * 4); unsigned char* y = calloc(bytes, 1);
  if (fread(x, 4, n, stdin) != (size_t)n) return 1;
  if (!strcmp(argv[1], "Q8_0")) quantize_row_q8_0_ref(x, y, n);
  else if (!strcmp(argv[1], "Q4_0")) quantize_row_q4_0_ref(x, y, n);
  else if (!strcmp(argv[1], "Q4_K")) quantize_row_q4_K_ref(x, y, n);
  else if (!strcmp(argv[1], "Q5_K")) quantize_row_q5_K_ref(x, y, n);
  else if (!strcmp(argv[1], "Q5_0")) quantize_row_q5_0_ref(x, y, n);
  else quantize_row_q6_K_ref(x, y, n);
  fwrite(y, 1, bytes, stdout); return 0;
}
"""


def build_reference(tmp: str) -> str:
    g = os.path.join(LLAMA, "ggml")
    src, exe = os.path.join(tmp, "drv.c"), os.path.join(tmp, "drv")
    with open(src, "w") as fh:
        fh.write(DRIVER)
    inc = [f"-I{g}/include", f"-I{g}/src", f"-I{g}/src/ggml-cpu"]
    subprocess.run(["gcc", "-O2", *inc, src, f"{g}/src/ggml-quants.c", "-lm", "-o", exe], check=True)
    return exe


def inputs() -> np.ndarray:
    rng = np.random.default_rng(20261206)
    x = np.empty((ROWS, COLS), np.float32)
    x[0] = rng.standard_normal(COLS)
    x[1] = rng.standard_normal(COLS) * 1e-3
    x[1, 77] = 0.5
    x[2] = rng.uniform(0.25, 2.0, COLS)
    x[3] = rng.integers(-16, 17, COLS) / 2
    x[4] = rng.standard_normal(COLS) * 100
    x[4, :256] = 0
    x[5] = rng.standard_t(3, COLS)
    return x


def main() -> None:
    x = inputs()
    os.makedirs(OUT, exist_ok=True)
    x.tofile(os.path.join(OUT, "input.f32"))
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_reference(tmp)
        for name, (per, size) in TYPES.items():
            nbytes = COLS // per * size
            c = b"".join(subprocess.run([exe, name, str(COLS), str(nbytes)], input=r.tobytes(), capture_output=True, check=True).stdout for r in x)
            if name in ("Q8_0", "Q4_0", "Q5_0"):
                py = q.quantize(x, getattr(T, name)).tobytes()
                if py != c:
                    raise SystemExit(f"{name}: the gguf package and ggml-quants.c disagree")
            with open(os.path.join(OUT, f"{name}.bin"), "wb") as fh:
                fh.write(c)
            print(name, len(c), "bytes")


main()
