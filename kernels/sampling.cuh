// Token sampling on the device (Backend::sample): per row, the shaping of the logits (bias,
// penalties, mask), the checks, greedy argmax or temperature / top_k / top_p / min_p and the
// inverse-CDF draw, and the sampled token's raw log-probability. The CPU sampler
// (src/backend/sampling.cc) and this kernel compute weights, masses and thresholds with
// kernels/sampling_math.h, so the same row and draw give the same token on both.
//
// The host packs every row's parameters and sparse lists into one buffer (one upload);
// one CTA samples one row; only SampleResult comes back (the top log-probs are
// log_softmax_topk's).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace moeserve::kernels {

struct SampleBias {
  int32_t token;
  float bias;
};

struct SamplePenalty {
  int32_t token;
  int32_t n_output;  // times generated (frequency and presence apply when > 0)
};

// One row, as the host packed it. Index ranges point into SampleParams' lists.
struct SampleRowDesc {
  int64_t logits_row;        // row of SampleParams::logits
  int64_t shaped_row;        // row of SampleParams::shaped to shape into; -1: no shaping
  double u;                  // the row's Philox draw in [0, 1)
  float temperature;         // ≤ SampleParams::greedy_temperature: argmax
  int top_k;                 // 0: no cut
  float top_p;               // 1: no cut
  float min_p;               // 0: no cut
  float repetition_penalty;  // 1: off
  float frequency_penalty;
  float presence_penalty;
  int32_t bias_begin, n_bias;
  int32_t penalty_begin, n_penalty;
  int32_t mask_begin, n_mask;
  // Whether the stage's tokens are distinct, so its entries may be applied in parallel; else
  // one thread applies them in order, as the CPU does.
  bool bias_distinct;
  bool penalty_distinct;
};

enum class SampleStatus : int32_t {
  kOk = 0,
  kNonFiniteRaw = 1,  // raw logit bad_value at bad_index is NaN or ±inf
  kBadShaped = 2,     // shaping made bad_value (NaN or +inf) at bad_index
  kAllMasked = 3,     // every shaped logit is -inf
};

struct SampleResult {
  int32_t token;
  float logprob;  // log_softmax(raw row)[token]
  SampleStatus status;
  int32_t bad_index;
  float bad_value;
};

struct SampleParams {
  const float* logits;        // [n_logits_rows, vocab] raw logits
  int64_t logits_row_stride;  // elements between consecutive rows of logits
  int vocab;                  // row width
  float* shaped;              // [n_shaped_rows, shaped_row_stride] workspace
  int64_t shaped_row_stride;  // ≥ vocab, a multiple of 4
  const SampleRowDesc* rows;  // [n_rows]
  int64_t n_rows;             // rows to sample (one CTA each)
  const SampleBias* bias;     // every row's bias entries, in the CPU's order
  const SamplePenalty* penalties;
  const int32_t* masks;
  float greedy_temperature;  // kGreedyTemperature
  SampleResult* results;     // [n_rows]
};

cudaError_t launch_sample(const SampleParams& params, cudaStream_t stream);

}  // namespace moeserve::kernels
