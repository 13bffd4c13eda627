#include "engine/logits_processor.h"

#include <algorithm>
#include <limits>

#include "common/status.h"

namespace moeserve {

void TokenCounts::add_prompt(std::span<const int32_t> ids) {
  for (int32_t id : ids) by_token[id].in_prompt = true;
}

void TokenCounts::add_output(int32_t id) {
  ++by_token[id].n_output;
  ++n_output;
}

std::vector<int32_t> stop_token_set(const SamplingParams& params,
                                    std::span<const int32_t> eos_ids) {
  std::vector<int32_t> ids(params.stop_token_ids.begin(), params.stop_token_ids.end());
  if (!params.ignore_eos) ids.insert(ids.end(), eos_ids.begin(), eos_ids.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

LogitsProcessor::LogitsProcessor(const SamplingParams& params, std::span<const int32_t> eos_ids)
    : logit_bias_(params.logit_bias.begin(), params.logit_bias.end()),
      presence_penalty_(params.presence_penalty),
      frequency_penalty_(params.frequency_penalty),
      repetition_penalty_(params.repetition_penalty),
      min_tokens_(params.min_tokens),
      masked_until_min_tokens_(stop_token_set(params, eos_ids)) {}

bool LogitsProcessor::active(const TokenCounts& counts) const {
  const bool penalties =
      presence_penalty_ != 0.0f || frequency_penalty_ != 0.0f || repetition_penalty_ != 1.0f;
  const bool masking = counts.n_output < min_tokens_ && !masked_until_min_tokens_.empty();
  return !logit_bias_.empty() || (penalties && !counts.by_token.empty()) || masking;
}

Status LogitsProcessor::apply(const TokenCounts& counts, std::span<float> logits) const {
  const auto n_vocab = static_cast<int64_t>(logits.size());
  auto check = [&](int32_t id, const char* what) -> Status {
    if (id < 0 || id >= n_vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " token id ", id, " is outside the vocabulary of ", n_vocab));
    }
    return absl::OkStatus();
  };
  // Check everything before touching the row, so an error leaves it unchanged.
  for (const auto& [id, bias] : logit_bias_) RETURN_IF_ERROR(check(id, "logit_bias"));
  for (const auto& [id, entry] : counts.by_token) RETURN_IF_ERROR(check(id, "counted"));
  const bool masking = counts.n_output < min_tokens_;
  if (masking) {
    for (int32_t id : masked_until_min_tokens_) RETURN_IF_ERROR(check(id, "stop"));
  }

  for (const auto& [id, bias] : logit_bias_) logits[static_cast<size_t>(id)] += bias;

  for (const auto& [id, entry] : counts.by_token) {
    float& l = logits[static_cast<size_t>(id)];
    // Repetition: prompt and output. Dividing a positive / multiplying a non-positive logit
    // moves it down for a penalty above 1, whatever its sign (vLLM's `logits > 0` split).
    if (repetition_penalty_ != 1.0f) l = l > 0 ? l / repetition_penalty_ : l * repetition_penalty_;
    // Frequency and presence: output only.
    if (entry.n_output > 0) {
      l -= frequency_penalty_ * static_cast<float>(entry.n_output);
      l -= presence_penalty_;
    }
  }

  if (masking) {
    for (int32_t id : masked_until_min_tokens_) {
      logits[static_cast<size_t>(id)] = -std::numeric_limits<float>::infinity();
    }
  }
  return absl::OkStatus();
}

}  // namespace moeserve
