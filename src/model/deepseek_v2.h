// DeepSeek-V2/V3 (DeepseekV2ForCausalLM, DeepseekV3ForCausalLM): MLA attention
// over a paged latent cache, YaRN RoPE, dense SwiGLU and DeepSeekMoE layers.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"
#include "model/deepseek_weights.h"
#include "model/forward_batch.h"
#include "model/kv_cache.h"
#include "model/model_config.h"

namespace moeserve {

class Checkpoint;

class DeepseekV2Model {
 public:
  // Loads config.json and the safetensors weights of `model_dir` onto `backend`.
  static StatusOr<std::unique_ptr<DeepseekV2Model>> load(const std::string& model_dir,
                                                         Backend& backend);
  // As above, for a config and checkpoint already opened (and planned).
  static StatusOr<std::unique_ptr<DeepseekV2Model>> load(ModelConfig config,
                                                         const Checkpoint& checkpoint,
                                                         Backend& backend,
                                                         const LoadProgress& progress = {});
  // An upper bound on the activation memory of one forward() over `n_tokens`
  // tokens with `n_logit_rows` logit rows (F32 tensors of the widest layer).
  static int64_t activation_bytes(const ModelConfig& config, int64_t n_tokens,
                                  int64_t n_logit_rows);
  // For weights made elsewhere (benchmarks build random ones).
  DeepseekV2Model(ModelConfig config, DeepseekWeights weights, Backend& backend);

  const ModelConfig& config() const { return config_; }
  const WeightBytes& weight_bytes() const { return weights_.bytes; }
  Backend& backend() const { return backend_; }
  // Width of one KV-cache row: kv_lora_rank + qk_rope_head_dim.
  int kv_row_width() const { return config_.kv_lora_rank + config_.qk_rope_head_dim; }
  // Positions the RoPE table covers (max_position_embeddings).
  int64_t max_positions() const { return rope_table_.dim(0); }

  // Runs one step over `batch`, writing its tokens into `cache`. Returns the
  // logits of batch.logits_rows: [n_logits, vocab] F32 on the backend.
  StatusOr<Tensor> forward(const ForwardBatch& batch, const KvCache& cache);

 private:
  struct Step;  // per-step activations and metadata
  void attention(Step& s, int layer, const Tensor& x, const Tensor& out, const KvCache& cache);
  void mlp(Step& s, int layer, const Tensor& x, const Tensor& out);
  Status validate(const ForwardBatch& batch, const KvCache& cache) const;

  ModelConfig config_;
  DeepseekWeights weights_;
  Backend& backend_;
  Tensor rope_table_;  // [max_positions, rope_dim / 2, 2]
};

}  // namespace moeserve
