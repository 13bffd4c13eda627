// The CUDA elementwise ops (gather_rows, rms_norm, add, silu_mul) against the
// CPU backend on random shapes and data. Outputs on both backends start as NaN
// so an element an op fails to write cannot pass. Skipped without a GPU.
#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "common/dtype.h"
#include "common/tensor.h"
#include "gtest/gtest.h"

namespace moeserve {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Host tensor of `dtype` with N(0, scale²) values (rounded to dtype).
Tensor host_random(DType dtype, const std::vector<int64_t>& shape, std::mt19937& rng,
                   float scale = 1.0f) {
  Tensor t = Tensor::empty_host(dtype, shape);
  std::normal_distribution<float> dist(0.0f, scale);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float v = dist(rng);
    switch (dtype) {
      case DType::kF32: t.data<float>()[i] = v; break;
      case DType::kBF16: t.data<uint16_t>()[i] = f32_to_bf16(v); break;
      case DType::kF16: t.data<uint16_t>()[i] = f32_to_f16(v); break;
      default: ADD_FAILURE() << "host_random: unsupported dtype"; break;
    }
  }
  return t;
}

Tensor host_filled(const std::vector<int64_t>& shape, float value) {
  Tensor t = Tensor::empty_host(DType::kF32, shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = value;
  return t;
}

// A contiguous copy of host tensor `h` on `backend`.
Tensor upload(Backend& backend, const Tensor& h) {
  Tensor t = backend.alloc(h.dtype(), h.shape());
  backend.copy(h, t);
  return t;
}

Tensor download(Backend& backend, const Tensor& t) {
  Tensor h = Tensor::empty_host(t.dtype(), t.shape());
  backend.copy(t, h);
  backend.synchronize();
  return h;
}

// Every element of `got` finite and within atol + rtol·|want| of `want`.
void expect_close(const Tensor& got, const Tensor& want, float atol, float rtol) {
  const std::vector<float> g = to_f32_vector(got);
  const std::vector<float> w = to_f32_vector(want);
  ASSERT_EQ(g.size(), w.size());
  int n_bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const bool ok = std::isfinite(g[i]) && std::isfinite(w[i]) &&
                    std::fabs(g[i] - w[i]) <= atol + rtol * std::fabs(w[i]);
    if (!ok && n_bad++ < 5) {
      ADD_FAILURE() << "element " << i << ": cuda " << g[i] << ", cpu " << w[i];
    }
  }
  EXPECT_EQ(n_bad, 0) << "of " << g.size() << " elements";
}

class CudaElementwiseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
    auto cuda = CudaBackend::create(0);
    ASSERT_TRUE(cuda.ok()) << cuda.status();
    cuda_ = std::move(*cuda);
    auto cpu = create_backend("cpu");
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    cpu_ = std::move(*cpu);
    const unsigned seed = std::random_device{}();
    rng_.seed(seed);
    // Fresh data every run; the seed is printed so a failure can be reproduced.
    std::cout << "seed " << seed << "\n";
  }

  // The same host data on both backends.
  struct Pair {
    Tensor cpu;
    Tensor cuda;
  };
  Pair both(const Tensor& host) { return {upload(*cpu_, host), upload(*cuda_, host)}; }
  Pair poisoned(const std::vector<int64_t>& shape) { return both(host_filled(shape, kNaN)); }

  std::unique_ptr<Backend> cuda_;
  std::unique_ptr<Backend> cpu_;
  std::mt19937 rng_;
};

// Row counts and widths: single row, below/at/above a warp and a block, odd sizes.
const std::vector<std::pair<int64_t, int64_t>> kShapes = {
    {1, 1}, {1, 7}, {3, 32}, {5, 257}, {17, 1000}, {64, 512}, {2, 4096}, {130, 7168}};

TEST_F(CudaElementwiseTest, RmsNormMatchesCpu) {
  // Float sums of up to 7168 squares in different orders: a few ulp per step.
  constexpr float kAtol = 1e-5f;
  constexpr float kRtol = 1e-4f;
  for (DType wtype : {DType::kF32, DType::kBF16}) {
    for (auto [n, d] : kShapes) {
      SCOPED_TRACE(testing::Message()
                   << "n " << n << " d " << d << " weight " << dtype_name(wtype));
      const float eps = 1e-6f;
      Pair x = both(host_random(DType::kF32, {n, d}, rng_, 3.0f));
      Pair w = both(host_random(wtype, {d}, rng_));
      Pair out = poisoned({n, d});
      cpu_->rms_norm(x.cpu, w.cpu, eps, out.cpu);
      cuda_->rms_norm(x.cuda, w.cuda, eps, out.cuda);
      expect_close(download(*cuda_, out.cuda), download(*cpu_, out.cpu), kAtol, kRtol);

      // In place: out aliases x.
      cpu_->rms_norm(x.cpu, w.cpu, eps, x.cpu);
      cuda_->rms_norm(x.cuda, w.cuda, eps, x.cuda);
      expect_close(download(*cuda_, x.cuda), download(*cpu_, x.cpu), kAtol, kRtol);
    }
  }
}

TEST_F(CudaElementwiseTest, RmsNormOnColumnSlices) {
  constexpr float kAtol = 1e-5f;
  constexpr float kRtol = 1e-4f;
  const int64_t n = 9, d = 192, pad = 64;  // rows of width d inside rows of width d + 2·pad
  Pair x_wide = both(host_random(DType::kF32, {n, d + 2 * pad}, rng_));
  Pair w = both(host_random(DType::kBF16, {d}, rng_));
  Pair out_wide = poisoned({n, d + 2 * pad});
  cpu_->rms_norm(x_wide.cpu.slice(1, pad, pad + d), w.cpu, 1e-6f,
                 out_wide.cpu.slice(1, pad, pad + d));
  cuda_->rms_norm(x_wide.cuda.slice(1, pad, pad + d), w.cuda, 1e-6f,
                  out_wide.cuda.slice(1, pad, pad + d));
  const Tensor got = download(*cuda_, out_wide.cuda);
  expect_close(got.slice(1, pad, pad + d), download(*cpu_, out_wide.cpu).slice(1, pad, pad + d),
               kAtol, kRtol);
  // Columns outside the slice are not written.
  for (float v : to_f32_vector(got.slice(1, 0, pad))) ASSERT_TRUE(std::isnan(v));
  for (float v : to_f32_vector(got.slice(1, pad + d, d + 2 * pad))) ASSERT_TRUE(std::isnan(v));
}

TEST_F(CudaElementwiseTest, AddMatchesCpu) {
  // One correctly rounded float add per element on both sides: exact.
  for (auto [n, d] : kShapes) {
    SCOPED_TRACE(testing::Message() << "n " << n << " d " << d);
    Pair a = both(host_random(DType::kF32, {n, d}, rng_));
    Pair b = both(host_random(DType::kF32, {n, d}, rng_));
    Pair out = poisoned({n, d});
    cpu_->add(a.cpu, b.cpu, out.cpu);
    cuda_->add(a.cuda, b.cuda, out.cuda);
    expect_close(download(*cuda_, out.cuda), download(*cpu_, out.cpu), 0.0f, 0.0f);

    // In place into a (the residual-stream pattern).
    cpu_->add(a.cpu, b.cpu, a.cpu);
    cuda_->add(a.cuda, b.cuda, a.cuda);
    expect_close(download(*cuda_, a.cuda), download(*cpu_, a.cpu), 0.0f, 0.0f);
  }
}

TEST_F(CudaElementwiseTest, AddOnColumnSlices) {
  const int64_t n = 6, d = 100, wide = 300;
  Pair a = both(host_random(DType::kF32, {n, wide}, rng_));
  Pair b = both(host_random(DType::kF32, {n, d}, rng_));
  Pair out = poisoned({n, wide});
  cpu_->add(a.cpu.slice(1, 200, 300), b.cpu, out.cpu.slice(1, 50, 150));
  cuda_->add(a.cuda.slice(1, 200, 300), b.cuda, out.cuda.slice(1, 50, 150));
  const Tensor got = download(*cuda_, out.cuda);
  expect_close(got.slice(1, 50, 150), download(*cpu_, out.cpu).slice(1, 50, 150), 0.0f, 0.0f);
  for (float v : to_f32_vector(got.slice(1, 0, 50))) ASSERT_TRUE(std::isnan(v));
  for (float v : to_f32_vector(got.slice(1, 150, 300))) ASSERT_TRUE(std::isnan(v));
}

TEST_F(CudaElementwiseTest, SiluMulMatchesCpu) {
  // expf on the GPU is within 2 ulp; scale 8 reaches saturation on both sides.
  constexpr float kAtol = 1e-6f;
  constexpr float kRtol = 1e-5f;
  for (auto [n, f] : kShapes) {
    SCOPED_TRACE(testing::Message() << "n " << n << " f " << f);
    Pair gate_up = both(host_random(DType::kF32, {n, 2 * f}, rng_, 8.0f));
    Pair out = poisoned({n, f});
    cpu_->silu_mul(gate_up.cpu, out.cpu);
    cuda_->silu_mul(gate_up.cuda, out.cuda);
    expect_close(download(*cuda_, out.cuda), download(*cpu_, out.cpu), kAtol, kRtol);
  }
}

TEST_F(CudaElementwiseTest, GatherRowsMatchesCpu) {
  // Widening BF16/F16 to F32 is exact.
  for (DType stype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (auto [n_src, d] : kShapes) {
      const int64_t m = 1 + static_cast<int64_t>(rng_() % 40);  // may repeat rows
      SCOPED_TRACE(testing::Message()
                   << "src " << n_src << "x" << d << " " << dtype_name(stype) << " m " << m);
      Pair src = both(host_random(stype, {n_src, d}, rng_));
      Tensor idx_host = Tensor::empty_host(DType::kI32, {m});
      std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(n_src - 1));
      for (int64_t i = 0; i < m; ++i) idx_host.data<int32_t>()[i] = pick(rng_);
      Pair idx = both(idx_host);
      Pair out = poisoned({m, d});
      cpu_->gather_rows(src.cpu, idx.cpu, out.cpu);
      cuda_->gather_rows(src.cuda, idx.cuda, out.cuda);
      expect_close(download(*cuda_, out.cuda), download(*cpu_, out.cpu), 0.0f, 0.0f);
    }
  }
}

// `auto` picks a real GPU's backend (it runs models), never the emulator's device.
TEST_F(CudaElementwiseTest, AutoPicksARealGpuOnly) {
  auto backend = create_backend("auto", 1);
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_TRUE(cuda_->runs_models());
  EXPECT_EQ((*backend)->name(), cuda_is_emulated() ? "cpu" : "cuda");
  auto explicit_cuda = create_backend("cuda", 1, 1.0 / 64);
  ASSERT_TRUE(explicit_cuda.ok()) << explicit_cuda.status();
  EXPECT_EQ((*explicit_cuda)->name(), "cuda");
}

}  // namespace
}  // namespace moeserve
