// Host-side token sampling from one row of logits.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "moeserve/sampling_params.h"

namespace moeserve {

class Sampler {
 public:
  explicit Sampler(const SamplingParams& options);
  int32_t sample(std::span<const float> logits);

 private:
  SamplingParams options_;
  std::mt19937_64 rng_;
};

// Index of the largest logit (lowest index on ties).
int32_t argmax(std::span<const float> logits);
// log_softmax(logits)[id], computed in double.
float logprob_of(std::span<const float> logits, int32_t id);
// The k most likely tokens with their log-probabilities, most likely first.
std::vector<std::pair<int32_t, float>> top_logprobs(std::span<const float> logits, int k);

}  // namespace moeserve
