// Post-processing of a single encoded sequence: the special tokens put around
// it when `add_special_tokens` is set (TemplateProcessing, Bert/Roberta
// processing, ByteLevel (adds nothing), Sequence of these).
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "tokenizer/tokenizer_json.h"

namespace moeserve {

struct PostProcessor {
  std::vector<int32_t> prefix;  // ids before the sequence
  std::vector<int32_t> suffix;  // ids after it
};

// A null config gives an empty PostProcessor.
StatusOr<PostProcessor> make_post_processor(const tokenizer_json::Json& config,
                                            std::string_view path);

}  // namespace moeserve
