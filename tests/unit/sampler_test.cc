// Sampler (over backend/sampling.h's sample_shaped), sample_rows on the CPU backend, argmax,
// logprob_of, log_softmax_topk_row and validate(SamplingParams) against references
// computed here: softmax and log-softmax in double, a plain filter pipeline (temperature →
// top_k → top_p → min_p) whose distribution the draws must follow, and hand-worked cases.
#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backend/cpu/cpu_backend.h"
#include "seeded_test.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

constexpr double kFreqTol = 0.02;     // |empirical − expected| per token over kDraws
constexpr int kDraws = 20000;         // 0.02 is > 5 standard deviations at this count
constexpr double kLogprobTol = 1e-5;  // relative (F32 result of a double computation)
// Chi-square bound: df + kChiSigmas · sqrt(2 df) + kChiSlack. The statistic has mean df and
// variance 2 df; this bound fails a correct sampler with probability well under 1e-6.
constexpr double kChiSigmas = 6.0;
constexpr double kChiSlack = 10.0;
constexpr double kMinExpectedCount = 5.0;  // rarer tokens are pooled into one bin
// Filter parameters whose cut falls this close to a token's probability (relative) are
// redrawn: the sampler sums in another order, so it may decide such a near-tie either way.
constexpr double kBoundaryMargin = 1e-9;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// The k most likely tokens of `logits` with their log-probabilities (log_softmax_topk_row).
std::vector<std::pair<int32_t, float>> top_logprobs(std::span<const float> logits, int k) {
  const size_t n = std::min(static_cast<size_t>(k), logits.size());
  std::vector<int32_t> ids(n);
  std::vector<float> lps(n);
  log_softmax_topk_row(logits, ids, lps);
  std::vector<std::pair<int32_t, float>> out;
  for (size_t i = 0; i < n; ++i) out.emplace_back(ids[i], lps[i]);
  return out;
}

class SamplerTest : public test::SeededTest {
 protected:
  std::vector<float> random_logits(int n, float spread = 4.0f) {
    std::uniform_real_distribution<float> u(-spread, spread);
    std::vector<float> l(static_cast<size_t>(n));
    for (auto& x : l) x = u(rng_);
    return l;
  }
  uint64_t next_seed() { return rng_(); }
  double uniform(double lo, double hi) {
    return std::uniform_real_distribution<double>(lo, hi)(rng_);
  }

  static std::vector<double> softmax(const std::vector<float>& l, double temperature = 1.0) {
    const double mx = *std::max_element(l.begin(), l.end());
    std::vector<double> p(l.size());
    double s = 0.0;
    for (size_t i = 0; i < l.size(); ++i) s += (p[i] = std::exp((l[i] - mx) / temperature));
    for (double& x : p) x /= s;
    return p;
  }
  static int32_t draw(Sampler& s, std::span<const float> raw, std::span<const float> processed) {
    auto r = s.sample(raw, processed);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->token : -1;
  }
  static std::vector<double> frequencies(Sampler& s, const std::vector<float>& l, int draws) {
    std::vector<double> f(l.size(), 0.0);
    for (int i = 0; i < draws; ++i) {
      const int32_t t = draw(s, l, l);
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
  // Pearson's statistic of `counts` (summing to n_draws) against `want`; tokens expected fewer
  // than kMinExpectedCount times share one bin. Tokens with zero probability must never appear.
  static void expect_chi_square_fits(const std::vector<int>& counts,
                                     const std::vector<double>& want, int n_draws) {
    ASSERT_EQ(counts.size(), want.size());
    double chi = 0.0, pooled_obs = 0.0, pooled_exp = 0.0;
    int bins = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      if (want[i] == 0.0) {
        EXPECT_EQ(counts[i], 0) << "token " << i << " has probability 0";
        continue;
      }
      const double e = want[i] * n_draws;
      if (e < kMinExpectedCount) {
        pooled_obs += counts[i];
        pooled_exp += e;
        continue;
      }
      chi += (counts[i] - e) * (counts[i] - e) / e;
      ++bins;
    }
    if (pooled_exp > 0) {
      chi += (pooled_obs - pooled_exp) * (pooled_obs - pooled_exp) / pooled_exp;
      ++bins;
    }
    const double df = std::max(1, bins - 1);
    EXPECT_LT(chi, df + kChiSigmas * std::sqrt(2.0 * df) + kChiSlack) << "bins " << bins;
  }
};

int32_t ref_argmax(const std::vector<float>& l) {
  int32_t best = 0;
  for (size_t i = 1; i < l.size(); ++i)
    if (l[i] > l[static_cast<size_t>(best)]) best = static_cast<int32_t>(i);
  return best;
}

// The distribution the sampler must draw from, written from the definitions: softmax at the
// temperature over unmasked tokens; keep the top_k; renormalise; keep the shortest prefix whose
// mass reaches top_p; keep p ≥ min_p · p_max; renormalise. Sets *near_boundary when a cut is
// within kBoundaryMargin of deciding differently.
std::vector<double> reference_distribution(const std::vector<float>& l, const SamplingParams& sp,
                                           bool* near_boundary) {
  const size_t n = l.size();
  std::vector<double> p(n, 0.0);
  std::vector<size_t> order;
  for (size_t i = 0; i < n; ++i)
    if (l[i] != -kInf) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return l[a] > l[b]; });
  if (sp.top_k > 0 && static_cast<size_t>(sp.top_k) < order.size())
    order.resize(static_cast<size_t>(sp.top_k));
  double s = 0.0;
  for (size_t i : order)
    s += (p[i] = std::exp((static_cast<double>(l[i]) - l[order[0]]) / sp.temperature));
  for (size_t i : order) p[i] /= s;
  *near_boundary = false;
  if (sp.top_p < 1.0f) {
    double cum = 0.0;
    size_t keep = order.size();
    for (size_t r = 0; r < order.size(); ++r) {
      const double before = cum;
      cum += p[order[r]];
      if (std::fabs(cum - sp.top_p) < kBoundaryMargin ||
          std::fabs(before - sp.top_p) < kBoundaryMargin) {
        *near_boundary = true;
      }
      if (cum >= sp.top_p) {
        keep = r + 1;
        break;
      }
    }
    for (size_t r = keep; r < order.size(); ++r) p[order[r]] = 0.0;
    order.resize(keep);
  }
  const double p_max = p[order[0]];
  double kept = 0.0;
  for (size_t i : order) {
    if (std::fabs(p[i] - sp.min_p * p_max) < kBoundaryMargin * p_max) *near_boundary = true;
    if (p[i] < sp.min_p * p_max) p[i] = 0.0;
    kept += p[i];
  }
  for (double& x : p) x /= kept;
  return p;
}

TEST_F(SamplerTest, GreedyIsArgmax) {
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 1 + static_cast<int>(next_seed() % 500);
    std::vector<float> l = random_logits(n);
    EXPECT_EQ(argmax(l), ref_argmax(l));
    for (float temp : {0.0f, 1e-6f, kGreedyTemperature}) {
      SamplingParams p;
      p.temperature = temp;
      p.top_k = 3;  // filters do not apply to greedy
      p.min_p = 0.9f;
      p.seed = next_seed();
      Sampler s(p);
      EXPECT_EQ(draw(s, l, l), ref_argmax(l));
    }
  }
  // Ties go to the lowest index.
  const std::vector<float> tie{1.0f, 3.0f, 2.0f, 3.0f};
  EXPECT_EQ(argmax(tie), 1);
  // Greedy picks from the processed row and skips masked tokens.
  const std::vector<float> raw{0.0f, -9.0f, 9.0f};
  const std::vector<float> masked{-kInf, -5.0f, -kInf};
  Sampler s(SamplingParams{});
  EXPECT_EQ(draw(s, raw, masked), 1);
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
    other.seed = *params.seed + 1 + next_seed() % 1000;
    Sampler s3(other);
    int same = 0;
    for (int i = 0; i < n; ++i) {
      const int32_t a = draw(s1, l, l), b = draw(s2, l, l), c = draw(s3, l, l);
      ASSERT_EQ(a, b) << "same seed diverged at draw " << i;
      same += a == c;
    }
    // Independent streams agree at rate `collision` (≈ 0.03 here); allow 3×.
    EXPECT_LT(same, 3.0 * collision * n + 20) << "seeds " << *params.seed << " and " << *other.seed;
  }
}

TEST_F(SamplerTest, SequenceIndexOffsetsTheSeedAndAbsentSeedIsRandomButReproducible) {
  const std::vector<float> l = random_logits(40, 1.0f);
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = next_seed();
  SamplingParams p3 = p;
  p3.seed = *p.seed + 3;
  Sampler third(p, 3), direct(p3);
  EXPECT_EQ(third.seed(), *p3.seed);
  for (int i = 0; i < 500; ++i) ASSERT_EQ(draw(third, l, l), draw(direct, l, l)) << i;

  // No seed: each sampler draws its own; replaying its seed replays its tokens.
  p.seed.reset();
  Sampler a(p), b(p);
  EXPECT_NE(a.seed(), b.seed());  // 64-bit seeds: a collision is a broken random_device
  SamplingParams replay = p;
  replay.seed = a.seed();
  Sampler a2(replay);
  for (int i = 0; i < 500; ++i) ASSERT_EQ(draw(a, l, l), draw(a2, l, l)) << i;
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
      ASSERT_EQ(draw(s, l, l), ref_argmax(l)) << "temperature " << temp;
    }
  }
}

TEST_F(SamplerTest, TinyTopPOrMinPOneKeepsOnlyTheBestToken) {
  for (float temp : {0.5f, 1.0f, 10.0f}) {
    for (bool use_min_p : {false, true}) {
      SamplingParams p;
      p.temperature = temp;
      if (use_min_p) {
        p.min_p = 1.0f;
      } else {
        p.top_p = 1e-6f;
      }
      p.seed = next_seed();
      Sampler s(p);
      for (int i = 0; i < 300; ++i) {
        const std::vector<float> l = random_logits(64, 0.5f);
        ASSERT_EQ(draw(s, l, l), ref_argmax(l)) << "temperature " << temp << " min_p " << use_min_p;
      }
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

TEST_F(SamplerTest, TopKTopPMinPRenormaliseTheKeptTokens) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 in shuffled slots.
  std::vector<int> slot{0, 1, 2, 3};
  std::shuffle(slot.begin(), slot.end(), rng_);
  const double probs[4] = {0.5, 0.3, 0.15, 0.05};
  std::vector<float> l(4);
  for (int i = 0; i < 4; ++i) l[slot[i]] = static_cast<float>(std::log(probs[i]) + 3.0);
  auto params = [&](int top_k, float top_p, float min_p) {
    SamplingParams p;
    p.temperature = 1.0f;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.seed = next_seed();
    return p;
  };
  {
    SCOPED_TRACE("top_k = 3");
    Sampler s(params(3, 1.0f, 0.0f));
    std::vector<double> want(4, 0.0);
    for (int i = 0; i < 3; ++i) want[slot[i]] = probs[i] / 0.95;
    expect_freqs(frequencies(s, l, kDraws), want);
  }
  {
    SCOPED_TRACE("top_p = 0.7");  // 0.5 < 0.7 ≤ 0.8: the two best tokens
    Sampler s(params(0, 0.7f, 0.0f));
    std::vector<double> want(4, 0.0);
    want[slot[0]] = 0.5 / 0.8;
    want[slot[1]] = 0.3 / 0.8;
    expect_freqs(frequencies(s, l, kDraws), want);
  }
  {
    SCOPED_TRACE("top_k = 2, top_p = 0.6 of the renormalised pair");
    // After top_k the pair is (0.625, 0.375): 0.625 ≥ 0.6 keeps only the best.
    Sampler s(params(2, 0.6f, 0.0f));
    std::vector<double> want(4, 0.0);
    want[slot[0]] = 1.0;
    expect_freqs(frequencies(s, l, 2000), want);
  }
  {
    SCOPED_TRACE("min_p = 0.2");  // threshold 0.2 · 0.5 = 0.1: drops only 0.05
    Sampler s(params(0, 1.0f, 0.2f));
    std::vector<double> want(4, 0.0);
    for (int i = 0; i < 3; ++i) want[slot[i]] = probs[i] / 0.95;
    expect_freqs(frequencies(s, l, kDraws), want);
  }
  {
    SCOPED_TRACE("min_p = 0.5");  // threshold 0.25: keeps 0.5 and 0.3
    Sampler s(params(0, 1.0f, 0.5f));
    std::vector<double> want(4, 0.0);
    want[slot[0]] = 0.5 / 0.8;
    want[slot[1]] = 0.3 / 0.8;
    expect_freqs(frequencies(s, l, kDraws), want);
  }
  {
    SCOPED_TRACE("min_p = 0.5 at temperature 2");
    // Temperature 2 takes square roots: √0.5 : √0.3 : √0.15 : √0.05 ≈ .707 .548 .387 .224;
    // the threshold 0.5 · .707 = .354 keeps three.
    SamplingParams p = params(0, 1.0f, 0.5f);
    p.temperature = 2.0f;
    Sampler s(p);
    std::vector<double> want(4, 0.0);
    const double z = std::sqrt(0.5) + std::sqrt(0.3) + std::sqrt(0.15);
    for (int i = 0; i < 3; ++i) want[slot[i]] = std::sqrt(probs[i]) / z;
    expect_freqs(frequencies(s, l, kDraws), want);
  }
}

// Random logits, random masks and random filter settings against reference_distribution,
// with a chi-square bound on the counts.
TEST_F(SamplerTest, RandomFiltersFollowTheReferenceDistribution) {
  constexpr int kConfigs = 40;
  constexpr int kConfigDraws = 20000;
  for (int config = 0; config < kConfigs; ++config) {
    const int n = 2 + static_cast<int>(next_seed() % 30);
    std::vector<float> raw = random_logits(n, 3.0f);
    std::vector<float> processed = raw;
    for (auto& x : processed)
      if (next_seed() % 5 == 0) x = -kInf;                     // masked by a logits processor
    processed[next_seed() % static_cast<size_t>(n)] = raw[0];  // at least one survives
    SamplingParams p;
    std::vector<double> want;
    for (bool near = true; near;) {
      p.temperature = static_cast<float>(uniform(0.2, 3.0));
      p.top_k =
          next_seed() % 3 == 0 ? 0 : 1 + static_cast<int>(next_seed() % static_cast<uint64_t>(n));
      p.top_p = next_seed() % 3 == 0 ? 1.0f : static_cast<float>(uniform(0.05, 1.0));
      p.min_p = next_seed() % 3 == 0 ? 0.0f : static_cast<float>(uniform(0.0, 0.7));
      want = reference_distribution(processed, p, &near);
    }
    p.seed = next_seed();
    SCOPED_TRACE(::testing::Message()
                 << "config " << config << ": n " << n << " temperature " << p.temperature
                 << " top_k " << p.top_k << " top_p " << p.top_p << " min_p " << p.min_p);
    Sampler s(p);
    std::vector<int> counts(static_cast<size_t>(n), 0);
    for (int i = 0; i < kConfigDraws; ++i) {
      const int32_t t = draw(s, raw, processed);
      ASSERT_TRUE(t >= 0 && t < n);
      ++counts[static_cast<size_t>(t)];
    }
    expect_chi_square_fits(counts, want, kConfigDraws);
  }
}

// A flat distribution over a large vocabulary: the top_p prefix spans thousands of tokens, so
// the sampler ranks several growing blocks before the mass is reached.
TEST_F(SamplerTest, TopPOverALargeVocabularyRanksAsFarAsNeeded) {
  constexpr int kVocabSize = 2000;
  constexpr int kLargeDraws = 20000;  // ≈ 20 per kept token
  for (float top_p : {0.5f}) {
    std::vector<float> l = random_logits(kVocabSize, 0.5f);
    SamplingParams p;
    p.temperature = 1.0f;
    p.top_p = top_p;
    p.seed = next_seed();
    bool near = false;
    const std::vector<double> want = reference_distribution(l, p, &near);
    ASSERT_FALSE(near) << "top_p " << top_p << " falls on a token boundary; rerun";
    const auto n_kept = std::count_if(want.begin(), want.end(), [](double x) { return x > 0; });
    ASSERT_GT(n_kept, 600) << "the prefix should span several ranking blocks";
    SCOPED_TRACE(::testing::Message() << "top_p " << top_p << ", " << n_kept << " tokens kept");
    Sampler s(p);
    std::vector<int> counts(l.size(), 0);
    for (int i = 0; i < kLargeDraws; ++i) ++counts[static_cast<size_t>(draw(s, l, l))];
    expect_chi_square_fits(counts, want, kLargeDraws);
  }
}

// The chi-square check itself must reject a sampler that is slightly off: here, draws from
// the softmax at temperature 1.1 tested against temperature 1.
TEST_F(SamplerTest, ChiSquareCheckDetectsAWrongTemperature) {
  const std::vector<float> l = random_logits(8, 2.0f);
  SamplingParams p;
  p.temperature = 1.1f;
  p.seed = next_seed();
  Sampler s(p);
  constexpr int kN = 200000;
  std::vector<int> counts(l.size(), 0);
  for (int i = 0; i < kN; ++i) ++counts[static_cast<size_t>(draw(s, l, l))];
  const std::vector<double> want = softmax(l, 1.0);
  double chi = 0.0;
  for (size_t i = 0; i < l.size(); ++i) {
    const double e = want[i] * kN;
    chi += (counts[i] - e) * (counts[i] - e) / e;
  }
  const double df = static_cast<double>(l.size()) - 1;
  EXPECT_GT(chi, df + kChiSigmas * std::sqrt(2.0 * df) + kChiSlack);
}

TEST_F(SamplerTest, LogprobsComeFromTheRawLogits) {
  for (int trial = 0; trial < 50; ++trial) {
    const int n = 2 + static_cast<int>(next_seed() % 100);
    const std::vector<float> raw = random_logits(n, 6.0f);
    std::vector<float> processed = raw;
    for (auto& x : processed) x = x * 0.5f - 1.0f;  // any processing
    processed[static_cast<size_t>(next_seed() % static_cast<uint64_t>(n))] = -kInf;
    SamplingParams p;
    p.temperature = static_cast<float>(uniform(0.0, 2.0));
    p.top_k = static_cast<int>(next_seed() % 5);
    p.logprobs = true;
    p.top_logprobs = static_cast<int>(next_seed() % 21);
    p.seed = next_seed();
    Sampler s(p);
    auto r = s.sample(raw, processed);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_NE(processed[static_cast<size_t>(r->token)], -kInf);
    const std::vector<double> q = softmax(raw);
    const double want = std::log(q[static_cast<size_t>(r->token)]);
    EXPECT_NEAR(r->logprob, want, kLogprobTol * std::max(1.0, std::fabs(want)));
    const auto top = top_logprobs(raw, p.top_logprobs);
    ASSERT_EQ(r->top_logprobs.size(), top.size());
    for (size_t j = 0; j < top.size(); ++j) {
      EXPECT_EQ(r->top_logprobs[j].token, top[j].first);
      EXPECT_EQ(r->top_logprobs[j].logprob, top[j].second);
    }
  }
  // Without logprobs no alternatives are returned, whatever top_logprobs says.
  SamplingParams p;
  p.top_logprobs = 5;
  Sampler s(p);
  const std::vector<float> l = random_logits(10);
  auto r = s.sample(l);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->top_logprobs.empty());
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

TEST_F(SamplerTest, NonFiniteLogitsFailTheRequestNotTheProcess) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = next_seed();
  Sampler s(p);
  const std::vector<float> good = random_logits(16);
  auto expect_error = [&](std::vector<float> raw, std::vector<float> processed,
                          const std::string& msg,
                          absl::StatusCode code = absl::StatusCode::kInvalidArgument) {
    auto r = s.sample(raw, processed);
    ASSERT_FALSE(r.ok()) << msg;
    EXPECT_EQ(r.status().code(), code);
    EXPECT_EQ(r.status().message(), msg);
  };
  // The model's fault, not the request's: Internal.
  for (float bad : {kNaN, kInf, -kInf}) {
    std::vector<float> raw = good;
    raw[7] = bad;
    expect_error(raw, good, absl::StrCat("model produced a non-finite logit ", bad, " for token 7"),
                 absl::StatusCode::kInternal);
  }
  for (float bad : {kNaN, kInf}) {
    std::vector<float> processed = good;
    processed[3] = bad;
    expect_error(good, processed, absl::StrCat("logits processing produced ", bad, " for token 3"));
  }
  expect_error(good, std::vector<float>(16, -kInf), "every token is masked (all logits are -inf)");
  expect_error(good, std::vector<float>(15, 0.0f),
               "logits rows must be non-empty and of equal size, got 16 raw and 15 processed");
  expect_error({}, {},
               "logits rows must be non-empty and of equal size, got 0 raw and 0 processed");
  // Greedy checks too.
  SamplingParams greedy;
  Sampler g(greedy);
  std::vector<float> nan_row = good;
  nan_row[0] = kNaN;
  EXPECT_FALSE(g.sample(nan_row).ok());
  // The sampler is still usable afterwards.
  auto r = s.sample(good);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->token >= 0 && r->token < 16);
}

// sample_rows on the CPU backend: every row as its own Sampler would draw it (after its
// LogitsProcessor), and a bad row fails alone.
TEST_F(SamplerTest, SampleRowsSamplesEachRowAsAloneAndFailsOnlyBadRows) {
  constexpr int kVocab = 32;
  Tensor logits = Tensor::empty_host(DType::kF32, {3, kVocab});
  std::vector<std::vector<float>> rows;
  for (int r = 0; r < 3; ++r) {
    rows.push_back(random_logits(kVocab));
    std::copy(rows.back().begin(), rows.back().end(), logits.data<float>() + r * kVocab);
  }
  logits.data<float>()[1 * kVocab + 5] = kNaN;
  SamplingParams p;
  p.temperature = 0.8f;
  p.seed = next_seed();
  SamplingParams biased = p;
  biased.logit_bias = {{4, kMaxLogitBias}};  // the processor is active: token 4 wins
  const std::vector<int32_t> eos = {0};
  LogitsProcessor plain_lp(p, eos), biased_lp(biased, eos);
  TokenCounts counts;
  Sampler a(p, 0), b(p, 1), c(biased, 2);
  const std::vector<RowToSample> batch = {
      {.row = 2, .processor = &plain_lp, .counts = &counts, .sampler = &a},
      {.row = 1, .processor = &plain_lp, .counts = &counts, .sampler = &b},
      {.row = 0, .processor = &biased_lp, .counts = &counts, .sampler = &c}};
  CpuBackend cpu(2);
  const auto got = sample_rows(cpu, logits, batch);
  ASSERT_EQ(got.size(), 3u);
  Sampler want_a(p, 0);
  auto want = want_a.sample(rows[2]);
  ASSERT_TRUE(got[0].ok() && want.ok());
  EXPECT_EQ(got[0]->token, want->token);
  EXPECT_FLOAT_EQ(got[0]->logprob, want->logprob);
  ASSERT_FALSE(got[1].ok());
  EXPECT_EQ(got[1].status().code(), absl::StatusCode::kInternal);
  ASSERT_TRUE(got[2].ok()) << got[2].status();
  EXPECT_EQ(got[2]->token, 4);
  EXPECT_FLOAT_EQ(got[2]->logprob, logprob_of(rows[0], 4));  // of the raw row
}

// ---- validate ----

constexpr int kVocab = 1000;
constexpr int kMaxN = 8;

std::string validation_error(const SamplingParams& p) {
  const Status s = validate(p, kVocab, kMaxN);
  if (s.ok()) return "OK";
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  return std::string(s.message());
}

template <typename Edit>
std::string error_with(Edit edit) {
  SamplingParams p;
  edit(p);
  return validation_error(p);
}

TEST(ValidateSamplingParams, AcceptsDefaultsAndEveryBoundary) {
  EXPECT_EQ(validation_error(SamplingParams{}), "OK");
  SamplingParams p;
  p.temperature = 2.0f;
  p.top_k = -1;
  p.top_p = 1.0f;
  p.min_p = 1.0f;
  p.seed = 0;
  p.logit_bias = {{0, -100.0f}, {kVocab - 1, 100.0f}};
  p.presence_penalty = -2.0f;
  p.frequency_penalty = 2.0f;
  p.repetition_penalty = 1e-3f;
  p.max_tokens = 1;
  p.min_tokens = 1;
  p.ignore_eos = true;
  p.stop = {"a", "b", "c", std::string(kMaxStopStringBytes, 'x')};
  p.stop_token_ids = {0, kVocab - 1};
  p.logprobs = true;
  p.top_logprobs = 20;
  p.n = kMaxN;
  EXPECT_EQ(validation_error(p), "OK");
  p.top_k = 0;
  p.top_p = 1e-6f;
  p.min_p = 0.0f;
  p.top_logprobs = 0;
  p.n = 1;
  p.temperature = 100.0f;  // vLLM sets no upper bound
  EXPECT_EQ(validation_error(p), "OK");
}

TEST(ValidateSamplingParams, RefusesEachFieldWithItsValue) {
  using P = SamplingParams;
  EXPECT_EQ(error_with([](P& p) { p.temperature = -1.0f; }),
            "temperature must be non-negative, got -1");
  EXPECT_EQ(error_with([](P& p) { p.top_k = -2; }),
            "top_k must be 0 or -1 (disabled), or at least 1, got -2");
  EXPECT_EQ(error_with([](P& p) { p.top_p = 0.0f; }), "top_p must be in (0, 1], got 0");
  EXPECT_EQ(error_with([](P& p) { p.top_p = 1.5f; }), "top_p must be in (0, 1], got 1.5");
  EXPECT_EQ(error_with([](P& p) { p.min_p = -0.25f; }), "min_p must be in [0, 1], got -0.25");
  EXPECT_EQ(error_with([](P& p) { p.min_p = 1.5f; }), "min_p must be in [0, 1], got 1.5");
  EXPECT_EQ(error_with([](P& p) {
              p.logit_bias = {{5, 1.0f}, {kVocab, 1.0f}};
            }),
            "logit_bias token id 1000 is out of vocabulary (size 1000)");
  EXPECT_EQ(error_with([](P& p) {
              p.logit_bias = {{-1, 1.0f}};
            }),
            "logit_bias token id -1 is out of vocabulary (size 1000)");
  EXPECT_EQ(error_with([](P& p) {
              p.logit_bias = {{7, 100.5f}};
            }),
            "logit_bias[7] must be in [-100, 100], got 100.5");
  EXPECT_EQ(error_with([](P& p) {
              p.logit_bias = {{7, -101.0f}};
            }),
            "logit_bias[7] must be in [-100, 100], got -101");
  EXPECT_EQ(error_with([](P& p) { p.presence_penalty = 2.5f; }),
            "presence_penalty must be in [-2, 2], got 2.5");
  EXPECT_EQ(error_with([](P& p) { p.presence_penalty = -3.0f; }),
            "presence_penalty must be in [-2, 2], got -3");
  EXPECT_EQ(error_with([](P& p) { p.frequency_penalty = -2.5f; }),
            "frequency_penalty must be in [-2, 2], got -2.5");
  EXPECT_EQ(error_with([](P& p) { p.repetition_penalty = 0.0f; }),
            "repetition_penalty must be greater than zero, got 0");
  EXPECT_EQ(error_with([](P& p) { p.repetition_penalty = -1.0f; }),
            "repetition_penalty must be greater than zero, got -1");
  EXPECT_EQ(error_with([](P& p) { p.max_tokens = 0; }), "max_tokens must be at least 1, got 0");
  EXPECT_EQ(error_with([](P& p) { p.min_tokens = -1; }),
            "min_tokens must be greater than or equal to 0, got -1");
  EXPECT_EQ(error_with([](P& p) {
              p.max_tokens = 5;
              p.min_tokens = 6;
            }),
            "min_tokens must be less than or equal to max_tokens=5, got 6");
  EXPECT_EQ(error_with([](P& p) {
              p.stop = {"a", "b", "c", "d", "e"};
            }),
            "stop must have at most 4 strings, got 5");
  EXPECT_EQ(error_with([](P& p) { p.stop = {"a", ""}; }), "stop[1] must not be empty");
  EXPECT_EQ(error_with([](P& p) { p.stop = {std::string(kMaxStopStringBytes + 1, 'x')}; }),
            "stop[0] must be at most 1024 bytes, got 1025");
  EXPECT_EQ(error_with([](P& p) {
              p.stop_token_ids = {1, kVocab};
            }),
            "stop_token_ids token id 1000 is out of vocabulary (size 1000)");
  EXPECT_EQ(error_with([](P& p) { p.stop_token_ids = {-5}; }),
            "stop_token_ids token id -5 is out of vocabulary (size 1000)");
  EXPECT_EQ(error_with([](P& p) {
              p.logprobs = true;
              p.top_logprobs = 21;
            }),
            "top_logprobs must be in [0, 20], got 21");
  EXPECT_EQ(error_with([](P& p) {
              p.logprobs = true;
              p.top_logprobs = -1;
            }),
            "top_logprobs must be in [0, 20], got -1");
  EXPECT_EQ(error_with([](P& p) { p.top_logprobs = 3; }),
            "top_logprobs must be 0 when logprobs is false, got 3");
  EXPECT_EQ(error_with([](P& p) { p.n = 0; }), "n must be at least 1, got 0");
  EXPECT_EQ(error_with([](P& p) { p.n = kMaxN + 1; }), "n must be at most 8, got 9");
  EXPECT_EQ(validate(SamplingParams{}, 0, kMaxN).message(), "vocab_size must be at least 1, got 0");
  EXPECT_EQ(validate(SamplingParams{}, kVocab, 0).message(), "max_n must be at least 1, got 0");
}

TEST(ValidateSamplingParams, RefusesNaNAndInfinityEverywhere) {
  using P = SamplingParams;
  for (float bad : {kNaN, kInf, -kInf}) {
    const std::string v = absl::StrCat(bad);  // "nan", "inf", "-inf"
    SCOPED_TRACE(v);
    EXPECT_EQ(error_with([&](P& p) { p.temperature = bad; }),
              "temperature must be a finite number, got " + v);
    EXPECT_EQ(error_with([&](P& p) { p.top_p = bad; }), "top_p must be a finite number, got " + v);
    EXPECT_EQ(error_with([&](P& p) { p.min_p = bad; }), "min_p must be a finite number, got " + v);
    EXPECT_EQ(error_with([&](P& p) { p.presence_penalty = bad; }),
              "presence_penalty must be a finite number, got " + v);
    EXPECT_EQ(error_with([&](P& p) { p.frequency_penalty = bad; }),
              "frequency_penalty must be a finite number, got " + v);
    EXPECT_EQ(error_with([&](P& p) { p.repetition_penalty = bad; }),
              "repetition_penalty must be a finite number, got " + v);
    EXPECT_EQ(error_with([&](P& p) {
                p.logit_bias = {{3, bad}};
              }),
              "logit_bias[3] must be a finite number, got " + v);
  }
}

}  // namespace
}  // namespace moeserve
