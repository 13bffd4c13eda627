// A compiled PCRE2 pattern (UTF + UCP, JIT) used by the Split pre-tokenizer
// and the Replace normalizer/decoder. Patterns from tokenizer.json are first
// rewritten so that they mean what the reference tokenizer makes of them:
// `\s`/`\S` follow ECMAScript (which counts U+FEFF but not U+0085/U+180E as
// whitespace) and the `(?i:'s|…)` contraction group is spelt out without case
// folding, exactly as transformers.js does.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace moeserve {

class Regex {
 public:
  // `literal` compiles the text as a plain string (escaping everything).
  static StatusOr<std::unique_ptr<Regex>> compile(std::string_view pattern, bool literal = false);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Byte ranges [begin, end) of all non-overlapping non-empty matches, left to
  // right. `text` must be valid UTF-8.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

  // Replaces every match with `replacement` (taken literally).
  std::string replace_all(std::string_view text, std::string_view replacement) const;

 private:
  Regex() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Exposed for tests: the ECMAScript-compatible rewrite described above.
std::string translate_pattern_to_pcre2(std::string_view pattern);

}  // namespace moeserve
