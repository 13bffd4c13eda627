// Each sequence's sampling parameters, and one step's sampling as one backend call.
//
// The sampling itself (shaping, temperature, top_k, top_p, min_p, the seeded draw, log-probs)
// is Backend::sample (backend/sampling.h): a Sampler only holds a sequence's parameters and
// seed and turns them into a SamplingRow; its LogitsProcessor adds the shaping. sample_rows
// builds the rows of a step and samples them in one call, so only token ids and log-probs
// leave the backend.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "engine/logits_processor.h"
#include "moeserve/sampling_params.h"
#include "moeserve/status.h"

namespace moeserve {

// One per sequence.
class Sampler {
 public:
  // sequence_index: which of the request's n sequences this is; it offsets the seed.
  explicit Sampler(const SamplingParams& params, int sequence_index = 0);

  // The parameters of this sequence's draw number `counter` (the tokens it generated so far):
  // a row with no shaping (LogitsProcessor::fill adds it) of logits row 0.
  SamplingRow row(uint64_t counter) const;

  // One row on the host, for tests and tools: raw_logits is the model's row, processed_logits
  // the same row after LogitsProcessor::apply; each call takes the next draw of the stream.
  // Errors as sample_row's (backend/sampling.h).
  StatusOr<SampledToken> sample(std::span<const float> raw_logits,
                                std::span<const float> processed_logits);
  StatusOr<SampledToken> sample(std::span<const float> logits) { return sample(logits, logits); }

  uint64_t seed() const { return seed_; }  // the effective seed (drawn when params had none)

 private:
  float temperature_;
  int top_k_;
  float top_p_;
  float min_p_;
  int n_top_logprobs_;  // 0 unless params.logprobs
  uint64_t seed_;
  uint64_t next_draw_ = 0;  // sample()'s counter
};

// One row of a step's logits to sample, with its sequence's state.
struct RowToSample {
  int64_t row = 0;  // in the step's logits
  const LogitsProcessor* processor = nullptr;
  const TokenCounts* counts = nullptr;
  const Sampler* sampler = nullptr;
};

// Samples every row of one step on `backend`: `logits` [n_rows, vocab] F32 on that backend.
// One result per entry of `rows`, in order; an error fails that row only. The draw of each
// row is its sequence's tokens generated so far (counts->n_output).
std::vector<StatusOr<SampledToken>> sample_rows(Backend& backend, const Tensor& logits,
                                                std::span<const RowToSample> rows);

}  // namespace moeserve
