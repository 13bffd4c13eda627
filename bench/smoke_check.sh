#!/usr/bin/env bash
# The benchmarks' smoke tests (bench/CMakeLists.txt): runs a benchmark on tiny shapes and
# checks that it exits 0 and prints every expected line, so the benchmarks keep working
# between GPU runs.
#
#   bench/smoke_check.sh 'REGEX;REGEX;...' BENCHMARK ARGS...
# Each REGEX (grep -E) must match at least one line of the benchmark's output.
set -uo pipefail
IFS=';' read -r -a patterns <<<"$1"
shift
out="$("$@" 2>&1)"
rc=$?
printf '%s\n' "${out}"
if ((rc != 0)); then
  echo "smoke_check: $1 exited with ${rc}" >&2
  exit 1
fi
missing=0
for p in "${patterns[@]}"; do
  if ! grep -Eq -- "${p}" <<<"${out}"; then
    echo "smoke_check: no line matches '${p}'" >&2
    missing=1
  fi
done
exit "${missing}"
