// kernels/log_softmax_topk.cu under the emulator, through its launch function, against a plain
// loop (double log-sum-exp, stable sort): V3's and V2's vocabularies, k = 1 to 20, rows split
// across CTAs (n_sms = 132) and not, a row index list, misaligned rows (the scalar path), many
// ties (ids must then go to the lower id). Fresh random data per run, outputs poisoned first,
// deterministic and random schedules with racecheck on.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/log_softmax_topk.cuh"
#include "kernels/simt/emu/grid.h"
#include "tests/emu/emu_schedule.h"
#include <gtest/gtest.h>

namespace moeserve::kernels {
namespace {

// The device sums float exps in double, the reference double exps: both lse agree to ~1e-7.
constexpr double kAbsTol = 2e-6;
constexpr double kRelTol = 1e-6;

struct Case {
  int64_t n_rows;
  int vocab;
  int64_t stride;  // odd strides misalign rows: the scalar path
  int k;
  int n_sms;
  bool ties;
  bool row_list;  // read rows through `rows` (reversed)
};

class LogSoftmaxTopkEmu : public ScheduledEmuTest {
 protected:
  std::mt19937 rng_{std::random_device{}()};

  void check(const Case& c) {
    SCOPED_TRACE(testing::Message() << "n " << c.n_rows << " vocab " << c.vocab << " stride "
                                    << c.stride << " k " << c.k << " sms " << c.n_sms
                                    << (c.ties ? " ties" : "") << (c.row_list ? " rows" : ""));
    std::vector<float> logits(static_cast<size_t>(c.n_rows * c.stride));
    std::uniform_real_distribution<float> u(-20.0f, 20.0f);
    for (float& v : logits) v = c.ties ? std::round(u(rng_) / 4) : u(rng_);
    std::vector<int32_t> rows(static_cast<size_t>(c.n_rows));
    for (int64_t r = 0; r < c.n_rows; ++r) rows[r] = static_cast<int32_t>(c.n_rows - 1 - r);
    const int64_t is = c.k + 1, ls = c.k + 2;  // padded output rows: nothing written past k
    std::vector<int32_t> ids(static_cast<size_t>(c.n_rows * is), -7);
    std::vector<float> lps(static_cast<size_t>(c.n_rows * ls),
                           std::numeric_limits<float>::quiet_NaN());
    std::vector<unsigned char> ws(
        log_softmax_topk_workspace_bytes(c.n_rows, c.vocab, c.k, c.n_sms));
    LogSoftmaxTopkParams p{};
    p.logits = logits.data();
    p.logits_row_stride = c.stride;
    p.rows = c.row_list ? rows.data() : nullptr;
    p.n_rows = c.n_rows;
    p.vocab = c.vocab;
    p.k = c.k;
    p.ids = ids.data();
    p.ids_row_stride = is;
    p.logprobs = lps.data();
    p.logprobs_row_stride = ls;
    p.n_sms = c.n_sms;
    p.workspace = ws.data();
    ASSERT_EQ(launch_log_softmax_topk(p, nullptr), cudaSuccess)
        << simt::emu::peek_last_error().message;
    std::vector<int32_t> order(static_cast<size_t>(c.vocab));
    for (int64_t r = 0; r < c.n_rows; ++r) {
      const float* l = logits.data() + (c.row_list ? rows[r] : r) * c.stride;
      const float mx = *std::max_element(l, l + c.vocab);
      double sum = 0;
      for (int i = 0; i < c.vocab; ++i) sum += std::exp(double{l[i]} - mx);
      const double lse = mx + std::log(sum);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
      for (int j = 0; j < c.k; ++j) {
        ASSERT_EQ(ids[r * is + j], order[j]) << "row " << r << " rank " << j;
        const double want = l[order[j]] - lse;
        ASSERT_NEAR(lps[r * ls + j], want, kAbsTol + kRelTol * std::fabs(want))
            << "row " << r << " rank " << j;
      }
      ASSERT_EQ(ids[r * is + c.k], -7) << "row " << r;
      ASSERT_TRUE(std::isnan(lps[r * ls + c.k])) << "row " << r;
    }
  }
};

TEST_P(LogSoftmaxTopkEmu, V3VocabularySplitAcrossCtas) {
  check({2, 129280, 129280, 20, 132, false, false});
}
TEST_P(LogSoftmaxTopkEmu, V2VocabularyTop1) { check({1, 102400, 102400, 1, 132, false, true}); }
TEST_P(LogSoftmaxTopkEmu, OneCtaPerRow) { check({3, 102400, 102400, 20, 1, false, true}); }
TEST_P(LogSoftmaxTopkEmu, MisalignedRows) {
  check({4, 5000, 5003, 7, 1, false, false});
  check({2, 30001, 30003, 4, 132, false, true});
}
TEST_P(LogSoftmaxTopkEmu, TiesGoToTheLowerId) {
  check({2, 40000, 40000, 20, 132, true, false});
  check({5, 3000, 3001, 20, 1, true, true});
}
TEST_P(LogSoftmaxTopkEmu, KEqualsVocabulary) { check({3, 20, 21, 20, 132, false, false}); }

INSTANTIATE_TEST_SUITE_P(Schedules, LogSoftmaxTopkEmu, ::testing::Values(0, 1, 2));

}  // namespace
}  // namespace moeserve::kernels
