// Malformed templates and inputs must fail with "chat template:<line>:<col>: ..."
// (never crash), and runaway templates must stop at the render limits.
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

#include "nlohmann/json.hpp"
#include "tokenizer/chat_template.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace moeserve {
namespace {

using nlohmann::ordered_json;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string parse_error(const std::string& source) {
  auto tmpl = ChatTemplate::parse(source);
  EXPECT_FALSE(tmpl.ok()) << "parsed: " << source;
  return tmpl.ok() ? "" : std::string(tmpl.status().message());
}

std::string render_error(const std::string& source,
                         const ordered_json& context = ordered_json::object(),
                         RenderLimits limits = {}) {
  auto tmpl = ChatTemplate::parse(source);
  EXPECT_TRUE(tmpl.ok()) << tmpl.status();
  if (!tmpl.ok()) return "";
  auto out = tmpl->render(context, limits);
  EXPECT_FALSE(out.ok()) << "rendered: " << source;
  return out.ok() ? "" : std::string(out.status().message());
}

TEST(ChatTemplateErrors, UnknownFilterReportsLineAndColumn) {
  EXPECT_EQ(parse_error("{{ x | foo }}"), "chat template:1:8: unknown filter 'foo'");
  EXPECT_EQ(parse_error("line one\nline two\n{% if x %}\n  {{ y|bogus }}\n{% endif %}"),
            "chat template:4:8: unknown filter 'bogus'");
  // Columns count code points, not bytes.
  EXPECT_EQ(parse_error("\xE4\xBD\xA0\xE5\xA5\xBD{{ x|nope }}"),
            "chat template:1:8: unknown filter 'nope'");
  EXPECT_EQ(parse_error("{{ x is bogus }}"), "chat template:1:9: unknown test 'bogus'");
}

TEST(ChatTemplateErrors, MalformedTemplates) {
  EXPECT_THAT(parse_error("{% if x %}never closed"),
              AllOf(StartsWith("chat template:1:4:"), HasSubstr("'endif'")));
  EXPECT_THAT(parse_error("{% for m in ms %}\n{% if m %}\n{% endfor %}"),
              AllOf(StartsWith("chat template:3:4:"), HasSubstr("unknown tag 'endfor'")));
  EXPECT_THAT(parse_error("{% endif %}"), StartsWith("chat template:1:4: unknown tag 'endif'"));
  EXPECT_THAT(parse_error("{{ 1 + }}"), StartsWith("chat template:1:8: expected an expression"));
  EXPECT_THAT(parse_error("ok\n{{ 'abc }}"), StartsWith("chat template:2:4: unterminated string"));
  EXPECT_THAT(parse_error("{{ x"), StartsWith("chat template:1:1: unclosed '{{'"));
  EXPECT_THAT(parse_error("{% if x"), StartsWith("chat template:1:1: unclosed '{%'"));
  EXPECT_THAT(parse_error("{# comment"), StartsWith("chat template:1:1: unclosed comment"));
  EXPECT_THAT(parse_error("{% for %}{% endfor %}"),
              StartsWith("chat template:1:8: expected a name"));
  EXPECT_THAT(parse_error("{% frobnicate %}"), HasSubstr("unknown tag 'frobnicate'"));
  EXPECT_THAT(parse_error("{% break %}"), HasSubstr("outside of a loop"));
  EXPECT_THAT(parse_error("{{ (1 }}"), StartsWith("chat template:1:"));
  EXPECT_THAT(parse_error("{{ 1 ] }}"), HasSubstr("unmatched ']'"));
  EXPECT_THAT(parse_error("{{ x @ y }}"), HasSubstr("unexpected character '@'"));
  EXPECT_THAT(parse_error("{{ 99999999999999999999999 }}"), HasSubstr("integer literal too large"));
  EXPECT_THAT(parse_error("{{ f(a=1, 2) }}"), HasSubstr("positional argument after keyword"));
  EXPECT_THAT(parse_error("{% set x %}unclosed"), HasSubstr("'endset'"));
  EXPECT_THAT(parse_error("{% macro m( %}{% endmacro %}"), StartsWith("chat template:1:"));
}

TEST(ChatTemplateErrors, DeepNestingIsAnErrorNotAStackOverflow) {
  const std::string parens =
      "{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}";
  EXPECT_THAT(parse_error(parens), HasSubstr("nested too deeply"));
  std::string blocks;
  for (int i = 0; i < 5000; ++i) blocks += "{% if true %}";
  EXPECT_THAT(parse_error(blocks), HasSubstr("nested too deeply"));
  std::string nots = "{{ ";
  for (int i = 0; i < 100000; ++i) nots += "not ";
  EXPECT_THAT(parse_error(nots + "x }}"), HasSubstr("nested too deeply"));
  std::string negs = "{{ " + std::string(100000, '-') + "1 }}";
  EXPECT_THAT(parse_error(negs), HasSubstr("nested too deeply"));
}

TEST(ChatTemplateErrors, RuntimeErrorsCarryTheLocation) {
  EXPECT_EQ(render_error("line one\n  {{ raise_exception('Conversation roles must alternate') }}"),
            "chat template:2:6: Conversation roles must alternate");
  EXPECT_EQ(render_error("{{ nope() }}"), "chat template:1:4: 'nope' is undefined");
  EXPECT_THAT(render_error("{{ x.y.z }}"),
              AllOf(StartsWith("chat template:1:"), HasSubstr("undefined")));
  EXPECT_THAT(render_error("{{ 1 + 'a' }}"),
              StartsWith("chat template:1:6: unsupported operand types for +"));
  EXPECT_THAT(render_error("{{ 1 // 0 }}"), HasSubstr("by zero"));
  EXPECT_THAT(render_error("{{ 1.0 / 0 }}"), HasSubstr("by zero"));
  EXPECT_THAT(render_error("{{ [1] < 3 }}"), HasSubstr("cannot compare"));
  EXPECT_THAT(render_error("{% set x = 1 %}{% set x.y = 2 %}"), HasSubstr("not a namespace"));
  EXPECT_THAT(render_error("{% for a, b in [1, 2] %}{% endfor %}"), HasSubstr("cannot unpack"));
  EXPECT_THAT(render_error("{% for x in 5 %}{% endfor %}"), HasSubstr("not iterable"));
  EXPECT_THAT(render_error("{{ range|tojson }}"), HasSubstr("function to JSON"));
  EXPECT_THAT(render_error("{{ 'abc'[::0] }}"), HasSubstr("step cannot be zero"));
  EXPECT_THAT(render_error("{{ 'a'.split('') }}"), HasSubstr("empty separator"));
  EXPECT_THAT(render_error("{{ 9223372036854775807 + 1 }}"), HasSubstr("integer overflow"));
  EXPECT_THAT(render_error("{{ 5 in 'abc' }}"), HasSubstr("requires a string"));
  EXPECT_THAT(render_error("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}"),
              HasSubstr("takes 1 arguments"));
  EXPECT_THAT(render_error("{% macro m(a) %}{% endmacro %}{{ m(b=1) }}"),
              HasSubstr("no argument 'b'"));
  EXPECT_THAT(render_error("{{ messages[0].content }}", {{"messages", ordered_json::array()}}),
              HasSubstr("undefined value"));
}

TEST(ChatTemplateErrors, BadInputs) {
  auto tmpl = ChatTemplate::parse("{{ messages }}");
  ASSERT_TRUE(tmpl.ok());
  EXPECT_FALSE(tmpl->render(ordered_json::array()).ok());
  EXPECT_FALSE(tmpl->render(nlohmann::json("string")).ok());
  // Deeply nested input is refused instead of recursing without bound.
  ordered_json deep = ordered_json::array();
  for (int i = 0; i < 400; ++i) deep = ordered_json::array({deep});
  auto out = tmpl->render(ordered_json{{"messages", deep}});
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("nested too deeply"));
  // Self-referencing values do not overflow the stack when printed or compared.
  EXPECT_THAT(render_error("{% set l = [] %}{% set _ = l.append(l) %}{{ l|tojson }}"),
              HasSubstr("nested too deeply"));
  EXPECT_THAT(render_error("{% set l = [] %}{% set _ = l.append(l) %}{{ l == l }}"),
              HasSubstr("nested too deeply"));
  EXPECT_THAT(render_error("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}"),
              HasSubstr("nested too deeply"));
  // Wrong-typed message fields give errors, not crashes.
  EXPECT_FALSE(ChatTemplate::parse("{{ messages[0].content.startswith('x') }}")
                   ->render(ordered_json{{"messages", {{{"content", 5}}}}})
                   .ok());
}

TEST(ChatTemplateLimits, EndlessLoopsHitTheStepLimit) {
  RenderLimits limits;
  limits.max_steps = 100000;
  EXPECT_THAT(render_error("{% for i in range(1000000000000) %}x{% endfor %}",
                           ordered_json::object(), limits),
              HasSubstr("step limit"));
  EXPECT_THAT(
      render_error("{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}"
                   "{% endfor %}{% endfor %}{% endfor %}",
                   ordered_json::object(), limits),
      HasSubstr("step limit"));
  EXPECT_THAT(
      render_error(
          "{% set ns = namespace(l=[1]) %}{% for i in range(100) %}{% set ns.l = ns.l + ns.l %}"
          "{% endfor %}",
          ordered_json::object(), limits),
      HasSubstr("step limit"));
  EXPECT_THAT(render_error("{{ [1] * 1000000000000 }}", ordered_json::object(), limits),
              HasSubstr("step limit"));
}

TEST(ChatTemplateLimits, UnboundedRecursionHitsTheDepthLimit) {
  RenderLimits limits;
  limits.max_recursion_depth = 20;
  EXPECT_THAT(render_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}\n{{ f(0) }}",
                           ordered_json::object(), limits),
              AllOf(StartsWith("chat template:"), HasSubstr("recursion depth limit exceeded (20")));
  EXPECT_THAT(
      render_error(
          "{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}"),
      HasSubstr("recursion depth limit"));
  // Even an absurd configured depth is capped to keep the C++ stack safe.
  limits.max_recursion_depth = 1 << 30;
  EXPECT_THAT(render_error("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
                           ordered_json::object(), limits),
              HasSubstr("recursion depth limit exceeded (256"));
}

TEST(ChatTemplateLimits, OutputAndStringSizeAreBounded) {
  RenderLimits limits;
  limits.max_output_bytes = 1 << 16;
  EXPECT_THAT(render_error("{% for i in range(100000) %}{{ 'xxxxxxxxxx' }}{% endfor %}",
                           ordered_json::object(), limits),
              HasSubstr("output size limit"));
  EXPECT_THAT(
      render_error(
          "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
          "{% endfor %}",
          ordered_json::object(), limits),
      HasSubstr("output size limit"));
  EXPECT_THAT(render_error("{{ 'x' * 10000000000000 }}", ordered_json::object(), limits),
              HasSubstr("output size limit"));
  EXPECT_THAT(
      render_error("{% set s %}{% for i in range(100000) %}xxxxxxxx{% endfor %}{% endset %}",
                   ordered_json::object(), limits),
      HasSubstr("output size limit"));
}

TEST(ChatTemplateLimits, TemplatesWithinLimitsStillRender) {
  auto tmpl = ChatTemplate::parse("{% for i in range(n) %}{{ i % 10 }}{% endfor %}");
  ASSERT_TRUE(tmpl.ok());
  RenderLimits limits;
  limits.max_steps = 1000;
  auto out = tmpl->render(nlohmann::json{{"n", 100}}, limits);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->size(), 100u);
  EXPECT_FALSE(tmpl->render(nlohmann::json{{"n", 10000}}, limits).ok());
}

// Cut and corrupted versions of the real templates: every outcome must be a
// rendered string or a located error, never a crash or a hang.
TEST(ChatTemplateErrors, TruncatedAndCorruptedRealTemplatesNeverCrash) {
  const ordered_json context = ordered_json::parse(R"({
    "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
                 {"role": "assistant", "content": null, "tool_calls": [{"type": "function",
                  "function": {"name": "f", "arguments": "{}"}}]},
                 {"role": "tool", "content": "42"}, {"role": "assistant", "content": "done"}],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>"})");
  RenderLimits limits;
  limits.max_steps = 20000;
  int n_checked = 0, n_parse_errors = 0;
  const auto check = [&](const std::string& source) {
    ++n_checked;
    auto tmpl = ChatTemplate::parse(source);
    if (!tmpl.ok()) {
      ++n_parse_errors;
      EXPECT_THAT(std::string(tmpl.status().message()), StartsWith("chat template:"));
      return;
    }
    auto out = tmpl->render(context, limits);
    if (!out.ok()) {
      EXPECT_THAT(std::string(out.status().message()), StartsWith("chat template:"));
    }
  };
  uint64_t rng = 0x9E3779B97F4A7C15ull;
  const auto next = [&rng]() {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return rng >> 33;
  };
  const std::string kNoise = "{}%#-+()[]'\".|~=!<>:, \nx0";
  for (const char* name : {"deepseek_v3", "deepseek_r1", "qwen3", "llama3_1", "llama3"}) {
    std::ifstream in(std::string(MOESERVE_SOURCE_DIR) + "/tests/data/chat_templates/" + name +
                     ".jinja");
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string source = ss.str();
    ASSERT_FALSE(source.empty()) << name;
    for (size_t cut = 0; cut < source.size(); cut += 5) check(source.substr(0, cut));
    for (int i = 0; i < 400; ++i) {
      std::string corrupted = source;
      for (int k = 0; k < 3; ++k)
        corrupted[next() % corrupted.size()] = kNoise[next() % kNoise.size()];
      check(corrupted);
    }
  }
  EXPECT_GT(n_parse_errors, n_checked / 4);  // the mutations really produce bad templates
}

}  // namespace
}  // namespace moeserve
