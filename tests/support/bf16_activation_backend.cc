#include "tests/support/bf16_activation_backend.h"

#include <cstdint>

#include "common/dtype.h"

namespace moeserve {
namespace {

// Calls f(i, offset) for every element of t in row-major order: i counts
// elements, offset is in elements from t's first one, following its strides.
template <typename F>
void for_each_element(const Tensor& t, F f) {
  const int nd = t.ndim();
  std::vector<int64_t> index(static_cast<size_t>(nd), 0);
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t offset = 0;
    for (int d = 0; d < nd; ++d) offset += index[static_cast<size_t>(d)] * t.stride(d);
    f(i, offset);
    for (int d = nd - 1; d >= 0; --d) {
      if (++index[static_cast<size_t>(d)] < t.dim(d)) break;
      index[static_cast<size_t>(d)] = 0;
    }
  }
}

}  // namespace

Bf16ActivationBackend::Bf16ActivationBackend(Backend& inner) : inner_(inner) {
  MS_CHECK(inner.device() == Device::kCpu, "Bf16ActivationBackend wraps a host backend");
}

Tensor Bf16ActivationBackend::widen(const Tensor& t, const char* what, bool f32_ok) {
  MS_CHECK(t.dtype() == DType::kF32 || t.dtype() == DType::kBF16, what, " is ", t.describe(),
           ": activations are F32 or BF16");
  if (t.dtype() == DType::kF32 && !f32_ok) f32_activations_.emplace_back(what);
  Tensor out = Tensor::empty_host(DType::kF32, t.shape());
  float* dst = out.data<float>();
  if (t.dtype() == DType::kF32) {
    const float* src = t.data<float>();
    for_each_element(t, [&](int64_t i, int64_t off) { dst[i] = src[off]; });
  } else {
    const uint16_t* src = t.data<uint16_t>();
    for_each_element(t, [&](int64_t i, int64_t off) { dst[i] = bf16_to_f32(src[off]); });
  }
  return out;
}

void Bf16ActivationBackend::narrow(const Tensor& f32, const Tensor& t) {
  const float* src = f32.data<float>();
  if (t.dtype() == DType::kF32) {
    float* dst = t.data<float>();
    for_each_element(t, [&](int64_t i, int64_t off) { dst[off] = src[i]; });
  } else {
    uint16_t* dst = t.data<uint16_t>();
    for_each_element(t, [&](int64_t i, int64_t off) { dst[off] = f32_to_bf16(src[i]); });
  }
}

void Bf16ActivationBackend::gather_rows(const Tensor& src, const Tensor& indices,
                                        const Tensor& out) {
  // src is a weight table or an activation: the inner op reads either dtype.
  const Tensor o = widen(out, "gather_rows out");
  inner_.gather_rows(src, indices, o);
  narrow(o, out);
}

void Bf16ActivationBackend::rms_norm(const Tensor& x, const Tensor& w, float eps,
                                     const Tensor& out) {
  const Tensor xf = widen(x, "rms_norm x"), of = widen(out, "rms_norm out");
  inner_.rms_norm(xf, w, eps, of);
  narrow(of, out);
}

void Bf16ActivationBackend::add(const Tensor& a, const Tensor& b, const Tensor& out) {
  const Tensor af = widen(a, "add a"), bf = widen(b, "add b"), of = widen(out, "add out");
  inner_.add(af, bf, of);
  narrow(of, out);
}

void Bf16ActivationBackend::linear(const Tensor& x, const Tensor& w, const Tensor& out) {
  const Tensor xf = widen(x, "linear x"), of = widen(out, "linear out", /*f32_ok=*/true);
  inner_.linear(xf, w, of);
  narrow(of, out);
}

void Bf16ActivationBackend::head_linear(const Tensor& x, const Tensor& w, const Tensor& out) {
  const Tensor xf = widen(x, "head_linear x"), of = widen(out, "head_linear out");
  inner_.head_linear(xf, w, of);
  narrow(of, out);
}

void Bf16ActivationBackend::silu_mul(const Tensor& gate_up, const Tensor& out) {
  const Tensor gf = widen(gate_up, "silu_mul gate_up"), of = widen(out, "silu_mul out");
  inner_.silu_mul(gf, of);
  narrow(of, out);
}

void Bf16ActivationBackend::rope(const Tensor& x, const Tensor& positions, const Tensor& cos_sin) {
  const Tensor xf = widen(x, "rope x");
  inner_.rope(xf, positions, cos_sin);
  narrow(xf, x);
}

void Bf16ActivationBackend::kv_cache_write(const Tensor& kv, const Tensor& slots,
                                           const Tensor& cache) {
  inner_.kv_cache_write(widen(kv, "kv_cache_write kv"), slots, cache);
}

void Bf16ActivationBackend::mla_attention(const Tensor& q_latent, const Tensor& q_rope,
                                          const Tensor& cache, const AttentionBatch& batch,
                                          float scale, const Tensor& out) {
  const Tensor of = widen(out, "mla_attention out");
  inner_.mla_attention(widen(q_latent, "mla_attention q_latent"),
                       widen(q_rope, "mla_attention q_rope"), cache, batch, scale, of);
  narrow(of, out);
}

void Bf16ActivationBackend::moe_ffn(const Tensor& x, const Tensor& ids, const Tensor& weights,
                                    const Tensor& gate_up, const Tensor& down, const Tensor& out) {
  const Tensor of = widen(out, "moe_ffn out");
  inner_.moe_ffn(widen(x, "moe_ffn x"), ids, weights, gate_up, down, of);
  narrow(of, out);
}

}  // namespace moeserve
