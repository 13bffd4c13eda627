// The OpenAI routes: dispatch by path and method, the simple routes, and the parsing and
// checking of a generation request before server/generation_call.h takes it over.
#include "server/openai_routes.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "server/generation_call.h"
#include "server/openai_protocol.h"
#include "server/openai_responses.h"
#include "tokenizer/tokenizer.h"

namespace moeserve {
namespace {

using nlohmann::json;
using openai::ApiKind;
using openai::CallSetup;
using openai::Reply;

// The request's log line when it never reached the engine.
void log_refused(const std::string& id, const std::string& route, const ApiError& e) {
  MS_LOG_INFO("{} {} status={} refused: {}", id, route, e.http_status, e.message);
}

TokenTextFn token_text_fn(const Tokenizer& tokenizer) {
  return [&tokenizer](int32_t id) {
    const int32_t ids[] = {id};
    return TokenText{.text = tokenizer.decode(ids, {.skip_special_tokens = false}),
                     .bytes = tokenizer.decode_bytes(ids, /*skip_special_tokens=*/false)};
  };
}

std::optional<ApiError> check_model(const std::string& requested, const ModelInfo& info) {
  if (requested == info.id) return std::nullopt;
  return api_error(
      404, absl::StrCat("The model '", requested, "' does not exist (serving '", info.id, "')"),
      "model", "model_not_found");
}

GenerateRequest base_request(const std::string& id, const GenerationOptions& o,
                             const OpenAiRoutesOptions& options, Clock::time_point start) {
  GenerateRequest r;
  r.external_id = id;
  r.sampling = o.sampling;
  r.priority = o.priority;
  r.cache_salt = o.cache_salt;
  r.skip_special_tokens = o.skip_special_tokens;
  r.include_stop_str_in_output = o.include_stop_str_in_output;
  if (options.request_timeout_s > 0) {
    r.deadline = start + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(options.request_timeout_s));
  }
  return r;
}

// What a route name in the request log and metric is: the path for known routes.
struct RouteSpec {
  const char* path;
  const char* method;
};
constexpr RouteSpec kRoutes[] = {
    {"/v1/chat/completions", "POST"},
    {"/v1/completions", "POST"},
    {"/v1/models", "GET"},
    {"/health", "GET"},
    {"/metrics", "GET"},
    {"/tokenize", "POST"},
    {"/detokenize", "POST"},
};

}  // namespace

OpenAiRoutes::OpenAiRoutes(Engine& engine, const PromptBuilder& prompts,
                           OpenAiRoutesOptions options)
    : engine_(engine),
      prompts_(prompts),
      options_(options),
      client_disconnects_(engine.metrics().counter(
          "moeserve:client_disconnects",
          "Requests aborted because the client disconnected before the answer was complete")),
      slow_client_aborts_(
          engine.metrics().counter("moeserve:slow_client_aborts",
                                   "Streams cut off because the client read them too slowly")) {}

void OpenAiRoutes::handle(HttpRequest request, std::shared_ptr<HttpResponder> responder) {
  Reply reply{&engine_.metrics(), "unknown", responder};
  const RouteSpec* spec = nullptr;
  for (const RouteSpec& r : kRoutes) {
    if (request.path == r.path) spec = &r;
  }
  const bool model_path = request.path.starts_with("/v1/models/");
  if (spec == nullptr && !model_path) {
    reply.error(api_error(404,
                          absl::StrCat("Invalid URL (", request.method, " ", request.path, ")"), "",
                          "not_found"));
    return;
  }
  reply.route = spec != nullptr ? spec->path : "/v1/models/{id}";
  const char* method = spec != nullptr ? spec->method : "GET";
  if (request.method != method) {
    reply.send(405,
               error_body(api_error(405,
                                    absl::StrCat("Method ", request.method, " is not allowed on ",
                                                 reply.route, " (use ", method, ")"),
                                    "", "method_not_allowed")),
               {{"Allow", method}});
    return;
  }
  try {
    const std::string& path = request.path;
    if (path == "/v1/chat/completions" || path == "/v1/completions") {
      generate(request, responder, reply.route, path == "/v1/chat/completions");
    } else if (path == "/v1/models") {
      reply.send(200, models_list_json(engine_.model_info()));
    } else if (model_path) {
      const std::string id = path.substr(std::string_view("/v1/models/").size());
      if (auto e = check_model(id, engine_.model_info())) return reply.error(*e);
      reply.send(200, model_json(engine_.model_info()));
    } else if (path == "/health") {
      if (ready_ && !draining_) return reply.send(200, json::object());
      reply.error(api_error(503, draining_ ? "the server is draining" : "the model is loading"));
    } else if (path == "/metrics") {
      reply.count(200);
      responder->send(200, "text/plain; version=0.0.4; charset=utf-8", engine_.metrics().render());
    } else if (path == "/tokenize") {
      tokenize(request, responder);
    } else if (path == "/detokenize") {
      detokenize(request, responder);
    }
  } catch (const std::exception& e) {
    // Nothing here should throw; if it does, the request fails alone.
    MS_LOG_ERROR("{} {}: unexpected exception: {}", request.method, request.path, e.what());
    reply.error(api_error(500, "internal error"));
  }
}

void OpenAiRoutes::generate(const HttpRequest& request, std::shared_ptr<HttpResponder> responder,
                            const std::string& route, bool chat) {
  const Reply reply{&engine_.metrics(), route, std::move(responder)};
  const Clock::time_point start = Clock::now();
  const std::string id = new_response_id(chat ? "chatcmpl-" : "cmpl-");
  auto refuse = [&](const ApiError& e) {
    log_refused(id, reply.route, e);
    reply.error(e);
  };
  if (draining_) {
    return refuse(api_error(503, "the server is draining and accepts no new requests"));
  }
  json body;
  if (auto e = parse_json_object(request.body, &body)) return refuse(*e);

  const ModelInfo& info = engine_.model_info();
  CallSetup setup;
  setup.kind = chat ? ApiKind::kChat : ApiKind::kCompletion;
  setup.start = start;
  std::vector<GenerateRequest> requests;
  GenerationOptions options;
  std::string max_tokens_param = "max_tokens";
  if (chat) {
    ChatRequest parsed;
    if (auto e = parse_chat_request(body, &parsed)) return refuse(*e);
    if (auto e = check_model(parsed.model, info)) return refuse(*e);
    auto prompt = prompts_.from_messages(parsed.messages, parsed.add_generation_prompt);
    if (!prompt.ok()) {
      return refuse(from_status(prompt.status()));
    }
    options = parsed.options;
    // Left out, max_tokens is what the context (and the whole KV cache, if smaller) leaves;
    // the engine refuses a prompt that leaves nothing.
    int64_t capacity = info.max_model_len;
    if (info.n_kv_blocks > 0 && info.block_size > 0) {
      capacity = std::min<int64_t>(capacity, int64_t{info.n_kv_blocks} * info.block_size);
    }
    options.sampling.max_tokens = parsed.max_tokens.value_or(static_cast<int>(
        std::max<int64_t>(1, capacity - static_cast<int64_t>(prompt->ids.size()))));
    max_tokens_param = parsed.max_tokens_param;
    setup.meta.model = parsed.model;
    GenerateRequest r = base_request(id, options, options_, start);
    r.prompt = std::move(prompt->ids);
    r.reasoning = prompt->reasoning;
    requests.push_back(std::move(r));
  } else {
    CompletionRequest parsed;
    if (auto e = parse_completion_request(body, &parsed)) return refuse(*e);
    if (auto e = check_model(parsed.model, info)) return refuse(*e);
    options = parsed.options;
    setup.meta.model = parsed.model;
    for (const PromptInput& input : parsed.prompts) {
      auto prompt = input.text.has_value()
                        ? prompts_.from_text(*input.text, parsed.add_special_tokens)
                        : prompts_.from_ids(input.ids);
      if (!prompt.ok()) return refuse(from_status(prompt.status(), "prompt"));
      GenerateRequest r = base_request(id, options, options_, start);
      r.prompt = std::move(prompt->ids);
      requests.push_back(std::move(r));
    }
  }
  setup.meta.id = id;
  setup.meta.created = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
  setup.meta.include_usage = options.stream && options.include_usage;
  setup.stream = options.stream;
  setup.logprobs = options.sampling.logprobs;
  setup.n = options.sampling.n;
  setup.stop_token_ids = options.sampling.stop_token_ids;
  setup.eos_ids = info.eos_ids;
  setup.max_tokens_param = max_tokens_param;
  for (const GenerateRequest& r : requests) setup.n_prompt_tokens += r.prompt.size();
  setup.max_pending_bytes = options_.max_stream_pending_bytes;
  setup.client_disconnects = &client_disconnects_;
  setup.slow_client_aborts = &slow_client_aborts_;
  setup.token_text = token_text_fn(prompts_.tokenizer());
  openai::start_generation(engine_, reply, std::move(setup), std::move(requests));
}

void OpenAiRoutes::tokenize(const HttpRequest& request, std::shared_ptr<HttpResponder> responder) {
  const Reply reply{&engine_.metrics(), "/tokenize", std::move(responder)};
  json body;
  if (auto e = parse_json_object(request.body, &body)) return reply.error(*e);
  TokenizeRequest parsed;
  if (auto e = parse_tokenize_request(body, &parsed)) return reply.error(*e);
  const ModelInfo& info = engine_.model_info();
  if (!parsed.model.empty()) {
    if (auto e = check_model(parsed.model, info)) return reply.error(*e);
  }
  std::vector<int32_t> ids;
  if (parsed.prompt.has_value()) {
    ids = prompts_.tokenizer().encode(*parsed.prompt,
                                      {.add_special_tokens = parsed.add_special_tokens});
  } else {
    auto prompt = prompts_.from_messages(parsed.messages, parsed.add_generation_prompt);
    if (!prompt.ok()) {
      return reply.error(from_status(prompt.status()));
    }
    ids = std::move(prompt->ids);
    if (parsed.add_special_tokens && prompts_.tokenizer().bos_id() >= 0 &&
        (ids.empty() || ids.front() != prompts_.tokenizer().bos_id())) {
      ids.insert(ids.begin(), prompts_.tokenizer().bos_id());
    }
  }
  reply.send(200, {{"tokens", ids}, {"count", ids.size()}, {"max_model_len", info.max_model_len}});
}

void OpenAiRoutes::detokenize(const HttpRequest& request,
                              std::shared_ptr<HttpResponder> responder) {
  const Reply reply{&engine_.metrics(), "/detokenize", std::move(responder)};
  json body;
  if (auto e = parse_json_object(request.body, &body)) return reply.error(*e);
  DetokenizeRequest parsed;
  if (auto e = parse_detokenize_request(body, &parsed)) return reply.error(*e);
  if (!parsed.model.empty()) {
    if (auto e = check_model(parsed.model, engine_.model_info())) return reply.error(*e);
  }
  const Tokenizer& tokenizer = prompts_.tokenizer();
  std::vector<int32_t> ids;
  for (size_t i = 0; i < parsed.tokens.size(); ++i) {
    const int64_t t = parsed.tokens[i];
    if (t < 0 || t >= tokenizer.vocab_size()) {
      return reply.error(
          api_error(400,
                    absl::StrCat("tokens[", i, "]: token id ", t, " is outside the vocabulary [0, ",
                                 tokenizer.vocab_size(), ")"),
                    "tokens"));
    }
    ids.push_back(static_cast<int32_t>(t));
  }
  reply.send(200, {{"prompt", tokenizer.decode(ids, {.skip_special_tokens = false})}});
}

}  // namespace moeserve
