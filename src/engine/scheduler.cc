#include "engine/scheduler.h"

#include <algorithm>

namespace moeserve {

StatusOr<Scheduler> Scheduler::create(const SchedulerConfig& config) {
  RETURN_IF_ERROR(config.validate());
  return Scheduler(config);
}

Scheduler::Scheduler(const SchedulerConfig& config)
    : config_(config), blocks_(config.n_blocks, config.block_size, config.enable_prefix_caching) {}

Scheduler::Key Scheduler::key(const Sequence& s) const {
  const int priority = config_.policy == SchedulePolicy::kPriority ? s.priority : 0;
  return {priority, s.arrival, s.id};
}

Sequence& Scheduler::seq(int64_t seq_id) {
  const auto it = seqs_.find(seq_id);
  MS_CHECK(it != seqs_.end(), "unknown sequence ", seq_id);
  return it->second;
}

const Sequence* Scheduler::find(int64_t seq_id) const {
  const auto it = seqs_.find(seq_id);
  return it == seqs_.end() ? nullptr : &it->second;
}

std::vector<int64_t> Scheduler::sequences_of(int64_t request_id) const {
  const auto it = requests_.find(request_id);
  return it == requests_.end() ? std::vector<int64_t>{} : it->second;
}

Status Scheduler::add_request(const SchedRequest& r) {
  const auto reject = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat("request ", r.request_id, ": ", parts...));
  };
  if (requests_.count(r.request_id)) {
    return absl::AlreadyExistsError(absl::StrCat("request ", r.request_id, " is already queued"));
  }
  if (r.prompt.empty()) return reject("empty prompt");
  for (const int32_t t : r.prompt) {
    if (t < 0) return reject("negative token id ", t, " in the prompt");
  }
  if (r.max_tokens < 1) return reject("max_tokens must be >= 1, got ", r.max_tokens);
  if (r.n < 1 || r.n > config_.max_n) {
    return reject("n must be in [1, ", config_.max_n, "], got ", r.n);
  }
  const int64_t n_prompt = static_cast<int64_t>(r.prompt.size());
  const int64_t n_total = n_prompt + r.max_tokens;
  if (n_total > config_.max_model_len) {
    return reject("prompt (", n_prompt, " tokens) + max_tokens (", r.max_tokens, ") = ", n_total,
                  " exceeds max_model_len ", config_.max_model_len);
  }
  // Each sequence may end up running alone (others preempted), so it alone
  // must fit in the whole cache.
  const int64_t n_blocks_needed = (n_total + config_.block_size - 1) / config_.block_size;
  if (n_blocks_needed > config_.n_blocks) {
    return reject("prompt + max_tokens = ", n_total, " tokens needs ", n_blocks_needed,
                  " KV blocks but the cache has ", config_.n_blocks);
  }

  std::vector<int64_t>& group = requests_[r.request_id];
  const uint64_t arrival = next_arrival_++;
  int64_t leader = -1;
  for (int i = 0; i < r.n; ++i) {
    Sequence s;
    s.id = next_seq_id_++;
    s.request_id = r.request_id;
    s.index = i;
    s.tokens = r.prompt;
    s.n_prompt = static_cast<int>(n_prompt);
    s.max_tokens = r.max_tokens;
    s.priority = r.priority;
    s.arrival = arrival;
    s.cache_salt = r.cache_salt;
    if (i == 0) {
      leader = s.id;
      s.status = SeqStatus::kWaiting;
      waiting_.insert(key(s));
    } else {
      // Siblings wait until the leader has computed the prompt, then share
      // its full prompt blocks instead of computing them again.
      s.leader = leader;
      s.status = SeqStatus::kPending;
    }
    group.push_back(s.id);
    seqs_.emplace(s.id, std::move(s));
  }
  return absl::OkStatus();
}

void Scheduler::preempt(int64_t seq_id, std::vector<std::pair<int64_t, int>>& chosen, int& budget,
                        StepPlan& plan) {
  Sequence& s = seq(seq_id);
  MS_CHECK(s.status == SeqStatus::kRunning, "preempting sequence ", seq_id, " that is not running");
  const auto it =
      std::find_if(chosen.begin(), chosen.end(), [&](const auto& c) { return c.first == seq_id; });
  if (it != chosen.end()) {  // already planned this step: take it back
    budget += it->second;
    chosen.erase(it);
  }
  blocks_.free(seq_id);
  running_.erase(std::find(running_.begin(), running_.end(), seq_id));
  // Recompute: generated tokens stay in `tokens`, so its next prefill covers
  // prompt + generated and the sequence continues where it stopped.
  s.status = SeqStatus::kWaiting;
  s.n_computed = 0;
  s.n_cached = 0;
  ++s.n_preemptions;
  ++n_preemptions_;
  waiting_.insert(key(s));
  plan.preempted.push_back(seq_id);
}

bool Scheduler::admit(Sequence& s, std::vector<std::pair<int64_t, int>>& chosen, int& budget) {
  const int bs = config_.block_size;
  // Start from the leader's computed full prompt blocks (n>1), else from the
  // prefix cache. Never the last prompt token: it must be computed for logits.
  int start = 0;
  int n_evictable = 0;
  bool fork = false;
  if (s.leader >= 0) {
    const Sequence* leader = find(s.leader);
    const int shared = (s.n_prompt - 1) / bs * bs;
    if (leader != nullptr && leader->status == SeqStatus::kRunning &&
        leader->n_computed >= shared && shared > 0) {
      start = shared;
      fork = true;
    }
  }
  if (!fork) {
    const PrefixMatch match = blocks_.match_prefix(s.tokens, s.cache_salt);
    start = match.n_tokens;
    n_evictable = match.n_evictable;
  }
  const int n_left = s.n_tokens() - start;
  const int n_new = std::min(n_left, budget);
  if (n_new <= 0) return false;
  if (!config_.enable_chunked_prefill && n_new < n_left) return false;
  const int n_blocks_needed = blocks_.blocks_for(start + n_new) - start / bs + n_evictable;
  if (!blocks_.can_allocate(n_blocks_needed)) return false;

  if (fork) {
    blocks_.fork(s.leader, s.id, start);
  } else {
    const int n_cached = blocks_.allocate_for(s.id, s.tokens, s.cache_salt);
    MS_CHECK(n_cached == start, "prefix match changed between lookup and allocation");
  }
  MS_CHECK(blocks_.append_slots(s.id, n_new), "append_slots failed after can_allocate");
  waiting_.erase(key(s));
  s.status = SeqStatus::kRunning;
  s.n_computed = start;
  s.n_cached = start;
  running_.push_back(s.id);
  chosen.emplace_back(s.id, n_new);
  budget -= n_new;
  return true;
}

StepPlan Scheduler::schedule() {
  MS_CHECK(!plan_in_flight_, "schedule() called again before on_step_done()");
  StepPlan plan;
  int budget = config_.max_num_batched_tokens;
  std::vector<std::pair<int64_t, int>> chosen;  // (seq id, n_new)

  // 1. Running sequences: decodes first (one token each, so long prefills
  //    never starve them), then prefill chunks that continue where they
  //    stopped; each group in policy order.
  std::vector<int64_t> order = running_;
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    const Sequence& sa = seqs_.at(a);
    const Sequence& sb = seqs_.at(b);
    if (sa.in_prefill() != sb.in_prefill()) return !sa.in_prefill();
    return key(sa) < key(sb);
  });
  for (const int64_t id : order) {
    Sequence& s = seq(id);
    if (s.status != SeqStatus::kRunning) continue;  // preempted earlier in this loop
    while (true) {
      // Recomputed after each preemption, which may give budget back.
      const int n_new = std::min(s.n_uncomputed(), budget);
      if (n_new <= 0) break;
      if (blocks_.append_slots(id, n_new)) {
        chosen.emplace_back(id, n_new);
        budget -= n_new;
        break;
      }
      // Out of blocks: preempt the lowest-priority, latest-arrived running
      // sequence (possibly this one) and retry.
      const int64_t victim = *std::max_element(
          running_.begin(), running_.end(),
          [&](int64_t a, int64_t b) { return key(seqs_.at(a)) < key(seqs_.at(b)); });
      preempt(victim, chosen, budget, plan);
      if (victim == id) break;
    }
  }

  // 2. Waiting sequences get the remaining budget, in policy order. Stop at
  //    the first that does not fit (no overtaking), and admit nothing in a
  //    step that had to preempt: blocks are short.
  if (plan.preempted.empty()) {
    while (!waiting_.empty() && budget > 0 &&
           static_cast<int>(running_.size()) < config_.max_num_seqs) {
      Sequence& s = seq(std::get<2>(*waiting_.begin()));
      if (!admit(s, chosen, budget)) break;
    }
  }

  for (const auto& [id, n_new] : chosen) {
    const Sequence& s = seqs_.at(id);
    ScheduledSeq out;
    out.seq_id = id;
    out.request_id = s.request_id;
    out.index = s.index;
    out.n_computed = s.n_computed;
    out.tokens.assign(s.tokens.begin() + s.n_computed, s.tokens.begin() + s.n_computed + n_new);
    out.block_table = blocks_.block_table(id);
    out.sample = s.n_computed + n_new == s.n_tokens();
    plan.n_tokens += n_new;
    plan.seqs.push_back(std::move(out));
  }
  in_flight_ = std::move(chosen);
  plan_in_flight_ = true;
  return plan;
}

void Scheduler::release_siblings(const Sequence& leader) {
  for (const int64_t id : requests_.at(leader.request_id)) {
    Sequence& s = seq(id);
    if (s.status != SeqStatus::kPending) continue;
    s.status = SeqStatus::kWaiting;
    waiting_.insert(key(s));
  }
}

void Scheduler::remove(int64_t seq_id) {
  Sequence& s = seq(seq_id);
  if (s.status == SeqStatus::kRunning) {
    blocks_.free(seq_id);
    running_.erase(std::find(running_.begin(), running_.end(), seq_id));
  } else if (s.status == SeqStatus::kWaiting) {
    waiting_.erase(key(s));
  }
  std::vector<int64_t>& group = requests_.at(s.request_id);
  group.erase(std::find(group.begin(), group.end(), seq_id));
  if (group.empty()) requests_.erase(s.request_id);
  seqs_.erase(seq_id);
}

StatusOr<std::vector<FinishedSeq>> Scheduler::on_step_done(const std::vector<SeqResult>& results) {
  MS_CHECK(plan_in_flight_, "on_step_done() without a scheduled step");
  // Validate everything before changing anything.
  std::unordered_map<int64_t, int> n_new_of;
  for (const auto& [id, n_new] : in_flight_) {
    if (seqs_.count(id)) n_new_of[id] = n_new;  // aborted ones are gone
  }
  std::unordered_map<int64_t, const SeqResult*> result_of;
  for (const SeqResult& r : results) {
    if (!seqs_.count(r.seq_id)) continue;  // aborted after schedule()
    const auto it = n_new_of.find(r.seq_id);
    if (it == n_new_of.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("result for sequence ", r.seq_id, " that was not in the step"));
    }
    if (!result_of.emplace(r.seq_id, &r).second) {
      return absl::InvalidArgumentError(absl::StrCat("two results for sequence ", r.seq_id));
    }
    const Sequence& s = seqs_.at(r.seq_id);
    const bool sampled = s.n_computed + it->second == s.n_tokens();
    if (sampled && r.token < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", r.seq_id, " was sampled but got token ", r.token));
    }
    if (!sampled && r.token >= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("token for sequence ", r.seq_id, " whose prompt chunk was not its last"));
    }
  }
  for (const auto& [id, n_new] : n_new_of) {
    const Sequence& s = seqs_.at(id);
    if (s.n_computed + n_new == s.n_tokens() && !result_of.count(id)) {
      return absl::InvalidArgumentError(absl::StrCat("no sampled token for sequence ", id));
    }
  }

  std::vector<FinishedSeq> finished;
  for (const auto& [id, n_new] : in_flight_) {
    const auto nit = n_new_of.find(id);
    if (nit == n_new_of.end()) continue;
    Sequence& s = seq(id);
    const bool was_pending_prompt = s.n_computed < s.n_prompt;
    s.n_computed += n_new;
    blocks_.commit(id, s.tokens, s.n_computed);
    if (s.index == 0 && was_pending_prompt && s.n_computed >= s.n_prompt) release_siblings(s);
    const auto rit = result_of.find(id);
    if (rit == result_of.end()) continue;  // mid-prompt chunk
    const SeqResult& r = *rit->second;
    if (r.token >= 0) s.tokens.push_back(r.token);
    const bool capped = s.n_generated() >= s.max_tokens || s.n_tokens() >= config_.max_model_len;
    if (r.finished || capped) {
      finished.push_back({id, s.request_id, s.index, capped && !r.finished});
      remove(id);
    }
  }
  in_flight_.clear();
  plan_in_flight_ = false;
  return finished;
}

bool Scheduler::abort(int64_t request_id) {
  const auto it = requests_.find(request_id);
  if (it == requests_.end()) return false;
  const std::vector<int64_t> ids = it->second;  // remove() edits the group
  for (const int64_t id : ids) remove(id);
  return true;
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats st;
  for (const auto& [id, s] : seqs_) {
    if (s.status == SeqStatus::kPending) ++st.n_pending;
  }
  st.n_waiting = static_cast<int>(waiting_.size());
  st.n_running = static_cast<int>(running_.size());
  st.n_preemptions = n_preemptions_;
  st.n_prefix_query_tokens = blocks_.n_prefix_query_tokens();
  st.n_prefix_hit_tokens = blocks_.n_prefix_hit_tokens();
  st.kv_usage = blocks_.usage();
  return st;
}

}  // namespace moeserve
