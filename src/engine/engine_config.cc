#include "moeserve/engine_config.h"

#include "absl/strings/str_cat.h"

namespace moeserve {
namespace {

// `field = value: rule`, the value quoted when it is text.
Status bad(const char* field, int64_t value, const std::string& rule) {
  return absl::InvalidArgumentError(absl::StrCat(field, " = ", value, ": ", rule));
}
Status bad(const char* field, double value, const std::string& rule) {
  return absl::InvalidArgumentError(absl::StrCat(field, " = ", value, ": ", rule));
}
Status bad(const char* field, int value, const std::string& rule) {
  return bad(field, int64_t{value}, rule);
}
Status bad(const char* field, const std::string& value, const std::string& rule) {
  return absl::InvalidArgumentError(absl::StrCat(field, " = \"", value, "\": ", rule));
}

bool has_control_char(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

}  // namespace

Status EngineConfig::validate() const {
  if (model_dir.empty()) return bad("model_dir", model_dir, "must be set");
  if (has_control_char(model_dir)) {
    return bad("model_dir", model_dir, "must not contain control characters");
  }
  if (has_control_char(tokenizer_dir)) {
    return bad("tokenizer_dir", tokenizer_dir, "must not contain control characters");
  }
  // The model id travels in JSON bodies, response headers and metric labels.
  if (has_control_char(served_model_name)) {
    return bad("served_model_name", served_model_name, "must not contain control characters");
  }
  if (backend != "cpu" && backend != "cuda" && backend != "auto") {
    return bad("backend", backend, "must be cpu, cuda or auto");
  }
  if (threads < 0) return bad("threads", threads, "must be >= 0 (0 = all cores)");
  if (block_size < 1 || block_size > 1024)
    return bad("block_size", block_size, "must be in [1, 1024]");
  if (kv_cache_blocks < 0) {
    return bad("kv_cache_blocks", kv_cache_blocks, "must be >= 0 (0 = size by kv_cache_memory_mb)");
  }
  if (kv_cache_memory_mb < 0) {
    return bad("kv_cache_memory_mb", kv_cache_memory_mb,
               "must be >= 0 (0 = max_num_seqs sequences of max_model_len)");
  }
  if (kv_cache_dtype != "bf16" && kv_cache_dtype != "f32") {
    return bad("kv_cache_dtype", kv_cache_dtype, "must be bf16 or f32");
  }
  if (!(gpu_memory_fraction > 0 && gpu_memory_fraction <= 1)) {
    return bad("gpu_memory_fraction", gpu_memory_fraction, "must be in (0, 1]");
  }
  if (activation_dtype != "auto" && activation_dtype != "bf16" && activation_dtype != "f32") {
    return bad("activation_dtype", activation_dtype, "must be auto, bf16 or f32");
  }
  if (!(memory_limit_gb >= 0 && memory_limit_gb < 1e6)) {
    return bad("memory_limit_gb", memory_limit_gb, "must be in [0, 1e6) (0 = cgroup or machine)");
  }
  if (max_num_seqs < 1) return bad("max_num_seqs", max_num_seqs, "must be >= 1");
  if (max_num_batched_tokens < max_num_seqs) {
    // Every running sequence must be able to decode one token per step.
    return bad("max_num_batched_tokens", max_num_batched_tokens,
               absl::StrCat("must be >= max_num_seqs (", max_num_seqs, ")"));
  }
  if (max_model_len < 0) {
    return bad("max_model_len", max_model_len, "must be >= 0 (0 = the model's limit)");
  }
  if (!enable_chunked_prefill && max_model_len > 0 && max_num_batched_tokens < max_model_len) {
    // Without chunking a whole prompt must fit in one step. (With max_model_len = 0 the
    // engine checks this against the model's limit once it is known.)
    return bad("max_num_batched_tokens", max_num_batched_tokens,
               absl::StrCat("must be >= max_model_len (", max_model_len,
                            ") when enable_chunked_prefill is false"));
  }
  if (max_n < 1 || max_n > 1024) return bad("max_n", max_n, "must be in [1, 1024]");
  if (max_waiting_requests < 1) {
    return bad("max_waiting_requests", max_waiting_requests, "must be >= 1");
  }
  if (scheduling_policy != "fcfs" && scheduling_policy != "priority") {
    return bad("scheduling_policy", scheduling_policy, "must be fcfs or priority");
  }
  return absl::OkStatus();
}

}  // namespace moeserve
