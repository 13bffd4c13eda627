// Shapes one sequence's logits before sampling (as the SamplingRow fields Backend::sample
// applies): logit_bias, then repetition, frequency and
// presence penalties, then the min_tokens mask (see SamplingParams for each field's meaning).
// The order is vLLM's: bias (a logits processor) runs before the sampler's penalties; the mask
// sets −inf, which the penalties would leave −inf anyway.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "backend/sampling.h"
#include "moeserve/sampling_params.h"
#include "moeserve/status.h"

namespace moeserve {

// What the penalties need to know about one sequence: which tokens the prompt holds and how
// often each was generated. Sparse, since a sequence touches few of the ~129K vocabulary ids.
struct TokenCounts {
  struct Entry {
    int32_t n_output = 0;    // times generated
    bool in_prompt = false;  // appears in the prompt
  };
  std::unordered_map<int32_t, Entry> by_token;
  int32_t n_output = 0;  // tokens generated so far

  void add_prompt(std::span<const int32_t> ids);
  void add_output(int32_t id);  // after each sampled token
};

// The ids that end a sequence: stop_token_ids, plus eos_ids unless ignore_eos. min_tokens masks
// exactly these, and the stop check should use the same set. Sorted, unique.
std::vector<int32_t> stop_token_set(const SamplingParams& params, std::span<const int32_t> eos_ids);

class LogitsProcessor {
 public:
  // eos_ids: the model's end-of-sequence ids (generation_config may list several).
  LogitsProcessor(const SamplingParams& params, std::span<const int32_t> eos_ids);

  // True when apply() can change logits for these counts; false lets callers skip the copy.
  bool active(const TokenCounts& counts) const;

  // Adds this sequence's shaping for `counts` to `row`: the logit bias, the penalty entries
  // (written into `penalties`, which the row then points at) and, below min_tokens, the mask.
  void fill(const TokenCounts& counts, SamplingRow& row,
            std::vector<PenaltyEntry>& penalties) const;

  // In place, on one row of logits [vocab] (shape_logits of the filled row). InvalidArgument if
  // a logit_bias or stop id is outside the row (a request that skipped validate()); the row is
  // then unchanged.
  Status apply(const TokenCounts& counts, std::span<float> logits) const;

 private:
  std::vector<std::pair<int32_t, float>> logit_bias_;
  float presence_penalty_;
  float frequency_penalty_;
  float repetition_penalty_;
  int min_tokens_;
  std::vector<int32_t> masked_until_min_tokens_;  // stop_token_set
};

}  // namespace moeserve
