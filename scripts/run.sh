#!/usr/bin/env bash
# Builds moeserve (build/, RelWithDebInfo, CUDA when nvcc is found) and runs it
# with the given arguments (the README's run command). Without arguments it
# generates 16 tokens with the tiny DeepSeek-V3 test model on the CPU.
#
#   scripts/run.sh                                   # the demo below
#   scripts/run.sh generate --model DIR --prompt-ids 1,2,3 --max-tokens 32
#
# Build output goes to stderr, so stdout is only the program's.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

"${root}/scripts/install_deps.sh" >&2
cmake -S "${root}" -B "${root}/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMOESERVE_WERROR=OFF -DMOESERVE_SANITIZE=OFF >&2
cmake --build "${root}/build" -j"$(nproc)" --target moeserve >&2

if (($# == 0)); then
  set -- generate --model "${root}/tests/data/tiny/v3_tiny" --prompt-ids 1,2,3 --max-tokens 16
fi
exec "${root}/build/src/server/moeserve" "$@"
