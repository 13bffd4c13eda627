// Added tokens (special or not) from tokenizer.json's "added_tokens". They are
// found in the raw text before normalization and pre-tokenization, leftmost
// first and longest at each position, honouring lstrip/rstrip (absorb the
// whitespace beside the token) and single_word (only between non-word
// characters). `normalized` tokens are matched on the raw text too, as the
// reference (transformers.js) does.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moeserve {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);

  // A run of plain text (token_id == -1) or one matched added token.
  struct Segment {
    std::string_view text;
    int32_t token_id = -1;
  };
  // Splits `text`; with `match_special` false, special tokens are left in the
  // text as plain characters (non-special added tokens still match).
  std::vector<Segment> split(std::string_view text, bool match_special) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // byte -> node
    int32_t token = -1;                                 // index into tokens_
  };
  int32_t child(int32_t node, uint8_t byte) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> nodes_;  // nodes_[0] is the root
  bool first_byte_[256] = {};
};

}  // namespace moeserve
