// EngineConfig::validate(): each rule rejects with a message naming `field = value: rule`, and
// the values at the edges of each rule pass.
#include "moeserve/engine_config.h"

#include <functional>
#include <string>

#include "gtest/gtest.h"

namespace moeserve {
namespace {

EngineConfig valid() {
  EngineConfig c;
  c.model_dir = "models/tiny";
  return c;
}

// The error of `valid()` changed by `edit`; "" when it validates.
std::string error_of(const std::function<void(EngineConfig&)>& edit) {
  EngineConfig c = valid();
  edit(c);
  const Status s = c.validate();
  if (s.ok()) return "";
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  return std::string(s.message());
}

TEST(EngineConfigTest, DefaultsWithAModelAreValid) {
  EXPECT_TRUE(valid().validate().ok()) << valid().validate();
}

TEST(EngineConfigTest, ModelDirIsRequired) {
  EXPECT_EQ(EngineConfig().validate().message(), "model_dir = \"\": must be set");
  EXPECT_EQ(error_of([](EngineConfig& c) { c.model_dir = "a\nb"; }),
            "model_dir = \"a\nb\": must not contain control characters");
}

TEST(EngineConfigTest, StringsWithoutControlCharacters) {
  EXPECT_EQ(error_of([](EngineConfig& c) { c.served_model_name = "x\r\nSet-Cookie: y"; }),
            "served_model_name = \"x\r\nSet-Cookie: y\": must not contain control characters");
  EXPECT_EQ(error_of([](EngineConfig& c) { c.tokenizer_dir = std::string("t\0", 2); }),
            std::string("tokenizer_dir = \"t") + '\0' + "\": must not contain control characters");
  EXPECT_EQ(error_of([](EngineConfig& c) { c.served_model_name = "deepseek-ai/DeepSeek-V3"; }), "");
}

TEST(EngineConfigTest, Backend) {
  for (const char* ok : {"cpu", "cuda", "auto"}) {
    EXPECT_EQ(error_of([ok](EngineConfig& c) { c.backend = ok; }), "") << ok;
  }
  EXPECT_EQ(error_of([](EngineConfig& c) { c.backend = "gpu"; }),
            "backend = \"gpu\": must be cpu, cuda or auto");
  EXPECT_EQ(error_of([](EngineConfig& c) { c.backend = "CPU"; }),
            "backend = \"CPU\": must be cpu, cuda or auto");
}

TEST(EngineConfigTest, Threads) {
  EXPECT_EQ(error_of([](EngineConfig& c) { c.threads = 0; }), "");
  EXPECT_EQ(error_of([](EngineConfig& c) { c.threads = 7; }), "");
  EXPECT_EQ(error_of([](EngineConfig& c) { c.threads = -1; }),
            "threads = -1: must be >= 0 (0 = all cores)");
}

TEST(EngineConfigTest, BlockSize) {
  EXPECT_EQ(error_of([](EngineConfig& c) { c.block_size = 1; }), "");
  EXPECT_EQ(error_of([](EngineConfig& c) { c.block_size = 1024; }), "");
  EXPECT_EQ(error_of([](EngineConfig& c) { c.block_size = 0; }),
            "block_size = 0: must be in [1, 1024]");
  EXPECT_EQ(error_of([](EngineConfig& c) { c.block_size = 1025; }),
            "block_size = 1025: must be in [1, 1024]");
}

TEST(EngineConfigTest, KvCacheSize) {
  EXPECT_EQ(error_of([](EngineConfig& c) { c.kv_cache_blocks = -3; }),
            "kv_cache_blocks = -3: must be >= 0 (0 = size by kv_cache_memory_mb)");
  // Both 0: the engine sizes the cache for max_num_seqs sequences of max_model_len.
  EXPECT_EQ(error_of([](EngineConfig& c) { c.kv_cache_memory_mb = 0; }), "");
  EXPECT_EQ(error_of([](EngineConfig& c) { c.kv_cache_memory_mb = -1; }),
            "kv_cache_memory_mb = -1: must be >= 0 (0 = max_num_seqs sequences of max_model_len)");
  // With an explicit block count the memory budget is unused and may be 0.
  EXPECT_EQ(error_of([](EngineConfig& c) {
              c.kv_cache_blocks = 10;
              c.kv_cache_memory_mb = 0;
            }),
            "");
  EXPECT_EQ(error_of([](EngineConfig& c) { c.kv_cache_memory_mb = int64_t{1} << 40; }), "");
}

TEST(EngineConfigTest, BatchLimits) {
  EXPECT_EQ(error_of([](EngineConfig& c) { c.max_num_seqs = 0; }),
            "max_num_seqs = 0: must be >= 1");
  EXPECT_EQ(error_of([](EngineConfig& c) {
              c.max_num_seqs = 1;
              c.max_num_batched_tokens = 1;
            }),
            "");
  EXPECT_EQ(error_of([](EngineConfig& c) {
              c.max_num_seqs = 64;
              c.max_num_batched_tokens = 63;
            }),
            "max_num_batched_tokens = 63: must be >= max_num_seqs (64)");
  EXPECT_EQ(error_of([](EngineConfig& c) {
              c.max_num_seqs = 64;
              c.max_num_batched_tokens = 64;
            }),
            "");
}

TEST(EngineConfigTest, MaxModelLen) {
  EXPECT_EQ(error_of([](EngineConfig& c) { c.max_model_len = -1; }),
            "max_model_len = -1: must be >= 0 (0 = the model's limit)");
  EXPECT_EQ(error_of([](EngineConfig& c) { c.max_model_len = 100000; }), "");
  // Without chunked prefill a whole prompt must fit into one step.
  EXPECT_EQ(error_of([](EngineConfig& c) {
              c.enable_chunked_prefill = false;
              c.max_model_len = 4096;
              c.max_num_batched_tokens = 2048;
            }),
            "max_num_batched_tokens = 2048: must be >= max_model_len (4096) when "
            "enable_chunked_prefill is false");
  EXPECT_EQ(error_of([](EngineConfig& c) {
              c.enable_chunked_prefill = false;
              c.max_model_len = 2048;
              c.max_num_batched_tokens = 2048;
            }),
            "");
}

TEST(EngineConfigTest, MaxN) {
  EXPECT_EQ(error_of([](EngineConfig& c) { c.max_n = 1; }), "");
  EXPECT_EQ(error_of([](EngineConfig& c) { c.max_n = 1024; }), "");
  EXPECT_EQ(error_of([](EngineConfig& c) { c.max_n = 0; }), "max_n = 0: must be in [1, 1024]");
  EXPECT_EQ(error_of([](EngineConfig& c) { c.max_n = 1025; }),
            "max_n = 1025: must be in [1, 1024]");
}

TEST(EngineConfigTest, MaxWaitingRequests) {
  EXPECT_EQ(error_of([](EngineConfig& c) { c.max_waiting_requests = 1; }), "");
  EXPECT_EQ(error_of([](EngineConfig& c) { c.max_waiting_requests = 0; }),
            "max_waiting_requests = 0: must be >= 1");
}

TEST(EngineConfigTest, SchedulingPolicy) {
  EXPECT_EQ(error_of([](EngineConfig& c) { c.scheduling_policy = "priority"; }), "");
  EXPECT_EQ(error_of([](EngineConfig& c) { c.scheduling_policy = "lifo"; }),
            "scheduling_policy = \"lifo\": must be fcfs or priority");
}

}  // namespace
}  // namespace moeserve
