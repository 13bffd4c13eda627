// MoE routing (Backend::moe_gate): per token, score the router logits (softmax or sigmoid),
// add the selection-only correction bias, keep the best groups (DeepSeek-V2: by the group's
// best score; V3 noaux_tc: by the sum of its two best biased scores), take the top k of the
// kept experts (ties to the lower id), renormalise, scale, and remap ids for expert
// parallelism. The results equal the CPU backend's: the same float and double operations in
// the same order, except for one double sum (see moe_gate.cu).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace moeserve::kernels {

inline constexpr int kMaxGateExperts = 512;  // experts per token (V3: 256, V2: 160, V2-Lite: 64)
inline constexpr int kMaxGateTopK = 32;      // experts chosen per token
inline constexpr int kMaxGateGroups = 32;

enum class GateGroupRule : uint8_t {
  kNone,     // plain top-k over all experts
  kMax,      // groups ranked by their best biased score (V2 group_limited_greedy)
  kTop2Sum,  // groups ranked by the sum of their two best biased scores (V3 noaux_tc)
};

struct MoeGateParams {
  const float* logits;         // [n_tokens, n_experts] router logits
  int64_t logits_row_stride;   // elements between consecutive rows of logits
  const float* bias;           // [n_experts] correction bias for the choice only, or nullptr
  int32_t* topk_ids;           // [n_tokens, top_k] chosen experts (after the EP remap)
  int64_t ids_row_stride;      // elements between consecutive rows of topk_ids
  float* topk_weights;         // [n_tokens, top_k] their weights
  int64_t weights_row_stride;  // elements between consecutive rows of topk_weights
  int64_t n_tokens;            // rows
  int n_experts;               // ≤ kMaxGateExperts
  int top_k;                   // ≤ min(kMaxGateTopK, n_experts)
  bool sigmoid;                // scores: sigmoid(logit), else softmax over the row
  GateGroupRule group_rule;    // kNone ignores n_group and topk_group
  int n_group;                 // ≤ kMaxGateGroups, divides n_experts (≥ 2 experts per group for
                               // kTop2Sum)
  int topk_group;              // groups kept, in [1, n_group]
  bool renormalize;            // weights divided by their sum (norm_topk_prob with top_k > 1)
  float routed_scaling_factor;  // weights multiplied by this, after renormalising
  int local_begin;              // expert parallelism: ids become id - local_begin when in
  int local_count;              // [0, local_count), else -1; local_count < 0: no remap
};
cudaError_t launch_moe_gate(const MoeGateParams& params, cudaStream_t stream);

}  // namespace moeserve::kernels
