#include "server/openai_routes.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "server/openai_protocol.h"
#include "server/openai_responses.h"
#include "tokenizer/tokenizer.h"

namespace moeserve {
namespace {

using nlohmann::json;
using Headers = std::vector<std::pair<std::string, std::string>>;

constexpr const char* kJson = "application/json";

double ms_since(Clock::time_point start, Clock::time_point end) {
  return std::chrono::duration<double, std::milli>(end - start).count();
}

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
  void send(int status, const json& body, Headers headers = {}) const {
    count(status);
    responder->send(status, kJson, to_json_text(body), std::move(headers));
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
  int n_prompt_tokens = 0;
  size_t max_pending_bytes = 0;
  Counter* client_disconnects = nullptr;
  Counter* slow_client_aborts = nullptr;
  TokenTextFn token_text;
  Clock::time_point start;
};

// One generation request in flight: one engine request per prompt, n choices each. The
// streams' listeners run on the engine thread and only schedule a drain() on the connection's
// executor (HttpResponder::post), at most one pending at a time; drain() polls the events and
// formats and writes the output there. The mutex orders drains against start() and the
// disconnect callback, which may run elsewhere. Engine::abort is called outside the mutex.
//
// Ownership: each stream's listener holds the call, and the call holds its streams until it
// finishes, then lets them go, so the call lives until it finishes and the engine drops the
// last stream. A posted drain holds the call weakly: an unfinished call is kept alive by its
// streams, and a finished one has nothing left to drain.
class GenerationCall : public std::enable_shared_from_this<GenerationCall> {
 public:
  GenerationCall(Engine& engine, Reply reply, CallSetup setup)
      : engine_(engine), reply_(std::move(reply)), setup_(std::move(setup)) {}

  // Submits one engine request per prompt. If one is refused, those already submitted are
  // aborted and the refusal is the answer.
  void start(std::vector<GenerateRequest> requests) {
    n_prompts_ = static_cast<int>(requests.size());
    for (GenerateRequest& request : requests) {
      auto stream = engine_.submit(std::move(request));
      if (!stream.ok()) {
        for (const auto& s : streams_) {
          engine_.abort(s->id(), absl::CancelledError("a sibling prompt was refused"));
        }
        streams_.clear();
        const Status& status = stream.status();
        const ApiError e = from_status(status);
        reply_.error(e);
        log(e.http_status, absl::StrCat("refused: ", status.message()));
        return;
      }
      streams_.push_back(*std::move(stream));
    }
    choices_.resize(static_cast<size_t>(n_prompts_) * setup_.n);
    stream_done_.assign(streams_.size(), false);
    if (setup_.stream) reply_.responder->start_stream("text/event-stream");
    auto self = shared_from_this();
    // A listener may run (and finish the call, releasing streams_) before the loop ends.
    const std::vector<std::shared_ptr<TokenStream>> streams = streams_;
    for (const auto& s : streams) s->set_listener([self] { self->schedule_drain(); });
    std::weak_ptr<GenerationCall> weak = self;
    reply_.responder->on_close([weak] {
      if (auto call = weak.lock()) call->on_disconnect();
    });
    drain();  // events that came before the listeners were set
  }

 private:
  struct Choice {
    ChoiceOutput out;  // accumulated (non-streaming) or last finish (streaming)
    bool role_sent = false;
    int64_t text_offset = 0;  // legacy logprobs' running text_offset
  };

  // On the engine thread: cheap and non-blocking. One pending drain covers every event pushed
  // before it runs, so later listeners need not post another.
  void schedule_drain() {
    if (drain_pending_.exchange(true)) return;
    reply_.responder->post([weak = weak_from_this()] {
      if (auto call = weak.lock()) call->drain();
    });
  }

  void drain() {
    // Cleared before polling, so an event pushed from here on posts the next drain. An
    // exchange, not a store: it synchronises with the listener that set the flag, whose
    // stream's events the poll below then sees.
    drain_pending_.exchange(false);
    std::vector<int64_t> to_abort;
    std::vector<std::shared_ptr<TokenStream>> released;
    Status why;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      bool all_done = true;
      for (size_t k = 0; k < streams_.size() && !finished_; ++k) {
        if (stream_done_[k]) continue;
        for (TokenEvent& event : streams_[k]->poll()) {
          on_event(static_cast<int>(k), event);
          if (finished_) break;
        }
        stream_done_[k] = streams_[k]->done();
        all_done = all_done && stream_done_[k];
      }
      if (!finished_ && all_done) finish_ok();
      if (!finished_) return;
      for (size_t k = 0; k < streams_.size(); ++k) {
        if (!stream_done_[k]) to_abort.push_back(streams_[k]->id());
      }
      released.swap(streams_);
      why = abort_why_;
    }
    for (int64_t id : to_abort) engine_.abort(id, why);
  }

  void on_disconnect() {
    std::vector<int64_t> to_abort;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      finished_ = true;
      setup_.client_disconnects->inc();
      for (size_t k = 0; k < streams_.size(); ++k) {
        if (!stream_done_[k]) to_abort.push_back(streams_[k]->id());
      }
      streams_.clear();
      reply_.count(499);  // nginx's "client closed request", for the metric only
      log(499, "client disconnected");
    }
    for (int64_t id : to_abort) engine_.abort(id, absl::CancelledError("client disconnected"));
  }

  // Under mu_. One event of prompt k's engine request.
  void on_event(int k, const TokenEvent& event) {
    const int index = k * setup_.n + event.index;
    if (index < 0 || index >= static_cast<int>(choices_.size())) return;  // not ours
    Choice& c = choices_[index];
    if (!first_token_.has_value() && !event.token_ids.empty()) first_token_ = Clock::now();
    if (event.usage.has_value()) {
      usage_.prompt_tokens += event.usage->prompt_tokens;
      usage_.completion_tokens += event.usage->completion_tokens;
      usage_.cached_tokens += event.usage->cached_tokens;
    }
    const bool failed = event.finish == FinishReason::kError ||
                        (event.finish == FinishReason::kAbort && !event.error.ok());
    if (!setup_.stream) {
      c.out.text += event.text;
      c.out.reasoning += event.reasoning_text;
      c.out.logprobs.insert(c.out.logprobs.end(), event.logprobs.begin(), event.logprobs.end());
      if (event.finish.has_value()) {
        c.out.finish = event.finish;
        c.out.stop_string = event.stop_string;
        c.out.stop_token = reported_stop_token(event);
      }
      // A non-streaming answer is whole or an error: a failed or timed-out sequence fails it.
      if (failed) finish_error(event);
      return;
    }

    const bool chat = setup_.kind == ApiKind::kChat;
    if (chat && !c.role_sent) {
      write(sse_event(chat_role_chunk(setup_.meta, index)));
      c.role_sent = true;
    }
    if (!event.text.empty() || !event.reasoning_text.empty() || !event.logprobs.empty()) {
      json logprobs = nullptr;
      if (setup_.logprobs) {
        logprobs =
            chat ? chat_logprobs_json(event.logprobs, setup_.token_text)
                 : completion_logprobs_json(event.logprobs, setup_.token_text, &c.text_offset);
      }
      write(sse_event(
          chat ? chat_delta_chunk(setup_.meta, index, event.text, event.reasoning_text,
                                  std::move(logprobs))
               : completion_text_chunk(setup_.meta, index, event.text, std::move(logprobs))));
    }
    if (finished_) return;
    if (event.finish.has_value()) {
      c.out.finish = event.finish;
      if (event.finish == FinishReason::kError) {
        finish_error(event);
        return;
      }
      json stop_reason = stop_reason_json(event.stop_string, reported_stop_token(event));
      write(sse_event(
          chat ? chat_finish_chunk(setup_.meta, index, *event.finish, std::move(stop_reason))
               : completion_finish_chunk(setup_.meta, index, *event.finish,
                                         std::move(stop_reason))));
    }
    if (!finished_ && reply_.responder->pending_bytes() > setup_.max_pending_bytes) {
      setup_.slow_client_aborts->inc();
      finished_ = true;
      abort_why_ = absl::CancelledError("the client read the stream too slowly");
      reply_.responder->end();
      reply_.count(200);
      log(200, "slow client: stream cut off");
    }
  }

  // vLLM reports a stop token only when the request named it, not for EOS.
  std::optional<int32_t> reported_stop_token(const TokenEvent& event) const {
    if (!event.stop_token.has_value()) return std::nullopt;
    const auto& own = setup_.stop_token_ids;
    const bool requested = std::find(own.begin(), own.end(), *event.stop_token) != own.end();
    const bool eos = std::find(setup_.eos_ids.begin(), setup_.eos_ids.end(), *event.stop_token) !=
                     setup_.eos_ids.end();
    if (eos && !requested) return std::nullopt;
    return event.stop_token;
  }

  // Under mu_. Writes nothing once finished (a failed write finishes the call).
  void write(std::string data) {
    if (finished_) return;
    if (!reply_.responder->write(std::move(data))) {
      // The client is gone; on_close aborts unless we get there first.
      finished_ = true;
      setup_.client_disconnects->inc();
      abort_why_ = absl::CancelledError("client disconnected");
      reply_.count(499);
      log(499, "client disconnected");
    }
  }

  // Under mu_: every sequence is done.
  void finish_ok() {
    finished_ = true;
    if (setup_.stream) {
      if (setup_.meta.include_usage) {
        const char* object =
            setup_.kind == ApiKind::kChat ? "chat.completion.chunk" : "text_completion";
        reply_.responder->write(sse_event(usage_chunk(setup_.meta, object, usage_)));
      }
      reply_.responder->write(std::string(kSseDone));
      reply_.responder->end();
      reply_.count(200);
    } else {
      std::vector<ChoiceOutput> outputs;
      outputs.reserve(choices_.size());
      for (Choice& c : choices_) outputs.push_back(std::move(c.out));
      reply_.send(
          200, setup_.kind == ApiKind::kChat
                   ? chat_response(setup_.meta, outputs, usage_, setup_.logprobs, setup_.token_text)
                   : completion_response(setup_.meta, outputs, usage_, setup_.logprobs,
                                         setup_.token_text));
      for (size_t i = 0; i < outputs.size(); ++i) choices_[i].out.finish = outputs[i].finish;
    }
    log(200, "");
  }

  // Under mu_: a sequence failed. Streaming: an error event, then [DONE]; else the HTTP error.
  void finish_error(const TokenEvent& event) {
    finished_ = true;
    abort_why_ = absl::CancelledError("another sequence of the request failed");
    ApiError e = event.error.ok() ? api_error(500, "generation failed") : from_status(event.error);
    if (event.finish == FinishReason::kError && e.http_status < 500) e = api_error(500, e.message);
    if (setup_.stream) {
      reply_.responder->write(sse_event(error_body(e)));
      reply_.responder->write(std::string(kSseDone));
      reply_.responder->end();
      reply_.count(200);
    } else {
      reply_.error(e);
    }
    log(e.http_status, e.message);
  }

  void log(int status, const std::string& note) const {
    const Clock::time_point now = Clock::now();
    std::vector<std::string> reasons;
    for (const Choice& c : choices_) {
      reasons.push_back(c.out.finish.has_value() ? finish_reason_name(*c.out.finish) : "-");
    }
    MS_LOG_INFO(
        "{} {} status={} prompt_tokens={} completion_tokens={} ttft_ms={} total_ms={:.1f} "
        "finish={}{}{}",
        setup_.meta.id, reply_.route, status, setup_.n_prompt_tokens, usage_.completion_tokens,
        first_token_.has_value() ? fmt::format("{:.1f}", ms_since(setup_.start, *first_token_))
                                 : std::string("-"),
        ms_since(setup_.start, now), absl::StrJoin(reasons, ","), note.empty() ? "" : " ", note);
  }

  Engine& engine_;
  const Reply reply_;
  CallSetup setup_;
  int n_prompts_ = 0;

  std::mutex mu_;
  std::vector<std::shared_ptr<TokenStream>> streams_;  // [n_prompts]; released when finished
  std::vector<bool> stream_done_;                      // [n_prompts]
  std::vector<Choice> choices_;                        // [n_prompts * n]
  Usage usage_;
  std::optional<Clock::time_point> first_token_;
  bool finished_ = false;  // answered (or the client left): later events are dropped
  Status abort_why_ = absl::CancelledError("request finished");
  std::atomic<bool> drain_pending_{false};  // a drain is posted and has not started
};

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
  if (auto e = check_sampling(options.sampling, info.vocab_size, engine_.config().max_n)) {
    if (e->param == "max_tokens") e->param = max_tokens_param;
    return refuse(*e);
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
  for (const GenerateRequest& r : requests) setup.n_prompt_tokens += r.prompt.size();
  setup.max_pending_bytes = options_.max_stream_pending_bytes;
  setup.client_disconnects = &client_disconnects_;
  setup.slow_client_aborts = &slow_client_aborts_;
  setup.token_text = token_text_fn(prompts_.tokenizer());
  auto call = std::make_shared<GenerationCall>(engine_, reply, std::move(setup));
  call->start(std::move(requests));
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
