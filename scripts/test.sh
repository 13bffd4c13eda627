#!/usr/bin/env bash
# Builds and runs every test this machine can run (the README's test command).
#
#   1. build/      RelWithDebInfo, CUDA when nvcc is found, -Werror;
#                  ctest labels unit, golden, e2e, emu and gpu (gpu tests skip
#                  themselves without a GPU, e2e tests without their npm packages,
#                  and ctest lists them as skipped). emu: CUDA kernels on the SIMT
#                  emulator (kernels/simt), with racecheck, and nvcc for sm_90a.
#   2. build-asan/ AddressSanitizer + UBSan, no real CUDA, the CUDA backend on the
#                  emulator (MOESERVE_CUDA_EMU); ctest labels unit (the bad-input
#                  tests live there) and emu (the kernels and the whole CudaBackend:
#                  memcheck's job). Only those test targets are built.
#   3. build-fuzz/ libFuzzer targets for the tokenizer, detokenizer and chat
#                  templates, 60 s each (scripts/fuzz.sh).
#
# Every stage runs even when an earlier one fails; the exit status is non-zero if any
# build or test failed. Compiles go through ccache (see docs/building.md).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"
jobs="$(nproc)"
failed=()

step() { printf '\n==> %s\n' "$*"; }

scripts/install_deps.sh
scripts/fetch_tokenizers.sh || echo "test.sh: reference tokenizers unavailable; their tests will report as skipped" >&2
scripts/fetch_e2e_deps.sh || echo "test.sh: e2e client packages unavailable; the e2e tests will report as skipped" >&2

# ccache hits across checkouts (CI builds in a fresh clone each time).
export CCACHE_BASEDIR="${root}" CCACHE_NOHASHDIR=1

# ---- 1. main build ----------------------------------------------------------------
step "configure build/ (RelWithDebInfo, CUDA auto, -Werror)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMOESERVE_CUDA=AUTO -DMOESERVE_WERROR=ON -DMOESERVE_SANITIZE=OFF
step "build build/"
if cmake --build build -j"${jobs}"; then
  step "ctest build/ -L unit|golden|e2e|emu|gpu"
  ctest --test-dir build --output-on-failure --no-tests=error -j"${jobs}" \
    -L '^(unit|golden|e2e|emu|gpu)$' || failed+=("build/ tests")
else
  failed+=("build/ build")
fi

# ---- 2. sanitizer build -----------------------------------------------------------
step "configure build-asan/ (ASan + UBSan, CUDA backend on the emulator)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMOESERVE_CUDA=OFF -DMOESERVE_CUDA_EMU=ON -DMOESERVE_SANITIZE=ON -DMOESERVE_WERROR=OFF
# Each test is named after its executable target, so ctest's list is the build list.
mapfile -t unit_targets < <(ctest --test-dir build-asan -N -L '^(unit|emu)$' |
  sed -n 's/^ *Test *#[0-9]*: *//p')
step "build build-asan/ (${#unit_targets[@]} unit and emu test targets)"
if ((${#unit_targets[@]} == 0)); then
  echo "test.sh: no unit tests found in build-asan/" >&2
  failed+=("build-asan/ (no unit tests)")
elif cmake --build build-asan -j"${jobs}" --target "${unit_targets[@]}"; then
  step "ctest build-asan/ -L unit|emu"
  ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1:check_initialization_order=1" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    ctest --test-dir build-asan --output-on-failure --no-tests=error -j"${jobs}" \
    -L '^(unit|emu)$' || failed+=("build-asan/ tests")
else
  failed+=("build-asan/ build")
fi

# ---- 3. fuzzing -------------------------------------------------------------------
step "fuzz: libFuzzer targets, 60 s each (tests/fuzz, docs/fuzzing.md)"
scripts/fuzz.sh 60 || failed+=("fuzz")

# ---- summary ----------------------------------------------------------------------
echo
if ((${#failed[@]} > 0)); then
  printf 'test.sh: FAILED after %ss: %s\n' "${SECONDS}" "$(IFS=,; echo "${failed[*]}")" >&2
  exit 1
fi
echo "test.sh: all builds and tests passed in ${SECONDS}s"
