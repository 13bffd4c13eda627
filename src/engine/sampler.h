// Host-side token sampling from one row of logits: temperature, top_k, top_p, min_p, then a
// seeded draw. Logits shaping (bias, penalties, min_tokens) happens before, in
// engine/logits_processor.h; sample_rows does both for every sampled row of a step.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "backend/sampling.h"
#include "common/tensor.h"
#include "engine/logits_processor.h"
#include "moeserve/sampling_params.h"
#include "moeserve/status.h"

namespace moeserve {

// One per sequence: it owns the sequence's random stream.
class Sampler {
 public:
  // sequence_index: which of the request's n sequences this is; it offsets the seed.
  explicit Sampler(const SamplingParams& params, int sequence_index = 0);

  // raw_logits: the model's row [vocab]; processed_logits: the same row after
  // LogitsProcessor::apply [vocab]. Errors fail this request only: Internal if a raw logit is
  // not finite (the model's fault); InvalidArgument if the sizes differ or are zero, if a
  // processed logit is NaN or +inf, or if every processed logit is −inf (everything masked).
  StatusOr<SampledToken> sample(std::span<const float> raw_logits,
                                std::span<const float> processed_logits);
  // No logits processing: the raw row is sampled.
  StatusOr<SampledToken> sample(std::span<const float> logits) { return sample(logits, logits); }

  uint64_t seed() const { return seed_; }  // the effective seed (drawn when params had none)

 private:
  float temperature_;
  int top_k_;
  float top_p_;
  float min_p_;
  int n_top_logprobs_;  // 0 unless params.logprobs
  uint64_t seed_;
  std::mt19937_64 rng_;  // exactly specified by the standard: the same stream everywhere
};

// One row of a step's logits to sample, with its sequence's state.
struct RowToSample {
  int64_t row = 0;  // in the step's logits
  const LogitsProcessor* processor = nullptr;
  const TokenCounts* counts = nullptr;
  Sampler* sampler = nullptr;
};

// Samples every row of one step: LogitsProcessor then Sampler per row. `logits`: host F32
// [n_rows, vocab]. One result per entry of `rows`, in order; an error fails that row only.
std::vector<StatusOr<SampledToken>> sample_rows(const Tensor& logits,
                                                std::span<const RowToSample> rows);

// Index of the largest logit (lowest index on ties).
int32_t argmax(std::span<const float> logits);
// log_softmax(logits)[id], computed in double.
float logprob_of(std::span<const float> logits, int32_t id);
// The k most likely tokens with their log-probabilities, most likely first.
std::vector<std::pair<int32_t, float>> top_logprobs(std::span<const float> logits, int k);

}  // namespace moeserve
