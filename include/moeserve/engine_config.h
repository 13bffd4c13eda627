// Settings of one Engine: which model, on which backend, and the batching and KV-cache limits.
// The server fills it from its config file and flags (server/serve_config.h); validate() names
// the offending field.
#pragma once

#include <cstdint>
#include <string>

#include "moeserve/status.h"

namespace moeserve {

struct EngineConfig {
  std::string model_dir;          // Hugging Face directory: config.json + *.safetensors
  std::string tokenizer_dir;      // tokenizer.json + tokenizer_config.json; "" = model_dir
  std::string served_model_name;  // the API's model id; "" = the model directory's name
  std::string backend = "auto";   // cpu, cuda or auto (CUDA when a GPU is usable)
  int threads = 0;                // CPU backend threads; 0 = all cores

  // KV cache: `kv_cache_blocks` blocks if > 0, else as many as `kv_cache_memory_mb` holds if
  // > 0, else what max_num_seqs sequences of max_model_len tokens need.
  int block_size = 16;
  int kv_cache_blocks = 0;
  int64_t kv_cache_memory_mb = 256;
  std::string kv_cache_dtype = "bf16";  // bf16 (half the memory) or f32
  // Activations: auto (the backend's choice: f32 on the CPU, bf16 on CUDA), f32 or bf16.
  std::string activation_dtype = "auto";
  // Of the GPU's memory, reserved by the CUDA backend at start-up as the pool for weights, the
  // activation arena and the KV cache (with kv_cache_blocks and kv_cache_memory_mb both 0, the
  // KV cache takes what the pool has left).
  double gpu_memory_fraction = 0.9;
  // Memory the model, KV cache and activations must fit in, checked before anything is
  // allocated; 0 = the cgroup's limit (in a container) or else the machine's memory.
  double memory_limit_gb = 0;

  // Continuous batching.
  int max_num_batched_tokens = 2048;  // tokens computed in one step
  int max_num_seqs = 64;              // sequences in one step
  int max_model_len = 0;              // prompt + output of one sequence; 0 = the model's limit
  int max_n = 16;                     // largest `n` a request may ask for
  int max_waiting_requests = 256;     // queued requests beyond this are refused (queue full)
  bool enable_chunked_prefill = true;
  bool enable_prefix_caching = true;
  std::string scheduling_policy = "fcfs";  // fcfs or priority
  // Run every step eagerly: no CUDA graphs for decode steps (which the engine otherwise
  // captures per batch-size bucket on a backend that supports them, docs/cuda_backend.md).
  bool enforce_eager = false;

  bool log_steps = false;  // one debug log line per engine step (batch composition)

  Status validate() const;  // defined in engine/engine_config.cc
};

}  // namespace moeserve
