// The engine's Prometheus metrics: vLLM's names (and bucket bounds) where vLLM has the concept,
// so dashboards and autoscalers built for vLLM read moeserve the same way; moeserve:* for the
// rest. Registered once per engine; updated by the engine thread.
#pragma once

#include <array>
#include <functional>
#include <string>

#include "common/metrics.h"
#include "moeserve/engine.h"

namespace moeserve {

struct EngineMetrics {
  Counter* prompt_tokens = nullptr;      // vllm:prompt_tokens
  Counter* generation_tokens = nullptr;  // vllm:generation_tokens
  Counter* preemptions = nullptr;        // vllm:num_preemptions
  Counter* prefix_queries = nullptr;     // vllm:prefix_cache_queries (tokens)
  Counter* prefix_hits = nullptr;        // vllm:prefix_cache_hits (tokens)
  // vllm:request_success{finished_reason}, indexed by FinishReason.
  std::array<Counter*, 4> request_success{};
  Histogram* ttft = nullptr;         // vllm:time_to_first_token_seconds
  Histogram* itl = nullptr;          // vllm:inter_token_latency_seconds
  Histogram* e2e = nullptr;          // vllm:e2e_request_latency_seconds
  Histogram* queue_time = nullptr;   // vllm:request_queue_time_seconds
  Counter* steps = nullptr;          // moeserve:engine_steps
  Histogram* step_seqs = nullptr;    // moeserve:step_sequences
  Histogram* step_tokens = nullptr;  // moeserve:step_tokens
  Histogram* step_time = nullptr;    // moeserve:step_duration_seconds

  // Registers everything in `registry` labelled model_name=`model`; the gauges (running,
  // waiting, KV usage, …) read `stats` at scrape time. `memory` (fixed once loaded) sets
  // moeserve:memory_bytes{kind} and moeserve:resident_memory_after_load_bytes.
  static EngineMetrics create(MetricsRegistry& registry, const std::string& model,
                              std::function<EngineStats()> stats, const MemoryUsage& memory);
};

}  // namespace moeserve
