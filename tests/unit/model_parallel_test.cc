// Tensor and expert parallelism over Gloo (DeepseekV2Model::create with ModelParallel): rank
// processes on 127.0.0.1 — TP = 2 holding shares of the heads and intermediate widths, EP = 2
// and EP = 4 holding shares of the routed experts — give the logits of the single-process
// model within 1e-5 (F32 sums in another order) and its greedy tokens, for a prefill and 16
// decode steps, on the tiny golden checkpoints and the bundled model. Widths or expert counts
// that do not divide, FP8 block-scaled weights under TP, and TP with EP are refused.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backend/cpu/cpu_backend.h"
#include "engine/model_runner.h"
#include "engine/sampler.h"
#include "model/checkpoint.h"
#include "model/deepseek_v2.h"
#include "tests/support/rank_group.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

constexpr int kBlockSize = 4;
constexpr int kDecodeSteps = 16;
constexpr double kLogitTol = 1e-5;  // max |tp - one rank| / max |one rank| per step

std::string model_dir(const std::string& name) {
  return name == "bundled" ? std::string(MOESERVE_SOURCE_DIR) + "/models/tiny"
                           : std::string(MOESERVE_SOURCE_DIR) + "/tests/data/tiny/" + name;
}

StatusOr<std::unique_ptr<DeepseekV2Model>> load(const std::string& dir, Backend& be,
                                                const ModelParallel& parallel) {
  ASSIGN_OR_RETURN(ModelConfig config, load_model_config(dir));
  ASSIGN_OR_RETURN(Checkpoint checkpoint, Checkpoint::open(dir));
  ASSIGN_OR_RETURN(DeepseekWeights weights, load_deepseek_weights(config, checkpoint, be));
  return DeepseekV2Model::create(std::move(config), std::move(weights), be, parallel);
}

// A prefill of `prompt` then greedy decode steps: the logits row of each step, and the tokens
// fed. With `want` given, the tokens fed are want's (so a rank stays on the reference's path)
// and each step is compared with it.
struct GreedyRun {
  std::vector<std::vector<float>> logits;
  std::vector<int32_t> tokens;
};

StatusOr<GreedyRun> greedy(DeepseekV2Model& model, const std::vector<int32_t>& prompt,
                           const GreedyRun* want) {
  ModelRunner runner(model, 64, kBlockSize);
  const int seq = runner.create_sequence();
  GreedyRun run;
  std::vector<int32_t> chunk = prompt;
  for (int step = 0; step <= kDecodeSteps; ++step) {
    ASSIGN_OR_RETURN(auto rows, runner.step({{seq, chunk, false}}));
    run.logits.push_back(rows.back());
    const int32_t token =
        want != nullptr ? want->tokens[static_cast<size_t>(step)] : argmax(rows.back());
    run.tokens.push_back(token);
    chunk = {token};
  }
  return run;
}

Status compare(const GreedyRun& got, const GreedyRun& want, int rank) {
  double worst = 0;
  for (size_t step = 0; step < want.logits.size(); ++step) {
    const std::vector<float>& g = got.logits[step];
    const std::vector<float>& w = want.logits[step];
    double diff = 0, ref = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      diff = std::max(diff, std::fabs(static_cast<double>(g[i]) - w[i]));
      ref = std::max(ref, std::fabs(static_cast<double>(w[i])));
    }
    worst = std::max(worst, diff / ref);
    if (!(diff / ref <= kLogitTol)) {
      return absl::InternalError(
          absl::StrCat("step ", step, ": max relative logit error ", diff / ref, " > ", kLogitTol));
    }
    if (argmax(g) != want.tokens[step]) {
      return absl::InternalError(absl::StrCat("step ", step, ": greedy token ", argmax(g),
                                              ", one rank gives ", want.tokens[step]));
    }
  }
  std::printf("rank %d: max relative logit error %.3g over %zu steps, greedy tokens equal\n", rank,
              worst, want.logits.size());
  std::fflush(stdout);  // the rank process ends with _exit
  return absl::OkStatus();
}

enum class Layout { kTp, kEp };

struct ParallelCase {
  Layout layout;
  int world;
  std::string checkpoint;
};

std::string case_name(const ::testing::TestParamInfo<ParallelCase>& info) {
  return absl::StrCat(info.param.layout == Layout::kTp ? "tp" : "ep", info.param.world, "_",
                      info.param.checkpoint);
}

class ModelParallelTest : public ::testing::TestWithParam<ParallelCase> {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "model_parallel_test.XXXXXX");
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    store_dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(store_dir_); }
  std::string store_dir_;
};

TEST_P(ModelParallelTest, RanksMatchOneRank) {
  const ParallelCase& c = GetParam();
  const std::string dir = model_dir(c.checkpoint);
  const std::vector<int32_t> prompt = {1, 17, 42, 5, 99, 23, 8, 64, 3, 11, 77};
  // The reference, before forking: the children inherit it.
  CpuBackend cpu(1);
  auto one = load(dir, cpu, {});
  ASSERT_TRUE(one.ok()) << one.status();
  auto want = greedy(**one, prompt, nullptr);
  ASSERT_TRUE(want.ok()) << want.status();
  const std::vector<RankOutcome> outcomes = run_rank_group(
      {.world_size = c.world,
       .store_dir = store_dir_,
       .prefix = "group",
       .child_limit = std::chrono::seconds(60)},
      [&](Communicator& comm) -> Status {
        CpuBackend be(1);
        const ModelParallel parallel =
            c.layout == Layout::kTp ? ModelParallel{.tp = &comm} : ModelParallel{.ep = &comm};
        ASSIGN_OR_RETURN(auto model, load(dir, be, parallel));
        ASSIGN_OR_RETURN(GreedyRun got, greedy(*model, prompt, &*want));
        return compare(got, *want, comm.rank());
      });
  for (size_t r = 0; r < outcomes.size(); ++r) {
    EXPECT_TRUE(outcomes[r].exited && outcomes[r].exit_code == 0)
        << "rank " << r << ": " << outcomes[r].report;
  }
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, ModelParallelTest,
                         ::testing::Values(ParallelCase{Layout::kTp, 2, "v2_lite_tiny"},
                                           ParallelCase{Layout::kTp, 2, "v3_tiny"},
                                           ParallelCase{Layout::kTp, 2, "v3_bf16_tiny"},
                                           ParallelCase{Layout::kTp, 2, "v2_yarn_mscale_tiny"},
                                           ParallelCase{Layout::kTp, 2, "bundled"},
                                           ParallelCase{Layout::kEp, 2, "v2_lite_tiny"},
                                           ParallelCase{Layout::kEp, 2, "v3_fp8_tiny"},
                                           ParallelCase{Layout::kEp, 4, "v3_tiny"},
                                           ParallelCase{Layout::kEp, 4, "v2_tiny"},
                                           ParallelCase{Layout::kEp, 4, "bundled"}),
                         case_name);

// A group that is never used: create() only asks its size and rank.
class IdleGroup final : public Communicator {
 public:
  explicit IdleGroup(int world = 2) : world_(world) {}
  int rank() const override { return 0; }
  int world_size() const override { return world_; }

 private:
  Status unused() { return absl::InternalError("the idle group carries nothing"); }
  Status all_reduce_sum_impl(std::span<float>) override { return unused(); }
  Status all_gather_impl(std::span<const float>, std::span<float>) override { return unused(); }
  Status reduce_scatter_sum_impl(std::span<const float>, std::span<float>) override {
    return unused();
  }
  Status exchange_counts_impl(std::span<const int32_t>, std::span<int32_t>) override {
    return unused();
  }
  Status all_to_all_impl(std::span<const float>, std::span<const int32_t>, std::span<float>,
                         std::span<const int32_t>) override {
    return unused();
  }
  Status broadcast_impl(std::span<float>, int) override { return unused(); }
  Status send_impl(std::span<const float>, int, uint32_t) override { return unused(); }
  Status recv_impl(std::span<float>, int, uint32_t) override { return unused(); }
  Status barrier_impl() override { return unused(); }
  int world_;
};

TEST(ModelParallelRefusalTest, WhatDoesNotDivideAndWhatIsNotShardableIsRefused) {
  CpuBackend be(1);
  IdleGroup group;
  auto three_heads = load(model_dir("v2_tiny"), be, {.tp = &group});  // 3 heads over 2 ranks
  ASSERT_FALSE(three_heads.ok());
  EXPECT_EQ(three_heads.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(three_heads.status().message().find("num_attention_heads = 3"), std::string::npos)
      << three_heads.status();
  auto fp8 = load(model_dir("v3_fp8_tiny"), be, {.tp = &group});
  ASSERT_FALSE(fp8.ok());
  EXPECT_EQ(fp8.status().code(), absl::StatusCode::kUnimplemented) << fp8.status();
  EXPECT_NE(fp8.status().message().find("FP8"), std::string::npos) << fp8.status();
  IdleGroup four(4);
  auto six_experts = load(model_dir("v3_fp8_tiny"), be, {.ep = &four});  // 6 experts over 4
  ASSERT_FALSE(six_experts.ok());
  EXPECT_EQ(six_experts.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(six_experts.status().message().find("n_routed_experts = 6"), std::string::npos)
      << six_experts.status();
  auto both = load(model_dir("v3_tiny"), be, {.tp = &group, .ep = &group});
  ASSERT_FALSE(both.ok());
  EXPECT_EQ(both.status().code(), absl::StatusCode::kUnimplemented) << both.status();
}

}  // namespace
}  // namespace moeserve
