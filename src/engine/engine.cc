// The engine loop of ARCHITECTURE.md: one thread takes submitted requests from an inbox, and
// each step schedules (Scheduler), runs the model (run_step), samples (LogitsProcessor +
// Sampler), detokenizes (IncrementalDetokenizer: stop strings; ReasoningParser), and pushes
// TokenEvents. Front-end threads only touch the inbox, the streams and the stats snapshot.
#include "moeserve/engine.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>
#include <unordered_map>

#include "common/logging.h"
#include "common/metrics.h"
#include "common/process_memory.h"
#include "engine/engine_metrics.h"
#include "engine/logits_processor.h"
#include "engine/memory_plan.h"
#include "engine/model_runner.h"
#include "engine/reasoning_parser.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "model/checkpoint.h"
#include "model/deepseek_v2.h"
#include "tokenizer/detokenizer.h"
#include "tokenizer/tokenizer.h"
#include <nlohmann/json.hpp>

namespace moeserve {
namespace {

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// EOS ids: generation_config.json's eos_token_id (an id or a list), else config.json's, else
// the tokenizer's.
std::vector<int32_t> load_eos_ids(const std::string& model_dir, const ModelConfig& config,
                                  const Tokenizer& tokenizer) {
  std::vector<int32_t> ids;
  std::ifstream in(std::filesystem::path(model_dir) / "generation_config.json");
  if (in) {
    const auto json = nlohmann::json::parse(in, nullptr, false);
    if (json.is_object() && json.contains("eos_token_id")) {
      const auto& v = json["eos_token_id"];
      if (v.is_number_integer()) ids.push_back(v.get<int32_t>());
      if (v.is_array()) {
        for (const auto& e : v) {
          if (e.is_number_integer()) ids.push_back(e.get<int32_t>());
        }
      }
    }
  }
  if (ids.empty() && config.eos_token_id.has_value()) ids.push_back(*config.eos_token_id);
  if (ids.empty() && tokenizer.eos_id() >= 0) ids.push_back(tokenizer.eos_id());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

ReasoningStart reasoning_start(ReasoningMode mode) {
  return mode == ReasoningMode::kInsideReasoning ? ReasoningStart::kInsideReasoning
                                                 : ReasoningStart::kModelOpens;
}

// One sequence's sampling and text state.
struct SeqState {
  SeqState(const GenerateRequest& r, int index, const Tokenizer& tokenizer,
           std::span<const int32_t> eos_ids)
      : processor(r.sampling, eos_ids),
        sampler(r.sampling, index),
        detokenizer(tokenizer, {.skip_special_tokens = r.skip_special_tokens,
                                .stop_strings = r.sampling.stop,
                                .include_stop_string = r.include_stop_str_in_output}) {
    counts.add_prompt(r.prompt);
    if (r.reasoning != ReasoningMode::kNone) reasoning.emplace(reasoning_start(r.reasoning));
  }

  LogitsProcessor processor;
  Sampler sampler;
  TokenCounts counts;
  IncrementalDetokenizer detokenizer;
  std::optional<ReasoningParser> reasoning;
  std::optional<FinishReason> finish;  // set when the sequence ended
  Clock::time_point last_token_time{};
  int n_generated = 0;
};

struct RequestState {
  int64_t id = 0;
  GenerateRequest request;
  std::shared_ptr<TokenStream> stream;
  std::vector<int32_t> stop_ids;  // stop_token_set: EOS (unless ignore_eos) + stop_token_ids
  std::vector<std::unique_ptr<SeqState>> seqs;  // [n]
  int n_finished = 0;
  int cached_tokens = -1;  // from the first admission of sequence 0
  bool started = false;    // some sequence has been scheduled
  Clock::time_point arrival{};
  Clock::time_point first_scheduled{};
  std::optional<Clock::time_point> first_token;
};

class EngineImpl final : public Engine {
 public:
  EngineImpl(EngineConfig config, std::unique_ptr<Backend> backend,
             std::unique_ptr<DeepseekV2Model> model, std::unique_ptr<Tokenizer> tokenizer,
             std::unique_ptr<KvCache> cache, Scheduler scheduler, ModelInfo info)
      : config_(std::move(config)),
        backend_(std::move(backend)),
        model_(std::move(model)),
        tokenizer_(std::move(tokenizer)),
        cache_(std::move(cache)),
        scheduler_(std::move(scheduler)),
        info_(std::move(info)),
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
  const Tokenizer& tokenizer() const override { return *tokenizer_; }
  MetricsRegistry& metrics() override { return metrics_; }

 private:
  void loop();
  void take_inbox();
  void check_deadlines();
  void step();
  // Ends every unfinished sequence of `r` with `reason` and `why`, and the request with it.
  void finish_request(RequestState& r, FinishReason reason, const Status& why);
  // Pushes a sequence's last event (adds the totals when it is the request's last).
  void finish_seq(RequestState& r, int index, TokenEvent event, FinishReason reason);
  void complete_request(RequestState& r);
  void update_stats(int seqs_in_step);

  const EngineConfig config_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<DeepseekV2Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<KvCache> cache_;
  Scheduler scheduler_;  // engine thread only
  const ModelInfo info_;
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

  auto state = std::make_unique<RequestState>();
  state->arrival = Clock::now();
  state->stop_ids = stop_token_set(request.sampling, info_.eos_ids);
  for (int i = 0; i < request.sampling.n; ++i) {
    state->seqs.push_back(std::make_unique<SeqState>(request, i, *tokenizer_, info_.eos_ids));
  }
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
  StepPlan plan = scheduler_.schedule();
  if (plan.empty()) {
    // Queued work that cannot run now (cannot happen with a validated config: the running
    // set always makes progress). Avoid a busy loop.
    MS_CHECK(scheduler_.on_step_done({}).ok(), "empty step");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return;
  }
  std::vector<RunSeq> run;
  run.reserve(plan.seqs.size());
  int n_prompt_tokens = 0;
  for (const ScheduledSeq& s : plan.seqs) {
    run.push_back({.n_computed = s.n_computed, .tokens = s.tokens, .block_table = s.block_table});
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
  auto logits = run_step(*model_, *cache_, run);
  if (!logits.ok()) {
    // The model refused the batch: an engine bug or a broken backend. Fail the requests in it,
    // keep serving the others.
    MS_LOG_ERROR("engine step failed: {}", logits.status().ToString());
    std::vector<int64_t> ids;
    for (const ScheduledSeq& s : plan.seqs) ids.push_back(s.request_id);
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    for (const int64_t id : ids) {
      if (requests_.count(id)) {
        finish_request(
            *requests_.at(id), FinishReason::kError,
            absl::InternalError(absl::StrCat("model step failed: ", logits.status().message())));
      }
    }
    MS_CHECK(scheduler_.on_step_done({}).ok(), "step after failure");
    return;
  }
  MS_CHECK(logits->dim(0) == static_cast<int64_t>(plan.seqs.size()) &&
               logits->dim(1) == info_.vocab_size && logits->dtype() == DType::kF32,
           "run_step returned logits of shape [", logits->dim(0), ", ", logits->dim(1), "] for ",
           plan.seqs.size(), " sequences");
  const int64_t vocab = logits->dim(1);
  const float* rows = logits->data<float>();
  const Clock::time_point now = Clock::now();

  struct Pending {
    int64_t request_id;
    int index;
    TokenEvent event;
    std::optional<FinishReason> stop;
  };
  std::vector<Pending> pending;
  std::vector<SeqResult> results;
  std::vector<std::pair<int64_t, Status>> failed;
  std::vector<float> processed;
  int n_generated = 0;
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    const ScheduledSeq& s = plan.seqs[i];
    if (!s.sample) continue;
    RequestState& r = *requests_.at(s.request_id);
    SeqState& q = *r.seqs.at(static_cast<size_t>(s.index));
    std::span<const float> raw(rows + static_cast<int64_t>(i) * vocab, static_cast<size_t>(vocab));
    std::span<const float> shaped = raw;
    if (q.processor.active(q.counts)) {
      processed.assign(raw.begin(), raw.end());
      const Status st = q.processor.apply(q.counts, processed);
      if (!st.ok()) {
        failed.emplace_back(s.request_id, st);
        continue;
      }
      shaped = processed;
    }
    auto sampled = q.sampler.sample(raw, shaped);
    if (!sampled.ok()) {
      failed.emplace_back(s.request_id, sampled.status());
      continue;
    }
    const int32_t token = sampled->token;
    ++n_generated;
    ++q.n_generated;
    q.counts.add_output(token);
    if (!r.first_token.has_value()) {
      r.first_token = now;
      m_.ttft->observe(seconds(now - r.arrival));
    }
    if (q.last_token_time != Clock::time_point{}) m_.itl->observe(seconds(now - q.last_token_time));
    q.last_token_time = now;

    Pending p{s.request_id, s.index, TokenEvent{}, std::nullopt};
    p.event.index = s.index;
    p.event.token_ids.push_back(token);
    if (r.request.sampling.logprobs) {
      TokenLogprobs lp{.token = token, .logprob = sampled->logprob, .top = {}};
      for (const TokenLogprob& t : sampled->top_logprobs) lp.top.emplace_back(t.token, t.logprob);
      p.event.logprobs.push_back(std::move(lp));
    }
    std::string text;
    if (std::binary_search(r.stop_ids.begin(), r.stop_ids.end(), token)) {
      p.stop = FinishReason::kStop;
      if (!std::binary_search(info_.eos_ids.begin(), info_.eos_ids.end(), token) ||
          r.request.sampling.ignore_eos) {
        p.event.stop_token = token;
      }
    } else {
      text = q.detokenizer.feed(token);
      if (q.detokenizer.stopped()) {
        p.stop = FinishReason::kStop;
        p.event.stop_string = q.detokenizer.matched_stop_string();
      }
    }
    if (q.reasoning.has_value()) {
      ReasoningDelta d = q.reasoning->feed(text);
      p.event.text = std::move(d.content);
      p.event.reasoning_text = std::move(d.reasoning);
    } else {
      p.event.text = std::move(text);
    }
    results.push_back({.seq_id = s.seq_id, .token = token, .finished = p.stop.has_value()});
    pending.push_back(std::move(p));
  }
  // A failed sequence fails its whole request; the scheduler ignores results of aborted ones.
  for (auto& [id, why] : failed) {
    if (requests_.count(id)) finish_request(*requests_.at(id), FinishReason::kError, why);
  }
  auto finished = scheduler_.on_step_done(results);
  MS_CHECK(finished.ok(), "on_step_done: ", finished.status().ToString());
  std::map<std::pair<int64_t, int>, bool> length_capped;
  for (const FinishedSeq& f : *finished) length_capped[{f.request_id, f.index}] = f.length_capped;

  for (Pending& p : pending) {
    const auto rit = requests_.find(p.request_id);
    if (rit == requests_.end()) continue;  // failed above
    RequestState& r = *rit->second;
    const auto fit = length_capped.find({p.request_id, p.index});
    if (fit == length_capped.end()) {
      if (!p.event.text.empty() || !p.event.reasoning_text.empty() || !p.event.token_ids.empty()) {
        r.stream->push(std::move(p.event));
      }
      continue;
    }
    const FinishReason reason = p.stop.value_or(FinishReason::kLength);
    finish_seq(r, p.index, std::move(p.event), reason);
  }

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
  SeqState& q = *r.seqs.at(static_cast<size_t>(index));
  MS_CHECK(!q.finish.has_value(), "sequence finished twice");
  q.finish = reason;
  // Text held back (a possible stop-string start, an incomplete character) is released.
  std::string tail = q.detokenizer.finish();
  if (q.reasoning.has_value()) {
    ReasoningDelta d = q.reasoning->feed(tail);
    const ReasoningDelta end = q.reasoning->finish();
    event.text += d.content + end.content;
    event.reasoning_text += d.reasoning + end.reasoning;
  } else {
    event.text += tail;
  }
  event.index = index;
  event.finish = reason;
  ++r.n_finished;
  if (r.n_finished == static_cast<int>(r.seqs.size())) {
    Usage usage;
    usage.prompt_tokens = static_cast<int>(r.request.prompt.size());
    for (const auto& s : r.seqs) usage.completion_tokens += s->n_generated;
    usage.cached_tokens = std::max(0, r.cached_tokens);
    event.usage = usage;
    const int64_t id = r.id;
    const Clock::time_point now = Clock::now();
    m_.e2e->observe(seconds(now - r.arrival));
    // The request's finish reason: an error if any sequence failed, else an abort if any was
    // aborted, else the first sequence's.
    FinishReason overall = *r.seqs[0]->finish;
    for (const auto& s : r.seqs) {
      if (*s->finish == FinishReason::kError ||
          (*s->finish == FinishReason::kAbort && overall != FinishReason::kError)) {
        overall = *s->finish;
      }
    }
    m_.request_success.at(static_cast<size_t>(overall))->inc();
    // Front ends log one line per request (route, status); this is the engine's view of it.
    MS_LOG_DEBUG(
        "request {} ({}): prompt {} tokens ({} cached), completion {} tokens, n {}, queue "
        "{:.1f} ms, ttft {:.1f} ms, e2e {:.1f} ms, finish {}{}{}",
        id, r.request.external_id.empty() ? "-" : r.request.external_id, usage.prompt_tokens,
        usage.cached_tokens, usage.completion_tokens, r.seqs.size(),
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
    return;
  }
  r.stream->push(std::move(event));
}

void EngineImpl::finish_request(RequestState& r, FinishReason reason, const Status& why) {
  scheduler_.abort(r.id);
  const int64_t id = r.id;
  const size_t n = r.seqs.size();  // `r` is freed once its last sequence finishes
  for (size_t i = 0; i < n; ++i) {
    const auto it = requests_.find(id);
    if (it == requests_.end()) return;  // the last sequence completed the request
    if (it->second->seqs[i]->finish.has_value()) continue;
    TokenEvent event;
    event.error = why;
    finish_seq(*it->second, static_cast<int>(i), std::move(event), reason);
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

StatusOr<std::unique_ptr<Engine>> Engine::create(const EngineConfig& config) {
  RETURN_IF_ERROR(config.validate());
  const Clock::time_point start = Clock::now();
  ASSIGN_OR_RETURN(auto backend, create_backend(config.backend, config.threads));
  ASSIGN_OR_RETURN(ModelConfig model_config, load_model_config(config.model_dir));
  ASSIGN_OR_RETURN(Checkpoint checkpoint, Checkpoint::open(config.model_dir));
  const std::string tokenizer_dir =
      config.tokenizer_dir.empty() ? config.model_dir : config.tokenizer_dir;
  auto tokenizer = Tokenizer::load(tokenizer_dir);
  if (!tokenizer.ok()) {
    return Status(tokenizer.status().code(),
                  absl::StrCat("tokenizer in ", tokenizer_dir, ": ", tokenizer.status().message()));
  }
  const ModelConfig& mc = model_config;
  if ((*tokenizer)->vocab_size() > mc.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(tokenizer_dir, "/tokenizer.json: ", (*tokenizer)->vocab_size(),
                     " tokens, more than the model's vocab_size ", mc.vocab_size, " (",
                     config.model_dir, "/config.json)"));
  }

  ModelInfo info;
  std::filesystem::path dir(config.model_dir);
  if (!dir.has_filename()) dir = dir.parent_path();
  info.id = config.served_model_name.empty() ? dir.filename().string() : config.served_model_name;
  info.model_dir = config.model_dir;
  info.architecture = std::string(architecture_name(mc.architecture));
  info.vocab_size = static_cast<int>(mc.vocab_size);
  const int model_len = mc.max_position_embeddings;
  if (config.max_model_len > model_len) {
    return absl::InvalidArgumentError(absl::StrCat("max_model_len = ", config.max_model_len,
                                                   ": more than the model's ", model_len,
                                                   " positions (max_position_embeddings)"));
  }
  info.max_model_len = config.max_model_len > 0 ? config.max_model_len : model_len;
  info.eos_ids = load_eos_ids(config.model_dir, mc, **tokenizer);
  info.created = std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
  info.backend = backend->name();
  info.block_size = config.block_size;

  // KV-cache size: rows of [kv_lora_rank | rope dim] per layer per token.
  const DType kv_dtype = config.kv_cache_dtype == "f32" ? DType::kF32 : DType::kBF16;
  const int64_t bytes_per_block =
      KvCache::block_bytes(mc.num_hidden_layers, config.block_size,
                           mc.kv_lora_rank + mc.qk_rope_head_dim, kv_dtype);
  int64_t n_blocks = config.kv_cache_blocks;
  if (n_blocks == 0) n_blocks = (config.kv_cache_memory_mb << 20) / bytes_per_block;
  if (n_blocks < 1 || n_blocks > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv_cache_memory_mb = ", config.kv_cache_memory_mb, " gives ", n_blocks,
                     " KV blocks of ", bytes_per_block, " bytes; need at least one"));
  }
  info.n_kv_blocks = static_cast<int>(n_blocks);
  if (n_blocks * config.block_size < info.max_model_len) {
    // Otherwise a request that fits the context could still never fit the cache.
    return absl::InvalidArgumentError(absl::StrCat(
        "the KV cache holds ", n_blocks * config.block_size, " tokens (", n_blocks, " blocks of ",
        config.block_size, "), less than max_model_len = ", info.max_model_len,
        "; raise kv_cache_memory_mb / kv_cache_blocks or lower max_model_len"));
  }

  // Everything that will be allocated, checked against the limit before any of it is.
  ASSIGN_OR_RETURN(const WeightBytes planned, plan_deepseek_weights(mc, checkpoint));
  MemoryUsage& mem = info.memory;
  mem.weights = planned.total();
  mem.kv_cache = n_blocks * bytes_per_block;
  mem.activations =
      DeepseekV2Model::activation_bytes(mc, config.max_num_batched_tokens, config.max_num_seqs);
  mem.other = resident_bytes();
  RETURN_IF_ERROR(check_memory_fits(config.memory_limit_gb, mem));
  ASSIGN_OR_RETURN(auto model, DeepseekV2Model::load(std::move(model_config), checkpoint, *backend,
                                                     periodic_load_log()));
  const ModelConfig& loaded = model->config();

  SchedulerConfig sc;
  sc.n_blocks = info.n_kv_blocks;
  sc.block_size = config.block_size;
  sc.max_num_batched_tokens = config.max_num_batched_tokens;
  sc.max_num_seqs = config.max_num_seqs;
  sc.max_model_len = info.max_model_len;
  sc.max_n = config.max_n;
  sc.enable_chunked_prefill = config.enable_chunked_prefill;
  sc.enable_prefix_caching = config.enable_prefix_caching;
  sc.policy =
      config.scheduling_policy == "priority" ? SchedulePolicy::kPriority : SchedulePolicy::kFcfs;
  ASSIGN_OR_RETURN(Scheduler scheduler, Scheduler::create(sc));
  auto cache = std::make_unique<KvCache>(*backend, loaded.num_hidden_layers, info.n_kv_blocks,
                                         config.block_size, model->kv_row_width(), kv_dtype);
  mem.weights = model->weight_bytes().total();
  mem.weights_detail = model->weight_bytes().describe();
  mem.kv_cache = cache->n_bytes();
  mem.rss_after_load = resident_bytes();
  MS_LOG_INFO(
      "engine: loaded {} ({}) on {} in {:.2f} s; KV cache {} blocks x {} tokens, {}; "
      "max_model_len {}",
      info.id, info.architecture, info.backend, seconds(Clock::now() - start), info.n_kv_blocks,
      info.block_size, dtype_name(kv_dtype), info.max_model_len);
  MS_LOG_INFO("memory: {}", describe_memory(mem));
  return std::unique_ptr<Engine>(new EngineImpl(config, std::move(backend), std::move(model),
                                                std::move(*tokenizer), std::move(cache),
                                                std::move(scheduler), std::move(info)));
}

}  // namespace moeserve
