// Weights of a DeepSeek-V2/V3 model, laid out for the forward pass.
//
// Every weight stays in the dtype the checkpoint stores (F32, BF16, F16, or
// FP8 E4M3 with its 128×128 block scales). A weight used as stored is handed
// to Backend::prepare_weight straight from the file's mapping, so on the CPU
// the page cache is the weight memory. Weights the forward pass needs in
// another layout (gate and up rows stacked, experts stacked, kv_b_proj split
// into its absorbed halves) are repacked once into a buffer of their own, and
// the original pages are released, so nothing is held twice.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
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

// Bytes of the prepared weights, block scales included.
struct WeightBytes {
  std::map<DType, int64_t> by_dtype;  // every prepared tensor, by its dtype
  int64_t mapped = 0;                 // of which used in place from the checkpoint's pages
  int64_t repacked = 0;               // of which copied into buffers of their own
  int64_t checkpoint = 0;             // bytes of checkpoint tensors read to make them
  int64_t total() const { return mapped + repacked; }
  std::string describe() const;  // "3.31 GiB: BF16 3.30 GiB, F32 12.0 MiB; 2.10 GiB mapped, …"
};

struct DeepseekWeights {
  Tensor embed;  // [vocab, hidden]
  std::vector<DeepseekLayerWeights> layers;
  Tensor final_norm;  // [hidden]
  Tensor lm_head;     // [vocab, hidden] (the embedding when tied)
  WeightBytes bytes;
};

// Called as loading proceeds with (checkpoint bytes done, bytes in all); may
// be called from several loading threads, one at a time.
using LoadProgress = std::function<void(int64_t done, int64_t total)>;
// A LoadProgress that logs "loading weights: done / total (rate)" every
// `interval_s` seconds.
LoadProgress periodic_load_log(double interval_s = 5.0);

// Reads and validates all weights the config needs from `checkpoint`.
StatusOr<DeepseekWeights> load_deepseek_weights(const ModelConfig& config,
                                                const Checkpoint& checkpoint, Backend& backend,
                                                const LoadProgress& progress = {});

// What load_deepseek_weights would prepare, from the checkpoint's headers and
// shapes alone: no weight byte is read and nothing is allocated. The same
// validation runs, so a checkpoint that would fail to load fails here. With
// `backend`, the bytes are those it will hold (Backend::prepared_bytes): a
// device backend uploads every weight and may store it in another dtype.
StatusOr<WeightBytes> plan_deepseek_weights(const ModelConfig& config, const Checkpoint& checkpoint,
                                            const Backend* backend = nullptr);

}  // namespace moeserve
