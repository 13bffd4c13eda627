// The OpenAI-compatible REST routes over an Engine, as an HttpHandler:
//   POST /v1/chat/completions, POST /v1/completions   generation (JSON or Server-Sent Events)
//   GET  /v1/models, GET /v1/models/{id}               the served model
//   POST /tokenize, POST /detokenize                   vLLM's tokenizer endpoints
//   GET  /health                                       200 when ready, 503 loading or draining
//   GET  /metrics                                      Prometheus text
// The wire format is server/openai_protocol.h; docs/api.md describes the API.
//
// handle() runs on an I/O thread: it parses, tokenizes, submits and returns without waiting.
// Generation output arrives through TokenStream listeners on the engine thread, which only
// post a drain onto the connection (HttpResponder::post); there the events are polled and
// formatted into chunks (streaming) or, once every sequence is done, the whole response, so
// the engine thread never builds JSON. A client that disconnects, or reads so slowly that
// more than max_stream_pending_bytes pile up, gets its request aborted in the engine.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>

#include "moeserve/engine.h"
#include "server/http_server.h"
#include "server/prompt_builder.h"

namespace moeserve {

class Counter;

struct OpenAiRoutesOptions {
  double request_timeout_s = 0;                // > 0: generation deadline per request
  size_t max_stream_pending_bytes = 4u << 20;  // a slower stream reader is cut off
};

class OpenAiRoutes {
 public:
  // `engine` and `prompts` must outlive every request handled (they are used from the
  // connections' executors until each request's stream ends).
  OpenAiRoutes(Engine& engine, const PromptBuilder& prompts, OpenAiRoutesOptions options);

  // Usable as an HttpHandler.
  void handle(HttpRequest request, std::shared_ptr<HttpResponder> responder);

  // /health answers 200 only while ready and not draining. Starts not ready.
  void set_ready(bool ready) { ready_ = ready; }
  // From now on generation requests get 503 with Retry-After, and /health 503.
  void set_draining() { draining_ = true; }

 private:
  // The routes that read a body; `responder` answers, counted under `route`.
  void generate(const HttpRequest& request, std::shared_ptr<HttpResponder> responder,
                const std::string& route, bool chat);
  void tokenize(const HttpRequest& request, std::shared_ptr<HttpResponder> responder);
  void detokenize(const HttpRequest& request, std::shared_ptr<HttpResponder> responder);

  Engine& engine_;
  const PromptBuilder& prompts_;
  const OpenAiRoutesOptions options_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
  Counter& client_disconnects_;
  Counter& slow_client_aborts_;
};

}  // namespace moeserve
