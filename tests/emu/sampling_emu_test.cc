// kernels/sampling.cu under the emulator, through launch_sample, against a sort-based
// reference written here from the definitions in kernels/sampling_math.h (rank the whole
// row, cut top_k, the top_p prefix, min_p, then the id-order walk): greedy and every
// filter, shaping with distinct and repeated entries, misaligned rows and vocabularies that
// are not a multiple of 4, and the row failures. Fresh random data per run; results are
// poisoned first; deterministic and random schedules with racecheck on. Tokens and statuses
// must be equal; log-probs within kLogprobTol.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/sampling.cuh"
#include "kernels/sampling_math.h"
#include "kernels/simt/emu/grid.h"
#include "tests/emu/emu_schedule.h"
#include <gtest/gtest.h>

namespace moeserve::kernels {
namespace {

namespace sm = sampling_math;

// The kernel sums float exps in double for the log-sum-exp, the reference double exps.
constexpr double kLogprobTol = 1e-5;
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kGreedy = 1e-5f;

struct Lists {
  std::vector<SampleBias> bias;
  std::vector<SamplePenalty> penalties;
  std::vector<int32_t> masks;
};

SampleResult reference(const float* raw, int vocab, const SampleRowDesc& d, const Lists& lists) {
  std::vector<float> l(raw, raw + vocab);
  if (d.shaped_row >= 0) {
    for (int j = 0; j < d.n_bias; ++j)
      l[lists.bias[d.bias_begin + j].token] += lists.bias[d.bias_begin + j].bias;
    for (int j = 0; j < d.n_penalty; ++j) {
      const SamplePenalty& e = lists.penalties[d.penalty_begin + j];
      float& v = l[e.token];
      if (d.repetition_penalty != 1.0f)
        v = v > 0 ? v / d.repetition_penalty : v * d.repetition_penalty;
      if (e.n_output > 0) {
        const float f = d.frequency_penalty * static_cast<float>(e.n_output);
        v -= f;
        v -= d.presence_penalty;
      }
    }
    for (int j = 0; j < d.n_mask; ++j) l[lists.masks[d.mask_begin + j]] = -kInf;
  }
  SampleResult r{};
  for (int i = 0; i < vocab; ++i) {
    if (!std::isfinite(raw[i])) return {0, 0, SampleStatus::kNonFiniteRaw, i, raw[i]};
  }
  for (int i = 0; i < vocab; ++i) {
    if (std::isnan(l[i]) || l[i] == kInf) return {0, 0, SampleStatus::kBadShaped, i, l[i]};
  }
  std::vector<int32_t> cand;
  for (int i = 0; i < vocab; ++i) {
    if (l[i] != -kInf) cand.push_back(i);
  }
  if (cand.empty()) return {0, 0, SampleStatus::kAllMasked, 0, 0};
  std::sort(cand.begin(), cand.end(),
            [&](int a, int b) { return sm::rank_key(l[a], a) > sm::rank_key(l[b], b); });
  int32_t token = cand[0];
  if (d.temperature > kGreedy) {
    if (d.top_k > 0 && static_cast<size_t>(d.top_k) < cand.size()) cand.resize(d.top_k);
    const float best = l[cand[0]];
    const double inv = sm::inverse_temperature(d.temperature);
    auto q = [&](int id) { return sm::fixed_weight(sm::weight(l[id], best, inv)); };
    if (d.top_p < 1.0f) {
      uint64_t total = 0;
      for (int id : cand) total += q(id);
      const uint64_t target = sm::top_p_target(d.top_p, total);
      uint64_t mass = 0;
      for (size_t i = 0; i < cand.size(); ++i) {
        mass += q(cand[i]);
        if (mass >= target) {
          cand.resize(i + 1);
          break;
        }
      }
    }
    if (d.min_p > 0.0f) {
      std::erase_if(cand, [&](int id) { return sm::weight(l[id], best, inv) < double{d.min_p}; });
    }
    std::sort(cand.begin(), cand.end());
    uint64_t total = 0;
    for (int id : cand) total += q(id);
    const uint64_t target = sm::draw_target(d.u, total);
    uint64_t mass = 0;
    token = cand.back();
    for (int id : cand) {
      mass += q(id);
      if (mass > target) {
        token = id;
        break;
      }
    }
  }
  const float mx = *std::max_element(raw, raw + vocab);
  double sum = 0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(double{raw[i]} - mx);
  r.token = token;
  r.logprob = static_cast<float>(raw[token] - (mx + std::log(sum)));
  r.status = SampleStatus::kOk;
  return r;
}

class SamplingEmu : public ScheduledEmuTest {
 protected:
  std::mt19937_64 rng_{std::random_device{}()};
  double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }
  int randint(int n) { return static_cast<int>(rng_() % static_cast<uint64_t>(n)); }

  // n_rows random rows over `vocab` tokens with logits rows `stride` apart.
  void run(int vocab, int64_t stride, int n_rows, bool failures) {
    SCOPED_TRACE(testing::Message() << "vocab " << vocab << " stride " << stride);
    const int n_logits = 3;
    std::vector<float> logits(static_cast<size_t>(n_logits * stride));
    for (float& v : logits) v = static_cast<float>(uniform() * 16.0 - 8.0);
    // Row 2 has ties: few distinct values.
    for (int i = 0; i < vocab; ++i) logits[2 * stride + i] = std::round(logits[2 * stride + i]);
    Lists lists;
    std::vector<SampleRowDesc> rows;
    int64_t n_shaped = 0;
    for (int r = 0; r < n_rows; ++r) {
      SampleRowDesc d{};
      d.logits_row = r % n_logits;
      d.shaped_row = -1;
      d.u = uniform();
      // Over 24 rows (r % 3, r % 8) takes every value: each logits row (row 2 has ties) meets
      // each combination of top_k (r % 4 < 2) and top_p (r % 8 in [3, 7)); min_p on r % 5 == 3.
      d.temperature = r % 7 == 0 ? 0.0f : static_cast<float>(0.3 + 1.5 * uniform());
      d.top_k = r % 4 < 2 ? 1 + randint(60) : 0;
      d.top_p = r % 8 >= 3 && r % 8 < 7 ? static_cast<float>(0.2 + 0.7 * uniform()) : 1.0f;
      d.min_p = r % 5 == 3 ? static_cast<float>(0.3 * uniform()) : 0.0f;
      d.repetition_penalty = 1.0f;
      if (r % 2 == 1) {  // shaped; odd rows of 4 repeat entries (the in-order path)
        const bool repeat = r % 4 == 3;
        d.shaped_row = n_shaped++;
        d.repetition_penalty = 1.3f;
        d.frequency_penalty = 0.4f;
        d.presence_penalty = -0.2f;
        d.bias_begin = static_cast<int32_t>(lists.bias.size());
        for (int j = 0; j < 5; ++j) {
          lists.bias.push_back({repeat ? 7 : 7 + 11 * j, static_cast<float>(uniform() * 4 - 2)});
        }
        d.n_bias = 5;
        d.bias_distinct = !repeat;
        d.penalty_begin = static_cast<int32_t>(lists.penalties.size());
        for (int j = 0; j < 30; ++j) {
          lists.penalties.push_back({repeat ? randint(20) : 3 * j, randint(3)});
        }
        d.n_penalty = 30;
        d.penalty_distinct = !repeat;
        d.mask_begin = static_cast<int32_t>(lists.masks.size());
        lists.masks.insert(lists.masks.end(), {0, 1, 1, vocab - 1});
        d.n_mask = 4;
      }
      rows.push_back(d);
    }
    if (failures) {
      // Row 0 reads a NaN; row 1 gets a +inf bias; row 2 masks everything.
      logits[0 * stride + 5] = std::numeric_limits<float>::quiet_NaN();
      rows[1].bias_begin = static_cast<int32_t>(lists.bias.size());
      lists.bias.push_back({9, kInf});
      rows[1].n_bias = 1;
      rows[2].shaped_row = n_shaped++;
      rows[2].logits_row = 1;
      rows[2].mask_begin = static_cast<int32_t>(lists.masks.size());
      for (int i = 0; i < vocab; ++i) lists.masks.push_back(i);
      rows[2].n_mask = vocab;
      rows[2].n_bias = rows[2].n_penalty = 0;
    }
    const int64_t shaped_stride = (vocab + 3) / 4 * 4;
    std::vector<float> shaped(static_cast<size_t>(std::max<int64_t>(n_shaped, 1) * shaped_stride));
    std::vector<SampleResult> results(rows.size());
    std::memset(results.data(), 0xff, results.size() * sizeof(SampleResult));
    SampleParams p{};
    p.logits = logits.data();
    p.logits_row_stride = stride;
    p.vocab = vocab;
    p.shaped = shaped.data();
    p.shaped_row_stride = shaped_stride;
    p.rows = rows.data();
    p.n_rows = static_cast<int64_t>(rows.size());
    p.bias = lists.bias.data();
    p.penalties = lists.penalties.data();
    p.masks = lists.masks.data();
    p.greedy_temperature = kGreedy;
    p.results = results.data();
    ASSERT_EQ(launch_sample(p, nullptr), cudaSuccess) << simt::emu::peek_last_error().message;
    for (size_t r = 0; r < rows.size(); ++r) {
      const SampleRowDesc& d = rows[r];
      SCOPED_TRACE(testing::Message()
                   << "row " << r << " T " << d.temperature << " top_k " << d.top_k << " top_p "
                   << d.top_p << " min_p " << d.min_p << " shaped " << d.shaped_row);
      const SampleResult want = reference(logits.data() + d.logits_row * stride, vocab, d, lists);
      const SampleResult& got = results[r];
      ASSERT_EQ(got.status, want.status);
      if (want.status != SampleStatus::kOk) {
        if (want.status != SampleStatus::kAllMasked) {
          EXPECT_EQ(got.bad_index, want.bad_index);
          EXPECT_EQ(std::isnan(got.bad_value), std::isnan(want.bad_value));
          if (!std::isnan(want.bad_value)) {
            EXPECT_EQ(got.bad_value, want.bad_value);
          }
        }
        continue;
      }
      EXPECT_EQ(got.token, want.token);
      EXPECT_NEAR(got.logprob, want.logprob, kLogprobTol);
    }
  }
};

TEST_P(SamplingEmu, AlignedRows) { run(1000, 1000, 24, false); }
TEST_P(SamplingEmu, MisalignedRowsAndOddVocabulary) { run(4099, 4101, 16, false); }
TEST_P(SamplingEmu, LargeVocabulary) { run(50000, 50000, 8, false); }
TEST_P(SamplingEmu, RowFailures) { run(777, 779, 6, true); }

INSTANTIATE_TEST_SUITE_P(Schedules, SamplingEmu, ::testing::Values(0, 1, 2));

}  // namespace
}  // namespace moeserve::kernels
