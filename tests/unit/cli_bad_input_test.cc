// `moeserve generate` on broken model directories: every case must fail with
// a message naming the file, tensor or field, a non-zero exit, and no crash
// (the sanitizer build runs this too).
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "safetensors_writer.h"
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

namespace moeserve {
namespace {

namespace fs = std::filesystem;

const std::string kBinary = std::string(MOESERVE_BINARY_DIR) + "/src/server/moeserve";
const std::string kTiny = std::string(MOESERVE_SOURCE_DIR) + "/tests/data/tiny/v2_lite_tiny";

struct RunResult {
  int exit_code = -1;  // -1: killed by a signal
  std::string output;  // stdout and stderr
};

RunResult run_generate(const std::string& model_dir, const std::string& extra = "") {
  const std::string cmd = kBinary + " generate --model '" + model_dir +
                          "' --prompt-ids 0,17,91 --max-tokens 2 " + extra + " 2>&1";
  RunResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int status = pclose(p);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  return r;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << data;
}

// A scratch copy of the tiny V2-Lite checkpoint that a test may break.
class BrokenModel : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const auto& e : fs::directory_iterator(kTiny)) {
      if (e.path().filename() != "golden.safetensors")
        fs::copy(e.path(), dir_.path() / e.path().filename());
    }
  }
  fs::path weights() const { return dir_.path() / "model.safetensors"; }
  std::string dir() const { return dir_.path().string(); }

  // Rewrites the weights file's header through `edit`, keeping the data.
  template <typename F>
  void edit_header(F edit) {
    const std::string file = read_file(weights());
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(file[static_cast<size_t>(i)]);
    nlohmann::json header = nlohmann::json::parse(file.substr(8, n));
    edit(header);
    write_file(weights(), test::raw_safetensors(header.dump(), file.substr(8 + n)));
  }
  void edit_config(const std::string& key, const nlohmann::json& value) {
    nlohmann::json config = nlohmann::json::parse(read_file(dir_.path() / "config.json"));
    config[key] = value;
    write_file(dir_.path() / "config.json", config.dump(2));
  }
  void expect_clean_failure(const RunResult& r, const std::string& must_mention) {
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(must_mention), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("Sanitizer"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("runtime error"), std::string::npos) << r.output;
  }

  test::TempDir dir_;
};

TEST_F(BrokenModel, IntactCopyRuns) {
  const RunResult r = run_generate(dir());
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(BrokenModel, TruncatedFile) {
  const std::string file = read_file(weights());
  write_file(weights(), file.substr(0, file.size() / 2));
  expect_clean_failure(run_generate(dir()), "model.safetensors");
}

TEST_F(BrokenModel, HeaderLiesAboutSizes) {
  edit_header([](nlohmann::json& h) {
    auto& t = h["model.norm.weight"];
    t["data_offsets"][1] = t["data_offsets"][1].get<int64_t>() + 4;
  });
  expect_clean_failure(run_generate(dir()), "model.norm.weight");
}

TEST_F(BrokenModel, MissingTensor) {
  edit_header([](nlohmann::json& h) { h.erase("model.layers.1.mlp.experts.3.up_proj.weight"); });
  expect_clean_failure(run_generate(dir()), "model.layers.1.mlp.experts.3.up_proj.weight");
}

TEST_F(BrokenModel, WrongShape) {
  // Same byte count, transposed: only the model's shape check can catch it.
  edit_header([](nlohmann::json& h) {
    auto& shape = h["model.layers.0.self_attn.kv_a_proj_with_mqa.weight"]["shape"];
    shape = {shape[1], shape[0]};
  });
  expect_clean_failure(run_generate(dir()), "model.layers.0.self_attn.kv_a_proj_with_mqa.weight");
}

TEST_F(BrokenModel, UnknownArchitecture) {
  edit_config("architectures", {"GPT2LMHeadModel"});
  expect_clean_failure(run_generate(dir()), "GPT2LMHeadModel");
}

TEST_F(BrokenModel, UnknownScoringFunc) {
  edit_config("scoring_func", "relu");
  const RunResult r = run_generate(dir());
  expect_clean_failure(r, "scoring_func");
  EXPECT_NE(r.output.find("relu"), std::string::npos) << r.output;
}

TEST_F(BrokenModel, TokenIdOutsideVocabulary) {
  expect_clean_failure(run_generate(dir(), "--prompt-ids 5,100000"), "100000");
}

TEST_F(BrokenModel, MissingDirectory) {
  expect_clean_failure(run_generate(dir() + "/nope"), "nope");
}

}  // namespace
}  // namespace moeserve
