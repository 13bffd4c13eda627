// DeepSeek-V2/V3 (DeepseekV2ForCausalLM, DeepseekV3ForCausalLM): MLA attention
// over a paged latent cache, YaRN RoPE, dense SwiGLU and DeepSeekMoE layers,
// written on the layers of model/layers/.
//
// A step is planned, then run: plan() validates a ForwardBatch and uploads it
// into the StepContext reserved for the engine's largest step; forward() then
// allocates nothing and does no host work.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/decode_graphs.h"
#include "model/deepseek_weights.h"
#include "model/forward_batch.h"
#include "model/kv_cache.h"
#include "model/layers/embedding.h"
#include "model/layers/fused_moe.h"
#include "model/layers/mla_attention.h"
#include "model/layers/mlp.h"
#include "model/layers/norm.h"
#include "model/model_config.h"
#include "model/step_context.h"
#include "parallel/communicator.h"

namespace moeserve {

class Checkpoint;

// How this process's model is sharded; a null group is one rank.
//  - Tensor parallelism (`tp`): MLA heads, the dense and shared MLPs' and every
//    expert's intermediate width split over the ranks (column-parallel in,
//    row-parallel out), one all-reduce after each attention and each MLP/MoE
//    branch; the latent KV cache, router, norms, embedding and LM head are
//    replicated.
//  - Expert parallelism (`ep`): each rank holds n_routed_experts / ep of the
//    routed experts; attention and dense layers are replicated, every rank
//    routes every token, computes its own experts' share (rank 0 also the
//    shared experts), and one all-reduce per MoE layer sums the shares. (With
//    data-parallel attention the tokens would differ per rank and travel by
//    all-to-all instead.)
// One of the two for now: TP × EP needs sub-groups.
struct ModelParallel {
  Communicator* tp = nullptr;  // must outlive the model
  Communicator* ep = nullptr;
};

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
  // The activation arena of a step of up to `n_tokens` tokens and
  // `n_logit_rows` logit rows with `activations`-typed activations: exactly
  // what forward() takes from it at most.
  static int64_t activation_bytes(const ModelConfig& config, int64_t n_tokens, int64_t n_logit_rows,
                                  DType activations = DType::kF32);
  // For weights made elsewhere (benchmarks build random ones).
  DeepseekV2Model(ModelConfig config, DeepseekWeights weights, Backend& backend);
  // Loaded weights sharded for `parallel` (this rank's share of the full weights; on a host
  // backend). InvalidArgument naming the config field when a width does not divide by the
  // tensor-parallel size, or the expert count by the expert-parallel size; Unimplemented for
  // FP8 block-scaled checkpoints under TP, and for TP and EP together.
  static StatusOr<std::unique_ptr<DeepseekV2Model>> create(ModelConfig config,
                                                           DeepseekWeights weights,
                                                           Backend& backend,
                                                           const ModelParallel& parallel);
  // The dims one of `tp_size` tensor-parallel ranks computes with (heads and intermediate
  // widths divided), for activation_bytes.
  static ModelConfig rank_config(const ModelConfig& config, int tp_size);

  const ModelConfig& config() const { return config_; }
  const WeightBytes& weight_bytes() const { return weight_bytes_; }
  Backend& backend() const { return backend_; }
  // Width of one KV-cache row: kv_lora_rank + qk_rope_head_dim.
  int kv_row_width() const { return config_.kv_lora_rank + config_.qk_rope_head_dim; }
  // Positions the RoPE table covers (max_position_embeddings).
  int64_t max_positions() const { return rope_table_.dim(0); }

  // Allocates the step context (metadata and activation arena) for steps up
  // to `limits`. plan() grows it when a batch exceeds it, so a caller that
  // never reserves still runs (with F32 activations); the engine reserves once
  // at start-up. limits.activations must be one the backend supports, and F32
  // under tensor or expert parallelism (the host collectives reduce F32).
  void reserve(const StepLimits& limits);
  // Bytes of the reserved arena (0 before the first reserve or plan).
  int64_t arena_bytes() const { return ctx_ ? ctx_->arena().capacity() : 0; }

  // Validates `batch` against the model and `cache` and uploads it. The
  // context stays valid until the next plan().
  StatusOr<StepContext*> plan(const ForwardBatch& batch, const KvCache& cache);
  // Runs the planned step, writing its tokens into `cache`. Returns the logits
  // of batch.logits_rows: [n_logits, vocab] F32 on the backend, a view of the
  // arena valid until the next plan(). Fails only when a tensor-parallel
  // all-reduce does (a peer died or stalled).
  StatusOr<Tensor> forward(StepContext& ctx, const KvCache& cache);
  // plan() then forward(); or, for a decode step with graphs on (below), the bucket's graph.
  StatusOr<Tensor> forward(const ForwardBatch& batch, const KvCache& cache);

  // Runs decode steps as graphs, one per batch-size bucket up to max_graph_batch sequences
  // (model/decode_graphs.h), where the backend supports_graphs, the model is one rank, a
  // context is reserved (its max_blocks / max_seqs columns per sequence) and the KV cache has a
  // scratch block; every other step stays eager. Logits are the same as eager ones wherever
  // the kernels chosen for the padded shape are (docs/cuda_backend.md, "CUDA graphs").
  void enable_decode_graphs(int max_graph_batch = 256);
  bool decode_graphs_active() const { return graphs_ != nullptr; }
  // Graphs captured so far: each bucket once, while the context and the cache stay the same.
  int64_t n_graph_captures() const { return n_graph_captures_; }

 private:
  struct DecoderLayer {
    RmsNorm attn_norm;
    MlaAttention attention;
    RmsNorm ffn_norm;
    DenseMlp mlp;  // dense layers
    FusedMoE moe;  // MoE layers
    bool is_moe = false;
  };
  DeepseekV2Model(ModelConfig config, WeightBytes bytes, Backend& backend);
  Status validate(const ForwardBatch& batch, const KvCache& cache) const;
  void reset_graphs();  // for a new context
  // The bucket a step replays, or nullopt: run it eagerly.
  std::optional<int> graph_bucket(const ForwardBatch& batch, const KvCache& cache) const;
  StatusOr<Tensor> forward_graph(const ForwardBatch& batch, const KvCache& cache, int bucket);
  Status build_layers(DeepseekWeights weights, const ShardSpec& tp, const ShardSpec& ep);
  // Sums a branch's partial output over `group` (nothing without one).
  Status reduce(const Tensor& y, Communicator* group);

  ModelConfig config_;
  WeightBytes weight_bytes_;
  Backend& backend_;
  Tensor rope_table_;  // [max_positions, rope_dim / 2, 2]
  Embedding embed_;
  std::vector<DecoderLayer> layers_;
  LmHead lm_head_;
  std::unique_ptr<StepContext> ctx_;
  int max_graph_batch_ = 0;               // 0: decode graphs off
  std::unique_ptr<DecodeGraphs> graphs_;  // null while off or not possible
  int64_t n_graph_captures_ = 0;
  Communicator* tp_ = nullptr;  // null: one rank
  Communicator* ep_ = nullptr;
  int tp_size_ = 1;
};

}  // namespace moeserve
