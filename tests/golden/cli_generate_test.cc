// `moeserve generate` end to end: golden greedy continuations through the
// binary, text prompts through the model directory's tokenizer, and usage errors.
#include <array>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "model/safetensors.h"
#include "tokenizer/tokenizer.h"
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

namespace moeserve {
namespace {

namespace fs = std::filesystem;

const std::string kBinary = std::string(MOESERVE_BINARY_DIR) + "/src/server/moeserve";
const fs::path kData = fs::path(MOESERVE_SOURCE_DIR) / "tests" / "data";

struct RunResult {
  int exit_code = -1;
  std::string out;  // stdout only
};

RunResult run(const std::string& args) {
  RunResult r;
  FILE* p = popen((kBinary + " generate --log-level off " + args + " 2>/dev/null").c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  return r;
}

std::vector<int32_t> golden_ids(const std::string& model, const std::string& tensor) {
  auto file = SafetensorsFile::open((kData / "tiny" / model / "golden.safetensors").string());
  EXPECT_TRUE(file.ok()) << file.status();
  auto t = (*file)->tensor(tensor);
  EXPECT_TRUE(t.ok()) << t.status();
  return {t->data<int32_t>(), t->data<int32_t>() + t->numel()};
}

class CliGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(CliGolden, GreedyContinuationMatchesReference) {
  const std::vector<int32_t> prompt = golden_ids(GetParam(), "prompt_ids");
  std::string ids;
  for (int32_t id : prompt) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  const RunResult r = run("--model " + (kData / "tiny" / GetParam()).string() + " --prompt-ids " +
                          ids + " --max-tokens 16 --json --top-logprobs 3");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const nlohmann::json out = nlohmann::json::parse(r.out);
  EXPECT_EQ(out["prompt_ids"].get<std::vector<int32_t>>(), prompt);
  EXPECT_EQ(out["generated_ids"].get<std::vector<int32_t>>(), golden_ids(GetParam(), "decode_ids"));
  ASSERT_EQ(out["steps"].size(), 16u);
  for (const auto& step : out["steps"]) {
    // Greedy: the chosen token is the most likely one, with its log-probability.
    EXPECT_EQ(step["top_logprobs"][0]["token"], step["token"]);
    EXPECT_FLOAT_EQ(step["top_logprobs"][0]["logprob"].get<float>(), step["logprob"].get<float>());
    EXPECT_LE(step["logprob"].get<float>(), 0.0f);
  }
}

INSTANTIATE_TEST_SUITE_P(TinyCheckpoints, CliGolden,
                         ::testing::Values("v3_tiny", "v2_lite_tiny", "v3_fp8_tiny"));

TEST(CliText, PromptIsEncodedWithTheModelsTokenizer) {
  // A tiny model directory with a byte-level tokenizer beside its weights.
  const fs::path dir = fs::temp_directory_path() / ("moeserve_cli_" + std::to_string(getpid()));
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(kData / "tiny" / "v3_tiny")) {
    if (e.path().filename() != "golden.safetensors") fs::copy(e.path(), dir / e.path().filename());
  }
  for (const auto& e : fs::directory_iterator(kData / "tokenizer" / "tiny_byte_level")) {
    fs::copy(e.path(), dir / e.path().filename());
  }
  const RunResult r =
      run("--model " + dir.string() + " --prompt 'hello world' --max-tokens 6 --json");
  auto tokenizer = Tokenizer::load(dir);
  fs::remove_all(dir);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const nlohmann::json out = nlohmann::json::parse(r.out);
  EXPECT_EQ(out["prompt_ids"].get<std::vector<int32_t>>(), (*tokenizer)->encode("hello world"));
  std::vector<int32_t> generated = out["generated_ids"].get<std::vector<int32_t>>();
  ASSERT_FALSE(generated.empty());
  if (generated.size() < 6) generated.pop_back();  // stopped at EOS, which is not text
  DecodeOptions options;
  options.skip_special_tokens = true;
  EXPECT_EQ(out["text"].get<std::string>(), (*tokenizer)->decode(generated, options));
}

TEST(CliText, TextPromptWithoutTokenizerIsRefused) {
  const RunResult r = run("--model " + (kData / "tiny" / "v3_tiny").string() + " --prompt hi");
  EXPECT_EQ(r.exit_code, 1);
}

TEST(CliUsage, ExactlyOnePromptFlag) {
  const std::string model = "--model " + (kData / "tiny" / "v3_tiny").string();
  EXPECT_EQ(run(model).exit_code, 2);
  EXPECT_EQ(run(model + " --prompt a --prompt-ids 1").exit_code, 2);
  EXPECT_EQ(run(model + " --prompt-ids 1,x").exit_code, 2);
  EXPECT_EQ(run(model + " --prompt-ids 1 --top-p 0").exit_code, 2);
  EXPECT_EQ(run(model + " --prompt-ids 1 --bogus 3").exit_code, 2);
}

}  // namespace
}  // namespace moeserve
