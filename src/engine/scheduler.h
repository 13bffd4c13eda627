// Continuous-batching scheduler: decides, each step, which sequences run and
// how many new tokens each computes. Pure logic over ids (no tensors, no
// model): the engine loop is
//   plan = scheduler.schedule();           // who runs, which tokens, block tables
//   logits = runner.execute(plan);         // one forward step
//   results = sample(plan, logits);        // one token per seq with `sample`
//   finished = scheduler.on_step_done(results);
// The policy is described in docs/scheduler.md.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"
#include "engine/block_manager.h"
#include "engine/scheduler_config.h"
#include "engine/sequence.h"

namespace moeserve {

// What the scheduler needs of a request (the engine builds it from a
// GenerateRequest after tokenizing).
struct SchedRequest {
  int64_t request_id = 0;       // unique among unfinished requests
  std::vector<int32_t> prompt;  // [n_prompt] token ids, non-empty
  int max_tokens = 16;          // generated tokens allowed per sequence, >= 1
  int n = 1;                    // sequences (samples); they share prompt blocks
  int priority = 0;             // lower runs first under SchedulePolicy::kPriority
  std::string cache_salt;       // prefix-cache namespace; "" is the shared one
};

// One sequence's share of a step.
struct ScheduledSeq {
  int64_t seq_id = 0;
  int64_t request_id = 0;
  int index = 0;                     // sample index within the request
  int n_computed = 0;                // tokens already in the KV cache = position
                                     // of the first new token
  std::vector<int32_t> tokens;       // [n_new] tokens to compute this step
  std::vector<int32_t> block_table;  // [blocks_for(n_computed + n_new)] block ids
  bool sample = false;               // the chunk reaches the sequence's last token:
                                     // sample a next token from its last logits
  bool is_prefill() const { return tokens.size() > 1; }
};

struct StepPlan {
  std::vector<ScheduledSeq> seqs;  // running decodes first, then prefill chunks
  int n_tokens = 0;                // sum of tokens.size(), <= max_num_batched_tokens
  std::vector<int64_t> preempted;  // seq ids sent back to waiting in this step
  bool empty() const { return seqs.empty(); }
};

// The engine's report for one scheduled sequence after sampling.
struct SeqResult {
  int64_t seq_id = 0;
  int32_t token = -1;     // the sampled token; required iff the plan said `sample`
  bool finished = false;  // the caller decided it is done (stop token, stop string…)
};

struct FinishedSeq {
  int64_t seq_id = 0;
  int64_t request_id = 0;
  int index = 0;
  bool length_capped = false;  // finished by max_tokens / max_model_len, not the caller
};

struct SchedulerStats {
  int n_pending = 0;  // n>1 siblings waiting for their leader's prompt
  int n_waiting = 0;
  int n_running = 0;
  int64_t n_preemptions = 0;
  int64_t n_prefix_query_tokens = 0;
  int64_t n_prefix_hit_tokens = 0;
  double kv_usage = 0.0;  // fraction of blocks referenced
};

class Scheduler {
 public:
  // Validates `config` (SchedulerConfig::validate) and builds the scheduler.
  static StatusOr<Scheduler> create(const SchedulerConfig& config);

  // Queues a request. Rejects with InvalidArgument a request that is
  // malformed or can never fit (prompt + max_tokens over max_model_len, or
  // more blocks than the whole cache); AlreadyExists for a live request id.
  Status add_request(const SchedRequest& request);

  // Plans the next step. Must be followed by on_step_done() before the next
  // schedule(). An empty plan means nothing can run (nothing queued).
  StepPlan schedule();

  // Applies the results of the last plan: advances computed tokens, registers
  // computed full blocks in the prefix cache, appends sampled tokens, and
  // frees finished sequences (the caller's `finished`, or max_tokens /
  // max_model_len reached). Results for aborted sequences are ignored. Errors
  // (nothing changed): a missing token for a sampled sequence, a token for one
  // that was not sampled, or a negative token.
  StatusOr<std::vector<FinishedSeq>> on_step_done(const std::vector<SeqResult>& results);

  // Drops every sequence of `request_id` in whatever state, freeing blocks.
  // Returns false if no such request is live.
  bool abort(int64_t request_id);

  bool has_unfinished() const { return !seqs_.empty(); }
  const Sequence* find(int64_t seq_id) const;
  std::vector<int64_t> sequences_of(int64_t request_id) const;
  SchedulerStats stats() const;
  const SchedulerConfig& config() const { return config_; }
  const BlockManager& block_manager() const { return blocks_; }

 private:
  // Waiting order: (priority or 0 under FCFS, arrival, seq id), smallest first.
  // The preemption victim is the running sequence with the largest key.
  using Key = std::tuple<int, uint64_t, int64_t>;

  explicit Scheduler(const SchedulerConfig& config);
  Key key(const Sequence& s) const;
  Sequence& seq(int64_t seq_id);
  void preempt(int64_t seq_id, std::vector<std::pair<int64_t, int>>& chosen, int& budget,
               StepPlan& plan);
  // Tries to admit the waiting sequence; on success adds it to `chosen`.
  bool admit(Sequence& s, std::vector<std::pair<int64_t, int>>& chosen, int& budget);
  void release_siblings(const Sequence& leader);
  void remove(int64_t seq_id);  // frees blocks and forgets the sequence

  SchedulerConfig config_;
  BlockManager blocks_;
  std::unordered_map<int64_t, Sequence> seqs_;
  std::unordered_map<int64_t, std::vector<int64_t>> requests_;  // request -> live seq ids
  std::set<Key> waiting_;
  std::vector<int64_t> running_;
  std::vector<std::pair<int64_t, int>> in_flight_;  // (seq id, n_new) of the last plan
  bool plan_in_flight_ = false;
  int64_t next_seq_id_ = 0;
  uint64_t next_arrival_ = 0;
  int64_t n_preemptions_ = 0;
};

}  // namespace moeserve
