// The OpenAI-compatible REST API's requests and errors: request bodies parsed into plain
// structs with strict JSON type checks, and OpenAI's error object. No I/O here;
// server/openai_routes.h drives it and server/openai_responses.h builds the answers. Field
// names follow OpenAI's API reference, plus vLLM's extra sampling fields (top_k, min_p,
// repetition_penalty, …).
//
// Parsing checks JSON types and what cannot be represented in SamplingParams (integer overflow,
// unsupported features); value ranges are validate()'s (moeserve/sampling_params.h), which
// Engine::submit calls once for every front end; from_status() turns its message into a 400
// naming the request field as `param`. Unknown fields are ignored and `null` means "not given".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "moeserve/engine.h"
#include "moeserve/sampling_params.h"
#include "moeserve/status.h"
#include "server/prompt_builder.h"
#include <nlohmann/json.hpp>

namespace moeserve {

// ---- errors ----

// An error answer: the HTTP status and OpenAI's error object. The `type` follows the status:
//   400, 404, 405, 413: invalid_request_error      401: authentication_error
//   429: rate_limit_error (code rate_limit_exceeded)
//   500, 503, 504: server_error (code internal_error, service_unavailable, timeout)
// An unknown model is 404 with param "model" and code "model_not_found", as OpenAI's.
struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type;
  std::string param;  // the offending request field; "" = none (JSON null)
  std::string code;   // "" = none (JSON null)
};

// An ApiError with `type` (and, when `code` is empty, the code) that `http_status` implies.
ApiError api_error(int http_status, std::string message, std::string param = "",
                   std::string code = "");
// {"error": {"message", "type", "param", "code"}}; empty param / code are null.
nlohmann::json error_body(const ApiError& error);
// An engine or prompt error as an HTTP error: InvalidArgument, FailedPrecondition, OutOfRange
// → 400; NotFound → 404; ResourceExhausted → 429; Unavailable → 503; DeadlineExceeded → 504;
// Unauthenticated → 401; anything else → 500. `param` "" takes the field the message starts
// with (param_of_message), as validate() and PromptBuilder name it.
ApiError from_status(const Status& status, std::string param = "");
// The sampling field a validate() message is about ("top_p must be in (0, 1], got 0" → "top_p";
// "logit_bias[3] must be …" → "logit_bias"), or "" when it does not start with one.
std::string param_of_message(std::string_view message);

// ---- requests ----

// Parses a request body that must be a JSON object. Bad JSON (including invalid UTF-8 and
// nesting deeper than 64) is a 400 "invalid JSON: …".
std::optional<ApiError> parse_json_object(std::string_view body, nlohmann::json* out);

// What /v1/completions and /v1/chat/completions share: GenerateRequest less the prompt.
struct GenerationOptions {
  SamplingParams sampling;  // temperature defaults to 1 here, as OpenAI's
  int priority = 0;
  std::string cache_salt;
  bool skip_special_tokens = true;
  bool include_stop_str_in_output = false;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage (only with stream)
};

// One prompt of /v1/completions: text, or token ids (range-checked later by
// PromptBuilder::from_ids, which knows the vocabulary).
struct PromptInput {
  std::optional<std::string> text;
  std::vector<int64_t> ids;
};

struct CompletionRequest {
  std::string model;
  std::vector<PromptInput> prompts;  // at least one, none empty
  GenerationOptions options;         // sampling.max_tokens defaults to 16
  bool add_special_tokens = true;
};

struct ChatRequest {
  std::string model;
  std::vector<ChatMessage> messages;  // at least one; content parts joined with "\n"
  GenerationOptions options;          // sampling.max_tokens: see max_tokens
  // max_completion_tokens, else max_tokens; nullopt: whatever the context leaves.
  std::optional<int> max_tokens;
  std::string max_tokens_param = "max_tokens";  // the field that set it, for error params
  bool add_generation_prompt = true;
};

// POST /tokenize: {model?, prompt, add_special_tokens?} or {model?, messages,
// add_generation_prompt?, add_special_tokens?}.
struct TokenizeRequest {
  std::string model;                  // "" when not given
  std::optional<std::string> prompt;  // set: encode text; else render `messages`
  std::vector<ChatMessage> messages;
  bool add_generation_prompt = true;
  bool add_special_tokens = true;  // default true for prompt, false for messages
};

// POST /detokenize: {model?, tokens}.
struct DetokenizeRequest {
  std::string model;
  std::vector<int64_t> tokens;
};

std::optional<ApiError> parse_completion_request(const nlohmann::json& body,
                                                 CompletionRequest* out);
std::optional<ApiError> parse_chat_request(const nlohmann::json& body, ChatRequest* out);
std::optional<ApiError> parse_tokenize_request(const nlohmann::json& body, TokenizeRequest* out);
std::optional<ApiError> parse_detokenize_request(const nlohmann::json& body,
                                                 DetokenizeRequest* out);

}  // namespace moeserve
