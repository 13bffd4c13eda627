// Scheduler over ids only: config validation, up-front rejection, token
// budget, decodes before prefills, chunked prefill, FCFS and priority order,
// preemption by recompute, abort, prefix caching through the scheduler, n>1
// prompt sharing, result validation, and a seeded random soak that checks
// the block invariants after every step.
#include "engine/scheduler.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace moeserve {
namespace {

SchedulerConfig small_config() {
  SchedulerConfig c;
  c.n_blocks = 64;
  c.block_size = 4;
  c.max_num_batched_tokens = 32;
  c.max_num_seqs = 8;
  c.max_model_len = 200;
  c.max_n = 4;
  return c;
}

std::vector<int32_t> iota_tokens(int n, int32_t first) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

SchedRequest request(int64_t id, std::vector<int32_t> prompt, int max_tokens, int n = 1,
                     int priority = 0, std::string salt = "") {
  SchedRequest r;
  r.request_id = id;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.n = n;
  r.priority = priority;
  r.cache_salt = std::move(salt);
  return r;
}

// A stand-in for the model: the next token depends only on the request and
// the sequence's length, so a recomputed sequence continues identically.
int32_t model_token(const Sequence& s) {
  return static_cast<int32_t>((s.request_id * 131 + int64_t{s.n_tokens()} * 7 + s.index) % 1000);
}

// Drives schedule() / on_step_done() and checks every plan.
class Harness {
 public:
  explicit Harness(const SchedulerConfig& c) : sched_(*Scheduler::create(c)) {}

  Scheduler& sched() { return sched_; }
  void add(const SchedRequest& r) {
    const Status st = try_add(r);
    ASSERT_TRUE(st.ok()) << st;
  }
  Status try_add(const SchedRequest& r) {
    Status st = sched_.add_request(r);
    if (st.ok()) requests_.insert(r.request_id);
    return st;
  }
  bool abort(int64_t request_id) {
    requests_.erase(request_id);
    return sched_.abort(request_id);
  }
  const std::set<int64_t>& live_requests() const { return requests_; }
  // The caller will finish this sequence at its next sampled token.
  void finish_at_next_token(int64_t seq_id) { finish_now_.insert(seq_id); }

  // One engine step. Returns the plan it ran.
  StepPlan step() {
    std::map<int64_t, int> running_uncomputed;  // running before schedule()
    for (const int64_t seq : live_sequences()) {
      const Sequence* s = sched_.find(seq);
      if (s->status == SeqStatus::kRunning) running_uncomputed[seq] = s->n_uncomputed();
    }
    StepPlan plan = sched_.schedule();
    check_plan(plan, running_uncomputed);
    std::vector<SeqResult> results;
    for (const ScheduledSeq& p : plan.seqs) {
      if (!p.sample) continue;
      const Sequence* s = sched_.find(p.seq_id);
      SeqResult r;
      r.seq_id = p.seq_id;
      r.token = model_token(*s);
      r.finished = finish_now_.erase(p.seq_id) > 0;
      std::vector<int32_t> tokens = s->tokens;
      tokens.push_back(r.token);
      last_tokens_[p.seq_id] = tokens;
      results.push_back(r);
    }
    auto finished = sched_.on_step_done(results);
    EXPECT_TRUE(finished.ok()) << finished.status();
    for (const FinishedSeq& f : *finished) {
      finished_tokens_[f.seq_id] = last_tokens_[f.seq_id];
      if (f.length_capped) capped_.push_back(f);
      finish_order_.push_back(f.request_id);
      if (sched_.sequences_of(f.request_id).empty()) requests_.erase(f.request_id);
    }
    check_blocks();
    return plan;
  }

  // Steps until nothing is left; fails after `max_steps`.
  int run_to_completion(int max_steps = 10000) {
    int n = 0;
    while (sched_.has_unfinished()) {
      step();
      if (::testing::Test::HasFatalFailure() || ++n > max_steps) {
        ADD_FAILURE() << "no completion after " << n << " steps";
        break;
      }
    }
    return n;
  }

  std::vector<int64_t> live_sequences() const {
    std::vector<int64_t> out;
    for (const int64_t r : requests_) {
      for (const int64_t s : sched_.sequences_of(r)) out.push_back(s);
    }
    return out;
  }

  // Independent of BlockManager::check_invariants: ref counts equal the number
  // of running sequences holding each block; an unreferenced block is free or
  // evictable, never in a table.
  void check_blocks() {
    const BlockManager& bm = sched_.block_manager();
    std::vector<int> holders(static_cast<size_t>(bm.n_blocks()), 0);
    int n_referenced = 0;
    for (const int64_t id : live_sequences()) {
      const Sequence* s = sched_.find(id);
      ASSERT_NE(s, nullptr);
      if (s->status != SeqStatus::kRunning) {
        EXPECT_FALSE(bm.has_sequence(id)) << "non-running sequence " << id << " holds blocks";
        continue;
      }
      EXPECT_EQ(bm.n_slots(id), s->n_computed);
      for (const int32_t b : bm.block_table(id)) ++holders[static_cast<size_t>(b)];
    }
    for (int b = 0; b < bm.n_blocks(); ++b) {
      ASSERT_EQ(bm.ref_count(b), holders[static_cast<size_t>(b)]) << "block " << b;
      if (holders[static_cast<size_t>(b)] > 0) ++n_referenced;
    }
    EXPECT_EQ(bm.n_used(), n_referenced);
    const std::vector<int32_t> evictable = bm.evictable_blocks();
    for (const int32_t b : evictable) EXPECT_EQ(holders[static_cast<size_t>(b)], 0);
    const Status st = bm.check_invariants();
    ASSERT_TRUE(st.ok()) << st.message();
  }

  const std::map<int64_t, std::vector<int32_t>>& finished_tokens() const {
    return finished_tokens_;
  }
  const std::vector<int64_t>& finish_order() const { return finish_order_; }
  const std::vector<FinishedSeq>& capped() const { return capped_; }

 private:
  void check_plan(const StepPlan& plan, const std::map<int64_t, int>& running_before) {
    const SchedulerConfig& c = sched_.config();
    const BlockManager& bm = sched_.block_manager();
    EXPECT_LE(plan.n_tokens, c.max_num_batched_tokens);
    EXPECT_LE(static_cast<int>(plan.seqs.size()), c.max_num_seqs);
    int sum = 0;
    std::set<int64_t> ids;
    for (const ScheduledSeq& p : plan.seqs) {
      EXPECT_TRUE(ids.insert(p.seq_id).second) << "sequence " << p.seq_id << " twice";
      const Sequence* s = sched_.find(p.seq_id);
      ASSERT_NE(s, nullptr);
      ASSERT_FALSE(p.tokens.empty());
      sum += static_cast<int>(p.tokens.size());
      EXPECT_EQ(p.n_computed, s->n_computed);
      EXPECT_TRUE(std::equal(p.tokens.begin(), p.tokens.end(), s->tokens.begin() + p.n_computed));
      EXPECT_EQ(p.sample, p.n_computed + static_cast<int>(p.tokens.size()) == s->n_tokens());
      EXPECT_EQ(static_cast<int>(p.block_table.size()),
                bm.blocks_for(p.n_computed + static_cast<int>(p.tokens.size())));
      EXPECT_EQ(p.block_table, bm.block_table(p.seq_id));
    }
    EXPECT_EQ(sum, plan.n_tokens);
    // A step that had to preempt admits nothing new (blocks are short), and
    // never runs the sequence it just preempted.
    if (!plan.preempted.empty()) {
      for (const ScheduledSeq& p : plan.seqs) {
        EXPECT_TRUE(running_before.count(p.seq_id))
            << "admitted " << p.seq_id << " while preempting";
      }
    }
    // Every running decode is scheduled unless it was preempted; a running
    // prefill is left out only when the budget is spent (a preemption can
    // give budget back after a prefill was passed over, so only then).
    const std::set<int64_t> preempted(plan.preempted.begin(), plan.preempted.end());
    for (const auto& [id, n_uncomputed] : running_before) {
      if (ids.count(id) || preempted.count(id)) continue;
      if (n_uncomputed == 1) {
        ADD_FAILURE() << "running decode " << id << " starved";
      } else if (plan.preempted.empty()) {
        EXPECT_EQ(plan.n_tokens, c.max_num_batched_tokens) << "prefill " << id << " left out";
      }
    }
  }

  Scheduler sched_;
  std::set<int64_t> requests_;  // live request ids
  std::set<int64_t> finish_now_;
  std::map<int64_t, std::vector<int32_t>> last_tokens_;
  std::map<int64_t, std::vector<int32_t>> finished_tokens_;
  std::vector<int64_t> finish_order_;
  std::vector<FinishedSeq> capped_;  // finished by max_tokens, not the caller
};

// Tokens a sequence ends with when nothing interrupts it.
std::vector<int32_t> expected_tokens(int64_t request_id, int index, std::vector<int32_t> prompt,
                                     int max_tokens) {
  Sequence s;
  s.request_id = request_id;
  s.index = index;
  s.tokens = std::move(prompt);
  for (int i = 0; i < max_tokens; ++i) s.tokens.push_back(model_token(s));
  return s.tokens;
}

TEST(SchedulerConfigTest, EveryFieldIsValidatedByName) {
  EXPECT_TRUE(small_config().validate().ok());
  struct Case {
    const char* field;
    void (*mutate)(SchedulerConfig&);
  };
  const Case cases[] = {
      {"n_blocks", [](SchedulerConfig& c) { c.n_blocks = 0; }},
      {"block_size", [](SchedulerConfig& c) { c.block_size = -1; }},
      {"max_num_seqs", [](SchedulerConfig& c) { c.max_num_seqs = 0; }},
      {"max_model_len", [](SchedulerConfig& c) { c.max_model_len = 0; }},
      {"max_n", [](SchedulerConfig& c) { c.max_n = 0; }},
      {"max_num_batched_tokens", [](SchedulerConfig& c) { c.max_num_batched_tokens = 4; }},
      {"max_num_batched_tokens",
       [](SchedulerConfig& c) { c.enable_chunked_prefill = false; }},  // 32 < max_model_len 200
      {"policy", [](SchedulerConfig& c) { c.policy = static_cast<SchedulePolicy>(7); }},
  };
  for (const Case& k : cases) {
    SchedulerConfig c = small_config();
    k.mutate(c);
    const Status st = c.validate();
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << k.field;
    EXPECT_NE(std::string(st.message()).find(std::string("SchedulerConfig.") + k.field),
              std::string::npos)
        << st.message();
    EXPECT_FALSE(Scheduler::create(c).ok());
  }
}

TEST(SchedulerTest, RejectsRequestsThatCanNeverRun) {
  SchedulerConfig c = small_config();
  c.n_blocks = 10;  // 40 tokens of cache; max_model_len 200
  Harness h(c);
  Scheduler& s = h.sched();
  const auto code = [&](const SchedRequest& r) { return s.add_request(r).code(); };
  EXPECT_EQ(code(request(1, {}, 4)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(request(2, {1, -3}, 4)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(request(3, {1}, 0)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(request(4, {1}, 4, 0)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(request(5, {1}, 4, 5)), absl::StatusCode::kInvalidArgument);  // max_n 4
  const Status too_long = s.add_request(request(6, iota_tokens(150, 0), 51));
  EXPECT_EQ(too_long.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(too_long.message()).find("exceeds max_model_len 200"), std::string::npos)
      << too_long.message();
  const Status too_big = s.add_request(request(7, iota_tokens(30, 0), 11));  // 41 > 40 slots
  EXPECT_EQ(too_big.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(too_big.message()).find("needs 11 KV blocks but the cache has 10"),
            std::string::npos)
      << too_big.message();
  EXPECT_FALSE(s.has_unfinished());  // nothing rejected was queued
  EXPECT_TRUE(s.add_request(request(8, iota_tokens(30, 0), 10)).ok());  // exactly 40
  EXPECT_EQ(code(request(8, {1}, 1)), absl::StatusCode::kAlreadyExists);
  EXPECT_FALSE(s.abort(99));
}

TEST(SchedulerTest, ChunkedPrefillResumesWhereItStopped) {
  Harness h(small_config());  // budget 32
  const std::vector<int32_t> prompt = iota_tokens(100, 0);
  h.add(request(1, prompt, 3));
  std::vector<int> starts;
  for (int i = 0; i < 4; ++i) {
    const StepPlan plan = h.step();
    ASSERT_EQ(plan.seqs.size(), 1u);
    const ScheduledSeq& p = plan.seqs[0];
    starts.push_back(p.n_computed);
    EXPECT_EQ(p.tokens, std::vector<int32_t>(
                            prompt.begin() + p.n_computed,
                            prompt.begin() + p.n_computed + static_cast<long>(p.tokens.size())));
    EXPECT_EQ(p.sample, i == 3);  // only the chunk with the last prompt token samples
  }
  EXPECT_EQ(starts, (std::vector<int>{0, 32, 64, 96}));
  EXPECT_EQ(h.run_to_completion(), 2);  // then two decodes
  EXPECT_EQ(h.finished_tokens().at(0), expected_tokens(1, 0, prompt, 3));
}

TEST(SchedulerTest, DecodesAreScheduledFirstAndNeverStarved) {
  SchedulerConfig c = small_config();  // budget 32, 8 seqs
  c.n_blocks = 256;                    // no preemption in this test
  Harness h(c);
  for (int64_t r = 0; r < 4; ++r)
    h.add(request(r, iota_tokens(5, static_cast<int32_t>(10 * r)), 40));
  h.step();  // all four prompts in one step (20 tokens)
  h.add(request(10, iota_tokens(150, 500), 20));
  h.add(request(11, iota_tokens(150, 900), 20));
  for (int i = 0; i < 8; ++i) {
    const StepPlan plan = h.step();
    // The four decodes lead every step; the long prompts share the rest.
    ASSERT_GE(plan.seqs.size(), 4u);
    for (size_t k = 0; k < 4; ++k) {
      EXPECT_EQ(plan.seqs[k].tokens.size(), 1u) << "step " << i;
      EXPECT_LT(plan.seqs[k].request_id, 4);
    }
    EXPECT_EQ(plan.n_tokens, 32) << "step " << i;  // the budget is used fully
  }
  h.run_to_completion();
  EXPECT_EQ(h.finished_tokens().size(), 6u);
}

TEST(SchedulerTest, DecodesRunBeforeAHigherPriorityPrefill) {
  SchedulerConfig c = small_config();
  c.n_blocks = 256;
  c.policy = SchedulePolicy::kPriority;
  Harness h(c);
  h.add(request(1, iota_tokens(5, 0), 20, 1, /*priority=*/1));
  h.step();
  h.add(request(2, iota_tokens(150, 100), 5, 1, /*priority=*/0));  // more urgent, but prefilling
  for (int i = 0; i < 4; ++i) {
    const StepPlan plan = h.step();
    ASSERT_EQ(plan.seqs.size(), 2u);
    EXPECT_EQ(plan.seqs[0].request_id, 1);  // the decode leads
    EXPECT_EQ(plan.seqs[0].tokens.size(), 1u);
    EXPECT_EQ(plan.seqs[1].tokens.size(), 31u);  // the prefill gets the rest
  }
  h.run_to_completion();
}

TEST(SchedulerTest, WithoutChunkingAWholePromptWaitsForRoom) {
  SchedulerConfig c = small_config();
  c.enable_chunked_prefill = false;
  c.max_model_len = 32;
  Harness h(c);
  h.add(request(1, iota_tokens(20, 0), 4));
  h.add(request(2, iota_tokens(20, 100), 4));
  StepPlan p = h.step();
  ASSERT_EQ(p.seqs.size(), 1u);  // 20 + 20 > 32: the second waits whole
  EXPECT_EQ(p.seqs[0].tokens.size(), 20u);
  p = h.step();
  ASSERT_EQ(p.seqs.size(), 2u);  // a decode (1) + the whole second prompt (20)
  EXPECT_EQ(p.seqs[1].tokens.size(), 20u);
  h.run_to_completion();
  EXPECT_EQ(h.finished_tokens().size(), 2u);
}

TEST(SchedulerTest, FcfsRunsInArrivalOrderRegardlessOfPriority) {
  SchedulerConfig c = small_config();
  c.max_num_seqs = 1;
  Harness h(c);
  h.add(request(7, {1, 2, 3}, 2, 1, /*priority=*/9));
  h.add(request(3, {4, 5}, 2, 1, /*priority=*/0));
  h.add(request(5, {6}, 2, 1, /*priority=*/1));
  h.run_to_completion();
  EXPECT_EQ(h.finish_order(), (std::vector<int64_t>{7, 3, 5}));
}

TEST(SchedulerTest, PriorityRunsLowerValueFirstTiesByArrival) {
  SchedulerConfig c = small_config();
  c.max_num_seqs = 1;
  c.policy = SchedulePolicy::kPriority;
  Harness h(c);
  h.add(request(1, {1, 2, 3}, 2, 1, /*priority=*/5));
  h.add(request(2, {4, 5}, 2, 1, /*priority=*/1));
  h.add(request(3, {6}, 2, 1, /*priority=*/3));
  h.add(request(4, {7}, 2, 1, /*priority=*/1));
  h.run_to_completion();
  EXPECT_EQ(h.finish_order(), (std::vector<int64_t>{2, 4, 3, 1}));
}

TEST(SchedulerTest, PreemptsLatestArrivalWhenBlocksRunOutAndItStillCompletes) {
  SchedulerConfig c = small_config();
  c.n_blocks = 8;                   // 32 token slots
  c.enable_prefix_caching = false;  // recompute must not lean on the cache here
  Harness h(c);
  const std::vector<int32_t> pa = iota_tokens(6, 0), pb = iota_tokens(6, 50);
  h.add(request(1, pa, 20));  // 26 tokens: 7 blocks alone
  h.add(request(2, pb, 20));
  bool saw_preemption = false;
  for (int i = 0; i < 200 && h.sched().has_unfinished(); ++i) {
    const Sequence* victim = h.sched().find(1);
    const int n_tokens_before = victim ? victim->n_tokens() : 0;
    const StepPlan plan = h.step();
    for (const int64_t id : plan.preempted) {
      saw_preemption = true;
      EXPECT_EQ(id, 1) << "the later arrival (seq 1 of request 2) is the victim";
      const Sequence* s = h.sched().find(id);
      EXPECT_EQ(s->status, SeqStatus::kWaiting);
      EXPECT_EQ(s->n_computed, 0);
      EXPECT_FALSE(h.sched().block_manager().has_sequence(id));
      // Generated tokens stay: the recompute prefill covers prompt + generated.
      EXPECT_EQ(s->n_tokens(), n_tokens_before);
      EXPECT_GT(s->n_generated(), 0);
      const StepPlan next = h.step();
      for (const ScheduledSeq& p : next.seqs) {
        if (p.seq_id == id) {
          EXPECT_EQ(p.tokens.size(), static_cast<size_t>(n_tokens_before));
        }
      }
    }
  }
  EXPECT_TRUE(saw_preemption);
  EXPECT_FALSE(h.sched().has_unfinished());
  EXPECT_GE(h.sched().stats().n_preemptions, 1);
  // Both complete with exactly max_tokens generated, and the recomputed one
  // continues with the same tokens it would have produced uninterrupted.
  EXPECT_EQ(h.finished_tokens().at(0), expected_tokens(1, 0, pa, 20));
  EXPECT_EQ(h.finished_tokens().at(1), expected_tokens(2, 0, pb, 20));
  EXPECT_EQ(h.sched().block_manager().n_available(), 8);
}

TEST(SchedulerTest, PriorityPreemptsTheLowestPriorityRunning) {
  SchedulerConfig c = small_config();
  c.n_blocks = 8;
  c.policy = SchedulePolicy::kPriority;
  Harness h(c);
  h.add(request(1, iota_tokens(6, 0), 20, 1, /*priority=*/2));   // seq 0, runs first
  h.add(request(2, iota_tokens(6, 50), 20, 1, /*priority=*/0));  // seq 1, higher priority
  std::set<int64_t> victims;
  while (h.sched().has_unfinished()) {
    for (const int64_t id : h.step().preempted) victims.insert(id);
  }
  EXPECT_EQ(victims, std::set<int64_t>{0});
  EXPECT_EQ(h.finish_order(), (std::vector<int64_t>{2, 1}));
}

TEST(SchedulerTest, PreemptingAnAlreadyScheduledDecodeReturnsItsBudget) {
  SchedulerConfig c = small_config();  // budget 32, block size 4
  c.n_blocks = 40;
  c.max_model_len = 400;
  c.policy = SchedulePolicy::kPriority;
  Harness h(c);
  h.add(request(1, iota_tokens(60, 0), 60, 1, /*priority=*/1));  // seq 0: decodes, scheduled first
  h.step();
  h.add(request(2, iota_tokens(150, 1000), 1, 1, /*priority=*/0));  // seq 1: long urgent prefill
  bool saw = false;
  while (h.sched().has_unfinished() && !saw) {
    const int64_t computed_before = h.sched().find(1) ? h.sched().find(1)->n_computed : 0;
    const StepPlan plan = h.step();
    if (plan.preempted.empty()) continue;
    saw = true;
    // The decode was planned first, then the prefill ran out of blocks and
    // preempted it: its token goes back to the prefill.
    EXPECT_EQ(plan.preempted, std::vector<int64_t>{0});
    ASSERT_EQ(plan.seqs.size(), 1u);
    EXPECT_EQ(plan.seqs[0].seq_id, 1);
    EXPECT_EQ(plan.seqs[0].n_computed, computed_before);
    EXPECT_EQ(plan.n_tokens, 32);
  }
  EXPECT_TRUE(saw);
  h.run_to_completion();
}

TEST(SchedulerTest, AbortFreesBlocksInEveryState) {
  SchedulerConfig c = small_config();
  c.max_num_seqs = 3;
  Harness h(c);
  const int n_blocks = c.n_blocks;
  h.add(request(1, iota_tokens(10, 0), 30));           // will be decoding
  h.add(request(2, iota_tokens(90, 100), 5));          // mid-prefill
  h.add(request(3, iota_tokens(9, 300), 5, /*n=*/3));  // leader + pending siblings
  h.add(request(4, iota_tokens(9, 400), 5));           // waiting (max_num_seqs)
  h.step();
  h.step();
  const Scheduler& s = h.sched();
  EXPECT_EQ(s.find(s.sequences_of(1)[0])->status, SeqStatus::kRunning);
  EXPECT_TRUE(s.find(s.sequences_of(2)[0])->in_prefill());
  EXPECT_EQ(s.find(s.sequences_of(4)[0])->status, SeqStatus::kWaiting);
  EXPECT_GT(s.block_manager().n_used(), 0);
  for (const int64_t r : {2, 3, 4, 1}) {
    h.abort(r);
    EXPECT_TRUE(h.sched().sequences_of(r).empty());
    h.check_blocks();
  }
  EXPECT_FALSE(s.has_unfinished());
  EXPECT_EQ(s.block_manager().n_used(), 0);
  EXPECT_EQ(s.block_manager().n_available(), n_blocks);
  EXPECT_DOUBLE_EQ(s.stats().kv_usage, 0.0);
  EXPECT_TRUE(h.sched().schedule().empty());
}

TEST(SchedulerTest, AbortBetweenScheduleAndStepDoneDropsItsResults) {
  Harness h(small_config());
  h.add(request(1, iota_tokens(5, 0), 4));
  h.add(request(2, iota_tokens(5, 10), 4));
  Scheduler& s = h.sched();
  const StepPlan plan = s.schedule();
  ASSERT_EQ(plan.seqs.size(), 2u);
  EXPECT_TRUE(s.abort(1));
  std::vector<SeqResult> results;
  for (const ScheduledSeq& p : plan.seqs) results.push_back({p.seq_id, 42, false});
  auto finished = s.on_step_done(results);
  ASSERT_TRUE(finished.ok()) << finished.status();
  EXPECT_EQ(s.find(0), nullptr);
  EXPECT_EQ(s.find(1)->n_tokens(), 6);
  EXPECT_TRUE(s.block_manager().check_invariants().ok());
}

TEST(SchedulerTest, RepeatPromptHitsThePrefixCacheWithinItsSaltOnly) {
  Harness h(small_config());                               // block size 4
  const std::vector<int32_t> prompt = iota_tokens(18, 7);  // 4 full blocks + 2
  h.add(request(1, prompt, 7, 1, 0, "a"));
  h.run_to_completion();
  EXPECT_EQ(h.sched().stats().n_prefix_hit_tokens, 0);

  h.add(request(2, prompt, 2, 1, 0, "a"));
  StepPlan p = h.step();
  ASSERT_EQ(p.seqs.size(), 1u);
  EXPECT_EQ(p.seqs[0].n_computed, 16);  // 16 cached tokens: only 2 computed
  EXPECT_EQ(p.seqs[0].tokens.size(), 2u);
  EXPECT_EQ(h.sched().find(p.seqs[0].seq_id)->n_cached, 16);
  EXPECT_EQ(h.sched().stats().n_prefix_hit_tokens, 16);
  h.run_to_completion();

  h.add(request(3, prompt, 2, 1, 0, "b"));  // another tenant
  p = h.step();
  EXPECT_EQ(p.seqs[0].n_computed, 0);
  h.run_to_completion();

  std::vector<int32_t> changed = prompt;
  changed[9] = 999;  // block 2 differs: blocks 0 and 1 still hit
  h.add(request(4, changed, 2, 1, 0, "a"));
  p = h.step();
  EXPECT_EQ(p.seqs[0].n_computed, 8);
  h.run_to_completion();
  const SchedulerStats st = h.sched().stats();
  EXPECT_EQ(st.n_prefix_hit_tokens, 16 + 8);
  EXPECT_EQ(st.n_prefix_query_tokens, 4 * 18);
  // Generated tokens are cached too: a request continuing a finished
  // conversation reuses prompt + answer blocks.
  EXPECT_EQ(h.finished_tokens().at(0), expected_tokens(1, 0, prompt, 7));
  h.add(request(5, expected_tokens(1, 0, prompt, 7), 2, 1, 0, "a"));
  p = h.step();
  EXPECT_EQ(p.seqs[0].n_computed, 24);  // 25 tokens of which 24 were computed: 6 blocks
}

TEST(SchedulerTest, SamplesOfOneRequestShareThePromptBlocks) {
  for (const bool prefix_caching : {true, false}) {  // forks share without the cache
    SCOPED_TRACE(::testing::Message() << "prefix caching " << prefix_caching);
    SchedulerConfig c = small_config();  // block size 4
    c.enable_prefix_caching = prefix_caching;
    Harness h(c);
    const std::vector<int32_t> prompt = iota_tokens(10, 0);  // 2 full blocks + 2
    h.add(request(1, prompt, 6, /*n=*/3));
    const std::vector<int64_t> ids = h.sched().sequences_of(1);
    ASSERT_EQ(ids.size(), 3u);
    EXPECT_EQ(h.sched().stats().n_pending, 2);
    StepPlan p = h.step();  // the leader computes the prompt alone
    ASSERT_EQ(p.seqs.size(), 1u);
    EXPECT_EQ(p.seqs[0].seq_id, ids[0]);
    p = h.step();  // leader decodes; siblings start after the shared 8 tokens
    ASSERT_EQ(p.seqs.size(), 3u);
    for (size_t k = 1; k < 3; ++k) {
      EXPECT_EQ(p.seqs[k].seq_id, ids[k]);
      EXPECT_EQ(p.seqs[k].n_computed, 8);
      EXPECT_EQ(p.seqs[k].tokens, (std::vector<int32_t>{8, 9}));
      EXPECT_TRUE(p.seqs[k].sample);
    }
    const BlockManager& bm = h.sched().block_manager();
    const std::vector<int32_t> leader = bm.block_table(ids[0]);
    for (const int64_t id : ids) {
      EXPECT_EQ(bm.block_table(id)[0], leader[0]);
      EXPECT_EQ(bm.block_table(id)[1], leader[1]);
    }
    EXPECT_EQ(bm.ref_count(leader[0]), 3);
    EXPECT_EQ(bm.ref_count(leader[1]), 3);
    EXPECT_EQ(bm.ref_count(leader[2]), 1);  // each has its own last block
    EXPECT_EQ(bm.n_used(), 2 + 3);
    h.run_to_completion();
    for (int k = 0; k < 3; ++k) {
      EXPECT_EQ(h.finished_tokens().at(ids[static_cast<size_t>(k)]),
                expected_tokens(1, k, prompt, 6));
    }
    EXPECT_EQ(bm.n_used(), 0);
    EXPECT_EQ(bm.n_available(), bm.n_blocks());
  }
}

TEST(SchedulerTest, SiblingsOfAOneStepLeaderStillRun) {
  Harness h(small_config());
  h.add(request(1, iota_tokens(9, 0), 1, /*n=*/2));  // the leader finishes at once
  h.run_to_completion();
  EXPECT_EQ(h.finished_tokens().size(), 2u);
  EXPECT_EQ(h.sched().block_manager().n_used(), 0);
}

TEST(SchedulerTest, OnStepDoneRejectsResultsThatDoNotMatchThePlan) {
  Harness h(small_config());
  h.add(request(1, iota_tokens(40, 0), 4));  // 32 + 8: first chunk does not sample
  h.add(request(2, {5}, 4));
  Scheduler& s = h.sched();
  const StepPlan plan = s.schedule();
  ASSERT_EQ(plan.seqs.size(), 1u);  // request 2 waits: the budget is spent
  EXPECT_FALSE(plan.seqs[0].sample);
  EXPECT_FALSE(s.on_step_done({{plan.seqs[0].seq_id, 3, false}}).ok());  // token not asked for
  EXPECT_FALSE(s.on_step_done({{1, 3, false}}).ok());                    // not in the step
  EXPECT_TRUE(s.on_step_done({}).ok());
  const StepPlan next = s.schedule();
  ASSERT_EQ(next.seqs.size(), 2u);
  EXPECT_FALSE(s.on_step_done({}).ok());  // both sampled: tokens missing
  EXPECT_FALSE(s.on_step_done({{0, -1, false}, {1, 3, false}}).ok());
  EXPECT_FALSE(s.on_step_done({{0, 3, false}, {0, 3, false}, {1, 3, false}}).ok());
  EXPECT_EQ(s.find(0)->n_computed, 32);  // the rejected calls changed nothing
  EXPECT_TRUE(s.on_step_done({{0, 3, false}, {1, 3, false}}).ok());
  EXPECT_EQ(s.find(0)->n_tokens(), 41);
}

TEST(SchedulerTest, CallerFinishAndLengthCapsFreeTheSequence) {
  SchedulerConfig c = small_config();
  c.max_model_len = 12;
  Harness h(c);
  h.add(request(1, iota_tokens(5, 0), 5));  // capped by max_tokens
  h.add(request(2, iota_tokens(5, 0), 7));  // capped at max_model_len = 5 + 7
  h.add(request(3, iota_tokens(5, 0), 7));  // finished by the caller
  h.finish_at_next_token(2);
  h.run_to_completion();
  EXPECT_EQ(h.finished_tokens().at(0).size(), 10u);
  EXPECT_EQ(h.finished_tokens().at(1).size(), 12u);
  EXPECT_EQ(h.finished_tokens().at(2).size(), 6u);
  ASSERT_EQ(h.capped().size(), 2u);
  EXPECT_EQ(h.capped()[0].request_id, 1);
  EXPECT_EQ(h.capped()[1].request_id, 2);
  EXPECT_EQ(h.sched().block_manager().n_used(), 0);
}

// Random submit / step / abort / finish with tight blocks so preemption and
// eviction happen; invariants are checked after every step by the harness.
TEST(SchedulerTest, RandomSoakKeepsInvariants) {
  for (const bool priority : {false, true}) {
    for (const uint64_t seed : {11u, 12u, 13u}) {
      SCOPED_TRACE(::testing::Message() << "seed " << seed << " priority " << priority);
      std::mt19937_64 rng(seed);
      SchedulerConfig c = small_config();
      c.n_blocks = 24;
      c.max_num_batched_tokens = 24;
      c.max_num_seqs = 6;
      c.max_model_len = 64;
      c.policy = priority ? SchedulePolicy::kPriority : SchedulePolicy::kFcfs;
      Harness h(c);
      const std::vector<std::vector<int32_t>> prefixes = {iota_tokens(16, 0), iota_tokens(16, 100)};
      int64_t next_request = 0;
      std::map<int64_t, SchedRequest> accepted;
      for (int step = 0; step < 400; ++step) {
        if (rng() % 3 == 0 && step < 300) {  // submit
          std::vector<int32_t> prompt = prefixes[rng() % 2];
          prompt.resize(static_cast<size_t>(1 + rng() % 16));
          const int n_tail = static_cast<int>(rng() % 20);
          for (int i = 0; i < n_tail; ++i) prompt.push_back(static_cast<int32_t>(rng() % 7));
          const int max_tokens = 1 + static_cast<int>(rng() % 30);
          const int n = 1 + static_cast<int>(rng() % 3);
          const std::string salt = rng() % 4 == 0 ? "t1" : "";
          const SchedRequest r =
              request(next_request++, prompt, max_tokens, n, static_cast<int>(rng() % 3), salt);
          const Status st = h.try_add(r);
          if (static_cast<int>(prompt.size()) + max_tokens > c.max_model_len) {
            EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
          } else {
            ASSERT_TRUE(st.ok()) << st;
            accepted[r.request_id] = r;
          }
        }
        const std::set<int64_t>& live = h.live_requests();
        if (rng() % 10 == 0 && !live.empty()) {  // abort a random request
          const int64_t r = *std::next(live.begin(), static_cast<long>(rng() % live.size()));
          EXPECT_TRUE(h.abort(r));
        }
        if (rng() % 6 == 0 && !live.empty()) {  // the caller finishes a random sequence
          const int64_t r = *std::next(live.begin(), static_cast<long>(rng() % live.size()));
          h.finish_at_next_token(h.sched().sequences_of(r).back());
        }
        h.step();
        ASSERT_FALSE(::testing::Test::HasFatalFailure());
      }
      h.run_to_completion(5000);
      // Whatever preemptions and evictions happened, every sequence that ran
      // to max_tokens holds exactly the tokens of an uninterrupted run.
      EXPECT_GT(h.capped().size(), 10u);
      for (const FinishedSeq& f : h.capped()) {
        const SchedRequest& r = accepted.at(f.request_id);
        EXPECT_EQ(h.finished_tokens().at(f.seq_id),
                  expected_tokens(r.request_id, f.index, r.prompt, r.max_tokens))
            << "request " << r.request_id << " sample " << f.index;
      }
      EXPECT_FALSE(h.sched().has_unfinished());
      const BlockManager& bm = h.sched().block_manager();
      EXPECT_EQ(bm.n_used(), 0);
      EXPECT_EQ(bm.n_available(), c.n_blocks);
      EXPECT_DOUBLE_EQ(h.sched().stats().kv_usage, 0.0);
      EXPECT_TRUE(bm.check_invariants().ok());
      EXPECT_GT(h.sched().stats().n_preemptions, 0);
      EXPECT_GT(h.sched().stats().n_prefix_hit_tokens, 0);
    }
  }
}

}  // namespace
}  // namespace moeserve
