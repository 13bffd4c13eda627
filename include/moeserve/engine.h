// The serving engine: a thread-safe front door to one model. Front ends (HTTP, gRPC, the CLI)
// tokenize, build a GenerateRequest and submit() it; one engine thread runs continuous-batching
// steps (scheduler → model → sampler → detokenizer) and pushes TokenEvents into each request's
// TokenStream as tokens are made.
//
//   ASSIGN_OR_RETURN(auto engine, Engine::create(config));
//   ASSIGN_OR_RETURN(auto stream, engine->submit(request));
//   while (auto ev = stream->next(deadline)) { ... if (stream->done()) break; }
//
// Errors from submit() are the request's own (InvalidArgument: bad parameters or too long for
// the context; ResourceExhausted: the queue is full; Unavailable: draining). Errors that happen
// later (NaN logits, a deadline) end only that request, as a final event with
// FinishReason::kError / kAbort and a Status.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "moeserve/engine_config.h"
#include "moeserve/sampling_params.h"
#include "moeserve/status.h"

namespace moeserve {

class Tokenizer;
class MetricsRegistry;

using Clock = std::chrono::steady_clock;

// How generated text splits into reasoning and content (DeepSeek-R1's <think>…</think>).
enum class ReasoningMode {
  kNone,             // all text is content
  kInsideReasoning,  // the prompt ended with "<think>\n": output starts as reasoning
  kModelOpens,       // content until the model writes <think>
};

struct GenerateRequest {
  std::string external_id;          // the front end's id (e.g. "chatcmpl-…"), for logs only
  std::vector<int32_t> prompt;      // token ids, non-empty, each < vocab size
  SamplingParams sampling;          // validated by submit()
  int priority = 0;                 // lower runs first under the priority policy
  std::string cache_salt;           // prefix-cache namespace; requests with other salts never share
  bool skip_special_tokens = true;  // in the detokenized text
  bool include_stop_str_in_output = false;  // keep a matched stop string in the text
  ReasoningMode reasoning = ReasoningMode::kNone;
  std::optional<Clock::time_point> deadline;  // past it the request ends with kAbort +
                                              // DeadlineExceeded
};

enum class FinishReason {
  kStop,    // EOS, a stop token id or a stop string
  kLength,  // max_tokens or the context length
  kAbort,   // abort(), a client disconnect, a deadline, or shutdown
  kError,   // this request failed (see TokenEvent::error)
};
const char* finish_reason_name(FinishReason reason);  // "stop", "length", "abort", "error"

struct TokenLogprobs {
  int32_t token = 0;
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;  // most likely first; empty unless requested
};

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;  // summed over the n sequences
  int cached_tokens = 0;      // prompt tokens served from the prefix cache (first admission)
};

// What one sequence of a request produced since its previous event. A request with n > 1
// interleaves events of its sequences, told apart by `index`.
struct TokenEvent {
  int index = 0;                        // sequence within the request, 0..n-1
  std::vector<int32_t> token_ids;       // new tokens (a stop token id included)
  std::string text;                     // new content text (stop strings held back / cut)
  std::string reasoning_text;           // new reasoning text (ReasoningMode other than kNone)
  std::vector<TokenLogprobs> logprobs;  // one per new token, with sampling.logprobs
  std::optional<FinishReason> finish;   // set on the sequence's last event
  std::string stop_string;              // the stop string that finished it, if any
  std::optional<int32_t> stop_token;    // the stop token id that finished it, if any
  Status error;                         // why, with kError / kAbort
  // Set on the request's very last event (every sequence finished): the totals.
  std::optional<Usage> usage;
};

// The events of one submitted request, in order. Thread-safe: the engine thread pushes, the
// front end pops. The last event carries `usage`; after it the stream is done().
class TokenStream {
 public:
  explicit TokenStream(int64_t id) : id_(id) {}

  int64_t id() const { return id_; }  // the engine's id, for abort()

  // Blocks until an event is available or `deadline` passes (nullopt then, or when done()).
  std::optional<TokenEvent> next(Clock::time_point deadline);
  // Every event available now, without blocking.
  std::vector<TokenEvent> poll();
  // Called (on the engine thread, so it must be cheap and never block) after events are pushed;
  // asynchronous front ends use it to wake their own executor. Set it before the first event
  // can arrive or call poll() after setting it.
  void set_listener(std::function<void()> listener);
  // True once the final event has been popped.
  bool done() const;

  // Engine side.
  void push(TokenEvent event);

 private:
  const int64_t id_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<TokenEvent> events_;
  bool final_pushed_ = false;
  bool final_popped_ = false;
  std::function<void()> listener_;
};

// Where the engine's memory goes, planned before loading and measured after.
struct MemoryUsage {
  int64_t weights = 0;         // prepared weights, block scales included
  int64_t kv_cache = 0;        // KV blocks × bytes per block
  int64_t activations = 0;     // upper bound for one step of max_num_batched_tokens
  int64_t other = 0;           // the process before loading: code, libraries, tokenizer
  int64_t rss_after_load = 0;  // resident memory measured once everything is loaded
  int64_t limit = 0;           // what the plan must fit in (0 = none found)
  std::string limit_source;    // --memory-limit-gb, cgroup memory.max, MemTotal, …
  std::string weights_detail;  // weights by dtype, in place vs repacked
  // A device backend's memory pool (0 on a host backend): weights, KV cache and activations
  // live there, so only `other` counts against the host limit.
  int64_t device_pool = 0;
  int64_t planned() const { return weights + kv_cache + activations + other; }
  int64_t planned_host() const { return device_pool > 0 ? other : planned(); }
  int64_t planned_device() const { return device_pool > 0 ? weights + kv_cache + activations : 0; }
};

struct ModelInfo {
  std::string id;  // the served model name
  std::string model_dir;
  std::string architecture;  // e.g. DeepseekV3ForCausalLM
  int vocab_size = 0;
  int max_model_len = 0;         // prompt + generated tokens of one sequence
  std::vector<int32_t> eos_ids;  // from generation_config.json / config.json
  int64_t created = 0;           // Unix seconds at load
  std::string backend;           // "cpu" or "cuda"
  bool has_tokenizer = true;     // false: prompts are ids, events carry no text (Engine::tokenizer
                                 // must not be called)
  int n_kv_blocks = 0;
  int block_size = 0;
  MemoryUsage memory;
};

struct EngineStats {
  int n_running = 0;   // sequences holding KV blocks
  int n_waiting = 0;   // sequences queued (including n>1 siblings not started)
  int n_requests = 0;  // unfinished requests (submitted and not yet final)
  int n_blocks = 0;
  int n_blocks_used = 0;
  double kv_usage = 0.0;  // fraction of blocks in use, [0, 1]
  int64_t n_steps = 0;
  int64_t n_preemptions = 0;
  int64_t prefix_query_tokens = 0;
  int64_t prefix_hit_tokens = 0;
  int max_seqs_in_step = 0;  // the most sequences one step has carried
};

class Engine {
 public:
  // Loads the model and tokenizer, sizes the KV cache, starts the engine thread.
  static StatusOr<std::unique_ptr<Engine>> create(const EngineConfig& config);
  virtual ~Engine() = default;

  // Validates and queues a request. See the file comment for the errors.
  virtual StatusOr<std::shared_ptr<TokenStream>> submit(GenerateRequest request) = 0;
  // Ends a request early (client gone): its stream gets a final kAbort event, its KV blocks
  // are freed at the next step boundary. Unknown or finished ids are ignored.
  virtual void abort(int64_t id, Status why) = 0;

  // Draining: from now on submit() returns Unavailable; running requests go on.
  virtual void stop_accepting() = 0;
  // Blocks until no request is unfinished or `deadline` passes; true if idle.
  virtual bool wait_idle(Clock::time_point deadline) = 0;

  virtual EngineStats stats() const = 0;
  virtual const ModelInfo& model_info() const = 0;
  virtual const EngineConfig& config() const = 0;
  virtual const Tokenizer& tokenizer() const = 0;  // requires model_info().has_tokenizer
  // The engine's Prometheus metrics (vllm:* names); front ends add their own to it.
  virtual MetricsRegistry& metrics() = 0;
};

}  // namespace moeserve
