// Streaming detokenization for one sequence: feed generated ids one at a time
// and get back only newly completed text.
//
// Each step decodes a two-token window (the previous and the new id) and
// keeps the bytes the new id adds, so decoders that treat the first token
// specially (Metaspace, Strip) see the same context as a one-shot decode.
// Bytes accumulate until they form complete UTF-8: a character split across
// byte-level or <0xNN> tokens is emitted once, whole; invalid sequences become
// U+FFFD exactly as Tokenizer::decode makes them. So the concatenated output
// equals decode() of all ids (without clean_up_tokenization_spaces, which is
// not applied here).
//
// Stop strings are matched on the text, also across token boundaries. Text
// that could still be the start of a stop string is held back until it
// either completes the stop string (the stream then ends before it) or
// cannot anymore (it is released). Matching is linear in the text
// (StopMatcher): the stop strings' number and length do not slow a token.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/stop_matcher.h"

namespace moeserve {

class Tokenizer;

struct DetokenizerOptions {
  bool skip_special_tokens = true;
  std::vector<std::string> stop_strings{};
  // Whether a matched stop string is included in the output.
  bool include_stop_string = false;
};

class IncrementalDetokenizer {
 public:
  // `tokenizer` must outlive this object.
  IncrementalDetokenizer(const Tokenizer& tokenizer, DetokenizerOptions options);

  // Returns the text completed by `id` (possibly empty). After a stop string
  // matched, returns "" and ignores further ids.
  std::string feed(int32_t id);
  // End of generation: flushes held-back text and incomplete bytes (as U+FFFD).
  std::string finish();

  bool stopped() const { return stopped_; }
  // The stop string that ended the stream, or empty.
  const std::string& matched_stop_string() const { return matched_stop_; }

 private:
  std::string apply_stop_strings(std::string text, bool final);

  const Tokenizer& tokenizer_;
  DetokenizerOptions options_;
  int32_t prev_id_ = -1;       // last id the decode keeps, -1 before any
  std::string pending_bytes_;  // decoded bytes not yet forming complete UTF-8
  std::string held_text_;      // complete text that may begin a stop string
  bool stopped_ = false;
  std::string matched_stop_;
  std::optional<StopMatcher> stops_;  // when there are stop strings
};

}  // namespace moeserve
