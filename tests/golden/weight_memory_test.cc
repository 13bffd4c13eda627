// Weights cost what the checkpoint costs: a freshly written checkpoint of
// more than 200 MB, loaded in its own process (weight_memory_probe), must
// peak at no more than 1.10 × its size + KV cache + activation bound + 150 MB
// (issue #18), for BF16 and for FP8 block-scaled weights; and a model that
// does not fit the memory limit is refused before anything is loaded.
#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

#include "tests/support/random_checkpoint.h"
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

namespace moeserve {
namespace {

namespace fs = std::filesystem;

const std::string kBin = MOESERVE_BINARY_DIR;

struct Output {
  int rc = -1;
  std::string text;
};

// Runs `cmd` through the shell; stdout (and stderr when `with_stderr`).
Output run(const std::string& cmd, bool with_stderr) {
  Output out;
  FILE* p = popen((cmd + (with_stderr ? " 2>&1" : "")).c_str(), "r");
  if (p == nullptr) return out;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) out.text.append(buf.data(), n);
  const int status = pclose(p);
  out.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

RandomCheckpointSpec spec(bool fp8) {
  RandomCheckpointSpec s;
  s.vocab_size = 16384;
  s.hidden_size = 1024;
  s.intermediate_size = 2816;
  s.moe_intermediate_size = 512;
  s.num_hidden_layers = 4;
  s.num_attention_heads = 8;
  s.kv_lora_rank = 256;
  s.n_routed_experts = 32;
  s.n_shared_experts = 2;
  s.num_experts_per_tok = 4;
  s.fp8 = fp8;
  s.seed = fp8 ? 2 : 1;
  return s;
}

class WeightMemoryTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("moeserve_weight_memory_" + std::to_string(::getpid()) + (GetParam() ? "_fp8" : ""));
    auto bytes = write_random_checkpoint(dir_.string(), spec(GetParam()));
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    checkpoint_bytes_ = *bytes;
    ASSERT_GE(checkpoint_bytes_, int64_t{200} << 20);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
  int64_t checkpoint_bytes_ = 0;
};

TEST_P(WeightMemoryTest, PeakResidentMemoryIsTheCheckpointSize) {
  constexpr int kPrompt = 64;
  const Output o = run(
      kBin + "/tests/weight_memory_probe " + dir_.string() + " " + std::to_string(kPrompt), false);
  ASSERT_EQ(o.rc, 0) << o.text;
  const nlohmann::json m = nlohmann::json::parse(o.text);
  const double ckpt = m["checkpoint_bytes"].get<double>();
  const double bound = 1.10 * ckpt + m["kv_cache"].get<double>() + m["activations"].get<double>() +
                       double{150 << 20};
  const double peak = m["vm_hwm"].get<double>();
  std::printf("%s: checkpoint %.1f MB, peak RSS %.1f MB (%.3f x), bound %.1f MB, %s\n",
              GetParam() ? "FP8" : "BF16", ckpt / 1e6, peak / 1e6, peak / ckpt, bound / 1e6,
              o.text.c_str());
  EXPECT_LE(peak, bound);
  // The plan made before loading is what loading made.
  EXPECT_EQ(m["planned_weights"], m["weights"]);
  // Prepared weights are the checkpoint's bytes, not a widened copy: FP8 adds
  // only its F32 absorbed kv_b halves and the norms widened to F32.
  EXPECT_LE(m["weights"].get<double>(), (GetParam() ? 1.05 : 1.01) * ckpt);
  // Most of it is used in place from the file's pages.
  EXPECT_GT(m["weights_mapped"].get<double>(), 0.15 * ckpt);
}

TEST_P(WeightMemoryTest, ModelThatDoesNotFitIsRefusedBeforeLoading) {
  const Output gen = run(kBin + "/src/server/moeserve generate --model " + dir_.string() +
                             " --prompt-ids 1,2,3 --max-tokens 1 --memory-limit-gb 0.1",
                         true);
  EXPECT_EQ(gen.rc, 1) << gen.text;
  EXPECT_NE(gen.text.find("the model does not fit: it needs"), std::string::npos) << gen.text;
  EXPECT_NE(gen.text.find("the memory limit is 102.4 MiB (--memory-limit-gb)"), std::string::npos)
      << gen.text;
  EXPECT_EQ(gen.text.find("loaded"), std::string::npos) << gen.text;

  const Output serve = run(kBin + "/src/server/moeserve serve --model " + dir_.string() +
                               " --tokenizer " MOESERVE_SOURCE_DIR "/models/tiny" +
                               " --port 0 --grpc-port -1 --memory-limit-gb 0.1",
                           true);
  EXPECT_EQ(serve.rc, 1) << serve.text;
  EXPECT_NE(serve.text.find("the model does not fit"), std::string::npos) << serve.text;
}

INSTANTIATE_TEST_SUITE_P(Dtypes, WeightMemoryTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Fp8" : "Bf16"; });

}  // namespace
}  // namespace moeserve
