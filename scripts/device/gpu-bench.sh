#!/bin/bash
# Issue 19's GPU measurements in one device call (prepared here by scripts/device/prepare.sh):
#   device run, carry [".gpu-carry", "build"], command: bash scripts/device/gpu-bench.sh [quick]
# `quick` runs the same steps on the `tiny` preset only. DRYRUN=1 (here, on SwiftShader) skips enter.sh, which
# unpacks the carried Vulkan loader into /, and keeps this machine's node_modules.
# Makes the models on the GPU machine (random weights: the `small` preset as safetensors and GGUF, DeepSeek-V2-Lite's
# shape at 8 layers as GGUF written straight in blocks), then times, on the same files:
#   1. mla-ts WebGPU: prefill, decode at batch 1 and 8, naive vs absorbed prefill at 2k (scripts/bench-gpu-model.ts);
#   2. the kernels: streaming read and copy bandwidth, fused MLA decode attention at 4k and 32k (npm run bench:gpu);
#   3. llama.cpp CUDA (llama-bench -ngl 99), when .gpu-carry/llama-cuda has it and its libraries resolve;
#   4. the PyTorch peer on CUDA (bf16) on the `small` safetensors.
# Everything goes to $OUT/gpu-bench.md; a step that fails is reported and the next one runs.
set -u
QUICK=${1:-}
if [ -z "${DRYRUN:-}" ]; then source .gpu-carry/enter.sh; tar -xJf .gpu-carry/nm.tar.xz; else export XDG_RUNTIME_DIR=/tmp; fi
PY=${PY:-python3}
O=${OUT:-/tmp/out}; mkdir -p "$O"; R=$O/gpu-bench.md
exec > >(tee -a "$R") 2>&1
M=/tmp/models; mkdir -p $M
T() { echo; echo "### $*"; local t0=$SECONDS; timeout 300 "$@" || echo "FAILED ($?): $*"; echo "($((SECONDS - t0)) s)"; }
MLA="node --import tsx src/cli/main.ts"
echo "# mla-ts WebGPU on $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"), $(date -u)"
S=small; [ -n "$QUICK" ] && S=tiny
T node --import tsx scripts/make-random.ts $S $M/$S --dtype BF16
for t in q8_0 q4_k; do T $MLA export $M/$S $M/$S-$t.gguf --type $t --fallback q8_0; done
FILES="$M/$S-q8_0.gguf $M/$S-q4_k.gguf"
V=test/fixtures/zoo/DeepSeek-V2-Lite/config.json
if [ -z "$QUICK" ]; then
  for t in q4_k q8_0; do T node --import tsx scripts/make-random-gguf.ts $V $M/v2lite-8-$t.gguf --layers 8 --type $t; done
  FILES="$FILES $M/v2lite-8-q8_0.gguf $M/v2lite-8-q4_k.gguf"
fi
A="--prompt 512 --decode 32 --batch 8 --forms 2048"; [ -n "$QUICK" ] && A="--prompt 32 --decode 4 --batch 3 --forms 64"
T node --import tsx scripts/bench-gpu-model.ts $FILES $A
T node --import tsx scripts/bench-gpu.ts ${QUICK:+--quick}
L=.gpu-carry/llama-cuda
if [ -f $L/llama-bench.xz ]; then
  xz -dkf $L/llama-bench.xz && chmod +x $L/llama-bench
  # cuBLAS 13 from the machine's PyTorch (its nvidia/cu13 wheels), libcudart from the carry
  CU=$($PY -c 'import nvidia, os; print(os.path.join(os.path.dirname(nvidia.__path__[0]), "nvidia/cu13/lib"))' 2>/dev/null)
  export LD_LIBRARY_PATH=$L:$CU:${LD_LIBRARY_PATH:-}
  if ldd $L/llama-bench | grep -q "not found"; then echo "llama.cpp CUDA: not run, libraries missing:"; ldd $L/llama-bench | grep "not found"
  else P=512; N=32; [ -n "$QUICK" ] && P=32 N=4
    for f in $FILES; do T $L/llama-bench -m $f -p $P -n $N -ngl 99 -r 3; done 2>&1 | tee /tmp/llama-cuda.txt
    # a llama-bench that cannot start CUDA falls back to the CPU and still prints "CUDA": say so
    grep -q "failed to initialize CUDA" /tmp/llama-cuda.txt && echo "**llama.cpp CUDA: not measured, CUDA did not start (rows above are CPU):** $(grep -m1 'failed to initialize CUDA' /tmp/llama-cuda.txt)"; fi
else echo "llama.cpp CUDA: not carried (scripts/device/build-llama-cuda.sh was not run)"; fi
cp .gpu-carry/peers/*.py $M/ 2>/dev/null
DEV=cuda; [ -n "${DRYRUN:-}" ] && DEV=cpu
DEVICE=$DEV DTYPE=bf16 T $PY $M/bench_ref.py $M/$S ${P:-512} ${N:-32} absorb
echo "done: $R"
