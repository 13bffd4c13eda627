// Inputs found by fuzzing and probing (docs/fuzzing.md): each must give an
// error Status, never a crash, an overflow or a giant allocation.
#include <string>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace moeserve {
namespace {

using ::testing::HasSubstr;

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

TEST(HostileTokenizerJson, HugeVocabIdsAreRefused) {
  for (const char* id : {"2147483647", "200000000", "4194304"}) {
    const std::string json =
        std::string(R"({"model":{"type":"BPE","vocab":{"a":)") + id + R"(},"merges":[]}})";
    auto t = Tokenizer::from_json(json, "");
    ASSERT_FALSE(t.ok()) << id;
    EXPECT_THAT(std::string(t.status().message()), HasSubstr("model.vocab")) << id;
  }
}

TEST(HostileTokenizerJson, HugeAddedTokenIdsAreRefused) {
  for (const char* id : {"2147483647", "200000000"}) {
    const std::string json =
        std::string(
            R"({"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"added_tokens":[{"id":)") +
        id + R"(,"content":"x"}]})";
    auto t = Tokenizer::from_json(json, "");
    ASSERT_FALSE(t.ok()) << id;
    EXPECT_THAT(std::string(t.status().message()), HasSubstr("added_tokens[0].id")) << id;
  }
}

TEST(HostileTokenizerJson, LargestAllowedIdStillLoads) {
  auto t =
      Tokenizer::from_json(R"({"model":{"type":"BPE","vocab":{"a":0,"b":1000},"merges":[]}})", "");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->token_to_id("b"), 1000);
}

// Long chains (a + b + c …, x.a.b …, x | f | g …) used to recurse once per
// link at render time and overflow the stack.
TEST(HostileChatTemplate, LongExpressionChainsAreRefused) {
  const std::string chains[] = {
      "{{ 1" + repeat("+1", 7000) + " }}",           "{{ x" + repeat(".a", 4000) + " }}",
      "{{ x" + repeat("[0]", 3500) + " }}",          "{{ f" + repeat("()", 7000) + " }}",
      "{{ 1" + repeat("<1", 7000) + " }}",           "{{ 'a'" + repeat("|string", 2333) + " }}",
      "{{ 1" + repeat(" and 1", 5000) + " }}",       "{{ 'a'" + repeat(" ~ 'a'", 5000) + " }}",
      "{{ 1" + repeat(" if 1 else 1", 3000) + " }}",
  };
  for (const std::string& src : chains) {
    auto tmpl = ChatTemplate::parse(src);
    ASSERT_FALSE(tmpl.ok()) << src.substr(0, 24);
    EXPECT_THAT(std::string(tmpl.status().message()), HasSubstr("nested too deeply"));
  }
}

TEST(HostileChatTemplate, OrdinaryChainsStillRender) {
  auto tmpl = ChatTemplate::parse("{{ 1" + repeat(" + 1", 50) + " }}|{{ 'a'" +
                                  repeat(" ~ 'b'", 50) + " }}|{{ 'x' | upper | lower | trim }}");
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  auto out = tmpl->render(nlohmann::json::object(), RenderLimits{});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "51|a" + repeat("b", 50) + "|x");
}

}  // namespace
}  // namespace moeserve
