// How a request's tokens are chosen from the model's logits, and when its generation stops.
// Field meanings and ranges follow vLLM's SamplingParams (OpenAI's API where vLLM leaves it
// open); `validate` enforces the ranges. The pipeline per generated token is:
//   raw logits → logit_bias → repetition, frequency, presence penalties → min_tokens mask
//   (engine/logits_processor.h) → temperature → top_k → top_p → min_p → draw (engine/sampler.h)
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "moeserve/status.h"

namespace moeserve {

// Temperatures at or below this are greedy (argmax), as vLLM's _SAMPLING_EPS.
inline constexpr float kGreedyTemperature = 1e-5f;
// OpenAI's limits.
inline constexpr int kMaxTopLogprobs = 20;
inline constexpr int kMaxStopStrings = 4;
inline constexpr size_t kMaxStopStringBytes = 1024;          // ours: OpenAI states none
inline constexpr float kMaxLogitBias = 100.0f;               // |bias| ≤ 100
inline constexpr float kMaxPresenceFrequencyPenalty = 2.0f;  // |penalty| ≤ 2

struct SamplingParams {
  // ---- drawing the token (engine/sampler.h) ----
  // ≥ 0 and finite; ≤ kGreedyTemperature is greedy. The default is greedy, as the CLI's; the
  // HTTP layer applies OpenAI's default of 1 when a request leaves it out.
  float temperature = 0.0f;
  int top_k = 0;       // keep the k most likely tokens; 0 or -1 (vLLM's old spelling): all
  float top_p = 1.0f;  // (0, 1]: keep the smallest most-likely set whose mass reaches top_p
  float min_p = 0.0f;  // [0, 1]: keep tokens with p ≥ min_p · p_max; 0: all
  // Same seed, same tokens. Absent: a fresh random seed per request. Sequence i of n is seeded
  // with seed + i (as vLLM's parallel sampling), so the n sequences differ yet reproduce.
  std::optional<uint64_t> seed;

  // ---- shaping the logits (engine/logits_processor.h) ----
  std::map<int32_t, float> logit_bias;  // token id → added to its logit first; |bias| ≤ 100
  // OpenAI semantics, over generated tokens only: logit −= frequency_penalty · count(token)
  // + presence_penalty · [count(token) > 0]. Both in [-2, 2]; 0: off.
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  // vLLM/HF semantics, over prompt and generated tokens: a seen token's logit is divided by
  // the penalty when positive and multiplied by it otherwise. > 0; 1: off; > 1 discourages.
  float repetition_penalty = 1.0f;

  // ---- stopping ----
  int max_tokens = 16;      // ≥ 1 (vLLM's default of 16)
  int min_tokens = 0;       // [0, max_tokens]: EOS and stop_token_ids are masked until reached
  bool ignore_eos = false;  // EOS is an ordinary token: it neither stops nor is masked
  std::vector<std::string> stop;        // at most 4 non-empty strings of ≤ 1024 bytes
  std::vector<int32_t> stop_token_ids;  // ids in the vocabulary; stop like EOS (even if ignore_eos)

  // ---- output ----
  bool logprobs = false;  // return each sampled token's log-probability
  int top_logprobs = 0;   // [0, 20], and > 0 only with logprobs: the most likely alternatives
  int n = 1;              // [1, max_n] sequences per request
};

// OkStatus, or InvalidArgument naming the first offending field and its value, e.g.
// "top_p must be in (0, 1], got 0". NaN or infinity in any float field is refused.
// vocab_size bounds logit_bias and stop_token_ids; max_n is the server's limit on n.
Status validate(const SamplingParams& params, int vocab_size, int max_n);

}  // namespace moeserve
