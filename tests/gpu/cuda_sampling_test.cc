// CudaBackend::sample, log_softmax_topk and moe_gate against the CPU backend on fresh random
// data (the seed is printed): every sampling feature alone and mixed, several seeds and
// counters, ties, duplicate and unsorted penalty lists (the in-order path), rows sharing a
// logits row, row failures beside good rows, strided logits. The token must be the CPU's
// (agreement by construction: kernels/sampling_math.h); log-probs within kLogprobTol. On a
// GPU (label gpu) or the SIMT emulator (label emu: random schedules, racecheck on); skipped
// with neither.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "gtest/gtest.h"
#ifdef MOESERVE_SIMT_EMULATOR
#include "kernels/simt/emu/grid.h"
#endif

namespace moeserve {
namespace {

// Float exps summed in double on the device, double exps on the CPU: the log-sum-exp agrees
// to about 1e-7 relative; logits here reach |20|, log-probs |35|.
constexpr float kLogprobTol = 1e-5f;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

class CudaSamplingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
    auto cuda = CudaBackend::create(0);
    ASSERT_TRUE(cuda.ok()) << cuda.status();
    cuda_ = std::move(*cuda);
#ifdef MOESERVE_SIMT_EMULATOR
    simt::EmuOptions o;
    o.schedule = simt::Schedule::kRandom;
    o.racecheck = true;
    o.seed = seed_;
    simt::emu::set_default_options(o);
#endif
    std::cout << "seed " << seed_ << "\n";
  }
  void TearDown() override {
#ifdef MOESERVE_SIMT_EMULATOR
    simt::emu::set_default_options(simt::EmuOptions{});
#endif
  }

  // Host logits [n, vocab] uniform in [-scale, scale]; `levels` > 0 rounds them to that many
  // steps per unit, so ties are common.
  Tensor host_logits(int64_t n, int64_t vocab, float scale, int levels = 0) {
    Tensor t = Tensor::empty_host(DType::kF32, {n, vocab});
    std::uniform_real_distribution<float> u(-scale, scale);
    for (int64_t i = 0; i < t.numel(); ++i) {
      float v = u(rng_);
      if (levels > 0) v = std::round(v * levels) / levels;
      t.data<float>()[i] = v;
    }
    return t;
  }
  Tensor upload(const Tensor& h) {
    Tensor d = cuda_->alloc(h.dtype(), h.shape());
    cuda_->copy(h, d);
    return d;
  }

  // Both backends sample `rows` of `logits`; results must agree row by row.
  void expect_same(const Tensor& logits, const std::vector<SamplingRow>& rows) {
    const auto want = cpu_.sample(logits, rows);
    const auto got = cuda_->sample(upload(logits), rows);
    ASSERT_EQ(got.size(), want.size());
    for (size_t r = 0; r < rows.size(); ++r) {
      SCOPED_TRACE(testing::Message() << "row " << r << " temperature " << rows[r].temperature
                                      << " top_k " << rows[r].top_k << " top_p " << rows[r].top_p
                                      << " min_p " << rows[r].min_p << " seed " << rows[r].seed);
      ASSERT_EQ(got[r].ok(), want[r].ok()) << got[r].status() << " vs " << want[r].status();
      if (!want[r].ok()) {
        EXPECT_EQ(got[r].status(), want[r].status());
        continue;
      }
      EXPECT_EQ(got[r]->token, want[r]->token);
      EXPECT_NEAR(got[r]->logprob, want[r]->logprob, kLogprobTol);
      ASSERT_EQ(got[r]->top_logprobs.size(), want[r]->top_logprobs.size());
      for (size_t j = 0; j < want[r]->top_logprobs.size(); ++j) {
        EXPECT_EQ(got[r]->top_logprobs[j].token, want[r]->top_logprobs[j].token) << "rank " << j;
        EXPECT_NEAR(got[r]->top_logprobs[j].logprob, want[r]->top_logprobs[j].logprob, kLogprobTol);
      }
    }
  }

  const uint64_t seed_ = std::random_device{}();
  std::mt19937_64 rng_{seed_};
  CpuBackend cpu_{2};
  std::unique_ptr<CudaBackend> cuda_;
};

TEST_F(CudaSamplingTest, EachFeatureAloneAndMixed) {
  const int64_t n = 6, vocab = 5000;
  const Tensor logits = host_logits(n, vocab, 8.0f);
  std::vector<PenaltyEntry> pen;
  for (int32_t t = 0; t < vocab; t += 37) pen.push_back({t, t % 3});
  const std::vector<std::pair<int32_t, float>> bias = {{5, 6.0f}, {77, -50.0f}, {4000, 3.5f}};
  const std::vector<int32_t> mask = {0, 9, 4000};
  std::vector<SamplingRow> rows;
  auto add = [&](SamplingRow r) {
    r.logits_row = static_cast<int64_t>(rows.size()) % n;
    rows.push_back(r);
  };
  for (uint64_t seed : {1ull, 2ull, 99ull, 123456789ull}) {
    for (uint64_t counter : {0ull, 5ull}) {
      const SamplingRow base{.temperature = 1.0f, .seed = seed, .counter = counter};
      SamplingRow r = base;
      add(SamplingRow{.seed = seed});  // greedy
      add(r);
      r = base, r.temperature = 0.3f, add(r);
      r = base, r.temperature = 3.0f, add(r);
      r = base, r.top_k = 1, add(r);
      r = base, r.top_k = 40, add(r);
      r = base, r.top_p = 0.3f, add(r);
      r = base, r.top_p = 0.95f, add(r);
      r = base, r.min_p = 0.2f, add(r);
      r = base, r.repetition_penalty = 1.3f, r.penalties = pen, add(r);
      r = base, r.frequency_penalty = 0.7f, r.presence_penalty = -0.5f, r.penalties = pen, add(r);
      r = base, r.logit_bias = bias, add(r);
      r = base, r.masked = mask, add(r);
      r = base, r.n_top_logprobs = 20, add(r);
      r = SamplingRow{.temperature = 0.7f,
                      .top_k = 100,
                      .top_p = 0.8f,
                      .min_p = 0.02f,
                      .repetition_penalty = 1.1f,
                      .frequency_penalty = 0.2f,
                      .presence_penalty = 0.1f,
                      .seed = seed,
                      .counter = counter,
                      .n_top_logprobs = 3,
                      .logit_bias = bias,
                      .penalties = pen,
                      .masked = mask};
      add(r);
    }
  }
  expect_same(logits, rows);
}

TEST_F(CudaSamplingTest, LargeVocabulariesAndTies) {
  for (int levels : {0, 2}) {
    SCOPED_TRACE(testing::Message() << "levels " << levels);
    const Tensor logits = host_logits(3, 102400, 12.0f, levels);
    std::vector<SamplingRow> rows;
    // top_k and top_p together on every row: with ties both thresholds may fall in one group.
    for (uint64_t seed = 0; seed < 6; ++seed) {
      rows.push_back({.logits_row = static_cast<int64_t>(seed % 3),
                      .temperature = 0.8f,
                      .top_k = 3 + static_cast<int>(seed) * 7,
                      .top_p = 0.6f,
                      .seed = seed});
    }
    for (int64_t r = 0; r < 6; ++r) {
      rows.push_back({.logits_row = r % 3,
                      .temperature = r == 0 ? 0.0f : 0.5f + 0.25f * static_cast<float>(r),
                      .top_k = r == 2 ? 50 : 0,
                      .top_p = r == 3 ? 0.9f : 1.0f,
                      .min_p = r == 4 ? 0.01f : 0.0f,
                      .seed = static_cast<uint64_t>(1000 + r),
                      .counter = 3,
                      .n_top_logprobs = r == 5 ? 20 : 0});
    }
    expect_same(logits, rows);
  }
}

// A tie group at the top straddles the top_k cut, and top_p needs all of the group's
// survivors: both thresholds fall in the group, and only the lowest ids may be drawn.
TEST_F(CudaSamplingTest, TopKAndTopPCutOneTieGroup) {
  Tensor logits = host_logits(1, 4000, 2.0f);
  for (int32_t id = 100; id < 4000; id += 400) logits.data<float>()[id] = 6.0f;  // 10 ties
  std::vector<SamplingRow> rows;
  for (uint64_t seed = 0; seed < 24; ++seed) {
    rows.push_back({.temperature = 1.0f,
                    .top_k = 3 + static_cast<int>(seed % 4),
                    .top_p = 0.999f,
                    .seed = seed});
  }
  expect_same(logits, rows);
}

// Repeated and unsorted entries take the kernel's in-order path; the CPU applies them in
// order too.
TEST_F(CudaSamplingTest, RepeatedAndUnsortedEntries) {
  const Tensor logits = host_logits(2, 3000, 5.0f);
  const std::vector<PenaltyEntry> pen = {{50, 1}, {7, 2}, {50, 0}, {2999, 3}, {7, 1}};
  const std::vector<std::pair<int32_t, float>> bias = {{7, 1.5f}, {50, -2.0f}, {7, 0.25f}};
  const std::vector<int32_t> mask = {12, 12, 3};
  std::vector<SamplingRow> rows;
  for (uint64_t seed = 0; seed < 8; ++seed) {
    rows.push_back({.logits_row = static_cast<int64_t>(seed % 2),
                    .temperature = seed % 4 == 0 ? 0.0f : 0.9f,
                    .repetition_penalty = 1.7f,
                    .frequency_penalty = 0.4f,
                    .presence_penalty = 0.6f,
                    .seed = seed,
                    .logit_bias = bias,
                    .penalties = pen,
                    .masked = mask});
  }
  expect_same(logits, rows);
}

// A failing row fails alone, with the CPU's status; the rows beside it are sampled.
TEST_F(CudaSamplingTest, RowFailuresAreRowStatuses) {
  Tensor logits = host_logits(3, 1000, 4.0f);
  logits.data<float>()[1 * 1000 + 321] = kNaN;  // row 1: the model's fault
  const std::vector<std::pair<int32_t, float>> inf_bias = {{10, kInf}};
  const std::vector<std::pair<int32_t, float>> bad_id = {{1000, 1.0f}};
  std::vector<int32_t> all(1000);
  for (int32_t i = 0; i < 1000; ++i) all[static_cast<size_t>(i)] = i;
  const std::vector<SamplingRow> rows = {
      {.logits_row = 0, .temperature = 1.0f, .seed = 1},
      {.logits_row = 1, .temperature = 1.0f, .seed = 2},
      {.logits_row = 2, .temperature = 1.0f, .seed = 3, .logit_bias = inf_bias},
      {.logits_row = 2, .temperature = 1.0f, .seed = 4, .logit_bias = bad_id},
      {.logits_row = 0, .temperature = 1.0f, .seed = 5, .masked = all},
      {.logits_row = 2, .seed = 6},
  };
  const auto got = cuda_->sample(upload(logits), rows);
  ASSERT_EQ(got.size(), rows.size());
  EXPECT_TRUE(got[0].ok()) << got[0].status();
  EXPECT_EQ(got[1].status().code(), absl::StatusCode::kInternal) << got[1].status();
  EXPECT_EQ(got[2].status().code(), absl::StatusCode::kInvalidArgument) << got[2].status();
  EXPECT_EQ(got[3].status().code(), absl::StatusCode::kInvalidArgument) << got[3].status();
  EXPECT_EQ(got[4].status().code(), absl::StatusCode::kInvalidArgument) << got[4].status();
  EXPECT_TRUE(got[5].ok()) << got[5].status();
  expect_same(logits, rows);  // and the same statuses, messages included, as the CPU's
}

TEST_F(CudaSamplingTest, LogSoftmaxTopkOnColumnSlices) {
  for (int64_t n : {1, 17}) {
    for (int64_t k : {1, 7, 20, 25}) {
      SCOPED_TRACE(testing::Message() << "n " << n << " k " << k);
      // k = 25 is beyond the kernel: the host composition, which needs contiguous rows.
      const int64_t vocab = 20000, pad = k > 20 ? 0 : 3;
      const Tensor wide = host_logits(n, vocab + 2 * pad, 20.0f, n == 17 ? 4 : 0);
      const Tensor wide_dev = upload(wide);
      Tensor ids_cpu = Tensor::empty_host(DType::kI32, {n, k});
      Tensor lp_cpu = Tensor::empty_host(DType::kF32, {n, k});
      cpu_.log_softmax_topk(wide.slice(1, pad, pad + vocab), ids_cpu, lp_cpu);
      Tensor nan_lp = Tensor::empty_host(DType::kF32, {n, k});
      for (int64_t i = 0; i < nan_lp.numel(); ++i) nan_lp.data<float>()[i] = kNaN;
      Tensor ids_dev = cuda_->alloc(DType::kI32, {n, k});
      Tensor lp_dev = upload(nan_lp);
      cuda_->log_softmax_topk(wide_dev.slice(1, pad, pad + vocab), ids_dev, lp_dev);
      Tensor ids = Tensor::empty_host(DType::kI32, {n, k}),
             lp = Tensor::empty_host(DType::kF32, {n, k});
      cuda_->copy(ids_dev, ids);
      cuda_->copy(lp_dev, lp);
      for (int64_t i = 0; i < n * k; ++i) {
        ASSERT_EQ(ids.data<int32_t>()[i], ids_cpu.data<int32_t>()[i]) << "at " << i;
        ASSERT_NEAR(lp.data<float>()[i], lp_cpu.data<float>()[i], kLogprobTol) << "at " << i;
      }
    }
  }
}

}  // namespace
}  // namespace moeserve
