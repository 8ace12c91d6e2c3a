#!/bin/bash
# llama.cpp's llama-bench with CUDA for the H100 (sm_90 only), built here for scripts/device/gpu-bench.sh: the
# prebuilt @node-llama-cpp/linux-x64-cuda is 143 MB compressed (its libggml-cuda.so carries many GPU architectures),
# over the device carry's 64 MiB. An sm_90 build with PTX beside the machine code ("90") is 41 MB xz'd, which with
# node and the modules is still over the limit, so this builds the machine code alone ("90-real": 57 MB, 21.4 MB
# xz'd; prepare.sh's whole carry is then 55.5 MB). Needs this machine's nvcc 13 (/usr/local/cuda-13.0), cuBLAS 13's headers and
# libraries from the local pip index (nvidia-cublas), and a stub libcuda.so (the driver exists only on the device).
# The source is the one node-llama-cpp 3.21.1 bundles (.cache/llama.cpp, see scripts/build-llama.sh). ~1 hour on
# two cores. Output: .cache/llama.cpp/build-cuda/bin/llama-bench (static ggml; links libcudart/libcublas).
set -e
cd "$(dirname "$0")/../.."
[ -d .cache/llama.cpp ] || bash scripts/build-llama.sh
C=/usr/local/cuda-13.0; R=/tmp/cuda-root; W=/tmp/cublas
if [ ! -d $W/x/nvidia ]; then
  mkdir -p $W/x
  pip download --no-deps -d $W --index-url "$(pip config list | sed -n "s/.*extra-index-url='[^ ]* \(.*\)'/\1/p")" nvidia-cublas
  (cd $W/x && unzip -q -o ../nvidia_cublas-*.whl)
fi
# a toolkit root that is the CUDA 13 install plus cuBLAS, and a stub driver library to link against
rm -rf $R; mkdir -p $R/include $R/lib64/stubs
for d in bin nvvm targets; do ln -s $C/$d $R/$d; done
for f in $C/include/* $W/x/nvidia/cu13/include/*; do ln -sf $f $R/include/; done
for f in $C/lib64/* $W/x/nvidia/cu13/lib/*; do ln -sf $f $R/lib64/; done
(cd $R/lib64 && ln -sf libcublas.so.13 libcublas.so && ln -sf libcublasLt.so.13 libcublasLt.so)
echo 'void mla_stub(void) {}' > $R/lib64/stubs/s.c
gcc -shared -fPIC -o $R/lib64/stubs/libcuda.so -Wl,-soname,libcuda.so.1 $R/lib64/stubs/s.c
cd .cache/llama.cpp
PATH=$R/bin:$PATH cmake -B build-cuda -DGGML_CUDA=ON -DGGML_CUDA_NO_VMM=ON -DCMAKE_CUDA_ARCHITECTURES=90-real \
  -DCUDAToolkit_ROOT=$R -DCMAKE_CUDA_COMPILER=$R/bin/nvcc -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
PATH=$R/bin:$PATH cmake --build build-cuda -j2 --target llama-bench
ls -la build-cuda/bin/llama-bench
