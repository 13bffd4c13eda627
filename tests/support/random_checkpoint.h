// Writes DeepSeek-V2-shaped checkpoints of random weights, of any size, for
// tests and benchmarks that need real files (loading, memory, speed). Tensors
// are streamed to disk, so writing one costs no more memory than a buffer.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace moeserve {

struct RandomCheckpointSpec {
  int vocab_size = 4096;
  int hidden_size = 256;
  int intermediate_size = 512;      // dense MLP (layers before first_k_dense_replace)
  int moe_intermediate_size = 128;  // each routed and shared expert
  int num_hidden_layers = 2;
  int first_k_dense_replace = 1;
  int num_attention_heads = 4;
  int q_lora_rank = 0;  // 0: q_proj, as DeepSeek-V2-Lite
  int kv_lora_rank = 128;
  int qk_nope_head_dim = 64;
  int qk_rope_head_dim = 32;
  int v_head_dim = 64;
  int n_routed_experts = 8;
  int n_shared_experts = 2;
  int num_experts_per_tok = 2;
  int max_position_embeddings = 1024;
  // Matrices (not the embedding, the LM head or the router) as F8_E4M3 with
  // F32 128×128 weight_scale_inv blocks, as DeepSeek-V3 ships; else BF16.
  bool fp8 = false;
  uint64_t seed = 1;
};

// Writes config.json and model.safetensors into `dir` (created if missing);
// returns the bytes of model.safetensors.
StatusOr<int64_t> write_random_checkpoint(const std::string& dir, const RandomCheckpointSpec& spec);

// The DeepSeek-V2-Lite shape (hidden 2048, 16 heads, kv_lora 512, 64 experts
// of 1408, 2 shared, top-6, vocab 102400) cut to `n_layers` layers, the first
// one dense.
RandomCheckpointSpec v2_lite_spec(int n_layers);

}  // namespace moeserve
