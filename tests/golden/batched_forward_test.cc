// One step over several sequences (prefill chunks and decodes mixed) must give
// the same logits as running each sequence alone.
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "engine/model_runner.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

constexpr double kMaxRelError = 1e-5;

double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
  double max_diff = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(got[i]) - want[i]));
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(want[i])));
  }
  return max_diff / std::max(max_ref, 1e-30);
}

// A schedule: per step, which sequence gets how many of its next tokens.
using Schedule = std::vector<std::vector<std::pair<int, int>>>;

// Runs `prompts` under `schedule` and returns every token's logits per sequence.
std::vector<std::vector<std::vector<float>>> run(DeepseekV2Model& model,
                                                 const std::vector<std::vector<int32_t>>& prompts,
                                                 const Schedule& schedule, int block_size) {
  ModelRunner runner(model, 128, block_size);
  std::vector<int> ids;
  std::vector<size_t> fed(prompts.size(), 0);
  for (size_t i = 0; i < prompts.size(); ++i) ids.push_back(runner.create_sequence());
  std::vector<std::vector<std::vector<float>>> out(prompts.size());
  for (const auto& step : schedule) {
    std::vector<SequenceChunk> chunks;
    for (auto [s, n] : step) {
      const auto& p = prompts[static_cast<size_t>(s)];
      chunks.push_back({ids[static_cast<size_t>(s)],
                        {p.begin() + static_cast<std::ptrdiff_t>(fed[s]),
                         p.begin() + static_cast<std::ptrdiff_t>(fed[s] + n)},
                        true});
      fed[s] += static_cast<size_t>(n);
    }
    auto rows = runner.step(chunks);
    EXPECT_TRUE(rows.ok()) << rows.status();
    if (!rows.ok()) return {};
    size_t r = 0;
    for (auto [s, n] : step) {
      for (int j = 0; j < n; ++j) out[static_cast<size_t>(s)].push_back((*rows)[r++]);
    }
  }
  return out;
}

class BatchedTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BatchedTest, MixedStepsEqualSingleSequenceRuns) {
  CpuBackend backend(2);
  const std::string dir = std::string(MOESERVE_SOURCE_DIR) + "/tests/data/tiny/" + GetParam();
  auto model = DeepseekV2Model::load(dir, backend);
  ASSERT_TRUE(model.ok()) << model.status();
  const int vocab = (*model)->config().vocab_size;
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int32_t> tok(0, vocab - 1);
  std::vector<std::vector<int32_t>> prompts(3);
  for (auto& p : prompts) {
    p.resize(20);
    for (auto& t : p) t = tok(rng);
  }
  // Alone: one sequence at a time, prefill of 9 then one token per step.
  std::vector<std::vector<std::vector<float>>> alone;
  for (int s = 0; s < 3; ++s) {
    Schedule sched = {{{0, 9}}};
    for (int i = 9; i < 20; ++i) sched.push_back({{0, 1}});
    alone.push_back(run(**model, {prompts[static_cast<size_t>(s)]}, sched, 4)[0]);
  }
  // Together: chunked prefills mixed with decodes of other sequences, block size 3.
  const Schedule mixed = {
      {{0, 5}},
      {{0, 4}, {1, 7}},
      {{0, 1}, {1, 2}, {2, 11}},
      {{2, 1}, {0, 1}, {1, 6}},
      {{1, 5}, {2, 8}, {0, 9}},
  };
  const auto together = run(**model, prompts, mixed, 3);
  ASSERT_EQ(together.size(), 3u);
  for (int s = 0; s < 3; ++s) {
    ASSERT_EQ(together[static_cast<size_t>(s)].size(), 20u);
    for (size_t t = 0; t < 20; ++t) {
      EXPECT_LE(rel_error(together[s][t], alone[s][t]), kMaxRelError)
          << GetParam() << " sequence " << s << " token " << t;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(TinyCheckpoints, BatchedTest,
                         ::testing::Values("v3_tiny", "v2_lite_tiny", "v2_tiny", "v3_fp8_tiny",
                                           "v2_yarn_mscale_tiny", "v3_bf16_tiny"));

}  // namespace
}  // namespace moeserve
