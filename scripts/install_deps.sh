#!/usr/bin/env bash
# Installs the Debian 12 packages moeserve needs to build and test.
#
#   scripts/install_deps.sh               # build + test dependencies
#   scripts/install_deps.sh --with-torch  # also PyTorch + NumPy (only to regenerate
#                                         # tests/reference outputs; tests do not need them)
#   scripts/install_deps.sh --with-training  # also what training/tiny/train.py needs to
#                                         # retrain models/tiny: PyTorch, NumPy, python3-regex
#                                         # and the corpus, python3.11-doc
#
# Idempotent: when everything is already installed it runs no apt-get at all.
# CUDA 13 is not installed here; it is expected in /usr/local/cuda when present.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libabsl-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev
  libopenblas-dev libpcre2-dev libboost-dev
  libboost-context-dev      # fibers for the SIMT emulator (kernels/simt)
  libgloo-dev               # CPU collectives between rank processes (src/parallel)
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  nodejs npm                # end-to-end tests with the openai and grpc-js clients
  python3-yaml curl         # deployment manifest checks; README examples
  clang libclang-rt-14-dev  # libFuzzer targets (scripts/fuzz.sh)
  clang-format clang-tidy   # .clang-format / .clang-tidy
)

for arg in "$@"; do
  case "${arg}" in
    --with-torch) packages+=(python3-torch python3-numpy) ;;
    --with-training) packages+=(python3-torch python3-numpy python3-regex python3.11-doc) ;;
    -h | --help)
      sed -n '2,12p' "$0"
      exit 0
      ;;
    *)
      echo "install_deps.sh: unknown argument '${arg}' (expected --with-torch or --with-training)" >&2
      exit 2
      ;;
  esac
done

installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

missing=()
for pkg in "${packages[@]}"; do
  # NodeSource's nodejs package ships npm itself and conflicts with Debian's npm.
  if [[ "${pkg}" == npm ]] && command -v npm >/dev/null 2>&1; then continue; fi
  installed "${pkg}" || missing+=("${pkg}")
done

if ((${#missing[@]} == 0)); then
  echo "install_deps.sh: all ${#packages[@]} packages present"
  exit 0
fi

sudo=()
if ((EUID != 0)); then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install_deps.sh: missing ${missing[*]}; run as root or install sudo" >&2
    exit 1
  fi
  sudo=(sudo)
fi

echo "install_deps.sh: installing ${missing[*]}"
"${sudo[@]}" apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}"
