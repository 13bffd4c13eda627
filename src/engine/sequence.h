// One sequence the scheduler tracks: a prompt plus the tokens generated so
// far, and how many of them already have KV in the cache.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moeserve {

enum class SeqStatus {
  kPending,  // n>1 sibling waiting for its group leader's prompt to be computed
  kWaiting,  // queued; holds no blocks
  kRunning,  // holds blocks; scheduled every step while the budget allows
};

struct Sequence {
  int64_t id = 0;               // unique per sequence, assigned by the scheduler
  int64_t request_id = 0;       // the caller's request; n>1 requests have n sequences
  int index = 0;                // sample index within the request, 0..n-1
  std::vector<int32_t> tokens;  // [n_tokens] prompt then generated tokens
  int n_prompt = 0;             // prompt tokens at submission
  int max_tokens = 0;           // generated tokens allowed
  int priority = 0;             // lower runs first under the priority policy
  uint64_t arrival = 0;         // submission order, for FCFS and ties
  std::string cache_salt;       // prefix-cache namespace (tenant)
  SeqStatus status = SeqStatus::kWaiting;
  int n_computed = 0;     // tokens whose KV is in the cache
  int n_cached = 0;       // of those, taken from the prefix cache or a fork
                          // at the last admission
  int n_preemptions = 0;  // times preempted (recompute)
  int64_t leader = -1;    // for siblings of an n>1 group: the sequence whose
                          // prompt blocks they share

  int n_tokens() const { return static_cast<int>(tokens.size()); }
  int n_generated() const { return n_tokens() - n_prompt; }
  int n_uncomputed() const { return n_tokens() - n_computed; }
  bool in_prefill() const { return n_uncomputed() > 1; }
};

}  // namespace moeserve
