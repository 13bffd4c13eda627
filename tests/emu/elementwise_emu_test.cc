// kernels/elementwise.cu (rms_norm, add_rms_norm, add, silu_mul, gather_rows; F32 and BF16
// activations) under the emulator, through its real launch functions, against plain loops
// written here; strided rows, random data, outputs poisoned with NaN first so an element the
// kernel fails to write cannot pass. Run
// deterministically and in random schedules with racecheck on. The CPU-backend comparison
// (tests/gpu/cuda_elementwise_test.cc) needs the emulated CUDA runtime, not built yet.
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include "kernels/elementwise.cuh"
#include "kernels/simt/emu/grid.h"
#include "tests/emu/emu_schedule.h"
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <gtest/gtest.h>

namespace moeserve::kernels {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

class ElementwiseEmu : public ScheduledEmuTest {
 protected:
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

// Activations of either type behind an untyped pointer.
struct Act {
  ElemType type;
  std::vector<float> f;
  std::vector<uint16_t> b;
  Act(ElemType t, size_t n, float fill) : type(t), f(n, fill), b(n, to_bf16(fill)) {}
  void* ptr() { return type == ElemType::kF32 ? static_cast<void*>(f.data()) : b.data(); }
  float get(size_t i) const { return type == ElemType::kF32 ? f[i] : from_bf16(b[i]); }
  void set(size_t i, float v) {
    if (type == ElemType::kF32) {
      f[i] = v;
    } else {
      b[i] = to_bf16(v);
    }
  }
  float round(double v) const {
    return type == ElemType::kF32 ? static_cast<float>(v)
                                  : from_bf16(to_bf16(static_cast<float>(v)));
  }
};

// Widths: a warp per row (512), a block per row (2048, 7168), rows too wide for the
// registers (33000: the tail is read again) and widths off the 128-bit path (1003).
TEST_P(ElementwiseEmu, NormsWithEitherActivationType) {
  constexpr ElemType kF = ElemType::kF32, kB = ElemType::kBF16;
  for (int d : {512, 2048, 7168, 33000, 1003}) {
    for (auto [rt, xt, ot] : {std::tuple{kF, kF, kF}, {kB, kB, kB}, {kB, kF, kB}, {kF, kB, kF}}) {
      SCOPED_TRACE(testing::Message() << "d " << d << " types " << static_cast<int>(rt)
                                      << static_cast<int>(xt) << static_cast<int>(ot));
      const int64_t n_rows = d > 8000 ? 2 : 5, stride = d + 8;
      Act res(rt, n_rows * stride, kNaN), x(xt, n_rows * stride, kNaN),
          out(ot, n_rows * stride, kNaN);
      std::vector<uint16_t> w(d);
      for (int c = 0; c < d; ++c) w[c] = to_bf16(1.0f + 0.1f * normal());
      for (int64_t r = 0; r < n_rows; ++r) {
        for (int c = 0; c < d; ++c) {
          res.set(r * stride + c, normal());
          x.set(r * stride + c, normal());
        }
      }
      const Act res0 = res, x0 = x;
      ASSERT_EQ(launch_add_rms_norm({res.ptr(), rt, stride, x.ptr(), xt, stride, w.data(), kB,
                                     out.ptr(), ot, stride, n_rows, d, 1e-6f},
                                    nullptr),
                cudaSuccess);
      // rms_norm of the new residual into x (its own type), as the next layer would.
      ASSERT_EQ(launch_rms_norm(
                    {res.ptr(), rt, stride, w.data(), kB, x.ptr(), xt, stride, n_rows, d, 1e-6f},
                    nullptr),
                cudaSuccess);
      // F32 sums of squares in another order than here (double): 2e-5 relative, plus one
      // BF16 rounding of the output.
      const double rtol = ot == kB ? 1.0 / 128 : 2e-5;
      for (int64_t r = 0; r < n_rows; ++r) {
        std::vector<float> sum(d);
        double ss = 0;
        for (int c = 0; c < d; ++c) {
          sum[c] = res.round(double{res0.get(r * stride + c)} + x0.get(r * stride + c));
          ss += double{sum[c]} * sum[c];
          ASSERT_EQ(res.get(r * stride + c), sum[c]) << "residual row " << r << " col " << c;
        }
        const double inv = 1.0 / std::sqrt(ss / d + 1e-6);
        for (int c = 0; c < d; ++c) {
          const double want = sum[c] * inv * from_bf16(w[c]);
          ASSERT_NEAR(out.get(r * stride + c), want, 1e-6 + rtol * std::fabs(want))
              << "out row " << r << " col " << c;
          ASSERT_NEAR(x.get(r * stride + c), want,
                      1e-6 + (xt == kB ? 1.0 / 128 : 2e-5) * std::fabs(want))
              << "rms_norm row " << r << " col " << c;
        }
        for (int64_t c = d; c < stride; ++c) ASSERT_TRUE(std::isnan(out.get(r * stride + c)));
      }
    }
  }
}

TEST_P(ElementwiseEmu, AddSiluGatherWithBf16) {
  constexpr ElemType kF = ElemType::kF32, kB = ElemType::kBF16;
  for (int64_t d : {8, 700, 2048, 13}) {
    const int64_t n_rows = 3, stride = 2 * d + 8;
    Act a(kB, n_rows * stride, kNaN), b(kF, n_rows * stride, kNaN), out(kB, n_rows * stride, kNaN);
    for (int64_t r = 0; r < n_rows; ++r) {
      for (int64_t c = 0; c < 2 * d; ++c) {
        a.set(r * stride + c, 3.0f * normal());
        b.set(r * stride + c, normal());
      }
    }
    ASSERT_EQ(
        launch_add({a.ptr(), kB, stride, b.ptr(), kF, stride, out.ptr(), kB, stride, n_rows, d},
                   nullptr),
        cudaSuccess);
    for (int64_t r = 0; r < n_rows; ++r) {
      for (int64_t c = 0; c < d; ++c) {
        ASSERT_EQ(out.get(r * stride + c),
                  out.round(double{a.get(r * stride + c)} + b.get(r * stride + c)));
      }
      ASSERT_TRUE(std::isnan(out.get(r * stride + d)));
    }
    Act act(kB, n_rows * stride, kNaN);
    ASSERT_EQ(launch_silu_mul({a.ptr(), kB, stride, act.ptr(), kB, stride, n_rows, d}, nullptr),
              cudaSuccess);
    for (int64_t r = 0; r < n_rows; ++r) {
      for (int64_t c = 0; c < d; ++c) {
        const double g = a.get(r * stride + c), u = a.get(r * stride + d + c);
        const double want = g / (1.0 + std::exp(-g)) * u;
        ASSERT_NEAR(act.get(r * stride + c), want, 1e-6 + std::fabs(want) / 128);
      }
    }
    const std::vector<int32_t> idx = {2, 0, 2, 7};  // 7 is out of range: a NaN row
    Act rows(kB, idx.size() * stride, 0.0f);
    ASSERT_EQ(launch_gather_rows({b.ptr(), kF, stride, n_rows, idx.data(), rows.ptr(), kB, stride,
                                  static_cast<int64_t>(idx.size()), d},
                                 nullptr),
              cudaSuccess);
    for (size_t i = 0; i < idx.size(); ++i) {
      for (int64_t c = 0; c < d; ++c) {
        const float got = rows.get(i * stride + c);
        if (idx[i] >= n_rows) {
          ASSERT_TRUE(std::isnan(got));
        } else {
          ASSERT_EQ(got, rows.round(b.get(idx[i] * stride + c)));
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Schedules, ElementwiseEmu, ::testing::Values(0, 1, 2));

}  // namespace
}  // namespace moeserve::kernels
