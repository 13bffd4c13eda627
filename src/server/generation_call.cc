// GenerationCall: one generation request in flight, from its engine streams to the HTTP answer
// (see generation_call.h).
#include "server/generation_call.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>

#include "absl/strings/str_join.h"
#include "common/logging.h"

namespace moeserve::openai {
namespace {

using nlohmann::json;

double ms_since(Clock::time_point start, Clock::time_point end) {
  return std::chrono::duration<double, std::milli>(end - start).count();
}

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
        ApiError e = from_status(status);
        if (e.param == "max_tokens") e.param = setup_.max_tokens_param;
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

}  // namespace

void start_generation(Engine& engine, Reply reply, CallSetup setup,
                      std::vector<GenerateRequest> requests) {
  auto call = std::make_shared<GenerationCall>(engine, std::move(reply), std::move(setup));
  call->start(std::move(requests));
}

}  // namespace moeserve::openai
