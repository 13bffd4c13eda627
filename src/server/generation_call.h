// A generation request in flight (POST /v1/completions, /v1/chat/completions) after the
// route parsed, tokenized and checked it: start_generation() submits one engine request per
// prompt and answers, streaming or whole, as the events come. Also Reply, how every OpenAI
// route answers and counts its answer. The routes are server/openai_routes.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/metrics.h"
#include "moeserve/engine.h"
#include "server/http_server.h"
#include "server/openai_protocol.h"
#include "server/openai_responses.h"
#include <nlohmann/json.hpp>

namespace moeserve::openai {

using Headers = std::vector<std::pair<std::string, std::string>>;

// Answers one request on one route, counting it in moeserve:http_requests{route,status}.
struct Reply {
  MetricsRegistry* metrics;
  std::string route;
  std::shared_ptr<HttpResponder> responder;

  void count(int status) const {
    metrics
        ->counter("moeserve:http_requests", "HTTP requests answered, by route and status",
                  {{"route", route}, {"status", absl::StrCat(status)}})
        .inc();
  }
  void send(int status, const nlohmann::json& body, Headers headers = {}) const {
    count(status);
    responder->send(status, "application/json", to_json_text(body), std::move(headers));
  }
  // 429 and 503 tell the client when to retry.
  void error(const ApiError& e) const {
    Headers headers;
    if (e.http_status == 429 || e.http_status == 503) headers.emplace_back("Retry-After", "1");
    send(e.http_status, error_body(e), std::move(headers));
  }
};

enum class ApiKind { kCompletion, kChat };

// Everything a generation request needs after it was parsed and tokenized.
struct CallSetup {
  ApiKind kind = ApiKind::kCompletion;
  ResponseMeta meta;
  bool stream = false;
  bool logprobs = false;
  int n = 1;
  std::vector<int32_t> stop_token_ids;  // the request's own, to tell them from EOS
  std::vector<int32_t> eos_ids;
  // How the request named its length cap ("max_tokens", or chat's "max_completion_tokens"), for
  // the `param` of the engine's refusal.
  std::string max_tokens_param = "max_tokens";
  int n_prompt_tokens = 0;
  size_t max_pending_bytes = 0;
  Counter* client_disconnects = nullptr;
  Counter* slow_client_aborts = nullptr;
  TokenTextFn token_text;
  Clock::time_point start;
};

// Submits `requests` (one per prompt) to `engine` and answers through `reply` once or as a
// stream; returns without waiting. The engine's listeners only hand the events over to the
// connection (HttpResponder::post), where they are formatted. A refused request is answered
// at once (the prompts already submitted are aborted): Engine::submit is where the sampling
// parameters are validated, so a bad value comes back as a 400 naming its field. `engine` and what
// `setup` points to must outlive the call.
void start_generation(Engine& engine, Reply reply, CallSetup setup,
                      std::vector<GenerateRequest> requests);

}  // namespace moeserve::openai
