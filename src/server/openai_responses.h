// OpenAI-compatible response bodies and Server-Sent-Event chunks, built from engine output
// (TokenEvents accumulated per choice). Shapes follow OpenAI's API reference, plus vLLM's
// `stop_reason` and `reasoning_content`. Pure JSON, no I/O; server/openai_routes.cc sends them.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "moeserve/engine.h"
#include <nlohmann/json.hpp>

namespace moeserve {

// A token as the API shows it: `text` is its decoded text (valid UTF-8; a token holding part
// of a character shows U+FFFD) and `bytes` its raw bytes, which concatenate to the output.
struct TokenText {
  std::string text;
  std::string bytes;
};
using TokenTextFn = std::function<TokenText(int32_t id)>;

// The id, creation time and model every response object and chunk carries.
struct ResponseMeta {
  std::string id;  // "cmpl-…" or "chatcmpl-…"
  int64_t created = 0;
  std::string model;
  bool include_usage = false;  // streaming: chunks carry "usage": null, as OpenAI's
};

// "cmpl-" / "chatcmpl-" and 32 random hex digits.
std::string new_response_id(std::string_view prefix);

// One choice (sequence) of a non-streaming response, accumulated from its events.
struct ChoiceOutput {
  std::string text;
  std::string reasoning;
  std::vector<TokenLogprobs> logprobs;
  std::optional<FinishReason> finish;
  std::string stop_string;
  std::optional<int32_t> stop_token;
};

// {prompt_tokens, completion_tokens, total_tokens, prompt_tokens_details: {cached_tokens}}.
nlohmann::json usage_json(const Usage& usage);
// vLLM's stop_reason: the stop string, else the stop token id, else null.
nlohmann::json stop_reason_json(const std::string& stop_string,
                                const std::optional<int32_t>& stop_token);

// Legacy completions logprobs: {tokens, token_logprobs, top_logprobs: [{text: logprob}] (the
// alternatives plus the sampled token), text_offset}. `text_offset` is the running offset in
// characters of the choice's text, advanced past these tokens.
nlohmann::json completion_logprobs_json(const std::vector<TokenLogprobs>& logprobs,
                                        const TokenTextFn& token_text, int64_t* text_offset);
// Chat logprobs: {content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}.
nlohmann::json chat_logprobs_json(const std::vector<TokenLogprobs>& logprobs,
                                  const TokenTextFn& token_text);

// Whole responses ("text_completion" / "chat.completion"); choices are indexed by position.
// `with_logprobs`: each choice carries logprobs (else null).
nlohmann::json completion_response(const ResponseMeta& meta,
                                   const std::vector<ChoiceOutput>& choices, const Usage& usage,
                                   bool with_logprobs, const TokenTextFn& token_text);
nlohmann::json chat_response(const ResponseMeta& meta, const std::vector<ChoiceOutput>& choices,
                             const Usage& usage, bool with_logprobs, const TokenTextFn& token_text);

// Streaming chunks. A chat choice starts with a role chunk (delta {role: "assistant",
// content: ""}), then content / reasoning deltas, then a finish chunk with an empty delta; a
// completion choice has text chunks then a finish chunk with text "". With include_usage the
// last chunk has no choices and the usage. `logprobs` is the choice's logprobs JSON or null.
nlohmann::json chat_role_chunk(const ResponseMeta& meta, int index);
nlohmann::json chat_delta_chunk(const ResponseMeta& meta, int index, const std::string& content,
                                const std::string& reasoning, nlohmann::json logprobs);
nlohmann::json chat_finish_chunk(const ResponseMeta& meta, int index, FinishReason reason,
                                 nlohmann::json stop_reason);
nlohmann::json completion_text_chunk(const ResponseMeta& meta, int index, const std::string& text,
                                     nlohmann::json logprobs);
nlohmann::json completion_finish_chunk(const ResponseMeta& meta, int index, FinishReason reason,
                                       nlohmann::json stop_reason);
// `object` is "chat.completion.chunk" or "text_completion".
nlohmann::json usage_chunk(const ResponseMeta& meta, const std::string& object, const Usage& usage);

// GET /v1/models: {"object": "list", "data": [model]}; the model object alone for
// GET /v1/models/{id}.
nlohmann::json model_json(const ModelInfo& info);
nlohmann::json models_list_json(const ModelInfo& info);

// JSON text for the wire: compact, invalid UTF-8 (which only an echoed input could hold)
// replaced by U+FFFD instead of throwing.
std::string to_json_text(const nlohmann::json& value);
// One Server-Sent Event: "data: <json>\n\n".
std::string sse_event(const nlohmann::json& value);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

}  // namespace moeserve
