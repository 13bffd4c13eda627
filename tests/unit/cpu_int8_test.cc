// INT8 W8A8 on the CPU: quantize_int8 / dequantize_int8 round trips from every
// float dtype; the per-token activation quantizer and every INT8 kernel this
// CPU runs (scalar always) bit-exact against a reference written here from
// the definition (std::nearbyint, INT64 sums); W8A8 against F32 within the
// bound its rounding implies; and the CPU backend's ops with INT8 weights
// against the same ops on the dequantized F32 weights.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_gemm_int8.h"
#include "backend/quantize.h"
#include "tests/support/backend_op_cases.h"
#include "tests/support/forwarding_backend.h"
#include "tests/unit/seeded_test.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

using cpu::Int8Kernel;

class CpuInt8Test : public test::SeededTest {
 protected:
  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng_); }
  Tensor f32(std::vector<int64_t> shape, float a = 1.0f) {
    Tensor t = Tensor::empty_host(DType::kF32, std::move(shape));
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = uniform(-a, a);
    return t;
  }
};

// The quantizer's definition: scale = max|v| / 127, q = rne(v · 127 / max|v|).
struct RefRow {
  std::vector<int8_t> q;
  float scale = 0;
};
RefRow ref_quantize(const float* v, int64_t k) {
  RefRow r;
  r.q.assign(static_cast<size_t>(k), 0);
  float amax = 0;
  for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(v[i]));
  if (amax == 0) return r;
  for (int64_t i = 0; i < k; ++i) {
    r.q[static_cast<size_t>(i)] = static_cast<int8_t>(std::nearbyint(v[i] * (127.0f / amax)));
  }
  r.scale = amax / 127.0f;
  return r;
}

std::vector<Int8Kernel> supported_kernels() {
  std::vector<Int8Kernel> ks;
  for (Int8Kernel k : {Int8Kernel::kScalar, Int8Kernel::kAvx2, Int8Kernel::kAvx512Vnni}) {
    if (cpu::int8_kernel_supported(k)) ks.push_back(k);
  }
  return ks;
}

TEST_F(CpuInt8Test, QuantizeRoundTripsEveryFloatDtype) {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16, DType::kFP8E4M3}) {
    SCOPED_TRACE(dtype_name(dt));
    const int64_t n_exp = 3, m = 37, k = 300;
    Tensor src = Tensor::empty_host(dt, {n_exp, m, k});
    const Tensor vals = f32({n_exp, m, k}, 2.0f);
    for (int64_t i = 0; i < src.numel(); ++i) {
      const float v = vals.data<float>()[i];
      if (dt == DType::kF32) src.data<float>()[i] = v;
      if (dt == DType::kBF16) src.data<uint16_t>()[i] = f32_to_bf16(v);
      if (dt == DType::kF16) src.data<uint16_t>()[i] = f32_to_f16(v);
      if (dt == DType::kFP8E4M3) src.data<uint8_t>()[i] = f32_to_fp8e4m3(v * 100.0f);
    }
    if (dt == DType::kFP8E4M3) {
      Tensor bs = Tensor::empty_host(DType::kF32, {n_exp, 1, 3});
      for (int64_t i = 0; i < bs.numel(); ++i) bs.data<float>()[i] = uniform(0.005f, 0.02f);
      src.set_block_scales(bs, 128, 128);
    }
    // One all-zero row: scale 0, values 0.
    if (dt == DType::kF32) std::fill(src.data<float>() + 5 * k, src.data<float>() + 6 * k, 0.0f);
    const std::vector<float> w = to_f32_vector(src);  // the values src stands for
    const Tensor q = quantize_int8(src);
    ASSERT_EQ(q.dtype(), DType::kI8);
    ASSERT_EQ(q.shape(), src.shape());
    ASSERT_NE(q.block_scales(), nullptr);
    EXPECT_EQ(q.block_scales()->shape(), (std::vector<int64_t>{n_exp, m, 1}));
    const Tensor deq = dequantize_int8(q);
    const float* s = q.block_scales()->data<float>();
    for (int64_t row = 0; row < n_exp * m; ++row) {
      const float* wr = w.data() + row * k;
      float amax = 0;
      for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(wr[i]));
      ASSERT_EQ(s[row], amax / 127.0f) << "row " << row;
      bool hit_max = false;
      for (int64_t i = 0; i < k; ++i) {
        const int8_t qi = q.data<int8_t>()[row * k + i];
        ASSERT_GE(qi, -127);
        hit_max |= qi == 127 || qi == -127;
        // Rounding to the nearest step: at most half a step off.
        ASSERT_LE(std::fabs(deq.data<float>()[row * k + i] - wr[i]), 0.5f * s[row] * 1.0001f)
            << "row " << row << " col " << i;
      }
      EXPECT_TRUE(hit_max || amax == 0) << "row " << row;
    }
    if (dt == DType::kF32) {
      EXPECT_EQ(s[5], 0.0f);
    }
    // Selecting an expert selects its scales.
    const Tensor q1 = q.select(0, 1);
    const std::vector<float> d1 = to_f32_vector(q1);
    EXPECT_TRUE(std::equal(d1.begin(), d1.end(), deq.data<float>() + m * k));
  }
}

TEST_F(CpuInt8Test, ActivationQuantizerMatchesDefinition) {
  for (int64_t k : {1, 7, 15, 16, 17, 33, 100, 2048}) {
    const Tensor x = f32({k}, uniform(0.01f, 50.0f));
    const RefRow ref = ref_quantize(x.data<float>(), k);
    for (Int8Kernel kernel : supported_kernels()) {
      SCOPED_TRACE(cpu::int8_kernel_name(kernel));
      std::vector<int8_t> q(static_cast<size_t>(k), 99);
      EXPECT_EQ(cpu::quantize_activation_row(x.data<float>(), k, q.data(), kernel), ref.scale);
      EXPECT_EQ(q, ref.q) << "k " << k;
    }
  }
  // Ties round to even: 0.5 / 127 of the max is exactly half a step.
  std::vector<float> x = {127.0f, 0.5f, 1.5f, -2.5f};
  for (Int8Kernel kernel : supported_kernels()) {
    std::vector<int8_t> q(4);
    cpu::quantize_activation_row(x.data(), 4, q.data(), kernel);
    EXPECT_EQ(q, (std::vector<int8_t>{127, 0, 2, -2})) << cpu::int8_kernel_name(kernel);
  }
}

// out[r, j] = float(Σ qx·qw) · (s_x · s_w) with INT64 sums.
std::vector<float> ref_w8a8(const Tensor& x, const Tensor& w) {
  const int64_t n = x.dim(0), k = x.dim(1), m = w.dim(0);
  std::vector<float> out(static_cast<size_t>(n * m));
  const float* sw = w.block_scales()->data<float>();
  for (int64_t r = 0; r < n; ++r) {
    const RefRow xq = ref_quantize(x.data<float>() + r * k, k);
    for (int64_t j = 0; j < m; ++j) {
      int64_t acc = 0;
      for (int64_t i = 0; i < k; ++i) {
        acc += int64_t{xq.q[static_cast<size_t>(i)]} * w.data<int8_t>()[j * k + i];
      }
      out[static_cast<size_t>(r * m + j)] = static_cast<float>(acc) * (xq.scale * sw[j]);
    }
  }
  return out;
}

TEST_F(CpuInt8Test, EveryKernelIsBitExact) {
  ThreadPool pool(3);
  int checked = 0;
  for (int64_t n : {1, 2, 3, 5, 8, 17, 64}) {
    for (int64_t m : {1, 5, 37, 130}) {
      for (int64_t k : {1, 31, 64, 100, 577, 2048}) {
        if (n * m * k > 4'000'000) continue;
        SCOPED_TRACE(testing::Message() << "n " << n << " m " << m << " k " << k);
        // Activations over a wide range of magnitudes, one row all zero.
        Tensor x = f32({n, k}, uniform(0.1f, 10.0f));
        if (n > 2) std::fill(x.data<float>() + k, x.data<float>() + 2 * k, 0.0f);
        const Tensor w = quantize_int8(f32({m, k}, uniform(0.01f, 1.0f)));
        const std::vector<float> ref = ref_w8a8(x, w);
        for (Int8Kernel kernel : supported_kernels()) {
          SCOPED_TRACE(cpu::int8_kernel_name(kernel));
          std::vector<float> out(static_cast<size_t>(n * m), -1.0f);
          cpu::gemm_xwt_int8(x.data<float>(), k, cpu::WeightView::of(w), out.data(), m, n, m, k,
                             pool, kernel);
          ASSERT_EQ(std::memcmp(out.data(), ref.data(), out.size() * sizeof(float)), 0);
          ++checked;
        }
      }
    }
  }
  EXPECT_GE(checked, 150);
}

// W8A8 against F32 x · wᵀ (double sums) on the unquantized weights. With
// x = x̂ + e_x, |e_x| ≤ s_x / 2 and w = ŵ + e_w, |e_w| ≤ s_w / 2:
//   |x·w − x̂·ŵ| ≤ s_x / 2 · Σ|w| + s_w / 2 · Σ(|x| + s_x / 2),
// plus 1e-5 · Σ|x·w| for F32 rounding. Typical error is far smaller: max |err|
// over the output stays below 2 % of max |ref| here.
TEST_F(CpuInt8Test, W8A8IsCloseToF32) {
  CpuBackend be(2);
  for (int64_t n : {1, 8, 64}) {
    const int64_t k = 2048, m = 384;
    SCOPED_TRACE(testing::Message() << "n " << n);
    const Tensor x = f32({n, k});
    const Tensor w = f32({m, k}, 0.05f);
    const Tensor wq = quantize_int8(w);
    Tensor out = Tensor::empty_host(DType::kF32, {n, m});
    be.linear(x, wq, out);
    const float* sw = wq.block_scales()->data<float>();
    double max_err = 0, max_ref = 0;
    for (int64_t r = 0; r < n; ++r) {
      const float* xr = x.data<float>() + r * k;
      const float sx = ref_quantize(xr, k).scale;
      for (int64_t j = 0; j < m; ++j) {
        const float* wr = w.data<float>() + j * k;
        double ref = 0, sum_w = 0, sum_x = 0, sum_xw = 0;
        for (int64_t i = 0; i < k; ++i) {
          ref += static_cast<double>(xr[i]) * wr[i];
          sum_w += std::fabs(wr[i]);
          sum_x += std::fabs(xr[i]) + sx / 2.0;
          sum_xw += std::fabs(static_cast<double>(xr[i]) * wr[i]);
        }
        const double err = std::fabs(out.data<float>()[r * m + j] - ref);
        ASSERT_LE(err, sx / 2.0 * sum_w + sw[j] / 2.0 * sum_x + 1e-5 * sum_xw) << r << "," << j;
        max_err = std::max(max_err, err);
        max_ref = std::max(max_ref, std::fabs(ref));
      }
    }
    EXPECT_LE(max_err / max_ref, 0.02);
  }
}

// The CPU backend with INT8 weights replaced by their dequantized F32 values.
class DequantizingBackend final : public ComposingBackend {
 public:
  using ComposingBackend::ComposingBackend;
  Tensor prepare_weight(const Tensor& host) override {
    return inner_.prepare_weight(host.dtype() == DType::kI8 ? dequantize_int8(host) : host);
  }
};

// Every INT8 case of the op table against the same op on the dequantized F32
// weights: equal for gather_rows (the same products), within the rounding of
// the per-token activations (products, 1.5 %) or of two of them in a row
// (moe_ffn and gate_up_silu: the expert output quantizes the SiLU product again, 3 %).
TEST_F(CpuInt8Test, OpTableCasesMatchDequantizedF32) {
  CpuBackend cpu(2);
  DequantizingBackend f32_weights(cpu);
  EXPECT_TRUE(cpu.supports(Op::kLinear, DType::kI8));
  int ran = 0;
  for (const OpCase& c : backend_op_cases()) {
    if (c.dtype != DType::kI8) continue;
    SCOPED_TRACE(c.name);
    const OpResult got = run_op_case(cpu, c, 3);
    const OpResult want = run_op_case(f32_weights, c, 3);
    const double tol = c.op == Op::kGatherRows                          ? 0.0
                       : c.op == Op::kMoeFfn || c.op == Op::kGateUpSilu ? 0.03
                                                                        : 0.015;
    const double err = max_rel_error(got.out, want.out);
    EXPECT_LE(err, tol);
    if (c.op != Op::kGatherRows) {
      EXPECT_GT(err, 0.0) << "activations were not quantized";
    }
    ++ran;
  }
  EXPECT_EQ(ran, 11);
}

}  // namespace
}  // namespace moeserve
