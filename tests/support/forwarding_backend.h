// A Backend that forwards every basic op to another backend, for tests:
//  - ComposingBackend leaves the fused ops to the Backend base class, so they
//    run as their default compositions of the inner backend's basic ops;
//  - CountingBackend forwards the fused ops too and counts alloc() calls.
#pragma once

#include <atomic>
#include <string>

#include "backend/backend.h"

namespace moeserve {

class ComposingBackend : public Backend {
 public:
  explicit ComposingBackend(Backend& inner) : inner_(inner) {}

  std::string name() const override { return inner_.name() + "+composed"; }
  Device device() const override { return inner_.device(); }
  bool supports(Op op, DType dtype) const override { return inner_.supports(op, dtype); }
  bool supports_activation_dtype(DType dtype) const override {
    return inner_.supports_activation_dtype(dtype);
  }
  DType default_activation_dtype() const override { return inner_.default_activation_dtype(); }
  Tensor alloc(DType dtype, std::vector<int64_t> shape) override {
    return inner_.alloc(dtype, std::move(shape));
  }
  void copy(const Tensor& src, const Tensor& dst) override { inner_.copy(src, dst); }
  void synchronize() override { inner_.synchronize(); }
  Tensor prepare_weight(const Tensor& host) override { return inner_.prepare_weight(host); }
  void gather_rows(const Tensor& src, const Tensor& indices, const Tensor& out) override {
    inner_.gather_rows(src, indices, out);
  }
  void rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& out) override {
    inner_.rms_norm(x, w, eps, out);
  }
  void add(const Tensor& a, const Tensor& b, const Tensor& out) override { inner_.add(a, b, out); }
  void linear(const Tensor& x, const Tensor& w, const Tensor& out) override {
    inner_.linear(x, w, out);
  }
  void head_linear(const Tensor& x, const Tensor& w, const Tensor& out) override {
    inner_.head_linear(x, w, out);
  }
  void silu_mul(const Tensor& gate_up, const Tensor& out) override {
    inner_.silu_mul(gate_up, out);
  }
  void rope(const Tensor& x, const Tensor& positions, const Tensor& cos_sin) override {
    inner_.rope(x, positions, cos_sin);
  }
  void kv_cache_write(const Tensor& kv, const Tensor& slots, const Tensor& cache) override {
    inner_.kv_cache_write(kv, slots, cache);
  }
  void mla_attention(const Tensor& q_latent, const Tensor& q_rope, const Tensor& cache,
                     const AttentionBatch& batch, float scale, const Tensor& out) override {
    inner_.mla_attention(q_latent, q_rope, cache, batch, scale, out);
  }
  void moe_gate(const Tensor& logits, const Tensor& bias, const GateParams& params,
                const Tensor& ids, const Tensor& weights) override {
    inner_.moe_gate(logits, bias, params, ids, weights);
  }
  void moe_ffn(const Tensor& x, const Tensor& ids, const Tensor& weights, const Tensor& gate_up,
               const Tensor& down, const Tensor& out) override {
    inner_.moe_ffn(x, ids, weights, gate_up, down, out);
  }

 protected:
  Backend& inner_;
};

class CountingBackend final : public ComposingBackend {
 public:
  using ComposingBackend::ComposingBackend;

  std::string name() const override { return inner_.name(); }
  int64_t n_allocs() const { return n_allocs_; }
  Tensor alloc(DType dtype, std::vector<int64_t> shape) override {
    ++n_allocs_;
    return inner_.alloc(dtype, std::move(shape));
  }
  Tensor prepare_weight(const Tensor& host) override {
    ++n_allocs_;
    return inner_.prepare_weight(host);
  }
  void add_rms_norm(const Tensor& residual, const Tensor& x, const Tensor& w, float eps,
                    const Tensor& out) override {
    inner_.add_rms_norm(residual, x, w, eps, out);
  }
  void rope_kv_write(const Tensor& kv, int64_t rope_begin, const Tensor& positions,
                     const Tensor& cos_sin, const Tensor& slots, const Tensor& cache) override {
    inner_.rope_kv_write(kv, rope_begin, positions, cos_sin, slots, cache);
  }
  void gate_up_silu(const Tensor& x, const Tensor& w, const Tensor& scratch,
                    const Tensor& out) override {
    inner_.gate_up_silu(x, w, scratch, out);
  }
  void log_softmax_topk(const Tensor& logits, const Tensor& ids, const Tensor& lp) override {
    inner_.log_softmax_topk(logits, ids, lp);
  }
  std::vector<StatusOr<SampledToken>> sample(const Tensor& logits,
                                             std::span<const SamplingRow> rows) override {
    return inner_.sample(logits, rows);
  }

 private:
  std::atomic<int64_t> n_allocs_{0};
};

}  // namespace moeserve
