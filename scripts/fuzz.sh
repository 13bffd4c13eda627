#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/) in build-fuzz/ with clang and runs
# each for a time budget on its seed corpus. Exits non-zero on any finding.
#
#   scripts/fuzz.sh [seconds_per_target] [target ...]    (default: 60, all four)
#
# Seeds are copied into build-fuzz/corpus/<target>/, so the repository corpus
# is never modified and what a run finds is kept for the next run (delete that
# folder to start fresh). Crashing inputs land in build-fuzz/findings/<target>/;
# logs in build-fuzz/logs/. See docs/fuzzing.md.
set -euo pipefail
# Sanitizer reports with a stack (UBSan prints none by default).
export UBSAN_OPTIONS="print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

seconds="${1:-60}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 [seconds_per_target] [target ...]" >&2
  exit 2
fi
all_targets=(tokenizer_load_fuzz tokenizer_encode_fuzz detokenizer_fuzz chat_template_fuzz)
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=("${all_targets[@]}")

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-fuzz"
fuzz_dir="$root/tests/fuzz"

for tool in clang clang++ cmake; do
  command -v "$tool" >/dev/null || { echo "fuzz.sh: $tool not found (see docs/fuzzing.md)" >&2; exit 2; }
done
# Debian ships libFuzzer and the sanitizer runtimes in libclang-rt-<N>-dev,
# which clang only recommends.
if [[ ! -e "$(clang --print-runtime-dir)/libclang_rt.fuzzer-$(uname -m).a" ]]; then
  echo "fuzz.sh: libFuzzer not found: install libclang-rt-dev (see docs/fuzzing.md)" >&2
  exit 2
fi

# Only the tokenizer library and the fuzz targets are built: tests/fuzz is
# configured as its own project, so the rest of the tree need not build with clang.
CC=clang CXX=clang++ nice cmake -S "$fuzz_dir" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
nice cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"

declare -A dict_for=([tokenizer_load_fuzz]=tokenizer_json.dict [chat_template_fuzz]=jinja.dict)
failed=()
summary=()
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t"
  findings="$build/findings/$t"
  log="$build/logs/$t.log"
  mkdir -p "$corpus" "$findings" "$(dirname "$log")"
  cp "$fuzz_dir/corpus/$t/"* "$corpus/"
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$findings/")
  if [[ -n "${dict_for[$t]:-}" ]]; then args+=(-dict="$fuzz_dir/dicts/${dict_for[$t]}"); fi
  echo "== $t: ${seconds}s (log: $log)"
  if nice -n 10 "$build/$t" "${args[@]}" "$corpus" >"$log" 2>&1; then
    status=ok
  else
    status=FINDING
    failed+=("$t")
    grep -E "^==[0-9]+==ERROR|PROPERTY FAILED|runtime error|SUMMARY|Test unit written" "$log" | head -8 >&2 || true
  fi
  last="$(grep -E "^#[0-9]+" "$log" | tail -1)"
  execs="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")"
  summary+=("$(printf '%-22s %-7s execs/s %-6s %s' "$t" "$status" "${execs:-?}" \
    "$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9a-zA-Z]+' <<<"$last")")")
done

echo
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz.sh: findings in ${failed[*]}; inputs in $build/findings/" >&2
  exit 1
fi
