// kernels/elementwise.cu (rms_norm, add, silu_mul, gather_rows) under the emulator, through
// its real launch functions, against plain loops written here; strided rows, random data,
// outputs poisoned with NaN first so an element the kernel fails to write cannot pass. Run
// deterministically and in random schedules with racecheck on. The CPU-backend comparison
// (tests/gpu/cuda_elementwise_test.cc) needs the emulated CUDA runtime, not built yet.
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "kernels/elementwise.cuh"
#include "kernels/simt/emu/grid.h"
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <gtest/gtest.h>

namespace moeserve::kernels {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

class ElementwiseEmu : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    simt::EmuOptions o;
    o.racecheck = true;
    o.schedule = GetParam() == 0 ? simt::Schedule::kDeterministic : simt::Schedule::kRandom;
    o.seed = static_cast<uint64_t>(GetParam());
    simt::emu::set_default_options(o);
  }
  void TearDown() override { simt::emu::set_default_options(simt::EmuOptions{}); }
  std::mt19937 rng_{static_cast<uint32_t>(GetParam() + 1)};
  float normal() { return std::normal_distribution<float>(0.0f, 1.0f)(rng_); }
};

uint16_t to_bf16(float v) { return std::bit_cast<uint16_t>(__float2bfloat16(v)); }
uint16_t to_f16(float v) { return std::bit_cast<uint16_t>(__float2half(v)); }
float from_bf16(uint16_t b) { return __bfloat162float(std::bit_cast<__nv_bfloat16>(b)); }
float from_f16(uint16_t b) { return __half2float(std::bit_cast<__half>(b)); }

TEST_P(ElementwiseEmu, RmsNorm) {
  for (int d : {1, 31, 64, 100, 1000}) {
    for (ElemType wt : {ElemType::kF32, ElemType::kBF16}) {
      const int64_t n_rows = 5, x_stride = d + 3, out_stride = d + 1;
      std::vector<float> x(n_rows * x_stride), wf(d), out(n_rows * out_stride, kNaN);
      std::vector<uint16_t> wb(d);
      for (float& v : x) v = normal();
      for (int c = 0; c < d; ++c) {
        wb[c] = to_bf16(1.0f + 0.1f * normal());
        wf[c] = wt == ElemType::kBF16 ? from_bf16(wb[c]) : 1.0f + 0.1f * normal();
      }
      const void* w = wt == ElemType::kBF16 ? static_cast<const void*>(wb.data()) : wf.data();
      ASSERT_EQ(launch_rms_norm({x.data(), ElemType::kF32, x_stride, w, wt, out.data(),
                                 ElemType::kF32, out_stride, n_rows, d, 1e-6f},
                                nullptr),
                cudaSuccess);
      for (int64_t r = 0; r < n_rows; ++r) {
        double ss = 0;
        for (int c = 0; c < d; ++c) ss += double{x[r * x_stride + c]} * x[r * x_stride + c];
        const double inv = 1.0 / std::sqrt(ss / d + 1e-6);
        for (int c = 0; c < d; ++c) {
          const double want = x[r * x_stride + c] * inv * wf[c];
          ASSERT_NEAR(out[r * out_stride + c], want, 2e-6 + 2e-5 * std::fabs(want))
              << "d " << d << " row " << r << " col " << c;
        }
      }
    }
  }
}

TEST_P(ElementwiseEmu, AddAndSiluMul) {
  for (int64_t d : {1, 255, 257, 700}) {
    const int64_t n_rows = 3, sa = d + 2, sb = d, so = d + 5;
    std::vector<float> a(n_rows * sa), b(n_rows * sb), out(n_rows * so, kNaN);
    for (float& v : a) v = normal();
    for (float& v : b) v = normal();
    ASSERT_EQ(launch_add({a.data(), ElemType::kF32, sa, b.data(), ElemType::kF32, sb, out.data(),
                          ElemType::kF32, so, n_rows, d},
                         nullptr),
              cudaSuccess);
    for (int64_t r = 0; r < n_rows; ++r)
      for (int64_t c = 0; c < d; ++c) ASSERT_EQ(out[r * so + c], a[r * sa + c] + b[r * sb + c]);

    const int64_t sg = 2 * d + 1;
    std::vector<float> gu(n_rows * sg), act(n_rows * so, kNaN);
    for (float& v : gu) v = 3.0f * normal();
    ASSERT_EQ(
        launch_silu_mul({gu.data(), ElemType::kF32, sg, act.data(), ElemType::kF32, so, n_rows, d},
                        nullptr),
        cudaSuccess);
    for (int64_t r = 0; r < n_rows; ++r) {
      for (int64_t c = 0; c < d; ++c) {
        const double g = gu[r * sg + c], u = gu[r * sg + d + c];
        const double want = g / (1.0 + std::exp(-g)) * u;
        ASSERT_NEAR(act[r * so + c], want, 1e-6 + 1e-5 * std::fabs(want));
      }
    }
  }
}

TEST_P(ElementwiseEmu, GatherRows) {
  const int64_t n_src = 9, d = 300, ss = d + 4, so = d + 1;
  for (ElemType t : {ElemType::kF32, ElemType::kBF16, ElemType::kF16}) {
    std::vector<float> sf(n_src * ss);
    std::vector<uint16_t> s16(n_src * ss);
    for (size_t i = 0; i < sf.size(); ++i) {
      const float v = normal();
      s16[i] = t == ElemType::kBF16 ? to_bf16(v) : to_f16(v);
      sf[i] = t == ElemType::kF32 ? v : t == ElemType::kBF16 ? from_bf16(s16[i]) : from_f16(s16[i]);
    }
    const std::vector<int32_t> idx = {3, 0, 8, 3, -1, 9, 5};  // -1 and 9 are out of range
    const auto n_rows = static_cast<int64_t>(idx.size());
    std::vector<float> out(n_rows * so, 0.0f);
    const void* src = t == ElemType::kF32 ? static_cast<const void*>(sf.data()) : s16.data();
    ASSERT_EQ(
        launch_gather_rows(
            {src, t, ss, n_src, idx.data(), out.data(), ElemType::kF32, so, n_rows, d}, nullptr),
        cudaSuccess);
    for (int64_t r = 0; r < n_rows; ++r) {
      for (int64_t c = 0; c < d; ++c) {
        const float got = out[r * so + c];
        if (idx[r] < 0 || idx[r] >= n_src) {
          ASSERT_TRUE(std::isnan(got));
        } else {
          ASSERT_EQ(got, sf[idx[r] * ss + c]);
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Schedules, ElementwiseEmu, ::testing::Values(0, 1, 2));

}  // namespace
}  // namespace moeserve::kernels
