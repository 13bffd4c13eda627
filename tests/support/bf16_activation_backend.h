// A host Backend with BF16 activations, for tests of the activation-dtype
// plumbing while the CPU backend stays the F32 reference: every op widens its
// BF16 activation arguments to F32, runs the inner (CPU) op and rounds its
// activation outputs back to BF16, once per op, as a BF16 device backend
// rounds on store. The fused ops run as the base class's compositions.
//
// It also counts the activation arguments that arrive in F32 where the model
// should have passed BF16 (every one except linear outputs, which are F32 for
// router and LM-head logits), so a test can assert that a model runs BF16
// activations end to end.
#pragma once

#include <string>
#include <vector>

#include "backend/backend.h"

namespace moeserve {

class Bf16ActivationBackend final : public Backend {
 public:
  explicit Bf16ActivationBackend(Backend& inner);

  std::string name() const override { return inner_.name() + "+bf16-activations"; }
  Device device() const override { return inner_.device(); }
  bool supports(Op op, DType dtype) const override { return inner_.supports(op, dtype); }
  bool supports_activation_dtype(DType dtype) const override {
    return dtype == DType::kF32 || dtype == DType::kBF16;
  }
  DType default_activation_dtype() const override { return DType::kBF16; }
  // "op argument" of each activation that arrived as F32 where BF16 was expected.
  const std::vector<std::string>& f32_activations() const { return f32_activations_; }

  Tensor alloc(DType dtype, std::vector<int64_t> shape) override {
    return inner_.alloc(dtype, std::move(shape));
  }
  void copy(const Tensor& src, const Tensor& dst) override { inner_.copy(src, dst); }
  void synchronize() override { inner_.synchronize(); }
  Tensor prepare_weight(const Tensor& host) override { return inner_.prepare_weight(host); }

  void gather_rows(const Tensor& src, const Tensor& indices, const Tensor& out) override;
  void rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& out) override;
  void add(const Tensor& a, const Tensor& b, const Tensor& out) override;
  void linear(const Tensor& x, const Tensor& w, const Tensor& out) override;
  void head_linear(const Tensor& x, const Tensor& w, const Tensor& out) override;
  void silu_mul(const Tensor& gate_up, const Tensor& out) override;
  void rope(const Tensor& x, const Tensor& positions, const Tensor& cos_sin) override;
  void kv_cache_write(const Tensor& kv, const Tensor& slots, const Tensor& cache) override;
  void mla_attention(const Tensor& q_latent, const Tensor& q_rope, const Tensor& cache,
                     const AttentionBatch& batch, float scale, const Tensor& out) override;
  void moe_gate(const Tensor& logits, const Tensor& bias, const GateParams& params,
                const Tensor& ids, const Tensor& weights) override {
    inner_.moe_gate(logits, bias, params, ids, weights);
  }
  void moe_ffn(const Tensor& x, const Tensor& ids, const Tensor& weights, const Tensor& gate_up,
               const Tensor& down, const Tensor& out) override;

 private:
  // An F32 copy of activation `t` (BF16 or F32, any strides) for the inner op;
  // records `what` when `t` is F32 and `f32_ok` is false.
  Tensor widen(const Tensor& t, const char* what, bool f32_ok = false);
  // Writes `f32` back into activation `t`, rounding to t's dtype.
  static void narrow(const Tensor& f32, const Tensor& t);

  Backend& inner_;
  std::vector<std::string> f32_activations_;
};

}  // namespace moeserve
