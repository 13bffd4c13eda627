// ModelRunner on the tiny V2-Lite checkpoint: failed steps (cache full,
// unknown sequence, bad token, position past the model) change nothing, so a
// retry gives the same logits as a fresh run; releases return every block.
#include "engine/model_runner.h"

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "model/deepseek_v2.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

// Two runs of the same tokens through the same deterministic CPU ops agree
// to float rounding; stale or foreign cache rows would be off by O(1).
constexpr double kLogitTol = 1e-5;

const std::string kModelDir = std::string(MOESERVE_SOURCE_DIR) + "/tests/data/tiny/v2_lite_tiny";

class ModelRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    seed_ = (static_cast<uint64_t>(rd()) << 32) | rd();
    rng_.seed(seed_);
    auto model = DeepseekV2Model::load(kModelDir, backend_);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    vocab_ = model_->config().vocab_size;
  }
  void TearDown() override {
    if (HasFailure())
      std::printf("ModelRunnerTest seed: %llu\n", static_cast<unsigned long long>(seed_));
  }

  std::vector<int32_t> random_tokens(int n) {
    std::uniform_int_distribution<int32_t> u(0, vocab_ - 1);
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = u(rng_);
    return t;
  }

  // Every layer of the cache, for before/after comparisons.
  static std::vector<std::vector<float>> snapshot(const ModelRunner& r, int n_layers) {
    std::vector<std::vector<float>> s;
    for (int i = 0; i < n_layers; ++i) s.push_back(to_f32_vector(r.cache().layer(i)));
    return s;
  }

  static void expect_logits_near(const std::vector<std::vector<float>>& got,
                                 const std::vector<std::vector<float>>& want) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t r = 0; r < got.size(); ++r) {
      ASSERT_EQ(got[r].size(), want[r].size());
      for (size_t i = 0; i < got[r].size(); ++i) {
        ASSERT_NEAR(got[r][i], want[r][i], kLogitTol * std::max(1.0f, std::fabs(want[r][i])))
            << "row " << r << " logit " << i;
      }
    }
  }

  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  CpuBackend backend_{2};
  std::unique_ptr<DeepseekV2Model> model_;
  int vocab_ = 0;
};

TEST_F(ModelRunnerTest, CacheFullChangesNothingAndRetrySucceeds) {
  const int block_size = 4, n_blocks = 5;
  ModelRunner runner(*model_, n_blocks, block_size);
  const int n_layers = model_->config().num_hidden_layers;
  const int a = runner.create_sequence(), b = runner.create_sequence();
  const std::vector<int32_t> a0 = random_tokens(8), a1 = random_tokens(5), b0 = random_tokens(8),
                             b1 = random_tokens(4);
  ASSERT_TRUE(runner.step({{a, a0, false}}).ok());
  ASSERT_TRUE(runner.step({{b, b0, false}}).ok());
  ASSERT_EQ(runner.n_free_blocks(), 1);
  const auto cache_before = snapshot(runner, n_layers);

  // B's chunk fits in the one free block; A's then needs two more. The block
  // B took must be given back.
  auto full = runner.step({{b, b1, false}, {a, a1, true}});
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted) << full.status();
  EXPECT_EQ(runner.n_free_blocks(), 1);
  EXPECT_EQ(runner.n_cached(a), 8);
  EXPECT_EQ(runner.n_cached(b), 8);
  EXPECT_EQ(snapshot(runner, n_layers), cache_before) << "a failed step wrote the cache";

  // A alone still does not fit (needs 2, 1 free).
  auto still_full = runner.step({{a, a1, true}});
  ASSERT_FALSE(still_full.ok());
  EXPECT_EQ(still_full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(runner.n_free_blocks(), 1);

  runner.release_sequence(b);
  EXPECT_EQ(runner.n_free_blocks(), 3);
  auto retry = runner.step({{a, a1, true}});
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(runner.n_cached(a), 13);
  EXPECT_EQ(runner.n_free_blocks(), 1);
  ASSERT_EQ(retry->size(), a1.size());

  // The same history in a fresh runner.
  ModelRunner fresh(*model_, n_blocks, block_size);
  const int f = fresh.create_sequence();
  ASSERT_TRUE(fresh.step({{f, a0, false}}).ok());
  auto want = fresh.step({{f, a1, true}});
  ASSERT_TRUE(want.ok()) << want.status();
  expect_logits_near(*retry, *want);
}

TEST_F(ModelRunnerTest, UnknownSequenceIsNotFoundAndRollsBack) {
  ModelRunner runner(*model_, 8, 2);
  const int n_layers = model_->config().num_hidden_layers;
  const int a = runner.create_sequence();
  ASSERT_TRUE(runner.step({{a, random_tokens(3), false}}).ok());
  const int free_before = runner.n_free_blocks();
  const auto cache_before = snapshot(runner, n_layers);
  // A's chunk allocates blocks before the unknown id is seen.
  auto r = runner.step({{a, random_tokens(5), false}, {a + 100, random_tokens(1), false}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_EQ(runner.n_free_blocks(), free_before);
  EXPECT_EQ(runner.n_cached(a), 3);
  EXPECT_EQ(snapshot(runner, n_layers), cache_before);
  // A released id is unknown too.
  const int b = runner.create_sequence();
  runner.release_sequence(b);
  auto r2 = runner.step({{b, random_tokens(1), false}});
  EXPECT_EQ(r2.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(runner.n_free_blocks(), free_before);
}

TEST_F(ModelRunnerTest, OutOfVocabTokenIsInvalidArgumentWithNoStateChange) {
  ModelRunner runner(*model_, 8, 2);
  const int n_layers = model_->config().num_hidden_layers;
  const int a = runner.create_sequence(), b = runner.create_sequence();
  const std::vector<int32_t> a0 = random_tokens(3), a1 = random_tokens(4);
  ASSERT_TRUE(runner.step({{a, a0, false}}).ok());
  const int free_before = runner.n_free_blocks();
  const auto cache_before = snapshot(runner, n_layers);
  for (int32_t bad : {vocab_, vocab_ + 1000, -1}) {
    SCOPED_TRACE(::testing::Message() << "bad token " << bad);
    std::vector<int32_t> b_tokens = random_tokens(3);
    b_tokens[1] = bad;
    auto r = runner.step({{a, a1, false}, {b, b_tokens, false}});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_EQ(runner.n_free_blocks(), free_before);
    EXPECT_EQ(runner.n_cached(a), 3);
    EXPECT_EQ(runner.n_cached(b), 0);
    EXPECT_EQ(snapshot(runner, n_layers), cache_before);
  }
  // The good chunk then runs and matches a fresh run.
  auto ok = runner.step({{a, a1, true}});
  ASSERT_TRUE(ok.ok()) << ok.status();
  ModelRunner fresh(*model_, 8, 2);
  const int f = fresh.create_sequence();
  ASSERT_TRUE(fresh.step({{f, a0, false}}).ok());
  auto want = fresh.step({{f, a1, true}});
  ASSERT_TRUE(want.ok());
  expect_logits_near(*ok, *want);
}

TEST_F(ModelRunnerTest, PositionPastTheModelIsRejectedWithNoStateChange) {
  const int max_pos = static_cast<int>(model_->max_positions());
  ModelRunner runner(*model_, max_pos / 8 + 4, 8);
  const int a = runner.create_sequence();
  auto r = runner.step({{a, random_tokens(max_pos + 1), false}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kOutOfRange) << r.status();
  EXPECT_EQ(runner.n_cached(a), 0);
  EXPECT_EQ(runner.n_free_blocks(), max_pos / 8 + 4);
}

TEST_F(ModelRunnerTest, ReleaseReturnsAllBlocks) {
  const int n_blocks = 12, block_size = 3;
  ModelRunner runner(*model_, n_blocks, block_size);
  std::vector<int> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(runner.create_sequence());
  ASSERT_TRUE(runner
                  .step({{ids[0], random_tokens(7), false},
                         {ids[1], random_tokens(1), false},
                         {ids[2], random_tokens(9), false}})
                  .ok());
  // ceil(7/3) + ceil(1/3) + ceil(9/3) = 3 + 1 + 3
  EXPECT_EQ(runner.n_free_blocks(), n_blocks - 7);
  ASSERT_TRUE(runner.step({{ids[1], random_tokens(3), false}}).ok());  // 4 tokens: 2 blocks
  EXPECT_EQ(runner.n_free_blocks(), n_blocks - 8);
  runner.release_sequence(ids[1]);
  EXPECT_EQ(runner.n_free_blocks(), n_blocks - 6);
  runner.release_sequence(ids[0]);
  runner.release_sequence(ids[2]);
  EXPECT_EQ(runner.n_free_blocks(), n_blocks);
  // All blocks can be taken again by one sequence.
  const int big = runner.create_sequence();
  ASSERT_TRUE(runner.step({{big, random_tokens(n_blocks * block_size), false}}).ok());
  EXPECT_EQ(runner.n_free_blocks(), 0);
}

// Decode one token at a time, several sequences batched, block size 1, and
// compare each step's logits with a single prefill of the same history.
TEST_F(ModelRunnerTest, BatchedDecodeMatchesPrefill) {
  ModelRunner runner(*model_, 64, 1);
  const int a = runner.create_sequence(), b = runner.create_sequence();
  const std::vector<int32_t> ta = random_tokens(9), tb = random_tokens(6);
  ASSERT_TRUE(runner
                  .step({{a, {ta.begin(), ta.begin() + 4}, false},
                         {b, {tb.begin(), tb.begin() + 2}, false}})
                  .ok());
  std::vector<std::vector<float>> last_a, last_b;
  for (int i = 0; i < 4; ++i) {
    auto r = runner.step({{b, {tb[2 + i]}, false}, {a, {ta[4 + i]}, false}});
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->size(), 2u);
    last_b = {(*r)[0]};
    last_a = {(*r)[1]};
  }
  EXPECT_EQ(runner.n_cached(a), 8);
  EXPECT_EQ(runner.n_cached(b), 6);
  ModelRunner fresh(*model_, 64, 1);
  const int fa = fresh.create_sequence(), fb = fresh.create_sequence();
  auto wa = fresh.step({{fa, {ta.begin(), ta.begin() + 8}, false}});
  auto wb = fresh.step({{fb, tb, false}});
  ASSERT_TRUE(wa.ok() && wb.ok());
  expect_logits_near(last_a, *wa);
  expect_logits_near(last_b, *wb);
}

// Two chunks of one sequence in one step must mean "append both, in order"
// (or be refused with no state change) — never two chunks at the same positions.
TEST_F(ModelRunnerTest, SameSequenceTwiceInOneStep) {
  ModelRunner runner(*model_, 16, 2);
  const int a = runner.create_sequence();
  const std::vector<int32_t> t0 = random_tokens(3), t1 = random_tokens(2);
  auto r = runner.step({{a, t0, false}, {a, t1, false}});
  if (!r.ok()) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_EQ(runner.n_cached(a), 0);
    EXPECT_EQ(runner.n_free_blocks(), 16);
    return;
  }
  EXPECT_EQ(runner.n_cached(a), 5);
  ModelRunner fresh(*model_, 16, 2);
  const int f = fresh.create_sequence();
  std::vector<int32_t> all = t0;
  all.insert(all.end(), t1.begin(), t1.end());
  auto want = fresh.step({{f, all, false}});
  ASSERT_TRUE(want.ok());
  ASSERT_EQ(r->size(), 2u);
  expect_logits_near({(*r)[1]}, *want);
}

}  // namespace
}  // namespace moeserve
