// Token sampling as a backend op (Backend::sample): for each row of logits,
// logits shaping (logit_bias, repetition / frequency / presence penalties, a
// mask), then temperature, top_k, top_p and min_p, then a seeded draw, and the
// log-probabilities the request asked for. Only token ids and log-probs come
// back, never the [n, vocab] logits.
//
// The draw is counter-based (Philox, common/philox.h): row r takes draw
// `counter` of stream `seed`, so every backend draws the same numbers for the
// same request, with no generator state to carry between steps.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "common/status.h"

namespace moeserve {

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct SampledToken {
  int32_t token = 0;
  // log_softmax(raw logits)[token]: the model's own distribution, before bias, penalties,
  // temperature and filtering. This is vLLM's default (logprobs_mode "raw_logprobs"); OpenAI
  // instead reports the distribution it sampled from. Always filled (it costs one pass).
  float logprob = 0.0f;
  // The n_top_logprobs most likely tokens of the same raw distribution, most likely first,
  // ties by lower id.
  std::vector<TokenLogprob> top_logprobs;
};

// A token of the prompt or the output, which the penalties see: the repetition penalty
// applies to every entry, frequency and presence to those generated (n_output > 0).
struct PenaltyEntry {
  int32_t token = 0;
  int32_t n_output = 0;  // times generated
};

// One row's parameters. The spans are read during the call only.
struct SamplingRow {
  int64_t logits_row = 0;    // which row of the logits this samples
  float temperature = 0.0f;  // ≤ kGreedyTemperature (sampling_params.h): argmax
  int top_k = 0;             // 0: no cut
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;  // prompt and output tokens
  float frequency_penalty = 0.0f;   // output tokens, per occurrence
  float presence_penalty = 0.0f;    // output tokens, once
  uint64_t seed = 0;                // the row's random stream
  uint64_t counter = 0;             // which draw of the stream (tokens generated so far)
  int n_top_logprobs = 0;
  std::span<const std::pair<int32_t, float>> logit_bias = {};  // added first
  std::span<const PenaltyEntry> penalties = {};
  std::span<const int32_t> masked = {};  // set to −inf last (min_tokens: the stop ids)
};

// One row on the host: `raw` is the model's row, `scratch` a buffer the
// shaped copy goes in. Errors fail this row only: Internal if a raw logit is
// not finite (the model's fault); InvalidArgument if a token id is outside the
// row, shaping produces NaN or +inf, or every token is masked.
StatusOr<SampledToken> sample_row(std::span<const float> raw, const SamplingRow& row,
                                  std::vector<float>& scratch);

// The two halves of sample_row. shape_logits applies the row's bias,
// penalties and mask in place (checking every id first, so an error leaves
// the logits unchanged); sample_shaped draws from already shaped logits,
// taking the log-probs from `raw`.
Status shape_logits(const SamplingRow& row, std::span<float> logits);
StatusOr<SampledToken> sample_shaped(std::span<const float> raw, std::span<const float> shaped,
                                     const SamplingRow& row);

// For backends that shape elsewhere (the CUDA backend): whether the row changes its logits
// at all (a bias, active penalties with entries, or a mask), and the id check shape_logits
// makes first.
bool shapes_logits(const SamplingRow& row);
Status check_token_ids(const SamplingRow& row, int64_t n_vocab);

// Index of the largest logit (lowest index on ties).
int32_t argmax(std::span<const float> logits);

// log_softmax(logits)[id], computed in double.
float logprob_of(std::span<const float> logits, int32_t id);

// The ids.size() largest values of log_softmax(logits) (sums in double), most
// likely first, ties to the lower id.
void log_softmax_topk_row(std::span<const float> logits, std::span<int32_t> ids,
                          std::span<float> logprobs);

}  // namespace moeserve
