// The CPU backend: plain, multi-threaded reference implementations of every op.
#pragma once

#include <vector>

#include "backend/backend.h"
#include "common/thread_pool.h"

namespace moeserve {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int n_threads = 0);

  std::string name() const override { return "cpu"; }
  Device device() const override { return Device::kCpu; }
  int n_threads() const { return pool_.n_threads(); }

  Tensor alloc(DType dtype, std::vector<int64_t> shape) override;
  void copy(const Tensor& src, const Tensor& dst) override;
  void synchronize() override {}
  Tensor prepare_weight(const Tensor& host) override { return host; }

  void gather_rows(const Tensor& src, const Tensor& indices, const Tensor& out) override;
  void rms_norm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out) override;
  void add(const Tensor& a, const Tensor& b, const Tensor& out) override;
  void linear(const Tensor& x, const Tensor& w, const Tensor& out) override;
  void head_linear(const Tensor& x, const Tensor& w, const Tensor& out) override;
  void silu_mul(const Tensor& gate_up, const Tensor& out) override;
  void rope(const Tensor& x, const Tensor& positions, const Tensor& cos_sin) override;
  void kv_cache_write(const Tensor& kv, const Tensor& slot_mapping, const Tensor& cache) override;
  void mla_attention(const Tensor& q_latent, const Tensor& q_rope, const Tensor& cache,
                     const AttentionBatch& batch, float scale, const Tensor& out) override;
  void moe_gate(const Tensor& logits, const Tensor& bias, const GateParams& params,
                const Tensor& topk_ids, const Tensor& topk_weights) override;
  void moe_ffn(const Tensor& x, const Tensor& topk_ids, const Tensor& topk_weights,
               const Tensor& w_gate_up, const Tensor& w_down, const Tensor& out) override;

  // Fused here: one pass over each row.
  void add_rms_norm(const Tensor& residual, const Tensor& x, const Tensor& weight, float eps,
                    const Tensor& out) override;
  void rope_kv_write(const Tensor& kv, int64_t rope_begin, const Tensor& positions,
                     const Tensor& cos_sin, const Tensor& slot_mapping,
                     const Tensor& cache) override;
  void log_softmax_topk(const Tensor& logits, const Tensor& ids, const Tensor& logprobs) override {
    host_log_softmax_topk(logits, ids, logprobs);
  }
  // In place on the logits (no copy), rows in parallel.
  std::vector<StatusOr<SampledToken>> sample(const Tensor& logits,
                                             std::span<const SamplingRow> rows) override;

 private:
  // A norm weight as F32: the tensor itself, or widened into norm_weight_.
  const float* norm_weight(const Tensor& weight);

  ThreadPool pool_;
  std::vector<float> norm_weight_;
};

}  // namespace moeserve
