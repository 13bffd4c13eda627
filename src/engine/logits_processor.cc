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

void LogitsProcessor::fill(const TokenCounts& counts, SamplingRow& row,
                           std::vector<PenaltyEntry>& penalties) const {
  row.logit_bias = logit_bias_;
  row.repetition_penalty = repetition_penalty_;
  row.frequency_penalty = frequency_penalty_;
  row.presence_penalty = presence_penalty_;
  penalties.clear();
  const bool penalised =
      presence_penalty_ != 0.0f || frequency_penalty_ != 0.0f || repetition_penalty_ != 1.0f;
  if (penalised) {
    for (const auto& [id, entry] : counts.by_token) {
      penalties.push_back({.token = id, .n_output = entry.n_output});
    }
  }
  row.penalties = penalties;
  row.masked = {};
  if (counts.n_output < min_tokens_) row.masked = masked_until_min_tokens_;
}

Status LogitsProcessor::apply(const TokenCounts& counts, std::span<float> logits) const {
  SamplingRow row;
  std::vector<PenaltyEntry> penalties;
  fill(counts, row, penalties);
  return shape_logits(row, logits);
}

}  // namespace moeserve
