// Weights of a DeepSeek-V2/V3 model, laid out for the forward pass.
//
// Loading validates every tensor against the config, dequantizes FP8 block-
// scaled weights, splits kv_b_proj into its absorbed halves and stacks the
// routed experts, then uploads everything to the backend once.
#pragma once

#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/model_config.h"

namespace moeserve {

class Checkpoint;

struct DeepseekLayerWeights {
  Tensor attn_norm;  // [hidden]
  Tensor ffn_norm;   // [hidden]
  // Queries: either the low-rank pair (q_a, q_a_norm, q_b) or q_proj.
  Tensor q_a;        // [q_lora_rank, hidden]
  Tensor q_a_norm;   // [q_lora_rank]
  Tensor q_b;        // [n_heads * (nope + rope), q_lora_rank]
  Tensor q_proj;     // [n_heads * (nope + rope), hidden]
  Tensor kv_a;       // [kv_lora_rank + rope, hidden]
  Tensor kv_a_norm;  // [kv_lora_rank]
  Tensor w_uk_t;     // [n_heads, kv_lora_rank, nope]: absorbed into the queries
  Tensor w_uv;       // [n_heads, v_head_dim, kv_lora_rank]: applied to attention output
  Tensor o_proj;     // [hidden, n_heads * v_head_dim]
  // Dense SwiGLU MLP (layers before first_k_dense_replace, or off moe_layer_freq).
  Tensor mlp_gate_up;  // [2 * intermediate, hidden]
  Tensor mlp_down;     // [hidden, intermediate]
  // MoE.
  Tensor router;           // [n_routed_experts, hidden] F32
  Tensor router_bias;      // [n_routed_experts] F32, undefined unless noaux_tc
  Tensor experts_gate_up;  // [n_routed_experts, 2 * moe_intermediate, hidden]
  Tensor experts_down;     // [n_routed_experts, hidden, moe_intermediate]
  Tensor shared_gate_up;   // [2 * moe_intermediate * n_shared, hidden], undefined if none
  Tensor shared_down;      // [hidden, moe_intermediate * n_shared]
};

struct DeepseekWeights {
  Tensor embed;  // [vocab, hidden]
  std::vector<DeepseekLayerWeights> layers;
  Tensor final_norm;  // [hidden]
  Tensor lm_head;     // [vocab, hidden] (the embedding when tied)
};

// Reads and validates all weights the config needs from `checkpoint`.
StatusOr<DeepseekWeights> load_deepseek_weights(const ModelConfig& config,
                                                const Checkpoint& checkpoint, Backend& backend);

// Host-side helpers shared with tests and benchmarks.
// W[i, j] = fp8[i, j] · scale_inv[i / block_n, j / block_k] as F32.
StatusOr<Tensor> dequantize_fp8_block(const Tensor& fp8, const Tensor& scale_inv, int block_n,
                                      int block_k, const std::string& name);

}  // namespace moeserve
