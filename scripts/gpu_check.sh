#!/usr/bin/env bash
# The one command to run the first time a GPU machine is available (docs/testing.md, "First
# run on a GPU"). Budget: about 8 minutes on an H100/H200, including a build with a cold
# ccache.
#
#   scripts/gpu_check.sh [--budget SECONDS] [out_dir]
#       out_dir: default $OUT if set, else gpu-report/; budget: default 480 s in all
#
# Steps, most telling first, each with its own timeout cut to what is left of the budget
# (a step that finds the budget spent is skipped); a failing step is recorded and the next
# one runs:
#   1. configure build-gpu/ for this GPU's architecture (nvidia-smi compute_cap);
#   2. build only what the later steps run (the gpu-labelled tests and the benchmarks);
#   3. ctest -L gpu (but the whole-model tests);
#   4. whole-model agreement tests (tests/gpu binaries named *model*), if present;
#   5. bench/backend_ops_bench --backend cuda (the target shapes first, then the op table;
#      GB/s and TFLOP/s beside the D2D copy bandwidth and cuBLASLt's BF16 rate);
#   6. bench/decode_bench --backend cuda (the V2-Lite-shaped model) at batch 1, 8, 32, 128,
#      256 (a step and a log per batch size);
#   7. compute-sanitizer memcheck, then racecheck, on each other tests/gpu binary.
# Writes report.md and report.json (one entry per step: name, status, seconds, log file)
# and the step logs under the out dir. Exit status: 0 if every step passed or was skipped,
# 1 if any failed or timed out, 77 (with a message) when nvidia-smi finds no GPU.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
budget=480
if [[ "${1:-}" == --budget ]]; then
  budget="${2:-}"
  shift 2 || true
  [[ "${budget}" =~ ^[0-9]+$ ]] || { echo "gpu_check.sh: --budget needs a number of seconds" >&2; exit 2; }
fi
out="${1:-${OUT:-${root}/gpu-report}}"
build="${root}/build-gpu"
jobs="$(nproc)"

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu_check.sh: nvidia-smi not found: this machine has no NVIDIA driver, nothing to check" >&2
  exit 77
fi
if ! gpu_info="$(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total \
  --format=csv,noheader 2>/dev/null)" || [[ -z "${gpu_info}" ]]; then
  echo "gpu_check.sh: nvidia-smi finds no GPU; nothing to check" >&2
  exit 77
fi
gpu_info="$(head -n 1 <<<"${gpu_info}")"
compute_cap="$(cut -d, -f2 <<<"${gpu_info}" | tr -d ' ')"
major="${compute_cap%%.*}"
minor="${compute_cap#*.}"
arch="${major}${minor}"
# Hopper's wgmma and setmaxnreg need the architecture-specific target.
[[ "${major}" == 9 ]] && arch="${arch}a"

mkdir -p "${out}"
export CCACHE_BASEDIR="${root}" CCACHE_NOHASHDIR=1
names=() statuses=() seconds=() logs=()

skip_step() {
  printf '==> %s: skipped (%s)\n' "$1" "$2"
  names+=("$1") statuses+=("skipped: $2") seconds+=(0) logs+=("")
}

# run_step NAME TIMEOUT_S COMMAND...: runs the command with its output in NAME.log, for at
# most TIMEOUT_S seconds and never past the budget.
run_step() {
  local name="$1" limit="$2"
  shift 2
  local left=$((budget - SECONDS))
  if ((left < 5)); then
    skip_step "${name}" "budget of ${budget} s spent"
    return
  fi
  ((limit > left)) && limit=${left}
  local log="${out}/${name}.log" start=${SECONDS} rc=0 status
  printf '==> %s (timeout %ss)\n' "${name}" "${limit}"
  timeout --kill-after=10 "${limit}" "$@" >"${log}" 2>&1 || rc=$?
  case ${rc} in
    0) status=pass ;;
    124 | 137) status=timeout ;;
    *) status=fail ;;
  esac
  printf '    %s in %ss\n' "${status}" "$((SECONDS - start))"
  names+=("${name}") statuses+=("${status}") seconds+=("$((SECONDS - start))")
  logs+=("$(basename "${log}")")
}

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
run_step configure 120 cmake -S "${root}" -B "${build}" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOESERVE_CUDA=ON -DMOESERVE_CUDA_ARCHS="${arch}" \
  -DMOESERVE_WERROR=ON

# Each test is named after its executable target, so ctest's list is the build list.
mapfile -t gpu_tests < <(ctest --test-dir "${build}" -N -L '^gpu$' 2>/dev/null |
  sed -n 's/^ *Test *#[0-9]*: *//p')
has_target() { cmake --build "${build}" --target help 2>/dev/null | grep -q "^$1:"; }
bench_targets=()
has_target backend_ops_bench && bench_targets+=(backend_ops_bench)
has_target decode_bench && bench_targets+=(decode_bench)
if ((${#gpu_tests[@]} + ${#bench_targets[@]} > 0)); then
  run_step build 330 cmake --build "${build}" -j"${jobs}" --target "${gpu_tests[@]}" \
    "${bench_targets[@]}"
else
  skip_step build "configure found no gpu tests or benchmarks"
fi

if ((${#gpu_tests[@]} > 0)); then
  # The whole-model tests run in their own step.
  run_step ctest_gpu 180 ctest --test-dir "${build}" -L '^gpu$' -E model --output-on-failure \
    --timeout 120
else
  skip_step ctest_gpu "no gpu-labelled tests"
fi

model_tests=()
for t in "${gpu_tests[@]}"; do
  [[ "${t}" == *model* ]] && model_tests+=("${t}")
done
if ((${#model_tests[@]} == 0)); then
  skip_step model_agreement "no whole-model tests in tests/gpu yet"
fi
for t in "${model_tests[@]}"; do
  run_step "model_${t}" 180 "${build}/tests/${t}"
done

if [[ -x "${build}/bench/backend_ops_bench" ]]; then
  run_step backend_ops_bench 120 "${build}/bench/backend_ops_bench" --backend cuda \
    --seconds 0.2
else
  skip_step backend_ops_bench "not built"
fi
if [[ -x "${build}/bench/decode_bench" ]]; then
  for batch in 1 8 32 128 256; do
    run_step "decode_bench_${batch}" 60 "${build}/bench/decode_bench" --backend cuda \
      --batch "${batch}"
  done
else
  skip_step decode_bench "not built"
fi

sanitizer="$(command -v compute-sanitizer || true)"
[[ -z "${sanitizer}" && -x /usr/local/cuda/bin/compute-sanitizer ]] &&
  sanitizer=/usr/local/cuda/bin/compute-sanitizer
for tool in memcheck racecheck; do
  for t in "${gpu_tests[@]}"; do
    [[ "${t}" == *model* ]] && continue # whole models under a sanitizer outlast the budget
    if [[ -z "${sanitizer}" ]]; then
      skip_step "${tool}_${t}" "compute-sanitizer not found"
    elif [[ ! -x "${build}/tests/${t}" ]]; then
      skip_step "${tool}_${t}" "not built"
    else
      run_step "${tool}_${t}" 90 "${sanitizer}" --tool "${tool}" --error-exitcode 1 \
        "${build}/tests/${t}"
    fi
  done
done

# ---- reports ---------------------------------------------------------------------------
commit="$(git -C "${root}" rev-parse --short HEAD 2>/dev/null || echo unknown)"
failed=0
{
  echo "# GPU check"
  echo
  echo "- GPU: ${gpu_info}"
  echo "- architecture: sm_${arch}"
  echo "- commit: ${commit}"
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- total: ${SECONDS} s"
  echo
  echo "| step | status | seconds | log |"
  echo "|---|---|---|---|"
  for i in "${!names[@]}"; do
    echo "| ${names[i]} | ${statuses[i]} | ${seconds[i]} | ${logs[i]} |"
  done
  for i in "${!names[@]}"; do
    [[ "${statuses[i]}" == fail || "${statuses[i]}" == timeout ]] || continue
    echo
    echo "## ${names[i]}: ${statuses[i]} (last 40 lines of ${logs[i]})"
    echo
    echo '```'
    tail -n 40 "${out}/${logs[i]}"
    echo '```'
  done
} >"${out}/report.md"
json_escape() { sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' <<<"$1"; }
{
  printf '{\n  "gpu": "%s",\n  "arch": "sm_%s",\n  "commit": "%s",\n  "total_seconds": %s,\n' \
    "$(json_escape "${gpu_info}")" "${arch}" "${commit}" "${SECONDS}"
  printf '  "steps": [\n'
  for i in "${!names[@]}"; do
    sep=","
    ((i + 1 == ${#names[@]})) && sep=""
    printf '    {"name": "%s", "status": "%s", "seconds": %s, "log": "%s"}%s\n' \
      "$(json_escape "${names[i]}")" "$(json_escape "${statuses[i]}")" "${seconds[i]}" \
      "${logs[i]}" "${sep}"
  done
  printf '  ]\n}\n'
} >"${out}/report.json"
for s in "${statuses[@]}"; do
  [[ "${s}" == fail || "${s}" == timeout ]] && failed=1
done
echo
echo "gpu_check.sh: report in ${out}/report.md and ${out}/report.json (${SECONDS} s)"
exit "${failed}"
