#include "server/openai_responses.h"

#include <random>

#include "absl/strings/str_cat.h"

namespace moeserve {
namespace {

using nlohmann::json;

json bytes_json(const std::string& bytes) {
  json out = json::array();
  for (unsigned char c : bytes) out.push_back(static_cast<int>(c));
  return out;
}

// Characters in `bytes` (UTF-8 lead bytes, so a character split across tokens counts once).
int64_t n_chars(const std::string& bytes) {
  int64_t n = 0;
  for (unsigned char c : bytes) n += (c & 0xC0) != 0x80;
  return n;
}

json chunk_base(const ResponseMeta& meta, const char* object) {
  json out = {
      {"id", meta.id}, {"object", object}, {"created", meta.created}, {"model", meta.model}};
  return out;
}

json finish_json(const std::optional<FinishReason>& finish) {
  return finish.has_value() ? json(finish_reason_name(*finish)) : json(nullptr);
}

json with_choice(const ResponseMeta& meta, const char* object, json choice) {
  json out = chunk_base(meta, object);
  out["choices"] = json::array({std::move(choice)});
  if (meta.include_usage) out["usage"] = nullptr;
  return out;
}

}  // namespace

std::string new_response_id(std::string_view prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(prefix);
  for (int i = 0; i < 2; ++i) {
    uint64_t r = rng();
    for (int j = 0; j < 16; ++j, r >>= 4) id.push_back(kHex[r & 0xF]);
  }
  return id;
}

json usage_json(const Usage& usage) {
  return {{"prompt_tokens", usage.prompt_tokens},
          {"completion_tokens", usage.completion_tokens},
          {"total_tokens", usage.prompt_tokens + usage.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", usage.cached_tokens}}}};
}

json stop_reason_json(const std::string& stop_string, const std::optional<int32_t>& stop_token) {
  if (!stop_string.empty()) return stop_string;
  if (stop_token.has_value()) return *stop_token;
  return nullptr;
}

json completion_logprobs_json(const std::vector<TokenLogprobs>& logprobs,
                              const TokenTextFn& token_text, int64_t* text_offset) {
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  for (const TokenLogprobs& lp : logprobs) {
    const TokenText t = token_text(lp.token);
    tokens.push_back(t.text);
    token_logprobs.push_back(lp.logprob);
    json alternatives = json::object();
    for (const auto& [id, alt_lp] : lp.top) alternatives[token_text(id).text] = alt_lp;
    alternatives[t.text] = lp.logprob;  // the sampled token is always listed, as OpenAI's
    top.push_back(std::move(alternatives));
    offsets.push_back(*text_offset);
    *text_offset += n_chars(t.bytes);
  }
  return {{"tokens", std::move(tokens)},
          {"token_logprobs", std::move(token_logprobs)},
          {"top_logprobs", std::move(top)},
          {"text_offset", std::move(offsets)}};
}

json chat_logprobs_json(const std::vector<TokenLogprobs>& logprobs, const TokenTextFn& token_text) {
  json content = json::array();
  for (const TokenLogprobs& lp : logprobs) {
    const TokenText t = token_text(lp.token);
    json top = json::array();
    for (const auto& [id, alt_lp] : lp.top) {
      const TokenText alt = token_text(id);
      top.push_back({{"token", alt.text}, {"logprob", alt_lp}, {"bytes", bytes_json(alt.bytes)}});
    }
    content.push_back({{"token", t.text},
                       {"logprob", lp.logprob},
                       {"bytes", bytes_json(t.bytes)},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

json completion_response(const ResponseMeta& meta, const std::vector<ChoiceOutput>& choices,
                         const Usage& usage, bool with_logprobs, const TokenTextFn& token_text) {
  json out = chunk_base(meta, "text_completion");
  json list = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceOutput& c = choices[i];
    int64_t offset = 0;
    list.push_back(
        {{"index", i},
         {"text", c.text},
         {"logprobs", with_logprobs ? completion_logprobs_json(c.logprobs, token_text, &offset)
                                    : json(nullptr)},
         {"finish_reason", finish_json(c.finish)},
         {"stop_reason", stop_reason_json(c.stop_string, c.stop_token)}});
  }
  out["choices"] = std::move(list);
  out["usage"] = usage_json(usage);
  return out;
}

json chat_response(const ResponseMeta& meta, const std::vector<ChoiceOutput>& choices,
                   const Usage& usage, bool with_logprobs, const TokenTextFn& token_text) {
  json out = chunk_base(meta, "chat.completion");
  json list = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceOutput& c = choices[i];
    json message = {{"role", "assistant"}, {"content", c.text}};
    if (!c.reasoning.empty()) message["reasoning_content"] = c.reasoning;
    list.push_back(
        {{"index", i},
         {"message", std::move(message)},
         {"logprobs", with_logprobs ? chat_logprobs_json(c.logprobs, token_text) : json(nullptr)},
         {"finish_reason", finish_json(c.finish)},
         {"stop_reason", stop_reason_json(c.stop_string, c.stop_token)}});
  }
  out["choices"] = std::move(list);
  out["usage"] = usage_json(usage);
  return out;
}

json chat_role_chunk(const ResponseMeta& meta, int index) {
  return with_choice(meta, "chat.completion.chunk",
                     {{"index", index},
                      {"delta", {{"role", "assistant"}, {"content", ""}}},
                      {"logprobs", nullptr},
                      {"finish_reason", nullptr}});
}

json chat_delta_chunk(const ResponseMeta& meta, int index, const std::string& content,
                      const std::string& reasoning, json logprobs) {
  json delta = json::object();
  if (!reasoning.empty()) delta["reasoning_content"] = reasoning;
  if (!content.empty() || reasoning.empty()) delta["content"] = content;
  return with_choice(meta, "chat.completion.chunk",
                     {{"index", index},
                      {"delta", std::move(delta)},
                      {"logprobs", std::move(logprobs)},
                      {"finish_reason", nullptr}});
}

json chat_finish_chunk(const ResponseMeta& meta, int index, FinishReason reason, json stop_reason) {
  return with_choice(meta, "chat.completion.chunk",
                     {{"index", index},
                      {"delta", json::object()},
                      {"logprobs", nullptr},
                      {"finish_reason", finish_reason_name(reason)},
                      {"stop_reason", std::move(stop_reason)}});
}

json completion_text_chunk(const ResponseMeta& meta, int index, const std::string& text,
                           json logprobs) {
  return with_choice(meta, "text_completion",
                     {{"index", index},
                      {"text", text},
                      {"logprobs", std::move(logprobs)},
                      {"finish_reason", nullptr},
                      {"stop_reason", nullptr}});
}

json completion_finish_chunk(const ResponseMeta& meta, int index, FinishReason reason,
                             json stop_reason) {
  return with_choice(meta, "text_completion",
                     {{"index", index},
                      {"text", ""},
                      {"logprobs", nullptr},
                      {"finish_reason", finish_reason_name(reason)},
                      {"stop_reason", std::move(stop_reason)}});
}

json usage_chunk(const ResponseMeta& meta, const std::string& object, const Usage& usage) {
  json out = chunk_base(meta, object.c_str());
  out["choices"] = json::array();
  out["usage"] = usage_json(usage);
  return out;
}

json model_json(const ModelInfo& info) {
  return {{"id", info.id},
          {"object", "model"},
          {"created", info.created},
          {"owned_by", "moeserve"},
          {"root", info.model_dir},
          {"parent", nullptr},
          {"max_model_len", info.max_model_len}};
}

json models_list_json(const ModelInfo& info) {
  return {{"object", "list"}, {"data", json::array({model_json(info)})}};
}

std::string to_json_text(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string sse_event(const json& value) {
  return absl::StrCat("data: ", to_json_text(value), "\n\n");
}

}  // namespace moeserve
