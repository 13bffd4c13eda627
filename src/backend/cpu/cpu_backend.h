// The CPU backend: plain, multi-threaded reference implementations of every op.
#pragma once

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

 private:
  ThreadPool pool_;
};

}  // namespace moeserve
