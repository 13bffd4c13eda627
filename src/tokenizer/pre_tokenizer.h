// Pre-tokenizers from tokenizer.json: Sequence, Split (all five behaviours and
// `invert`), ByteLevel, Digits, Metaspace, Whitespace, WhitespaceSplit,
// Punctuation. They cut a normalized text section into pieces ("words") that
// the model encodes independently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "tokenizer/tokenizer_json.h"

namespace moeserve {

using Span = std::pair<uint32_t, uint32_t>;  // [begin, end) byte offsets

// Pieces of one text section, as spans into `text` so that splitting never
// copies. Only rewriting steps (Metaspace, ByteLevel's prefix space) build a
// new `text`.
struct PreTokenized {
  std::string text;
  std::vector<Span> spans;
  // Set by a final ByteLevel step: pieces are still raw bytes and the model
  // maps them to the byte-level alphabet itself (saves a copy per piece).
  bool byte_level = false;

  std::string_view piece(size_t i) const {
    return std::string_view(text).substr(spans[i].first, spans[i].second - spans[i].first);
  }
  // Rewrites the text of every piece into the byte-level alphabet.
  void materialize_byte_level();
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits the pieces further (and may rewrite them). `first_section` is true
  // for the text before the first added token: Metaspace's prepend_scheme
  // "first" uses it.
  virtual void split(PreTokenized& pieces, bool first_section) const = 0;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Cuts the piece [base, base + length) at `matches` (sorted, non-overlapping,
// relative to base) and appends the non-empty resulting spans to `out`, with
// Hugging Face semantics.
void split_with_behavior(uint32_t base, size_t length,
                         const std::vector<std::pair<size_t, size_t>>& matches,
                         SplitBehavior behavior, bool invert, std::vector<Span>& out);

// Returns nullptr for a null config.
StatusOr<std::unique_ptr<PreTokenizer>> make_pre_tokenizer(const tokenizer_json::Json& config,
                                                           std::string_view path);

}  // namespace moeserve
