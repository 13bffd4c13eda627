#!/usr/bin/env bash
# Runs one end-to-end test file with node's built-in test runner:
#
#   MOESERVE_BIN=build/src/server/moeserve MOESERVE_SOURCE_DIR=$PWD tests/e2e/run.sh grpc.test.mjs
#
# Exits 77 (ctest's SKIP_RETURN_CODE) when node or the npm packages are missing
# (scripts/fetch_e2e_deps.sh installs them), so ctest reports the test as skipped.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v node >/dev/null; then
  echo "run.sh: node not found: skipping" >&2
  exit 77
fi
for package in openai @grpc/grpc-js @grpc/proto-loader; do
  if [[ ! -d "${here}/node_modules/${package}" ]]; then
    echo "run.sh: ${here}/node_modules/${package} missing (run scripts/fetch_e2e_deps.sh): skipping" >&2
    exit 77
  fi
done
if [[ -z "${MOESERVE_BIN:-}" || ! -x "${MOESERVE_BIN}" ]]; then
  echo "run.sh: MOESERVE_BIN ('${MOESERVE_BIN:-}') is not an executable" >&2
  exit 1
fi
MOESERVE_BIN="$(realpath "${MOESERVE_BIN}")"
export MOESERVE_BIN
export MOESERVE_SOURCE_DIR="${MOESERVE_SOURCE_DIR:-$(cd "${here}/../.." && pwd)}"
cd "${here}"
exec node --test --test-reporter=spec "$@"
