#!/usr/bin/env bash
# Installs the npm packages of the end-to-end tests (tests/e2e: the official OpenAI SDK and
# gRPC's Node.js client) at the versions pinned in tests/e2e/package-lock.json. They are not
# committed; without them the e2e tests report as skipped (tests/e2e/run.sh exits 77).
# Never fatal: offline, it says so and exits 0.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
e2e="${root}/tests/e2e"
if [[ -d "${e2e}/node_modules/openai" && -d "${e2e}/node_modules/@grpc/grpc-js" &&
      -d "${e2e}/node_modules/@grpc/proto-loader" ]]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "fetch_e2e_deps.sh: npm not found; e2e tests will report as skipped" >&2
  exit 0
fi
if ! npm ci --prefix "${e2e}" --no-audit --no-fund; then
  echo "fetch_e2e_deps.sh: npm ci failed (offline?); e2e tests will report as skipped" >&2
fi
