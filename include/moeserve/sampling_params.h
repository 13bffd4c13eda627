// How the next token is chosen from the model's logits.
#pragma once

#include <cstdint>

namespace moeserve {

struct SamplingParams {
  float temperature = 0.0f;  // <= 1e-5: greedy
  int top_k = 0;             // keep the k most likely tokens; 0: all
  float top_p = 1.0f;        // keep the smallest set whose probability reaches top_p
  uint64_t seed = 0;         // same seed, same tokens
};

}  // namespace moeserve
