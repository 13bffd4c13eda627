#!/usr/bin/env bash
# Builds moeserve (build/, RelWithDebInfo, CUDA when nvcc is found) and runs it
# with the given arguments (the README's run command). Without arguments it
# starts the daemon (`moeserve serve`) on 127.0.0.1: OpenAI-compatible HTTP on
# port 8000, gRPC on 50051, serving the bundled trained tiny DeepSeek-V3 model
# (models/tiny) as model "tiny", on the CPU (`--backend auto` picks the GPU once
# the CUDA backend can run models). Stop it with Ctrl-C.
#
#   scripts/run.sh                                   # the daemon, as above
#   scripts/run.sh serve --model DIR --port 8000     # any model directory
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
  set -- serve
fi
exec "${root}/build/src/server/moeserve" "$@"
