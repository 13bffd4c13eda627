// The engine loop of ARCHITECTURE.md: one thread takes submitted requests from an inbox and
// runs steps: schedule (Scheduler) → run the model (run_step_isolated) → sample (sample_rows)
// → process outputs (RequestOutput: stops, detokenizing, reasoning, events) → bookkeeping.
// Front-end threads only touch the inbox, the streams and the stats snapshot.
#include <algorithm>
#include <atomic>
#include <map>
#include <thread>
#include <unordered_map>

#include "common/logging.h"
#include "common/metrics.h"
#include "engine/engine_internal.h"
#include "engine/engine_metrics.h"
#include "engine/output_processor.h"

namespace moeserve {
namespace {

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

struct RequestState {
  RequestState(const GenerateRequest& r, const Tokenizer* tokenizer,
               std::span<const int32_t> eos_ids)
      : output(r, tokenizer, eos_ids),
        last_token_time(static_cast<size_t>(r.sampling.n)),
        arrival(Clock::now()) {}

  int64_t id = 0;
  GenerateRequest request;
  std::shared_ptr<TokenStream> stream;
  RequestOutput output;
  std::vector<Clock::time_point> last_token_time;  // [n], for the inter-token latency
  int cached_tokens = -1;                          // from the first admission of sequence 0
  bool started = false;                            // some sequence has been scheduled
  Clock::time_point arrival;
  Clock::time_point first_scheduled{};
  std::optional<Clock::time_point> first_token;
};

// A sampled token's event, held until the scheduler says whether the sequence hit its length.
struct PendingEvent {
  int64_t request_id = 0;
  TokenOutput out;
};

class EngineImpl final : public Engine {
 public:
  explicit EngineImpl(EngineParts parts)
      : config_(std::move(parts.config)),
        backend_(std::move(parts.backend)),
        model_(std::move(parts.model)),
        tokenizer_(std::move(parts.tokenizer)),
        cache_(std::move(parts.cache)),
        scheduler_(std::move(parts.scheduler)),
        info_(std::move(parts.info)),
        step_fn_(std::move(parts.step)),
        m_(EngineMetrics::create(
            metrics_, info_.id, [this] { return stats(); }, info_.memory)) {
    update_stats(0);
    thread_ = std::thread([this] { loop(); });
  }

  ~EngineImpl() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      accepting_ = false;
    }
    inbox_cv_.notify_all();
    thread_.join();
  }

  StatusOr<std::shared_ptr<TokenStream>> submit(GenerateRequest request) override;
  void abort(int64_t id, Status why) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      aborts_.emplace_back(id, std::move(why));
    }
    inbox_cv_.notify_all();
  }
  void stop_accepting() override {
    std::lock_guard<std::mutex> lock(mu_);
    accepting_ = false;
  }
  bool wait_idle(Clock::time_point deadline) override {
    std::unique_lock<std::mutex> lock(mu_);
    return idle_cv_.wait_until(lock, deadline, [&] { return n_unfinished_ == 0; });
  }
  EngineStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  const ModelInfo& model_info() const override { return info_; }
  const EngineConfig& config() const override { return config_; }
  const Tokenizer& tokenizer() const override {
    MS_CHECK(tokenizer_ != nullptr, "Engine::tokenizer() of a model without a tokenizer");
    return *tokenizer_;
  }
  MetricsRegistry& metrics() override { return metrics_; }

 private:
  void loop();
  void take_inbox();
  void check_deadlines();
  void step();
  // Step parts, in order. Marks requests started; returns the plan's prompt tokens.
  int note_scheduled(const StepPlan& plan, Clock::time_point start);
  // Fails the requests of sequences whose model step failed.
  void fail_seqs(const StepPlan& plan, const std::vector<Status>& failure);
  // Samples every live sampled sequence and turns its token into a pending event; fills the
  // scheduler's results and fails requests whose row could not be sampled.
  std::vector<PendingEvent> sample_and_process(const StepPlan& plan, const Tensor& logits,
                                               std::vector<SeqResult>& results);
  // Tells the scheduler, then pushes the events (last ones for finished sequences).
  void deliver(const std::vector<SeqResult>& results, std::vector<PendingEvent> pending);
  void record_step(const StepPlan& plan, int n_prompt_tokens, int n_generated,
                   Clock::time_point start);
  // Ends every unfinished sequence of `r` with `reason` and `why`, and the request with it.
  void finish_request(RequestState& r, FinishReason reason, const Status& why);
  // Pushes a sequence's last event (with the totals when it is the request's last).
  void finish_seq(RequestState& r, int index, TokenEvent event, FinishReason reason);
  void update_stats(int seqs_in_step);

  const EngineConfig config_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<DeepseekV2Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;  // null: no text
  std::unique_ptr<KvCache> cache_;
  Scheduler scheduler_;  // engine thread only
  const ModelInfo info_;
  const StepFn step_fn_;
  MetricsRegistry metrics_;
  EngineMetrics m_;

  // Front ends ↔ engine thread.
  mutable std::mutex mu_;
  std::condition_variable inbox_cv_;
  std::condition_variable idle_cv_;
  std::vector<std::unique_ptr<RequestState>> inbox_;
  std::vector<std::pair<int64_t, Status>> aborts_;
  bool accepting_ = true;
  bool stopping_ = false;
  int n_unfinished_ = 0;  // submitted, final event not yet pushed
  int n_unstarted_ = 0;   // submitted, not yet scheduled (the queue the cap bounds)
  int64_t next_id_ = 1;
  EngineStats stats_;

  // Engine thread only.
  std::unordered_map<int64_t, std::unique_ptr<RequestState>> requests_;
  int64_t n_steps_ = 0;
  int max_seqs_in_step_ = 0;
  SchedulerStats last_sched_{};
  std::thread thread_;
};

StatusOr<std::shared_ptr<TokenStream>> EngineImpl::submit(GenerateRequest request) {
  const SchedulerConfig& sc = scheduler_.config();  // immutable after construction
  RETURN_IF_ERROR(validate(request.sampling, info_.vocab_size, sc.max_n));
  if (request.prompt.empty()) return absl::InvalidArgumentError("prompt: must not be empty");
  for (size_t i = 0; i < request.prompt.size(); ++i) {
    const int32_t t = request.prompt[i];
    if (t < 0 || t >= info_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("prompt: token id ", t, " at index ", i,
                                                     " is outside the vocabulary [0, ",
                                                     info_.vocab_size, ")"));
    }
  }
  const int64_t n_prompt = static_cast<int64_t>(request.prompt.size());
  const int64_t n_total = n_prompt + request.sampling.max_tokens;
  if (n_total > sc.max_model_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("This model's maximum context length is ", sc.max_model_len,
                     " tokens. However, you requested ", n_total, " tokens (", n_prompt,
                     " in the prompt, ", request.sampling.max_tokens,
                     " in the completion). Please reduce the length of the "
                     "prompt or completion."));
  }
  const int64_t blocks = (n_total + sc.block_size - 1) / sc.block_size;
  if (blocks > sc.n_blocks) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt + max_tokens = ", n_total, " tokens needs ", blocks,
                     " KV-cache blocks but the whole cache has ", sc.n_blocks, " (",
                     int64_t{sc.n_blocks} * sc.block_size, " tokens)"));
  }

  if (tokenizer_ == nullptr && !request.sampling.stop.empty()) {
    return absl::InvalidArgumentError(
        "stop: stop strings need a tokenizer, and this model directory has no tokenizer.json");
  }
  auto state = std::make_unique<RequestState>(request, tokenizer_.get(), info_.eos_ids);
  std::shared_ptr<TokenStream> stream;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!accepting_) {
      return absl::UnavailableError("the server is shutting down and accepts no new requests");
    }
    if (n_unstarted_ >= config_.max_waiting_requests) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the request queue is full (", n_unstarted_,
          " waiting, max_waiting_requests = ", config_.max_waiting_requests, "); retry later"));
    }
    state->id = next_id_++;
    stream = std::make_shared<TokenStream>(state->id);
    state->stream = stream;
    state->request = std::move(request);
    inbox_.push_back(std::move(state));
    ++n_unfinished_;
    ++n_unstarted_;
    stats_.n_requests = n_unfinished_;
  }
  inbox_cv_.notify_all();
  return stream;
}

void EngineImpl::loop() {
  MS_LOG_INFO(
      "engine: serving {} ({} KV blocks of {} tokens, max_num_seqs {}, "
      "max_num_batched_tokens {})",
      info_.id, info_.n_kv_blocks, info_.block_size, config_.max_num_seqs,
      config_.max_num_batched_tokens);
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Idle: sleep until something arrives. With work queued, only look at the inbox.
      inbox_cv_.wait_for(lock, std::chrono::milliseconds(100), [&] {
        return stopping_ || !inbox_.empty() || !aborts_.empty() || !requests_.empty();
      });
      if (stopping_) break;
    }
    take_inbox();
    check_deadlines();
    if (scheduler_.has_unfinished()) {
      step();
    } else {
      update_stats(0);  // aborts and refusals changed the counts without a step
    }
  }
  // Shutdown: end every request so no client waits forever.
  take_inbox();
  std::vector<int64_t> ids;
  for (const auto& [id, r] : requests_) ids.push_back(id);
  for (const int64_t id : ids) {
    finish_request(*requests_.at(id), FinishReason::kAbort,
                   absl::UnavailableError("the engine stopped"));
  }
}

void EngineImpl::take_inbox() {
  std::vector<std::unique_ptr<RequestState>> inbox;
  std::vector<std::pair<int64_t, Status>> aborts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    inbox.swap(inbox_);
    aborts.swap(aborts_);
  }
  for (auto& state : inbox) {
    RequestState& r = *state;
    const int64_t id = r.id;
    requests_[id] = std::move(state);
    const Status added = scheduler_.add_request({.request_id = id,
                                                 .prompt = r.request.prompt,
                                                 .max_tokens = r.request.sampling.max_tokens,
                                                 .n = r.request.sampling.n,
                                                 .priority = r.request.priority,
                                                 .cache_salt = r.request.cache_salt});
    if (!added.ok()) finish_request(r, FinishReason::kError, added);
  }
  for (auto& [id, why] : aborts) {
    const auto it = requests_.find(id);
    if (it != requests_.end()) finish_request(*it->second, FinishReason::kAbort, why);
  }
}

void EngineImpl::check_deadlines() {
  const Clock::time_point now = Clock::now();
  std::vector<int64_t> expired;
  for (const auto& [id, r] : requests_) {
    if (r->request.deadline.has_value() && now >= *r->request.deadline) expired.push_back(id);
  }
  for (const int64_t id : expired) {
    finish_request(*requests_.at(id), FinishReason::kAbort,
                   absl::DeadlineExceededError("the request's deadline passed"));
  }
}

void EngineImpl::step() {
  const Clock::time_point start = Clock::now();
  const StepPlan plan = scheduler_.schedule();
  if (plan.empty()) {
    // Queued work that cannot run now (cannot happen with a validated config: the running
    // set always makes progress). Avoid a busy loop.
    MS_CHECK(scheduler_.on_step_done({}).ok(), "empty step");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return;
  }
  const int n_prompt_tokens = note_scheduled(plan, start);
  std::vector<RunSeq> run;
  for (const ScheduledSeq& s : plan.seqs) {
    run.push_back({.n_computed = s.n_computed, .tokens = s.tokens, .block_table = s.block_table});
  }
  const IsolatedStep ran = run_step_isolated(step_fn_, *model_, *cache_, run);
  fail_seqs(plan, ran.failure);
  std::vector<SeqResult> results;
  std::vector<PendingEvent> pending = sample_and_process(plan, ran.logits, results);
  deliver(results, std::move(pending));
  record_step(plan, n_prompt_tokens, static_cast<int>(results.size()), start);
}

int EngineImpl::note_scheduled(const StepPlan& plan, Clock::time_point start) {
  int n_prompt_tokens = 0;
  for (const ScheduledSeq& s : plan.seqs) {
    const Sequence* seq = scheduler_.find(s.seq_id);
    // Tokens before the prompt's end are prefill; the rest are generation recomputes/decodes.
    n_prompt_tokens +=
        std::max(0, std::min(seq->n_prompt - s.n_computed, static_cast<int>(s.tokens.size())));
    RequestState& r = *requests_.at(s.request_id);
    if (!r.started) {
      r.started = true;
      r.first_scheduled = start;
      m_.queue_time->observe(seconds(start - r.arrival));
      std::lock_guard<std::mutex> lock(mu_);
      --n_unstarted_;
    }
    if (s.index == 0 && r.cached_tokens < 0) r.cached_tokens = seq->n_cached;
  }
  return n_prompt_tokens;
}

void EngineImpl::fail_seqs(const StepPlan& plan, const std::vector<Status>& failure) {
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    const auto it = requests_.find(plan.seqs[i].request_id);
    if (failure[i].ok() || it == requests_.end()) continue;
    finish_request(*it->second, FinishReason::kError, failure[i]);
  }
}

std::vector<PendingEvent> EngineImpl::sample_and_process(const StepPlan& plan, const Tensor& logits,
                                                         std::vector<SeqResult>& results) {
  MS_CHECK(logits.dim(0) == static_cast<int64_t>(plan.seqs.size()) &&
               logits.dim(1) == info_.vocab_size && logits.dtype() == DType::kF32,
           "the model step returned logits of shape [", logits.dim(0), ", ", logits.dim(1),
           "] for ", plan.seqs.size(), " sequences");
  std::vector<RowToSample> rows;
  std::vector<const ScheduledSeq*> sampled_seqs;
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    const ScheduledSeq& s = plan.seqs[i];
    const auto it = requests_.find(s.request_id);
    if (!s.sample || it == requests_.end()) continue;  // a prefill chunk, or failed
    rows.push_back(it->second->output.row_to_sample(s.index, static_cast<int64_t>(i)));
    sampled_seqs.push_back(&s);
  }
  std::vector<StatusOr<SampledToken>> sampled = sample_rows(*backend_, logits, rows);

  const Clock::time_point now = Clock::now();
  std::vector<PendingEvent> pending;
  std::vector<std::pair<int64_t, Status>> failed;
  for (size_t k = 0; k < sampled.size(); ++k) {
    const ScheduledSeq& s = *sampled_seqs[k];
    if (!sampled[k].ok()) {
      failed.emplace_back(s.request_id, sampled[k].status());
      continue;
    }
    RequestState& r = *requests_.at(s.request_id);
    if (!r.first_token.has_value()) {
      r.first_token = now;
      m_.ttft->observe(seconds(now - r.arrival));
    }
    Clock::time_point& last = r.last_token_time[static_cast<size_t>(s.index)];
    if (last != Clock::time_point{}) m_.itl->observe(seconds(now - last));
    last = now;
    TokenOutput out = r.output.on_token(s.index, *sampled[k]);
    results.push_back({.seq_id = s.seq_id, .token = sampled[k]->token, .finished = out.stopped});
    pending.push_back({s.request_id, std::move(out)});
  }
  // A failed sequence fails its whole request; the scheduler ignores results of aborted ones.
  for (auto& [id, why] : failed) {
    const auto it = requests_.find(id);
    if (it != requests_.end()) finish_request(*it->second, FinishReason::kError, why);
  }
  return pending;
}

void EngineImpl::deliver(const std::vector<SeqResult>& results, std::vector<PendingEvent> pending) {
  auto finished = scheduler_.on_step_done(results);
  MS_CHECK(finished.ok(), "on_step_done: ", finished.status().ToString());
  std::map<std::pair<int64_t, int>, bool> ended;
  for (const FinishedSeq& f : *finished) ended[{f.request_id, f.index}] = f.length_capped;
  for (PendingEvent& p : pending) {
    const auto rit = requests_.find(p.request_id);
    if (rit == requests_.end()) continue;  // failed in this step
    RequestState& r = *rit->second;
    TokenEvent& event = p.out.event;
    if (!ended.count({p.request_id, event.index})) {
      if (!event.text.empty() || !event.reasoning_text.empty() || !event.token_ids.empty()) {
        r.stream->push(std::move(event));
      }
      continue;
    }
    const int index = event.index;
    finish_seq(r, index, std::move(event),
               p.out.stopped ? FinishReason::kStop : FinishReason::kLength);
  }
}

void EngineImpl::record_step(const StepPlan& plan, int n_prompt_tokens, int n_generated,
                             Clock::time_point start) {
  m_.prompt_tokens->inc(n_prompt_tokens);
  m_.generation_tokens->inc(n_generated);
  m_.steps->inc();
  m_.step_seqs->observe(static_cast<double>(plan.seqs.size()));
  m_.step_tokens->observe(plan.n_tokens);
  m_.step_time->observe(seconds(Clock::now() - start));
  ++n_steps_;
  if (config_.log_steps) {
    int n_prefill = 0;
    for (const ScheduledSeq& s : plan.seqs) n_prefill += s.is_prefill() ? 1 : 0;
    MS_LOG_DEBUG("step {}: {} seqs ({} prefill, {} decode), {} tokens, {} preempted, {:.1f} ms",
                 n_steps_, plan.seqs.size(), n_prefill, plan.seqs.size() - n_prefill, plan.n_tokens,
                 plan.preempted.size(), 1e3 * seconds(Clock::now() - start));
  }
  update_stats(static_cast<int>(plan.seqs.size()));
}

void EngineImpl::finish_seq(RequestState& r, int index, TokenEvent event, FinishReason reason) {
  if (!r.output.finish_seq(index, reason, r.cached_tokens, event)) {
    r.stream->push(std::move(event));
    return;
  }
  const Usage& usage = *event.usage;
  const int64_t id = r.id;
  const Clock::time_point now = Clock::now();
  m_.e2e->observe(seconds(now - r.arrival));
  const FinishReason overall = r.output.overall_finish();
  m_.request_success.at(static_cast<size_t>(overall))->inc();
  // Front ends log one line per request (route, status); this is the engine's view of it.
  MS_LOG_DEBUG(
      "request {} ({}): prompt {} tokens ({} cached), completion {} tokens, n {}, queue "
      "{:.1f} ms, ttft {:.1f} ms, e2e {:.1f} ms, finish {}{}{}",
      id, r.request.external_id.empty() ? "-" : r.request.external_id, usage.prompt_tokens,
      usage.cached_tokens, usage.completion_tokens, r.output.n_seqs(),
      r.started ? 1e3 * seconds(r.first_scheduled - r.arrival) : 1e3 * seconds(now - r.arrival),
      r.first_token ? 1e3 * seconds(*r.first_token - r.arrival) : -1.0,
      1e3 * seconds(now - r.arrival), finish_reason_name(overall), event.error.ok() ? "" : ": ",
      event.error.ok() ? "" : event.error.ToString());
  auto stream = r.stream;
  {
    // Counted out before the client can see the final event, so a resubmit right after it
    // finds the request gone from the queue and the stats.
    std::lock_guard<std::mutex> lock(mu_);
    --n_unfinished_;
    if (!r.started) --n_unstarted_;
    stats_.n_requests = n_unfinished_;
  }
  requests_.erase(id);  // `r` is gone from here on
  stream->push(std::move(event));
  idle_cv_.notify_all();
}

void EngineImpl::finish_request(RequestState& r, FinishReason reason, const Status& why) {
  scheduler_.abort(r.id);
  const int64_t id = r.id;
  const int n = r.output.n_seqs();  // `r` is freed once its last sequence finishes
  for (int i = 0; i < n; ++i) {
    const auto it = requests_.find(id);
    if (it == requests_.end()) return;  // the last sequence completed the request
    if (it->second->output.finished(i)) continue;
    TokenEvent event;
    event.error = why;
    finish_seq(*it->second, i, std::move(event), reason);
  }
}

void EngineImpl::update_stats(int seqs_in_step) {
  const SchedulerStats s = scheduler_.stats();
  const BlockManager& bm = scheduler_.block_manager();
  m_.preemptions->inc(static_cast<double>(s.n_preemptions - last_sched_.n_preemptions));
  m_.prefix_queries->inc(
      static_cast<double>(s.n_prefix_query_tokens - last_sched_.n_prefix_query_tokens));
  m_.prefix_hits->inc(static_cast<double>(s.n_prefix_hit_tokens - last_sched_.n_prefix_hit_tokens));
  last_sched_ = s;
  max_seqs_in_step_ = std::max(max_seqs_in_step_, seqs_in_step);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.n_running = s.n_running;
  stats_.n_waiting = s.n_waiting + s.n_pending;
  stats_.n_requests = n_unfinished_;
  stats_.n_blocks = bm.n_blocks();
  stats_.n_blocks_used = bm.n_used();
  stats_.kv_usage = s.kv_usage;
  stats_.n_steps = n_steps_;
  stats_.n_preemptions = s.n_preemptions;
  stats_.prefix_query_tokens = s.n_prefix_query_tokens;
  stats_.prefix_hit_tokens = s.n_prefix_hit_tokens;
  stats_.max_seqs_in_step = max_seqs_in_step_;
}

}  // namespace

std::unique_ptr<Engine> start_engine(EngineParts parts) {
  return std::make_unique<EngineImpl>(std::move(parts));
}

}  // namespace moeserve
