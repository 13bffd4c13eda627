// Sampler, argmax, logprob_of and top_logprobs against references computed
// here (softmax and log-softmax in double, frequencies over many draws).
#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

namespace moeserve {
namespace {

constexpr double kFreqTol = 0.02;     // |empirical − expected| per token over kDraws
constexpr int kDraws = 20000;         // 0.02 is > 5 standard deviations at this count
constexpr double kLogprobTol = 1e-5;  // relative (F32 result of a double computation)

class SamplerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    seed_ = (static_cast<uint64_t>(rd()) << 32) | rd();
    rng_.seed(seed_);
  }
  void TearDown() override {
    if (HasFailure()) std::printf("SamplerTest seed: %llu\n", static_cast<unsigned long long>(seed_));
  }
  std::vector<float> random_logits(int n, float spread = 4.0f) {
    std::uniform_real_distribution<float> u(-spread, spread);
    std::vector<float> l(static_cast<size_t>(n));
    for (auto& x : l) x = u(rng_);
    return l;
  }
  uint64_t next_seed() { return rng_(); }

  static std::vector<double> softmax(const std::vector<float>& l, double temperature = 1.0) {
    const double mx = *std::max_element(l.begin(), l.end());
    std::vector<double> p(l.size());
    double s = 0.0;
    for (size_t i = 0; i < l.size(); ++i) s += (p[i] = std::exp((l[i] - mx) / temperature));
    for (double& x : p) x /= s;
    return p;
  }
  static std::vector<double> frequencies(Sampler& s, const std::vector<float>& l, int draws) {
    std::vector<double> f(l.size(), 0.0);
    for (int i = 0; i < draws; ++i) {
      const int32_t t = s.sample(l);
      EXPECT_GE(t, 0);
      EXPECT_LT(t, static_cast<int32_t>(l.size()));
      if (t >= 0 && t < static_cast<int32_t>(l.size())) f[static_cast<size_t>(t)] += 1.0 / draws;
    }
    return f;
  }
  static void expect_freqs(const std::vector<double>& got, const std::vector<double>& want) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], kFreqTol) << "token " << i;
    }
  }

  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
};

int32_t ref_argmax(const std::vector<float>& l) {
  int32_t best = 0;
  for (size_t i = 1; i < l.size(); ++i)
    if (l[i] > l[static_cast<size_t>(best)]) best = static_cast<int32_t>(i);
  return best;
}

TEST_F(SamplerTest, GreedyIsArgmax) {
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 1 + static_cast<int>(next_seed() % 500);
    std::vector<float> l = random_logits(n);
    EXPECT_EQ(argmax(l), ref_argmax(l));
    for (float temp : {0.0f, 1e-6f}) {
      SamplingParams p;
      p.temperature = temp;
      p.seed = next_seed();
      Sampler s(p);
      EXPECT_EQ(s.sample(l), ref_argmax(l));
    }
  }
  // Ties go to the lowest index.
  const std::vector<float> tie{1.0f, 3.0f, 2.0f, 3.0f};
  EXPECT_EQ(argmax(tie), 1);
}

TEST_F(SamplerTest, SameSeedSameSequenceDifferentSeedsDiffer) {
  const std::vector<float> l = random_logits(50, 1.0f);  // fairly flat
  const std::vector<double> p = softmax(l);
  double collision = 0.0;  // P(two independent draws agree)
  for (double x : p) collision += x * x;
  const int n = 2000;
  for (int trial = 0; trial < 5; ++trial) {
    SamplingParams params;
    params.temperature = 1.0f;
    params.seed = next_seed();
    Sampler s1(params), s2(params);
    SamplingParams other = params;
    other.seed = params.seed + 1 + next_seed() % 1000;
    Sampler s3(other);
    int same = 0;
    for (int i = 0; i < n; ++i) {
      const int32_t a = s1.sample(l), b = s2.sample(l), c = s3.sample(l);
      ASSERT_EQ(a, b) << "same seed diverged at draw " << i;
      same += a == c;
    }
    // Independent streams agree at rate `collision` (≈ 0.03 here); allow 3×.
    EXPECT_LT(same, 3.0 * collision * n + 20) << "seeds " << params.seed << " and " << other.seed;
  }
}

TEST_F(SamplerTest, TopKOneIsGreedyAtAnyTemperature) {
  for (float temp : {0.3f, 1.0f, 5.0f, 100.0f}) {
    SamplingParams p;
    p.temperature = temp;
    p.top_k = 1;
    p.seed = next_seed();
    Sampler s(p);
    for (int i = 0; i < 300; ++i) {
      const std::vector<float> l = random_logits(64);
      ASSERT_EQ(s.sample(l), ref_argmax(l)) << "temperature " << temp;
    }
  }
}

TEST_F(SamplerTest, TinyTopPKeepsOnlyTheBestToken) {
  for (float temp : {0.5f, 1.0f, 10.0f}) {
    SamplingParams p;
    p.temperature = temp;
    p.top_p = 1e-6f;
    p.seed = next_seed();
    Sampler s(p);
    for (int i = 0; i < 300; ++i) {
      const std::vector<float> l = random_logits(64, 0.5f);
      ASSERT_EQ(s.sample(l), ref_argmax(l)) << "temperature " << temp;
    }
  }
}

TEST_F(SamplerTest, FrequenciesMatchSoftmax) {
  for (float temp : {1.0f, 2.0f, 0.5f}) {
    SCOPED_TRACE(::testing::Message() << "temperature " << temp);
    const std::vector<float> l = random_logits(4, 1.5f);
    SamplingParams p;
    p.temperature = temp;
    p.seed = next_seed();
    Sampler s(p);
    expect_freqs(frequencies(s, l, kDraws), softmax(l, temp));
  }
}

TEST_F(SamplerTest, TopKAndTopPRenormaliseTheKeptTokens) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 in shuffled slots.
  std::vector<int> slot{0, 1, 2, 3};
  std::shuffle(slot.begin(), slot.end(), rng_);
  const double probs[4] = {0.5, 0.3, 0.15, 0.05};
  std::vector<float> l(4);
  for (int i = 0; i < 4; ++i) l[slot[i]] = static_cast<float>(std::log(probs[i]) + 3.0);
  {
    SCOPED_TRACE("top_k = 3");
    SamplingParams p;
    p.temperature = 1.0f;
    p.top_k = 3;
    p.seed = next_seed();
    Sampler s(p);
    std::vector<double> want(4, 0.0);
    for (int i = 0; i < 3; ++i) want[slot[i]] = probs[i] / 0.95;
    expect_freqs(frequencies(s, l, kDraws), want);
  }
  {
    SCOPED_TRACE("top_p = 0.7");  // 0.5 < 0.7 ≤ 0.8: the two best tokens
    SamplingParams p;
    p.temperature = 1.0f;
    p.top_p = 0.7f;
    p.seed = next_seed();
    Sampler s(p);
    std::vector<double> want(4, 0.0);
    want[slot[0]] = 0.5 / 0.8;
    want[slot[1]] = 0.3 / 0.8;
    expect_freqs(frequencies(s, l, kDraws), want);
  }
  {
    SCOPED_TRACE("top_k = 2, top_p = 0.6 of the renormalised pair");
    // After top_k the pair is (0.625, 0.375): 0.625 ≥ 0.6 keeps only the best.
    SamplingParams p;
    p.temperature = 1.0f;
    p.top_k = 2;
    p.top_p = 0.6f;
    p.seed = next_seed();
    Sampler s(p);
    std::vector<double> want(4, 0.0);
    want[slot[0]] = 1.0;
    expect_freqs(frequencies(s, l, 2000), want);
  }
}

TEST_F(SamplerTest, LogprobsMatchLogSoftmax) {
  for (int trial = 0; trial < 50; ++trial) {
    const int n = 1 + static_cast<int>(next_seed() % 300);
    std::vector<float> l = random_logits(n, 20.0f);
    if (n > 3) l[2] = l[1];  // a tie for top_logprobs ordering
    double mx = *std::max_element(l.begin(), l.end()), s = 0.0;
    for (float x : l) s += std::exp(static_cast<double>(x) - mx);
    const double lse = mx + std::log(s);
    for (int i = 0; i < n; ++i) {
      const double want = l[i] - lse;
      ASSERT_NEAR(logprob_of(l, i), want, kLogprobTol * std::max(1.0, std::fabs(want))) << i;
    }
    for (int k : {1, 5, n, n + 10}) {
      const auto top = top_logprobs(l, k);
      ASSERT_EQ(static_cast<int>(top.size()), std::min(k, n));
      // Expected order: by logit descending, ties by lower id.
      std::vector<int32_t> ids(static_cast<size_t>(n));
      std::iota(ids.begin(), ids.end(), 0);
      std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
      for (size_t j = 0; j < top.size(); ++j) {
        ASSERT_EQ(top[j].first, ids[j]) << "rank " << j;
        const double want = l[ids[j]] - lse;
        ASSERT_NEAR(top[j].second, want, kLogprobTol * std::max(1.0, std::fabs(want)));
      }
    }
  }
  // Probabilities sum to one.
  const std::vector<float> l = random_logits(100);
  double total = 0.0;
  for (int i = 0; i < 100; ++i) total += std::exp(static_cast<double>(logprob_of(l, i)));
  EXPECT_NEAR(total, 1.0, 1e-5);
}

}  // namespace
}  // namespace moeserve
