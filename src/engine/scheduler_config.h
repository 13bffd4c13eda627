// Knobs of the continuous-batching scheduler and its KV block manager.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace moeserve {

enum class SchedulePolicy {
  kFcfs,      // first come, first served (by arrival)
  kPriority,  // lower `priority` value first, ties by arrival
};

struct SchedulerConfig {
  int n_blocks = 0;                    // KV-cache blocks (from the memory budget)
  int block_size = 64;                 // tokens per KV block
  int max_num_batched_tokens = 8192;   // token budget of one step
  int max_num_seqs = 256;              // sequences in one step
  int max_model_len = 8192;            // prompt + generated tokens of one sequence
  int max_n = 16;                      // largest `n` (samples per request)
  bool enable_chunked_prefill = true;  // split long prompts across steps
  bool enable_prefix_caching = true;   // reuse cached full blocks
  SchedulePolicy policy = SchedulePolicy::kFcfs;

  // Checks every field; the message names the field, its value and the rule.
  Status validate() const {
    auto bad = [](const char* field, int64_t value, const std::string& rule) {
      return absl::InvalidArgumentError(
          absl::StrCat("SchedulerConfig.", field, " = ", value, ": ", rule));
    };
    if (n_blocks <= 0) return bad("n_blocks", n_blocks, "must be > 0");
    if (block_size <= 0) return bad("block_size", block_size, "must be > 0");
    if (max_num_seqs <= 0) return bad("max_num_seqs", max_num_seqs, "must be > 0");
    if (max_model_len <= 0) return bad("max_model_len", max_model_len, "must be > 0");
    if (max_n <= 0) return bad("max_n", max_n, "must be > 0");
    if (max_num_batched_tokens < max_num_seqs) {
      // Every running sequence must be able to decode one token per step.
      return bad("max_num_batched_tokens", max_num_batched_tokens,
                 absl::StrCat("must be >= max_num_seqs (", max_num_seqs, ")"));
    }
    if (!enable_chunked_prefill && max_num_batched_tokens < max_model_len) {
      // Without chunking a whole prompt must fit in one step.
      return bad("max_num_batched_tokens", max_num_batched_tokens,
                 absl::StrCat("must be >= max_model_len (", max_model_len,
                              ") when chunked prefill is off"));
    }
    if (policy != SchedulePolicy::kFcfs && policy != SchedulePolicy::kPriority) {
      return bad("policy", static_cast<int64_t>(policy), "unknown policy");
    }
    return absl::OkStatus();
  }
};

}  // namespace moeserve
