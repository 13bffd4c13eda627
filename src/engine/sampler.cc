#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "common/status.h"

namespace moeserve {

Sampler::Sampler(const SamplingParams& params, int sequence_index)
    : temperature_(params.temperature),
      top_k_(params.top_k),
      top_p_(params.top_p),
      min_p_(params.min_p),
      n_top_logprobs_(params.logprobs ? params.top_logprobs : 0) {
  if (params.seed) {
    seed_ = *params.seed + static_cast<uint64_t>(sequence_index);
  } else {
    std::random_device rd;
    seed_ = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
}

SamplingRow Sampler::row(uint64_t counter) const {
  return {.temperature = temperature_,
          .top_k = top_k_,
          .top_p = top_p_,
          .min_p = min_p_,
          .seed = seed_,
          .counter = counter,
          .n_top_logprobs = n_top_logprobs_};
}

StatusOr<SampledToken> Sampler::sample(std::span<const float> raw_logits,
                                       std::span<const float> processed_logits) {
  return sample_shaped(raw_logits, processed_logits, row(next_draw_++));
}

// Defined here, beside the sampler that reads most of these fields.
Status validate(const SamplingParams& p, int vocab_size, int max_n) {
  auto invalid = [](auto&&... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  if (vocab_size < 1) return invalid("vocab_size must be at least 1, got ", vocab_size);
  if (max_n < 1) return invalid("max_n must be at least 1, got ", max_n);

  // NaN slips through every range comparison below, so finiteness comes first.
  const std::pair<const char*, float> floats[] = {
      {"temperature", p.temperature},
      {"top_p", p.top_p},
      {"min_p", p.min_p},
      {"presence_penalty", p.presence_penalty},
      {"frequency_penalty", p.frequency_penalty},
      {"repetition_penalty", p.repetition_penalty},
  };
  for (const auto& [name, value] : floats) {
    if (!std::isfinite(value)) return invalid(name, " must be a finite number, got ", value);
  }
  if (p.temperature < 0.0f) return invalid("temperature must be non-negative, got ", p.temperature);
  if (p.top_k < -1) {
    return invalid("top_k must be 0 or -1 (disabled), or at least 1, got ", p.top_k);
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
    return invalid("top_p must be in (0, 1], got ", p.top_p);
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f))
    return invalid("min_p must be in [0, 1], got ", p.min_p);

  for (const auto& [id, bias] : p.logit_bias) {
    if (id < 0 || id >= vocab_size) {
      return invalid("logit_bias token id ", id, " is out of vocabulary (size ", vocab_size, ")");
    }
    if (!std::isfinite(bias)) {
      return invalid("logit_bias[", id, "] must be a finite number, got ", bias);
    }
    if (std::fabs(bias) > kMaxLogitBias) {
      return invalid("logit_bias[", id, "] must be in [-100, 100], got ", bias);
    }
  }
  if (std::fabs(p.presence_penalty) > kMaxPresenceFrequencyPenalty) {
    return invalid("presence_penalty must be in [-2, 2], got ", p.presence_penalty);
  }
  if (std::fabs(p.frequency_penalty) > kMaxPresenceFrequencyPenalty) {
    return invalid("frequency_penalty must be in [-2, 2], got ", p.frequency_penalty);
  }
  if (!(p.repetition_penalty > 0.0f)) {
    return invalid("repetition_penalty must be greater than zero, got ", p.repetition_penalty);
  }

  if (p.max_tokens < 1) return invalid("max_tokens must be at least 1, got ", p.max_tokens);
  if (p.min_tokens < 0) {
    return invalid("min_tokens must be greater than or equal to 0, got ", p.min_tokens);
  }
  if (p.min_tokens > p.max_tokens) {
    return invalid("min_tokens must be less than or equal to max_tokens=", p.max_tokens, ", got ",
                   p.min_tokens);
  }
  if (p.stop.size() > static_cast<size_t>(kMaxStopStrings)) {
    return invalid("stop must have at most ", kMaxStopStrings, " strings, got ", p.stop.size());
  }
  for (size_t i = 0; i < p.stop.size(); ++i) {
    if (p.stop[i].empty()) return invalid("stop[", i, "] must not be empty");
    if (p.stop[i].size() > kMaxStopStringBytes) {
      return invalid("stop[", i, "] must be at most ", kMaxStopStringBytes, " bytes, got ",
                     p.stop[i].size());
    }
  }
  for (int32_t id : p.stop_token_ids) {
    if (id < 0 || id >= vocab_size) {
      return invalid("stop_token_ids token id ", id, " is out of vocabulary (size ", vocab_size,
                     ")");
    }
  }

  if (p.top_logprobs < 0 || p.top_logprobs > kMaxTopLogprobs) {
    return invalid("top_logprobs must be in [0, 20], got ", p.top_logprobs);
  }
  if (p.top_logprobs > 0 && !p.logprobs) {
    return invalid("top_logprobs must be 0 when logprobs is false, got ", p.top_logprobs);
  }
  if (p.n < 1) return invalid("n must be at least 1, got ", p.n);
  if (p.n > max_n) return invalid("n must be at most ", max_n, ", got ", p.n);
  return absl::OkStatus();
}

std::vector<StatusOr<SampledToken>> sample_rows(Backend& backend, const Tensor& logits,
                                                std::span<const RowToSample> rows) {
  std::vector<SamplingRow> sampling(rows.size());
  std::vector<std::vector<PenaltyEntry>> penalties(rows.size());  // what the rows' spans see
  for (size_t i = 0; i < rows.size(); ++i) {
    const RowToSample& r = rows[i];
    sampling[i] = r.sampler->row(static_cast<uint64_t>(r.counts->n_output));
    sampling[i].logits_row = r.row;
    r.processor->fill(*r.counts, sampling[i], penalties[i]);
  }
  return backend.sample(logits, sampling);
}

}  // namespace moeserve
