// The small checked-in test tokenizers, loaded once per fuzz process from the
// source tree (MOESERVE_SOURCE_DIR is set by tests/fuzz/CMakeLists.txt).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

#include "tokenizer/tokenizer.h"

namespace moeserve::fuzz {

// Byte-level BPE (GPT-2 / DeepSeek style) and Llama-style byte-fallback BPE.
enum class TinyTokenizer { kByteLevel, kByteFallback };

inline const Tokenizer& tiny_tokenizer(TinyTokenizer which) {
  static const auto load = [](const char* name) {
    std::string dir = std::string(MOESERVE_SOURCE_DIR) + "/tests/data/tokenizer/" + name;
    auto t = Tokenizer::load(dir);
    if (!t.ok()) {
      // A broken fixture is a setup error, not a finding: stop before fuzzing.
      std::fprintf(stderr, "cannot load %s: %s\n", dir.c_str(), t.status().ToString().c_str());
      std::exit(2);
    }
    return std::move(t).value();
  };
  static const std::unique_ptr<Tokenizer> byte_level = load("tiny_byte_level");
  static const std::unique_ptr<Tokenizer> byte_fallback = load("tiny_byte_fallback");
  return which == TinyTokenizer::kByteLevel ? *byte_level : *byte_fallback;
}

// Stops the fuzzer with a readable message; libFuzzer saves the input.
[[noreturn]] inline void property_failed(const char* what) {
  std::fprintf(stderr, "PROPERTY FAILED: %s\n", what);
  std::abort();
}

}  // namespace moeserve::fuzz
