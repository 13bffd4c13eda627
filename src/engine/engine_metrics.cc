#include "engine/engine_metrics.h"

#include <vector>

namespace moeserve {
namespace {

// Bucket bounds of vLLM's histograms, so dashboards built for it read ours the same way.
const std::vector<double> kTtftBuckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                          0.25,  0.5,   0.75, 1.0,  2.5,  5.0,  7.5,  10.0,
                                          20.0,  40.0,  80.0, 160., 640., 2560.};
const std::vector<double> kItlBuckets = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                         0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
const std::vector<double> kRequestBuckets = {0.3,  0.5,  0.8,  1.0,  1.5,  2.0,   2.5,
                                             5.0,  10.0, 15.0, 20.0, 30.0, 40.0,  50.0,
                                             60.0, 120., 240., 480., 960., 1920., 7680.};
const std::vector<double> kBatchBuckets = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
const std::vector<double> kStepBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                          0.1,   0.25,   0.5,   1.0,  2.5,   5.0};

}  // namespace

EngineMetrics EngineMetrics::create(MetricsRegistry& registry, const std::string& model_name,
                                    std::function<EngineStats()> stats, const MemoryUsage& memory) {
  EngineMetrics m;
  const MetricLabels model = {{"model_name", model_name}};
  for (const auto& [kind, bytes] : {std::pair<const char*, int64_t>{"weights", memory.weights},
                                    {"kv_cache", memory.kv_cache},
                                    {"activations", memory.activations},
                                    {"other", memory.other}}) {
    registry
        .gauge("moeserve:memory_bytes",
               "Memory planned at load: weights, KV cache, activation bound, rest of the process.",
               {{"model_name", model_name}, {"kind", kind}})
        .set(static_cast<double>(bytes));
  }
  registry
      .gauge("moeserve:resident_memory_after_load_bytes",
             "Resident memory of the process measured once the model was loaded.", model)
      .set(static_cast<double>(memory.rss_after_load));
  m.prompt_tokens = &registry.counter("vllm:prompt_tokens", "Prefill tokens processed.", model);
  m.generation_tokens =
      &registry.counter("vllm:generation_tokens", "Generation tokens processed.", model);
  m.preemptions = &registry.counter("vllm:num_preemptions",
                                    "Sequences preempted (KV blocks freed, recomputed).", model);
  m.prefix_queries = &registry.counter("vllm:prefix_cache_queries",
                                       "Prefix cache queries, in prompt tokens looked up.", model);
  m.prefix_hits = &registry.counter("vllm:prefix_cache_hits",
                                    "Prefix cache hits, in prompt tokens found cached.", model);
  for (const FinishReason reason :
       {FinishReason::kStop, FinishReason::kLength, FinishReason::kAbort, FinishReason::kError}) {
    m.request_success.at(static_cast<size_t>(reason)) = &registry.counter(
        "vllm:request_success", "Finished requests, by finish reason.",
        {{"model_name", model_name}, {"finished_reason", finish_reason_name(reason)}});
  }
  m.ttft =
      &registry.histogram("vllm:time_to_first_token_seconds",
                          "Time from arrival to the first generated token.", kTtftBuckets, model);
  m.itl = &registry.histogram("vllm:inter_token_latency_seconds",
                              "Time between consecutive tokens of a sequence.", kItlBuckets, model);
  m.e2e = &registry.histogram("vllm:e2e_request_latency_seconds",
                              "Time from arrival to the last token.", kRequestBuckets, model);
  m.queue_time =
      &registry.histogram("vllm:request_queue_time_seconds",
                          "Time from arrival to first being scheduled.", kRequestBuckets, model);
  m.steps = &registry.counter("moeserve:engine_steps", "Engine steps run.", model);
  m.step_seqs = &registry.histogram("moeserve:step_sequences", "Sequences carried by one step.",
                                    kBatchBuckets, model);
  m.step_tokens = &registry.histogram("moeserve:step_tokens", "Tokens computed by one step.",
                                      kBatchBuckets, model);
  m.step_time = &registry.histogram("moeserve:step_duration_seconds",
                                    "Wall time of one engine step.", kStepBuckets, model);
  auto stat = [stats](auto field) {
    return [stats, field] { return static_cast<double>(stats().*field); };
  };
  registry.gauge_fn("vllm:num_requests_running", "Sequences holding KV blocks.", model,
                    stat(&EngineStats::n_running));
  registry.gauge_fn("vllm:num_requests_waiting", "Sequences waiting to be scheduled.", model,
                    stat(&EngineStats::n_waiting));
  registry.gauge_fn("vllm:kv_cache_usage_perc", "Fraction of KV-cache blocks in use (0-1).", model,
                    stat(&EngineStats::kv_usage));
  registry.gauge_fn("moeserve:kv_cache_blocks", "KV-cache blocks in total.", model,
                    stat(&EngineStats::n_blocks));
  registry.gauge_fn("moeserve:kv_cache_blocks_used", "KV-cache blocks referenced.", model,
                    stat(&EngineStats::n_blocks_used));
  registry.gauge_fn("moeserve:requests_unfinished", "Requests submitted and not yet finished.",
                    model, stat(&EngineStats::n_requests));
  return m;
}

}  // namespace moeserve
