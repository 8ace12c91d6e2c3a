#!/bin/bash
# Decode ms/token of mla-ts and llama.cpp's llama-bench on the same GGUF at two contexts (0 and 512 cached
# positions), R alternating runs each, medians: the native build (.cache/llama.cpp/build) and, where it exists, an
# AVX2-only build (.cache/llama.cpp/build-avx2). mla-ts decodes after a 1- or 512-token prompt, llama-bench generates
# with -d 0 or -d 512.
#   R=3 TYPES="f32 bf16 q8_0 q4_k" bash scripts/decode-context.sh     # files bench-out/small-TYPE.gguf (npm run bench)
set -euo pipefail
cd "$(dirname "$0")/.."
R=${R:-3}
NATIVE=.cache/llama.cpp/build/bin/llama-bench
AVX2=.cache/llama.cpp/build-avx2/bin/llama-bench
tg() { [ -x "$1" ] && "$1" -m "$2" -p 0 -n 32 -d "$3" -t 2 -r 1 -o csv 2>/dev/null | tail -1 | awk -F, '{print $(NF-1)}' | tr -d '"' || echo nan; }
echo "| weights | cached positions | mla-ts ms | native ms | AVX2 ms | native / mla-ts | AVX2 / mla-ts |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for t in ${TYPES:-f32 bf16 q8_0 q4_k}; do
  f=bench-out/small-$t.gguf
  for d in 0 512; do
    p=$([ "$d" = 0 ] && echo 1 || echo 512)
    M=(); N=(); A=()
    for _ in $(seq "$R"); do
      M+=("$(node --import tsx src/cli/main.ts bench --model "$f" --prompt "$p" --decode 32 --threads 2 --json 2>/dev/null | tail -1 | grep -o '"decodeMsPerToken":[0-9.]*' | cut -d: -f2)")
      N+=("$(tg "$NATIVE" "$f" "$d")")
      A+=("$(tg "$AVX2" "$f" "$d")")
    done
    python3 - "$t" "$d" "${M[*]}" "${N[*]}" "${A[*]}" <<'PY'
import sys, statistics as st
t, d = sys.argv[1], sys.argv[2]
m, n, a = [[float(v) for v in s.split()] for s in sys.argv[3:]]
mm = st.median(m)
nn = st.median([1000 / v for v in n]) if all(v == v for v in n) else float("nan")
aa = st.median([1000 / v for v in a]) if all(v == v for v in a) else float("nan")
print(f"| {t.upper()} | {d} | {mm:.2f} | {nn:.2f} | {aa:.2f} | {nn / mm:.2f} | {aa / mm:.2f} |")
PY
  done
done
