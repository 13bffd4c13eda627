// Host-side token sampling from one row of logits.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

namespace moeserve {

struct SamplingOptions {
  float temperature = 0.0f;  // <= 1e-5: greedy
  int top_k = 0;             // 0: all tokens
  float top_p = 1.0f;        // nucleus mass kept
  uint64_t seed = 0;         // same seed, same tokens
};

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options);
  int32_t sample(std::span<const float> logits);

 private:
  SamplingOptions options_;
  std::mt19937_64 rng_;
};

// Index of the largest logit (lowest index on ties).
int32_t argmax(std::span<const float> logits);
// log_softmax(logits)[id], computed in double.
float logprob_of(std::span<const float> logits, int32_t id);
// The k most likely tokens with their log-probabilities, most likely first.
std::vector<std::pair<int32_t, float>> top_logprobs(std::span<const float> logits, int k);

}  // namespace moeserve
