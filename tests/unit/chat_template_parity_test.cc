// Renders every conversation in tests/data/chat_templates/<name>_expected.jsonl
// (produced by tests/chat_template_ref/make_expected.mjs with @huggingface/jinja)
// and requires byte-identical output.
#include <fstream>
#include <sstream>
#include <string>

#include "nlohmann/json.hpp"
#include "tokenizer/chat_template.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

std::string data_path(const std::string& file) {
  return std::string(MOESERVE_SOURCE_DIR) + "/tests/data/chat_templates/" + file;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class ChatTemplateParityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatTemplateParityTest, MatchesReferenceRenderer) {
  const std::string name = GetParam();
  const std::string source = read_file(data_path(name + ".jinja"));
  ASSERT_FALSE(source.empty()) << "missing template " << name;
  auto tmpl = ChatTemplate::parse(source);
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();

  std::ifstream cases(data_path(name + "_expected.jsonl"));
  ASSERT_TRUE(cases.good()) << "missing expected file for " << name;
  int n_cases = 0, n_matched = 0;
  std::string line;
  while (std::getline(cases, line)) {
    if (line.empty()) continue;
    // ordered_json: tojson output follows the key order of the input, as in Python.
    const nlohmann::ordered_json record = nlohmann::ordered_json::parse(line);
    ++n_cases;
    auto rendered = tmpl->render(record.at("context"));
    if (record.contains("error")) {
      EXPECT_FALSE(rendered.ok()) << name << " case " << record["id"] << ": reference failed with "
                                  << record["error"];
      if (!rendered.ok()) ++n_matched;
      continue;
    }
    if (!rendered.ok()) {
      ADD_FAILURE() << name << " case " << record["id"] << ": " << rendered.status();
      continue;
    }
    const std::string& expected = record.at("expected").get_ref<const std::string&>();
    EXPECT_EQ(*rendered, expected) << name << " case " << record["id"];
    if (*rendered == expected) ++n_matched;
  }
  EXPECT_GE(n_cases, 50) << name;
  EXPECT_EQ(n_matched, n_cases) << name;
  std::printf("[ parity   ] %s: %d/%d conversations match\n", name.c_str(), n_matched, n_cases);
}

INSTANTIATE_TEST_SUITE_P(Templates, ChatTemplateParityTest,
                         ::testing::Values("deepseek_v3", "deepseek_r1", "qwen3", "llama3_1",
                                           "llama3"));

}  // namespace
}  // namespace moeserve
