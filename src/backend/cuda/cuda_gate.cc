// CudaBackend::moe_gate: argument checks, then one launch of kernels/moe_gate.cu.
#include "backend/cuda/cuda_internal.h"
#include "kernels/moe_gate.cuh"

namespace moeserve {

using namespace cuda_detail;

void CudaBackend::moe_gate(const Tensor& logits, const Tensor& bias, const GateParams& params,
                           const Tensor& topk_ids, const Tensor& topk_weights) {
  const Rows l = rows_of(logits, "moe_gate", "logits");
  const Rows ids = rows_of(topk_ids, "moe_gate", "topk_ids");
  const Rows w = rows_of(topk_weights, "moe_gate", "topk_weights");
  check_dtype(logits, DType::kF32, "moe_gate", "logits");
  check_dtype(topk_ids, DType::kI32, "moe_gate", "topk_ids");
  check_dtype(topk_weights, DType::kF32, "moe_gate", "topk_weights");
  const int64_t n_experts = l.width;
  const int k = params.top_k;
  MS_CHECK(logits.ndim() == 2 && ids.n_rows == l.n_rows && w.n_rows == l.n_rows && ids.width == k &&
               w.width == k,
           "CudaBackend::moe_gate: logits ", logits.describe(), ", topk_ids ", topk_ids.describe(),
           ", topk_weights ", topk_weights.describe(), " for top_k ", k);
  MS_CHECK(n_experts <= kernels::kMaxGateExperts && k >= 1 && k <= kernels::kMaxGateTopK &&
               k <= n_experts,
           "CudaBackend::moe_gate: top_k ", k, " of ", n_experts, " experts (at most ",
           kernels::kMaxGateTopK, " of ", kernels::kMaxGateExperts, ")");
  const bool grouped = params.n_group > 1 && params.method != TopkMethod::kGreedy;
  if (grouped) {
    MS_CHECK(params.n_group <= kernels::kMaxGateGroups && n_experts % params.n_group == 0 &&
                 params.topk_group >= 1 && params.topk_group <= params.n_group,
             "CudaBackend::moe_gate: ", params.n_group, " groups of ", n_experts,
             " experts keeping ", params.topk_group, " (at most ", kernels::kMaxGateGroups,
             " groups, dividing the experts)");
    MS_CHECK(params.method != TopkMethod::kNoauxTc || n_experts / params.n_group >= 2,
             "CudaBackend::moe_gate: noaux_tc needs at least 2 experts per group");
  }
  if (bias.defined()) {
    check_dtype(bias, DType::kF32, "moe_gate", "bias");
    MS_CHECK(bias.device() == Device::kCuda && bias.ndim() == 1 && bias.is_contiguous() &&
                 bias.dim(0) == n_experts,
             "CudaBackend::moe_gate: bias ", bias.describe(), " for logits ", logits.describe());
  }
  kernels::MoeGateParams p{};
  p.logits = logits.data<float>();
  p.logits_row_stride = l.row_stride;
  p.bias = bias.defined() ? bias.data<float>() : nullptr;
  p.topk_ids = topk_ids.data<int32_t>();
  p.ids_row_stride = ids.row_stride;
  p.topk_weights = topk_weights.data<float>();
  p.weights_row_stride = w.row_stride;
  p.n_tokens = l.n_rows;
  p.n_experts = static_cast<int>(n_experts);
  p.top_k = k;
  p.sigmoid = params.scoring == ScoringFunc::kSigmoid;
  p.group_rule = !grouped                                ? kernels::GateGroupRule::kNone
                 : params.method == TopkMethod::kNoauxTc ? kernels::GateGroupRule::kTop2Sum
                                                         : kernels::GateGroupRule::kMax;
  p.n_group = grouped ? params.n_group : 1;
  p.topk_group = grouped ? params.topk_group : 1;
  p.renormalize = params.norm_topk_prob && k > 1;
  p.routed_scaling_factor = params.routed_scaling_factor;
  p.local_begin = params.local_begin;
  p.local_count = params.local_count;
  MS_CUDA_CHECK(cudaSetDevice(device_));
  MS_CUDA_CHECK(kernels::launch_moe_gate(p, stream_->get()));
}

}  // namespace moeserve
