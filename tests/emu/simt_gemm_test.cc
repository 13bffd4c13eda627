// The tensor-core GEMM example (cp.async double buffering, ldmatrix, mma bf16) against a plain
// CPU GEMM over a sweep of shapes, in deterministic and random schedules with racecheck on.
#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/simt/emu/grid.h"
#include "kernels/simt/tests/gemm_bf16_example.cuh"
#include <cuda_bf16.h>
#include <gtest/gtest.h>

namespace simt::test {
namespace {

struct Shape {
  int m, n, k;
};

void check_gemm(const Shape& s, const EmuOptions& o, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int64_t lda = s.k + 8, ldb = s.k, ldc = s.n + 3;  // strided A and C
  std::vector<uint16_t> a(static_cast<size_t>(s.m * lda)), b(static_cast<size_t>(s.n * ldb));
  std::vector<float> af(a.size()), bf(b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = std::bit_cast<uint16_t>(__float2bfloat16(dist(rng)));
    af[i] = __bfloat162float(std::bit_cast<__nv_bfloat16>(a[i]));
  }
  for (size_t i = 0; i < b.size(); ++i) {
    b[i] = std::bit_cast<uint16_t>(__float2bfloat16(dist(rng)));
    bf[i] = __bfloat162float(std::bit_cast<__nv_bfloat16>(b[i]));
  }
  std::vector<float> c(static_cast<size_t>(s.m * ldc), -12345.0f);
  const LaunchResult r =
      launch_gemm_bf16({a.data(), b.data(), c.data(), s.m, s.n, s.k, lda, ldb, ldc}, &o);
  ASSERT_TRUE(r.ok()) << r.message;
  for (int i = 0; i < s.m; ++i) {
    for (int j = 0; j < s.n; ++j) {
      double ref = 0, mag = 0;
      for (int k = 0; k < s.k; ++k) {
        const double p = double{af[i * lda + k]} * bf[j * ldb + k];
        ref += p;
        mag += std::fabs(p);
      }
      // fp32 accumulation of exact bf16 products: a few fp32 ulps of the magnitude sum.
      ASSERT_NEAR(c[i * ldc + j], ref, 4e-6 * mag + 1e-6)
          << s.m << "x" << s.n << "x" << s.k << " at (" << i << "," << j << ")";
    }
    for (int64_t j = s.n; j < ldc; ++j) ASSERT_EQ(c[i * ldc + j], -12345.0f) << "wrote past n";
  }
}

TEST(SimtGemm, MatchesCpuGemmOverShapes) {
  EmuOptions o;
  o.racecheck = true;
  const Shape shapes[] = {{1, 1, 8},     {16, 8, 16},    {17, 9, 24},   {64, 64, 32},
                          {65, 130, 72}, {128, 96, 256}, {200, 72, 40}, {33, 257, 64}};
  uint32_t seed = 1;
  for (const Shape& s : shapes) check_gemm(s, o, seed++);
}

TEST(SimtGemm, RandomSchedulesAgree) {
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    EmuOptions o;
    o.schedule = Schedule::kRandom;
    o.seed = seed;
    o.racecheck = true;
    check_gemm({96, 80, 96}, o, 100 + static_cast<uint32_t>(seed));
  }
}

TEST(SimtGemm, RefusesUnalignedK) {
  std::vector<uint16_t> a(64), b(64);
  std::vector<float> c(64);
  const LaunchResult r = launch_gemm_bf16({a.data(), b.data(), c.data(), 4, 4, 12, 16, 16, 4});
  EXPECT_EQ(r.code, cudaErrorInvalidValue);
}

}  // namespace
}  // namespace simt::test
