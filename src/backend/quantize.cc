#include "backend/quantize.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_gemm.h"
#include "common/status.h"

namespace moeserve {
namespace {

constexpr float kMinAbsMax = 1e-30f;

// One [m, k] matrix: rows decoded to F32, quantized into q (row stride k) and s.
void quantize_matrix(const Tensor& w, int8_t* q, float* s) {
  const cpu::WeightView view = cpu::WeightView::of(w);
  const int64_t m = w.dim(0), k = w.dim(1);
  std::vector<float> row(static_cast<size_t>(k));
  for (int64_t j = 0; j < m; ++j) {
    cpu::decode_row(view, j, k, row.data());
    float amax = 0.0f;
    for (float v : row) amax = std::max(amax, std::fabs(v));
    int8_t* qj = q + j * k;
    if (!(amax >= kMinAbsMax)) {
      std::fill(qj, qj + k, int8_t{0});
      s[j] = 0.0f;
      continue;
    }
    const float inv = 127.0f / amax;
    for (int64_t i = 0; i < k; ++i) {
      const float r = std::nearbyint(row[static_cast<size_t>(i)] * inv);
      qj[i] = static_cast<int8_t>(std::clamp(r, -127.0f, 127.0f));
    }
    s[j] = amax / 127.0f;
  }
}

}  // namespace

Tensor quantize_int8(const Tensor& host) {
  MS_CHECK(host.device() == Device::kCpu, "quantize_int8 needs a host tensor");
  MS_CHECK(host.ndim() == 2 || host.ndim() == 3, "quantize_int8 of ", host.describe(),
           ": expected [m, k] or [E, m, k]");
  const DType dt = host.dtype();
  MS_CHECK(dt == DType::kF32 || dt == DType::kBF16 || dt == DType::kF16 || dt == DType::kFP8E4M3,
           "quantize_int8 of ", host.describe(), ": expected a float dtype");
  const int64_t n_mats = host.ndim() == 3 ? host.dim(0) : 1;
  const int64_t m = host.dim(-2), k = host.dim(-1);
  Tensor q = Tensor::empty_host(DType::kI8, host.shape());
  std::vector<int64_t> s_shape = host.shape();
  s_shape.back() = 1;
  Tensor s = Tensor::empty_host(DType::kF32, s_shape);
  for (int64_t e = 0; e < n_mats; ++e) {
    const Tensor w = host.ndim() == 3 ? host.select(0, e) : host;
    quantize_matrix(w, q.data<int8_t>() + e * m * k, s.data<float>() + e * m);
  }
  q.set_block_scales(s, 1, k);
  return q;
}

Tensor dequantize_int8(const Tensor& q) {
  MS_CHECK(q.dtype() == DType::kI8 && q.block_scales() != nullptr && q.block_rows() == 1 &&
               q.block_scales()->dim(-1) == 1,
           "dequantize_int8 of ", q.describe(), ": expected I8 with per-row scales");
  const std::vector<float> v = to_f32_vector(q);
  Tensor out = Tensor::empty_host(DType::kF32, q.shape());
  std::copy(v.begin(), v.end(), out.data<float>());
  return out;
}

}  // namespace moeserve
