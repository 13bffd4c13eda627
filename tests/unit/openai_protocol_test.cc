// The OpenAI wire format: every bad request is a 400 (or 404) naming the field, and response
// bodies and stream chunks match OpenAI's schema field by field (expected JSON written by hand
// from the API reference).
#include "server/openai_protocol.h"

#include <cmath>
#include <string>

#include "server/openai_responses.h"
#include "server/prompt_builder.h"
#include "tokenizer/tokenizer.h"
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace moeserve {
namespace {

using nlohmann::json;

const std::string kTokenizerDir =
    std::string(MOESERVE_SOURCE_DIR) + "/tests/data/tokenizer/tiny_byte_level";
constexpr int kVocab = 286;  // tiny_byte_level: 285 tokens + <|endoftext|>
constexpr int kMaxN = 16;

// What the route does up to the engine: parse, check token-id prompts, validate.
struct Outcome {
  int status = 200;
  std::string param;
  std::string message;
};

class OpenAiProtocolTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tokenizer_ = Tokenizer::load(kTokenizerDir)->release();
    prompts_ = PromptBuilder::create(*tokenizer_, kTokenizerDir)->release();
  }
  static void TearDownTestSuite() {
    delete prompts_;
    delete tokenizer_;
  }

  static Outcome from(const std::optional<ApiError>& e) {
    if (!e.has_value()) return {};
    return {e->http_status, e->param, e->message};
  }

  // A /v1/completions body: {"model": "m", "prompt": "hi"} with `fields` merged over it.
  static Outcome completion(const json& fields, CompletionRequest* out = nullptr) {
    json body = {{"model", "m"}, {"prompt", "hi"}};
    body.update(fields);
    CompletionRequest parsed;
    if (auto e = parse_completion_request(body, &parsed)) return from(e);
    for (const PromptInput& p : parsed.prompts) {
      if (p.text.has_value()) continue;
      auto prompt = prompts_->from_ids(p.ids);
      if (!prompt.ok()) return from(from_status(prompt.status(), "prompt"));
    }
    if (out != nullptr) *out = parsed;
    return from(engine_check(parsed.options.sampling));
  }

  // A /v1/chat/completions body: one user message, `fields` merged over it.
  static Outcome chat(const json& fields, ChatRequest* out = nullptr) {
    json body = {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
    body.update(fields);
    ChatRequest parsed;
    if (auto e = parse_chat_request(body, &parsed)) return from(e);
    if (out != nullptr) *out = parsed;
    auto e = engine_check(parsed.options.sampling);
    if (e.has_value() && e->param == "max_tokens") e->param = parsed.max_tokens_param;
    return from(e);
  }

  // What the route answers when Engine::submit refuses the parameters: validate()'s status
  // through from_status.
  static std::optional<ApiError> engine_check(const SamplingParams& p) {
    const Status status = validate(p, kVocab, kMaxN);
    if (status.ok()) return std::nullopt;
    return from_status(status);
  }

  static Tokenizer* tokenizer_;
  static PromptBuilder* prompts_;
};
Tokenizer* OpenAiProtocolTest::tokenizer_ = nullptr;
PromptBuilder* OpenAiProtocolTest::prompts_ = nullptr;

#define EXPECT_REJECTED(outcome, want_status, want_param)                \
  do {                                                                   \
    const Outcome o_ = (outcome);                                        \
    EXPECT_EQ(o_.status, want_status) << #outcome << ": " << o_.message; \
    EXPECT_EQ(o_.param, want_param) << #outcome << ": " << o_.message;   \
    EXPECT_FALSE(o_.message.empty()) << #outcome;                        \
  } while (0)

#define EXPECT_ACCEPTED(outcome)                                                     \
  do {                                                                               \
    const Outcome o_ = (outcome);                                                    \
    EXPECT_EQ(o_.status, 200) << #outcome << ": " << o_.param << ": " << o_.message; \
  } while (0)

// ---- the bad-input suite ----

TEST_F(OpenAiProtocolTest, EmptyAndMistypedPrompts) {
  EXPECT_REJECTED(completion({{"prompt", ""}}), 400, "prompt");
  EXPECT_REJECTED(completion({{"prompt", json::array()}}), 400, "prompt");
  EXPECT_REJECTED(completion({{"prompt", json::object()}}), 400, "prompt");
  EXPECT_REJECTED(completion({{"prompt", 5}}), 400, "prompt");
  EXPECT_REJECTED(completion({{"prompt", {"a", ""}}}), 400, "prompt[1]");
  EXPECT_REJECTED(completion({{"prompt", {"a", 1}}}), 400, "prompt[1]");
  EXPECT_REJECTED(completion({{"prompt", {json::array()}}}), 400, "prompt[0]");
  EXPECT_REJECTED(completion({{"prompt", {1, "a"}}}), 400, "prompt[1]");
  EXPECT_REJECTED(completion({{"prompt", {1, 2.5}}}), 400, "prompt[1]");
  json no_prompt = {{"model", "m"}};
  CompletionRequest parsed;
  EXPECT_EQ(parse_completion_request(no_prompt, &parsed)->param, "prompt");
  json no_model = {{"prompt", "x"}};
  EXPECT_EQ(parse_completion_request(no_model, &parsed)->param, "model");
  EXPECT_REJECTED(completion({{"model", 7}}), 400, "model");
}

TEST_F(OpenAiProtocolTest, TokenIdPromptsAreCheckedAgainstTheVocabulary) {
  EXPECT_REJECTED(completion({{"prompt", {1, -3}}}), 400, "prompt");
  EXPECT_REJECTED(completion({{"prompt", {1, kVocab}}}), 400, "prompt");
  EXPECT_REJECTED(completion({{"prompt", {{1}, {2, kVocab + 5}}}}), 400, "prompt");
  // Past int64: JSON has it as a float, which no token id is.
  EXPECT_REJECTED(completion(json::parse(R"({"prompt": [1, 1e30]})")), 400, "prompt[1]");
  CompletionRequest parsed;
  EXPECT_ACCEPTED(completion({{"prompt", {{1, 2}, {kVocab - 1}}}}, &parsed));
  ASSERT_EQ(parsed.prompts.size(), 2u);
  EXPECT_FALSE(parsed.prompts[0].text.has_value());
  EXPECT_EQ(parsed.prompts[0].ids, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(parsed.prompts[1].ids, (std::vector<int64_t>{kVocab - 1}));
  EXPECT_ACCEPTED(completion({{"prompt", {"a", "b"}}}, &parsed));
  ASSERT_EQ(parsed.prompts.size(), 2u);
  EXPECT_EQ(parsed.prompts[1].text, "b");
}

TEST_F(OpenAiProtocolTest, WrongJsonTypesNameTheField) {
  const Outcome n = completion({{"n", "2"}});
  EXPECT_EQ(n.status, 400);
  EXPECT_EQ(n.param, "n");
  EXPECT_EQ(n.message, "n: expected an integer, got string");
  EXPECT_REJECTED(completion({{"stop", 5}}), 400, "stop");
  EXPECT_REJECTED(completion({{"stop", {"a", 5}}}), 400, "stop[1]");
  EXPECT_REJECTED(completion({{"max_tokens", "16"}}), 400, "max_tokens");
  EXPECT_REJECTED(completion({{"temperature", "hot"}}), 400, "temperature");
  EXPECT_REJECTED(completion({{"temperature", true}}), 400, "temperature");
  EXPECT_REJECTED(completion({{"stream", 1}}), 400, "stream");
  EXPECT_REJECTED(completion({{"n", 2.5}}), 400, "n");
  EXPECT_REJECTED(completion({{"logit_bias", {1, 2}}}), 400, "logit_bias");
  EXPECT_REJECTED(completion({{"stop_token_ids", {"1"}}}), 400, "stop_token_ids[0]");
  EXPECT_REJECTED(completion({{"logprobs", true}}), 400, "logprobs");
  // Integral floats are integers, as pydantic's lax mode has them.
  CompletionRequest parsed;
  EXPECT_ACCEPTED(completion({{"n", 2.0}}, &parsed));
  EXPECT_EQ(parsed.options.sampling.n, 2);
}

TEST_F(OpenAiProtocolTest, CountsOutOfRange) {
  EXPECT_REJECTED(completion({{"n", 0}}), 400, "n");
  EXPECT_REJECTED(completion({{"n", 1000000000}}), 400, "n");
  EXPECT_REJECTED(completion({{"n", 17}}), 400, "n");
  EXPECT_ACCEPTED(completion({{"n", 16}}));
  EXPECT_REJECTED(completion({{"max_tokens", 0}}), 400, "max_tokens");
  EXPECT_REJECTED(completion({{"max_tokens", -1}}), 400, "max_tokens");
  EXPECT_REJECTED(completion({{"max_tokens", 9223372036854775808ull}}), 400, "max_tokens");
  EXPECT_REJECTED(completion({{"max_tokens", 2147483648ll}}), 400, "max_tokens");
  EXPECT_ACCEPTED(completion({{"max_tokens", 2147483647}}));
  EXPECT_REJECTED(completion({{"min_tokens", 20}, {"max_tokens", 10}}), 400, "min_tokens");
  EXPECT_REJECTED(completion({{"min_tokens", -1}}), 400, "min_tokens");
}

TEST_F(OpenAiProtocolTest, SamplingRanges) {
  EXPECT_REJECTED(completion({{"temperature", -1}}), 400, "temperature");
  EXPECT_REJECTED(completion(json::parse(R"({"temperature": 1e308})")), 400, "temperature");
  EXPECT_REJECTED(completion(json::parse(R"({"temperature": -1e308})")), 400, "temperature");
  EXPECT_ACCEPTED(completion({{"temperature", 0}}));
  EXPECT_REJECTED(completion({{"top_p", 0}}), 400, "top_p");
  EXPECT_REJECTED(completion({{"top_p", 1.5}}), 400, "top_p");
  EXPECT_ACCEPTED(completion({{"top_p", 1}}));
  EXPECT_REJECTED(completion({{"top_k", -5}}), 400, "top_k");
  EXPECT_ACCEPTED(completion({{"top_k", -1}}));
  EXPECT_REJECTED(completion({{"min_p", 1.5}}), 400, "min_p");
  EXPECT_REJECTED(completion({{"repetition_penalty", 0}}), 400, "repetition_penalty");
  for (const char* name : {"presence_penalty", "frequency_penalty"}) {
    EXPECT_REJECTED(completion({{name, 3}}), 400, name);
    EXPECT_REJECTED(completion({{name, -3}}), 400, name);
    EXPECT_ACCEPTED(completion({{name, -2}}));
  }
}

TEST_F(OpenAiProtocolTest, Seeds) {
  CompletionRequest parsed;
  // OpenAI's seed is an int64, the engine's a uint64: both ranges are taken.
  EXPECT_ACCEPTED(completion({{"seed", 9223372036854775813ull}}, &parsed));
  EXPECT_EQ(parsed.options.sampling.seed, 9223372036854775813ull);
  EXPECT_ACCEPTED(completion({{"seed", 18446744073709551615ull}}, &parsed));
  EXPECT_EQ(parsed.options.sampling.seed, 18446744073709551615ull);
  EXPECT_ACCEPTED(completion({{"seed", -1}}, &parsed));
  EXPECT_EQ(parsed.options.sampling.seed, 18446744073709551615ull);
  EXPECT_REJECTED(completion(json::parse(R"({"seed": 18446744073709551616})")), 400, "seed");
  EXPECT_REJECTED(completion(json::parse(R"({"seed": 1e40})")), 400, "seed");
  EXPECT_REJECTED(completion({{"seed", 1.5}}), 400, "seed");
  EXPECT_REJECTED(completion({{"seed", "1"}}), 400, "seed");
  EXPECT_ACCEPTED(completion({{"seed", nullptr}}, &parsed));
  EXPECT_FALSE(parsed.options.sampling.seed.has_value());
}

TEST_F(OpenAiProtocolTest, LogitBias) {
  EXPECT_REJECTED(completion({{"logit_bias", {{"999999", 1}}}}), 400, "logit_bias");
  EXPECT_REJECTED(completion({{"logit_bias", {{"-1", 1}}}}), 400, "logit_bias");
  EXPECT_REJECTED(completion({{"logit_bias", {{"99999999999", 1}}}}), 400, "logit_bias");
  EXPECT_REJECTED(completion({{"logit_bias", {{"abc", 1}}}}), 400, "logit_bias");
  EXPECT_REJECTED(completion({{"logit_bias", {{"12x", 1}}}}), 400, "logit_bias");
  EXPECT_REJECTED(completion({{"logit_bias", {{"", 1}}}}), 400, "logit_bias");
  EXPECT_REJECTED(completion({{"logit_bias", {{"5", "x"}}}}), 400, "logit_bias[5]");
  EXPECT_REJECTED(completion({{"logit_bias", {{"5", 101}}}}), 400, "logit_bias[5]");
  CompletionRequest parsed;
  EXPECT_ACCEPTED(completion({{"logit_bias", {{"5", -100}, {"7", 2.5}}}}, &parsed));
  EXPECT_EQ(parsed.options.sampling.logit_bias, (std::map<int32_t, float>{{5, -100}, {7, 2.5}}));
}

TEST_F(OpenAiProtocolTest, Logprobs) {
  // Legacy completions: an integer count of alternatives.
  EXPECT_REJECTED(completion({{"logprobs", 21}}), 400, "logprobs");
  EXPECT_REJECTED(completion({{"logprobs", -1}}), 400, "logprobs");
  CompletionRequest c;
  EXPECT_ACCEPTED(completion({{"logprobs", 0}}, &c));
  EXPECT_TRUE(c.options.sampling.logprobs);
  EXPECT_EQ(c.options.sampling.top_logprobs, 0);
  EXPECT_ACCEPTED(completion({{"logprobs", 20}}, &c));
  EXPECT_EQ(c.options.sampling.top_logprobs, 20);
  // Chat: a boolean plus top_logprobs.
  EXPECT_REJECTED(chat({{"logprobs", true}, {"top_logprobs", 21}}), 400, "top_logprobs");
  EXPECT_REJECTED(chat({{"top_logprobs", 3}}), 400, "top_logprobs");
  EXPECT_REJECTED(chat({{"logprobs", 1}}), 400, "logprobs");
  ChatRequest r;
  EXPECT_ACCEPTED(chat({{"logprobs", true}, {"top_logprobs", 20}}, &r));
  EXPECT_TRUE(r.options.sampling.logprobs);
  EXPECT_EQ(r.options.sampling.top_logprobs, 20);
}

TEST_F(OpenAiProtocolTest, StopStrings) {
  EXPECT_REJECTED(completion({{"stop", {"a", "b", "c", "d", "e"}}}), 400, "stop");
  EXPECT_REJECTED(completion({{"stop", {std::string(1 << 20, 'x')}}}), 400, "stop[0]");
  EXPECT_REJECTED(completion({{"stop", std::string(1 << 20, 'x')}}), 400, "stop[0]");
  EXPECT_REJECTED(completion({{"stop", {""}}}), 400, "stop[0]");
  EXPECT_REJECTED(completion({{"stop_token_ids", {kVocab}}}), 400, "stop_token_ids");
  CompletionRequest parsed;
  EXPECT_ACCEPTED(completion({{"stop", "END"}}, &parsed));
  EXPECT_EQ(parsed.options.sampling.stop, (std::vector<std::string>{"END"}));
  EXPECT_ACCEPTED(completion({{"stop", {"a", "b", "c", "d"}}, {"stop_token_ids", {3}}}, &parsed));
  EXPECT_EQ(parsed.options.sampling.stop.size(), 4u);
  EXPECT_EQ(parsed.options.sampling.stop_token_ids, (std::vector<int32_t>{3}));
}

TEST_F(OpenAiProtocolTest, StreamOptionsOnlyWithStream) {
  EXPECT_REJECTED(completion({{"stream_options", {{"include_usage", true}}}}), 400,
                  "stream_options");
  EXPECT_REJECTED(completion({{"stream", false}, {"stream_options", {{"include_usage", true}}}}),
                  400, "stream_options");
  EXPECT_REJECTED(chat({{"stream", true}, {"stream_options", 1}}), 400, "stream_options");
  ChatRequest r;
  EXPECT_ACCEPTED(chat({{"stream", true}, {"stream_options", {{"include_usage", true}}}}, &r));
  EXPECT_TRUE(r.options.stream);
  EXPECT_TRUE(r.options.include_usage);
  EXPECT_ACCEPTED(chat({{"stream_options", nullptr}}, &r));  // null is "not given"
  EXPECT_FALSE(r.options.include_usage);
}

TEST_F(OpenAiProtocolTest, UnsupportedFeaturesAreRefused) {
  EXPECT_REJECTED(completion({{"echo", true}}), 400, "echo");
  EXPECT_ACCEPTED(completion({{"echo", false}}));
  EXPECT_REJECTED(completion({{"suffix", "x"}}), 400, "suffix");
  EXPECT_REJECTED(completion({{"best_of", 3}}), 400, "best_of");
  EXPECT_REJECTED(chat({{"response_format", {{"type", "json_object"}}}}), 400, "response_format");
  EXPECT_ACCEPTED(chat({{"response_format", {{"type", "text"}}}}));
  const json tool = {{"type", "function"}, {"function", {{"name", "f"}}}};
  EXPECT_REJECTED(chat({{"tools", {tool}}}), 400, "tools");
  EXPECT_ACCEPTED(chat({{"tools", json::array()}, {"tool_choice", "none"}}));
  EXPECT_REJECTED(chat({{"tool_choice", "required"}}), 400, "tool_choice");
}

TEST_F(OpenAiProtocolTest, UnknownFieldsAreIgnoredAndDefaultsAreOpenAis) {
  CompletionRequest c;
  EXPECT_ACCEPTED(completion({{"frobnicate", {{"x", 1}}}, {"user", "u-1"}}, &c));
  EXPECT_EQ(c.model, "m");
  ASSERT_EQ(c.prompts.size(), 1u);
  EXPECT_EQ(c.prompts[0].text, "hi");
  EXPECT_EQ(c.options.sampling.max_tokens, 16);
  EXPECT_EQ(c.options.sampling.temperature, 1.0f);
  EXPECT_EQ(c.options.sampling.top_p, 1.0f);
  EXPECT_EQ(c.options.sampling.n, 1);
  EXPECT_FALSE(c.options.sampling.logprobs);
  EXPECT_FALSE(c.options.stream);
  EXPECT_TRUE(c.add_special_tokens);
  EXPECT_TRUE(c.options.skip_special_tokens);

  ChatRequest r;
  EXPECT_ACCEPTED(chat({{"chat_template_kwargs", {{"enable_thinking", false}}}}, &r));
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_TRUE(r.add_generation_prompt);
  EXPECT_EQ(r.options.sampling.temperature, 1.0f);

  // vLLM's extras reach the structs.
  EXPECT_ACCEPTED(completion({{"top_k", 5},
                              {"min_p", 0.1},
                              {"repetition_penalty", 1.2},
                              {"min_tokens", 2},
                              {"ignore_eos", true},
                              {"skip_special_tokens", false},
                              {"include_stop_str_in_output", true},
                              {"priority", -3},
                              {"cache_salt", "salt"},
                              {"add_special_tokens", false}},
                             &c));
  EXPECT_EQ(c.options.sampling.top_k, 5);
  EXPECT_FLOAT_EQ(c.options.sampling.min_p, 0.1f);
  EXPECT_FLOAT_EQ(c.options.sampling.repetition_penalty, 1.2f);
  EXPECT_EQ(c.options.sampling.min_tokens, 2);
  EXPECT_TRUE(c.options.sampling.ignore_eos);
  EXPECT_FALSE(c.options.skip_special_tokens);
  EXPECT_TRUE(c.options.include_stop_str_in_output);
  EXPECT_EQ(c.options.priority, -3);
  EXPECT_EQ(c.options.cache_salt, "salt");
  EXPECT_FALSE(c.add_special_tokens);
}

TEST_F(OpenAiProtocolTest, Messages) {
  EXPECT_REJECTED(chat({{"messages", json::array()}}), 400, "messages");
  EXPECT_REJECTED(chat({{"messages", "hi"}}), 400, "messages");
  EXPECT_REJECTED(chat({{"messages", {"hi"}}}), 400, "messages[0]");
  EXPECT_REJECTED(chat({{"messages", {{{"content", "x"}}}}}), 400, "messages[0].role");
  EXPECT_REJECTED(chat({{"messages", {{{"role", "robot"}, {"content", "x"}}}}}), 400,
                  "messages[0].role");
  EXPECT_REJECTED(chat({{"messages", {{{"role", "user"}, {"content", 5}}}}}), 400,
                  "messages[0].content");
  const json image = {{"type", "image_url"}, {"image_url", {{"url", "http://x"}}}};
  const json text = {{"type", "text"}, {"text", "a"}};
  EXPECT_REJECTED(chat({{"messages",
                         {{{"role", "system"}, {"content", "s"}},
                          {{"role", "user"}, {"content", {text, image}}}}}}),
                  400, "messages[1].content[1].type");
  EXPECT_REJECTED(chat({{"messages", {{{"role", "user"}, {"content", {{{"type", "text"}}}}}}}}),
                  400, "messages[0].content[0].text");
  json no_messages = {{"model", "m"}};
  ChatRequest r;
  EXPECT_EQ(parse_chat_request(no_messages, &r)->param, "messages");

  EXPECT_ACCEPTED(
      chat({{"messages",
             {{{"role", "developer"}, {"content", "d"}},
              {{"role", "user"},
               {"content", {text, {{"type", "text"}, {"text", "b"}}}},
               {"name", "bob"}},
              {{"role", "assistant"}, {"content", nullptr}, {"reasoning_content", "thought"}}}}},
           &r));
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "developer");
  EXPECT_EQ(r.messages[1].content, "a\nb");  // text parts joined with a newline, as vLLM
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(r.messages[2].reasoning_content, "thought");
  EXPECT_FALSE(r.messages[1].reasoning_content.has_value());
}

TEST_F(OpenAiProtocolTest, MaxCompletionTokensWinsOverMaxTokens) {
  ChatRequest r;
  EXPECT_ACCEPTED(chat({{"max_tokens", 7}, {"max_completion_tokens", 5}}, &r));
  EXPECT_EQ(r.max_tokens, 5);
  EXPECT_EQ(r.options.sampling.max_tokens, 5);
  EXPECT_EQ(r.max_tokens_param, "max_completion_tokens");
  EXPECT_ACCEPTED(chat({{"max_tokens", 7}}, &r));
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_REJECTED(chat({{"max_completion_tokens", 0}}), 400, "max_completion_tokens");
  EXPECT_REJECTED(chat({{"max_tokens", 0}}), 400, "max_tokens");
  EXPECT_REJECTED(chat({{"max_completion_tokens", 3}, {"min_tokens", 4}}), 400, "min_tokens");
}

TEST_F(OpenAiProtocolTest, TokenizeAndDetokenizeBodies) {
  TokenizeRequest t;
  EXPECT_FALSE(parse_tokenize_request({{"prompt", "x"}}, &t).has_value());
  EXPECT_EQ(t.prompt, "x");
  EXPECT_TRUE(t.add_special_tokens);
  EXPECT_FALSE(parse_tokenize_request({{"messages", {{{"role", "user"}, {"content", "x"}}}}}, &t)
                   .has_value());
  EXPECT_FALSE(t.prompt.has_value());
  EXPECT_EQ(t.messages.size(), 1u);
  EXPECT_FALSE(t.add_special_tokens);
  EXPECT_TRUE(t.add_generation_prompt);
  EXPECT_EQ(parse_tokenize_request(json::object(), &t)->param, "prompt");
  EXPECT_EQ(parse_tokenize_request({{"prompt", 1}}, &t)->param, "prompt");

  DetokenizeRequest d;
  EXPECT_FALSE(parse_detokenize_request({{"tokens", {1, 2}}}, &d).has_value());
  EXPECT_EQ(d.tokens, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(parse_detokenize_request({{"tokens", "1"}}, &d)->param, "tokens");
  EXPECT_EQ(parse_detokenize_request({{"tokens", {1, "2"}}}, &d)->param, "tokens[1]");
}

// ---- JSON bodies ----

TEST_F(OpenAiProtocolTest, BadJsonIsA400) {
  json body;
  for (const std::string& text :
       {std::string(R"({"model": "m", "prompt": )"), std::string("{'model': 1}"), std::string(""),
        std::string(R"({"model": "m"} trailing)"), std::string("{\"model\": \"\xff\xfe\"}"),
        std::string("{\"mod\xc3\x28l\": 1}"), std::string(100000, '['),
        std::string(R"({"a": )") + std::string(64, '[') + std::string(64, ']') + "}"}) {
    const auto e = parse_json_object(text, &body);
    ASSERT_TRUE(e.has_value()) << text.substr(0, 40);
    EXPECT_EQ(e->http_status, 400);
    EXPECT_EQ(e->message.rfind("invalid JSON: ", 0), 0u) << e->message;
    EXPECT_EQ(e->message.find("json.exception"), std::string::npos) << e->message;
    // The message may quote the bad bytes: the body must still serialise.
    const json reparsed = json::parse(to_json_text(error_body(*e)));
    EXPECT_EQ(reparsed["error"]["type"], "invalid_request_error");
  }
  for (const char* text : {"[]", "5", "\"s\"", "null"}) {
    const auto e = parse_json_object(text, &body);
    ASSERT_TRUE(e.has_value()) << text;
    EXPECT_NE(e->message.find("must be a JSON object"), std::string::npos) << e->message;
  }
  // Brackets inside strings do not count; depth 64 (the object and 63 arrays) is allowed.
  EXPECT_FALSE(
      parse_json_object(R"({"p": "[\"[)" + std::string(1000, '[') + R"("})", &body).has_value());
  EXPECT_FALSE(
      parse_json_object(R"({"a": )" + std::string(63, '[') + std::string(63, ']') + "}", &body)
          .has_value());
}

// ---- errors ----

TEST_F(OpenAiProtocolTest, ErrorBodyHasOpenAisShape) {
  EXPECT_EQ(error_body(api_error(404, "The model 'x' does not exist", "model", "model_not_found")),
            json::parse(R"({"error": {"message": "The model 'x' does not exist",
                                      "type": "invalid_request_error", "param": "model",
                                      "code": "model_not_found"}})"));
  EXPECT_EQ(error_body(api_error(400, "bad")),
            json::parse(R"({"error": {"message": "bad", "type": "invalid_request_error",
                                      "param": null, "code": null}})"));
  EXPECT_EQ(error_body(api_error(429, "queue full")),
            json::parse(R"({"error": {"message": "queue full", "type": "rate_limit_error",
                                      "param": null, "code": "rate_limit_exceeded"}})"));
  EXPECT_EQ(error_body(api_error(503, "draining")),
            json::parse(R"({"error": {"message": "draining", "type": "server_error",
                                      "param": null, "code": "service_unavailable"}})"));
}

TEST_F(OpenAiProtocolTest, StatusMapping) {
  const std::pair<Status, int> cases[] = {
      {absl::InvalidArgumentError("x"), 400}, {absl::FailedPreconditionError("x"), 400},
      {absl::NotFoundError("x"), 404},        {absl::ResourceExhaustedError("x"), 429},
      {absl::UnavailableError("x"), 503},     {absl::DeadlineExceededError("x"), 504},
      {absl::UnauthenticatedError("x"), 401}, {absl::InternalError("x"), 500},
      {absl::CancelledError("x"), 500},
  };
  for (const auto& [status, http] : cases) {
    const ApiError e = from_status(status);
    EXPECT_EQ(e.http_status, http) << status;
    EXPECT_EQ(e.message, "x");
  }
  EXPECT_EQ(from_status(absl::UnauthenticatedError("x")).type, "authentication_error");
  EXPECT_EQ(from_status(absl::InternalError("x")).type, "server_error");
  // The field is taken from the message when not given.
  EXPECT_EQ(from_status(absl::InvalidArgumentError("top_p must be in (0, 1], got 0")).param,
            "top_p");
  EXPECT_EQ(from_status(absl::InvalidArgumentError("x"), "prompt").param, "prompt");
  EXPECT_EQ(param_of_message("messages[2].role: unknown role 'x'"), "messages[2].role");
  EXPECT_EQ(param_of_message("logit_bias token id 5 is out of vocabulary"), "logit_bias");
  EXPECT_EQ(param_of_message("the queue is full"), "");
  EXPECT_EQ(param_of_message(""), "");
}

// ---- responses ----

// Token texts for the builders: id 1 "He", 2 "llo", 3 "é" split in two byte tokens (3: 0xC3,
// 4: 0xA9), 5 "<eos>".
TokenText fake_token_text(int32_t id) {
  switch (id) {
    case 1: return {"He", "He"};
    case 2: return {"llo", "llo"};
    case 3: return {"\xef\xbf\xbd", "\xc3"};
    case 4: return {"\xef\xbf\xbd", "\xa9"};
    default: return {"<eos>", "<eos>"};
  }
}

ChoiceOutput choice(std::string text, FinishReason finish) {
  ChoiceOutput c;
  c.text = std::move(text);
  c.finish = finish;
  return c;
}

const ResponseMeta kMeta = {
    .id = "cmpl-abc", .created = 1700000000, .model = "tiny", .include_usage = false};

TEST_F(OpenAiProtocolTest, CompletionResponse) {
  const ChoiceOutput a = choice("Hello", FinishReason::kStop);
  const ChoiceOutput b = choice("He", FinishReason::kLength);
  ChoiceOutput c = choice("x", FinishReason::kStop);
  c.stop_string = "END";
  ChoiceOutput d = choice("y", FinishReason::kStop);
  d.stop_token = 7;
  const json got = completion_response(
      kMeta, {a, b, c, d}, Usage{.prompt_tokens = 3, .completion_tokens = 5, .cached_tokens = 2},
      false, fake_token_text);
  const json want = json::parse(R"({
    "id": "cmpl-abc", "object": "text_completion", "created": 1700000000, "model": "tiny",
    "choices": [
      {"index": 0, "text": "Hello", "logprobs": null, "finish_reason": "stop",
       "stop_reason": null},
      {"index": 1, "text": "He", "logprobs": null, "finish_reason": "length",
       "stop_reason": null},
      {"index": 2, "text": "x", "logprobs": null, "finish_reason": "stop",
       "stop_reason": "END"},
      {"index": 3, "text": "y", "logprobs": null, "finish_reason": "stop", "stop_reason": 7}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8,
              "prompt_tokens_details": {"cached_tokens": 2}}
  })");
  EXPECT_EQ(got, want) << got.dump(2);
}

TEST_F(OpenAiProtocolTest, CompletionLegacyLogprobs) {
  ChoiceOutput a = choice("Hello\u00e9", FinishReason::kLength);
  a.logprobs = {{.token = 1, .logprob = -0.5f, .top = {{1, -0.5f}, {2, -1.5f}}},
                {.token = 2, .logprob = -0.25f, .top = {{2, -0.25f}, {1, -2.0f}}},
                {.token = 3, .logprob = -1.0f, .top = {}},
                {.token = 4, .logprob = -2.0f, .top = {}}};
  const json got = completion_response(kMeta, {a}, Usage{}, true, fake_token_text);
  // text_offset counts characters: "He" 0, "llo" 2, the two halves of "é" 5 and 6.
  const json want_logprobs = json::parse(R"({
    "tokens": ["He", "llo", "\ufffd", "\ufffd"],
    "token_logprobs": [-0.5, -0.25, -1.0, -2.0],
    "top_logprobs": [{"He": -0.5, "llo": -1.5}, {"llo": -0.25, "He": -2.0},
                     {"\ufffd": -1.0}, {"\ufffd": -2.0}],
    "text_offset": [0, 2, 5, 6]
  })");
  EXPECT_EQ(got["choices"][0]["logprobs"], want_logprobs) << got.dump(2);
  // A stream continues the offsets where the previous chunk stopped.
  int64_t offset = 0;
  completion_logprobs_json({{.token = 2, .logprob = -1.0f, .top = {}}}, fake_token_text, &offset);
  EXPECT_EQ(offset, 3);
  const json next = completion_logprobs_json({{.token = 1, .logprob = -1.0f, .top = {}}},
                                             fake_token_text, &offset);
  EXPECT_EQ(next["text_offset"], json::array({3}));
}

TEST_F(OpenAiProtocolTest, ChatResponse) {
  ChoiceOutput a = choice("Hello", FinishReason::kStop);
  a.reasoning = "think";
  a.logprobs = {{.token = 1, .logprob = -0.5f, .top = {{1, -0.5f}, {3, -1.5f}}}};
  const ChoiceOutput b = choice("", FinishReason::kAbort);
  const ResponseMeta meta = {
      .id = "chatcmpl-1", .created = 5, .model = "tiny", .include_usage = false};
  const json got = chat_response(
      meta, {a, b}, Usage{.prompt_tokens = 4, .completion_tokens = 1, .cached_tokens = 0}, true,
      fake_token_text);
  const json want = json::parse(R"({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 5, "model": "tiny",
    "choices": [
      {"index": 0,
       "message": {"role": "assistant", "content": "Hello", "reasoning_content": "think"},
       "logprobs": {"content": [
         {"token": "He", "logprob": -0.5, "bytes": [72, 101],
          "top_logprobs": [{"token": "He", "logprob": -0.5, "bytes": [72, 101]},
                           {"token": "\ufffd", "logprob": -1.5, "bytes": [195]}]}]},
       "finish_reason": "stop", "stop_reason": null},
      {"index": 1, "message": {"role": "assistant", "content": ""},
       "logprobs": {"content": []}, "finish_reason": "abort", "stop_reason": null}
    ],
    "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5,
              "prompt_tokens_details": {"cached_tokens": 0}}
  })");
  EXPECT_EQ(got, want) << got.dump(2);
  EXPECT_EQ(chat_response(meta, {b}, Usage{}, false, fake_token_text)["choices"][0]["logprobs"],
            nullptr);
}

TEST_F(OpenAiProtocolTest, ChatChunks) {
  const ResponseMeta meta = {
      .id = "chatcmpl-1", .created = 5, .model = "tiny", .include_usage = false};
  EXPECT_EQ(chat_role_chunk(meta, 1), json::parse(R"({
    "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5, "model": "tiny",
    "choices": [{"index": 1, "delta": {"role": "assistant", "content": ""}, "logprobs": null,
                 "finish_reason": null}]})"));
  EXPECT_EQ(chat_delta_chunk(meta, 0, "Hi", "", nullptr), json::parse(R"({
    "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5, "model": "tiny",
    "choices": [{"index": 0, "delta": {"content": "Hi"}, "logprobs": null,
                 "finish_reason": null}]})"));
  EXPECT_EQ(chat_delta_chunk(meta, 0, "", "hmm", nullptr)["choices"][0]["delta"],
            json::parse(R"({"reasoning_content": "hmm"})"));
  EXPECT_EQ(chat_delta_chunk(meta, 0, "a", "b", nullptr)["choices"][0]["delta"],
            json::parse(R"({"reasoning_content": "b", "content": "a"})"));
  EXPECT_EQ(chat_finish_chunk(meta, 0, FinishReason::kLength, nullptr), json::parse(R"({
    "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5, "model": "tiny",
    "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "length",
                 "stop_reason": null}]})"));
  EXPECT_EQ(usage_chunk(meta, "chat.completion.chunk",
                        Usage{.prompt_tokens = 2, .completion_tokens = 3, .cached_tokens = 1}),
            json::parse(R"({
    "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5, "model": "tiny",
    "choices": [],
    "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5,
              "prompt_tokens_details": {"cached_tokens": 1}}})"));
  // With include_usage every other chunk says "usage": null, as OpenAI's.
  const ResponseMeta with_usage = {.id = "c", .created = 5, .model = "tiny", .include_usage = true};
  EXPECT_EQ(chat_role_chunk(with_usage, 0)["usage"], nullptr);
  EXPECT_TRUE(chat_role_chunk(with_usage, 0).contains("usage"));
  EXPECT_FALSE(chat_role_chunk(meta, 0).contains("usage"));
}

TEST_F(OpenAiProtocolTest, CompletionChunksAndSse) {
  EXPECT_EQ(completion_text_chunk(kMeta, 2, "lo", nullptr), json::parse(R"({
    "id": "cmpl-abc", "object": "text_completion", "created": 1700000000, "model": "tiny",
    "choices": [{"index": 2, "text": "lo", "logprobs": null, "finish_reason": null,
                 "stop_reason": null}]})"));
  EXPECT_EQ(completion_finish_chunk(kMeta, 0, FinishReason::kStop, "END"), json::parse(R"({
    "id": "cmpl-abc", "object": "text_completion", "created": 1700000000, "model": "tiny",
    "choices": [{"index": 0, "text": "", "logprobs": null, "finish_reason": "stop",
                 "stop_reason": "END"}]})"));
  EXPECT_EQ(sse_event(json{{"a", 1}}), "data: {\"a\":1}\n\n");
  EXPECT_EQ(kSseDone, "data: [DONE]\n\n");
  // Invalid UTF-8 in a value is replaced, not thrown.
  EXPECT_EQ(sse_event(json{{"a", "x\xff"}}), "data: {\"a\":\"x\xef\xbf\xbd\"}\n\n");
}

TEST_F(OpenAiProtocolTest, ModelsAndIds) {
  ModelInfo info;
  info.id = "tiny";
  info.model_dir = "/models/tiny";
  info.created = 123;
  info.max_model_len = 4096;
  EXPECT_EQ(models_list_json(info), json::parse(R"({"object": "list", "data": [
    {"id": "tiny", "object": "model", "created": 123, "owned_by": "moeserve",
     "root": "/models/tiny", "parent": null, "max_model_len": 4096}]})"));
  const std::string a = new_response_id("chatcmpl-"), b = new_response_id("chatcmpl-");
  EXPECT_EQ(a.size(), 9u + 32u);
  EXPECT_EQ(a.rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef", 9), std::string::npos);
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace moeserve
