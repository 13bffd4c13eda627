// Normalizers from tokenizer.json: Sequence, NFC, NFD, NFKC, NFKD, Lowercase,
// Prepend, Replace, Strip. Each maps a text section (the text between added
// tokens) to its normalized form.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "tokenizer/tokenizer_json.h"

namespace moeserve {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string normalize(std::string text) const = 0;
};

// Returns nullptr for a null config (no normalization).
StatusOr<std::unique_ptr<Normalizer>> make_normalizer(const tokenizer_json::Json& config,
                                                      std::string_view path);

}  // namespace moeserve
