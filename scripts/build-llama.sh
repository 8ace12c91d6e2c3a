#!/usr/bin/env bash
# Native llama.cpp for `npm run bench` (scripts/llama-peer.ts): the same llama.cpp release node-llama-cpp bundles
# (node_modules/node-llama-cpp/llama/gitRelease.bundle), built for this CPU in .cache/llama.cpp (git-ignored).
#
#   scripts/build-llama.sh            # clone (once) and build llama-bench, llama-server, llama-quantize
#   JOBS=4 scripts/build-llama.sh     # more parallel jobs (default 2: the shared 2-core machines)
# The build takes about 30 minutes on 2 cores. The binaries land in .cache/llama.cpp/build/bin/.
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=node_modules/node-llama-cpp/llama/gitRelease.bundle
DIR=.cache/llama.cpp
[ -f "$BUNDLE" ] || { echo "error: $BUNDLE not found (npm install first)" >&2; exit 1; }
if [ ! -d "$DIR/.git" ]; then
  mkdir -p .cache
  git clone --quiet "$BUNDLE" "$DIR"
fi
cd "$DIR"
cmake -B build -DGGML_NATIVE=ON -DLLAMA_CURL=OFF
cmake --build build -j"${JOBS:-2}" --target llama-bench llama-server llama-quantize
echo "built: $(pwd)/build/bin/llama-bench"
