// The k most likely tokens of each row of logits and their log-probabilities
// (Backend::log_softmax_topk, and the top log-probs of Backend::sample): per row one online
// pass for the maximum and the sum of exponentials, per-thread candidate lists, then merges.
// Ties go to the lower id. Only [n, k] ids and log-probs are written.
//
// A short batch would leave most SMs idle with one CTA per row, so rows are split into
// chunks whose partial results (max, sum, k candidates) a second kernel merges; the host
// sizes the workspace with log_softmax_topk_workspace_bytes.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace moeserve::kernels {

inline constexpr int kMaxLogprobTopK = 20;  // OpenAI's top_logprobs limit

struct LogSoftmaxTopkParams {
  const float* logits;          // [n_logits_rows, vocab] F32
  int64_t logits_row_stride;    // elements between consecutive rows of logits
  const int32_t* rows;          // [n_rows] the logits row of each output row; nullptr: row i
  int64_t n_rows;               // output rows
  int vocab;                    // row width, ≥ k
  int k;                        // candidates per row, 1..kMaxLogprobTopK
  int32_t* ids;                 // [n_rows, k] token ids, most likely first
  int64_t ids_row_stride;       // elements between consecutive rows of ids
  float* logprobs;              // [n_rows, k] log_softmax of those tokens
  int64_t logprobs_row_stride;  // elements between consecutive rows of logprobs
  int n_sms;                    // SMs to fill: decides how many chunks a row is split into
  void* workspace;              // log_softmax_topk_workspace_bytes(n_rows, vocab, k, n_sms)
};

// Chunks per row (1: no split, no workspace) and the workspace the split needs.
int log_softmax_topk_splits(int64_t n_rows, int vocab, int n_sms);
size_t log_softmax_topk_workspace_bytes(int64_t n_rows, int vocab, int k, int n_sms);

cudaError_t launch_log_softmax_topk(const LogSoftmaxTopkParams& params, cudaStream_t stream);

}  // namespace moeserve::kernels
