#!/bin/bash
# Run here, in the project root, before the device call that measures issue 19's numbers (see gpu-bench.sh).
# Fills .gpu-carry/ (git-ignored) so that one `device` call can run the WebGPU benchmarks on the GPU machine:
#   - node, the Vulkan loader .debs and enter.sh (../shared/device/prepare.sh);
#   - nm.tar.xz: node_modules with the runtime dependencies, tsx, and only the linux-x64 Dawn (the full tree is
#     over 1 GiB; the carry limit is 64 MiB);
#   - build/: the WebAssembly kernels (the CPU quantizer the exporter runs on);
#   - peers/: the PyTorch peer (../shared does not travel);
#   - llama-cuda/: llama-bench built with CUDA for sm_90 (H100) by scripts/device/build-llama-cuda.sh, when built,
#     and libcudart; node-llama-cpp's prebuilt CUDA binaries are 143 MB compressed, over the limit.
# Then: device call with carry [".gpu-carry", "build"] and command `bash scripts/device/gpu-bench.sh`.
set -e
cd "$(dirname "$0")/../.."
bash ../shared/device/prepare.sh >/dev/null
C=.gpu-carry
npm run build >/dev/null
if [ ! -f $C/nm.tar.xz ]; then
  T=$(mktemp -d)
  cp package.json package-lock.json $T/
  (cd $T && npm ci --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null && npm i --no-save --omit=dev --ignore-scripts --no-audit --no-fund tsx@4 >/dev/null)
  find $T/node_modules/webgpu/dist -mindepth 1 -maxdepth 1 ! -name linux-x64 -exec rm -rf {} +
  tar -C $T -cf - node_modules | xz -T2 -6 > $C/nm.tar.xz
  rm -rf $T
fi
mkdir -p $C/peers && cp ../shared/peers/torch/*.py ../shared/peers/torch/*.json $C/peers/
L=.cache/llama.cpp/build-cuda/bin/llama-bench
if [ -x $L ]; then
  mkdir -p $C/llama-cuda && cp $L $C/llama-cuda/ && strip $C/llama-cuda/llama-bench
  cp -L /usr/local/cuda-13.0/lib64/libcudart.so.13 $C/llama-cuda/
  xz -T2 -6 -f $C/llama-cuda/llama-bench
fi
du -sh $C build
echo "carry: [\".gpu-carry\", \"build\"]  command: bash scripts/device/gpu-bench.sh"
