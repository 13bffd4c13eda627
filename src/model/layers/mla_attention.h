// Multi-head latent attention (DeepSeek-V2 §2.1) in the weight-absorbed form:
// keys and values are one shared latent row per token, [c_kv | k_rope], held
// in the paged cache; W_UK is absorbed into the queries and W_UV applied to
// the attention output, so attention runs over the latent rows directly.
#pragma once

#include <optional>

#include "model/layers/linear.h"
#include "model/layers/norm.h"
#include "model/step_context.h"

namespace moeserve {

class MlaAttention {
 public:
  struct Dims {
    int64_t n_heads = 0;  // this rank's heads
    int64_t nope = 0;     // qk_nope_head_dim
    int64_t rope = 0;     // qk_rope_head_dim
    int64_t latent = 0;   // kv_lora_rank
    int64_t v = 0;        // v_head_dim
    int64_t q_lora = 0;   // q_lora_rank, 0 without the low-rank query path
    float softmax_scale = 1.0f;
  };
  struct Weights {
    // Queries: the low-rank pair (q_a, q_a_norm, q_b) or one q_proj.
    Linear q_a;                // [q_lora, d], replicated
    RmsNorm q_a_norm;          // [q_lora]
    ColumnParallelLinear q_b;  // [H (nope + rope), q_lora], by heads
    ColumnParallelLinear q_proj;
    Linear kv_a;               // [latent + rope, d], replicated
    RmsNorm kv_a_norm;         // [latent]
    Tensor w_uk_t;             // [H, latent, nope]
    Tensor w_uv;               // [H, v, latent]
    RowParallelLinear o_proj;  // [d, H v]
  };
  MlaAttention() = default;
  MlaAttention(Dims dims, Weights w, Tensor rope_table)
      : dims_(dims), w_(std::move(w)), rope_table_(std::move(rope_table)) {}

  static void workspace(ArenaSize& size, int64_t n, const Dims& dims);
  // Writes the step's tokens into `cache` (this layer's [n_blocks, block_size,
  // latent + rope]) and attends. x: [n, d] normed hidden states; out: [n, d].
  void forward(Backend& be, StepContext& ctx, const Tensor& x, const Tensor& cache,
               const Tensor& out) const;

 private:
  Dims dims_;
  Weights w_;
  Tensor rope_table_;  // [max_positions, rope / 2, 2]
};

}  // namespace moeserve
