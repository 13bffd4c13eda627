#!/bin/sh
# Compiles kernel sources written on the SIMT layer with nvcc for sm_90a, warnings and spills
# as errors, and prints registers / shared memory / spills per kernel (ptxas -v). No GPU
# needed. Usage: kernels/simt/nvcc_check.sh [file.cu ...]
# (default: kernels/*.cu and kernels/simt/tests/*.cu).
# Exit status 0 on success, 1 on a compile error, warning or spill, 77 without nvcc.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
nvcc=${NVCC:-/usr/local/cuda/bin/nvcc}
[ -x "$nvcc" ] || { echo "nvcc not found at $nvcc"; exit 77; }
[ $# -gt 0 ] || set -- "$root"/kernels/*.cu "$root"/kernels/simt/tests/*.cu
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for src in "$@"; do
  name=$(basename "$src" .cu)
  if ! "$nvcc" -std=c++20 -I"$root" -gencode arch=compute_90a,code=sm_90a \
      --expt-relaxed-constexpr -Xcompiler=-Wall,-Wextra -Werror all-warnings \
      -Xptxas -v -Xptxas -warn-spills -c "$src" -o "$out/$name.o" >"$out/$name.log" 2>&1; then
    status=1
    echo "FAILED: $src"
  fi
  # One line per kernel: demangled-ish entry name, then its registers, smem and spills.
  awk -v file="$name" '
    /Compiling entry function/ { split($0, q, "'\''"); fn = q[2] }
    /bytes stack frame/ { frame = $0; sub(/.*ptxas info *: */, "", frame) }
    /Used [0-9]+ registers/ { use = $0; sub(/.*ptxas info *: */, "", use);
                              printf "%s: %s\n    %s; %s\n", file, fn, use, frame }
    /error|warning/ { print }
  ' "$out/$name.log" | { if command -v c++filt >/dev/null; then c++filt; else cat; fi; }
done
exit $status
