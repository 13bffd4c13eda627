#include "model/deepseek_v2.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "common/logging.h"
#include "model/checkpoint.h"
#include "model/rope.h"

namespace moeserve {
namespace {

MlaAttention::Dims mla_dims(const ModelConfig& c) {
  return {.n_heads = c.num_attention_heads,
          .nope = c.qk_nope_head_dim,
          .rope = c.qk_rope_head_dim,
          .latent = c.kv_lora_rank,
          .v = c.v_head_dim,
          .q_lora = c.q_lora_rank.value_or(0),
          .softmax_scale = c.softmax_scale()};
}

// Single rank until the parallelism issue hands the model its shard.
constexpr ShardSpec kOneRank{};

}  // namespace

StatusOr<std::unique_ptr<DeepseekV2Model>> DeepseekV2Model::load(const std::string& model_dir,
                                                                 Backend& backend) {
  ASSIGN_OR_RETURN(ModelConfig config, load_model_config(model_dir));
  ASSIGN_OR_RETURN(Checkpoint checkpoint, Checkpoint::open(model_dir));
  return load(std::move(config), checkpoint, backend);
}

StatusOr<std::unique_ptr<DeepseekV2Model>> DeepseekV2Model::load(ModelConfig config,
                                                                 const Checkpoint& checkpoint,
                                                                 Backend& backend,
                                                                 const LoadProgress& progress) {
  ASSIGN_OR_RETURN(DeepseekWeights weights,
                   load_deepseek_weights(config, checkpoint, backend, progress));
  return std::make_unique<DeepseekV2Model>(std::move(config), std::move(weights), backend);
}

int64_t DeepseekV2Model::activation_bytes(const ModelConfig& c, int64_t n, int64_t n_logit_rows,
                                          DType activations) {
  // forward(): the logits, then the residual stream and the normed and branch
  // outputs, then the widest of the layers' scoped workspaces.
  ArenaSize base(activations);
  base.add(DType::kF32, n_logit_rows * c.vocab_size);
  for (int i = 0; i < 3; ++i) base.add_act(n * c.hidden_size);
  ArenaSize attention(activations), dense(activations), moe(activations), head(activations);
  MlaAttention::workspace(attention, n, mla_dims(c));
  DenseMlp::workspace(dense, n, c.intermediate_size);
  if (c.n_routed_experts.has_value()) {
    FusedMoE::workspace(moe, n, c.hidden_size, *c.n_routed_experts, c.num_experts_per_tok,
                        static_cast<int64_t>(c.moe_intermediate_size) * c.n_shared_experts);
  }
  LmHead::workspace(head, n_logit_rows, c.hidden_size);
  return base.bytes() + std::max({attention.bytes(), dense.bytes(), moe.bytes(), head.bytes()});
}

DeepseekV2Model::DeepseekV2Model(ModelConfig config, WeightBytes bytes, Backend& backend)
    : config_(std::move(config)), weight_bytes_(std::move(bytes)), backend_(backend) {
  const ModelConfig& c = config_;
  const int64_t n_pos = c.max_position_embeddings;
  const std::vector<float> table = build_rope_table(c, n_pos);
  Tensor host = Tensor::empty_host(DType::kF32, {n_pos, c.qk_rope_head_dim / 2, 2});
  std::memcpy(host.raw(), table.data(), table.size() * sizeof(float));
  rope_table_ = backend_.alloc(DType::kF32, host.shape());
  backend_.copy(host, rope_table_);
}

DeepseekV2Model::DeepseekV2Model(ModelConfig config, DeepseekWeights weights, Backend& backend)
    : DeepseekV2Model(std::move(config), weights.bytes, backend) {
  const Status built = build_layers(std::move(weights), kOneRank, kOneRank);
  MS_CHECK(built.ok(), "one-rank model: ", built.ToString());
}

StatusOr<std::unique_ptr<DeepseekV2Model>> DeepseekV2Model::create(ModelConfig config,
                                                                   DeepseekWeights weights,
                                                                   Backend& backend,
                                                                   const ModelParallel& parallel) {
  auto spec = [](const Communicator* group) {
    return group == nullptr ? ShardSpec{}
                            : ShardSpec{.rank = group->rank(), .world = group->world_size()};
  };
  const ShardSpec tp = spec(parallel.tp), ep = spec(parallel.ep);
  const int world = tp.world;
  if (!tp.single() && !ep.single()) {
    return absl::UnimplementedError("tensor and expert parallelism together need sub-groups");
  }
  if (!ep.single()) {
    const int64_t n_experts = config.n_routed_experts.value_or(0);
    if (n_experts == 0 || n_experts % ep.world != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("config.json: n_routed_experts = ", n_experts,
                       " does not divide by the expert-parallel size ", ep.world));
    }
  }
  if (world > 1 || !ep.single()) {
    if (backend.device() != Device::kCpu) {
      return absl::UnimplementedError(absl::StrCat(
          "parallelism over host collectives needs a host backend, not ", backend.name()));
    }
  }
  if (world > 1) {
    const std::pair<const char*, int64_t> widths[] = {
        {"num_attention_heads", config.num_attention_heads},
        {"intermediate_size", config.intermediate_size},
        {"moe_intermediate_size", config.moe_intermediate_size},
    };
    for (const auto& [field, value] : widths) {
      if (value % world != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("config.json: ", field, " = ", value,
                         " does not divide by the tensor-parallel size ", world));
      }
    }
  }
  std::unique_ptr<DeepseekV2Model> model(
      new DeepseekV2Model(std::move(config), weights.bytes, backend));
  RETURN_IF_ERROR(model->build_layers(std::move(weights), tp, ep));
  if (!tp.single()) model->tp_ = parallel.tp;
  if (!ep.single()) model->ep_ = parallel.ep;
  model->tp_size_ = world;
  return model;
}

ModelConfig DeepseekV2Model::rank_config(const ModelConfig& config, int tp_size) {
  ModelConfig c = config;
  c.num_attention_heads /= tp_size;
  c.intermediate_size /= tp_size;
  c.moe_intermediate_size /= tp_size;
  return c;
}

Status DeepseekV2Model::build_layers(DeepseekWeights weights, const ShardSpec& tp,
                                     const ShardSpec& ep) {
  const ModelConfig& c = config_;
  const float eps = c.rms_norm_eps;
  // This rank's share of a weight: `dim` split over the ranks, in `parts` stacked blocks.
  auto shard = [&](Tensor& w, int dim, int parts = 1) -> StatusOr<Tensor> {
    if (!w.defined()) return Tensor();
    auto part = shard_weight(w, dim, tp, parts);
    if (!part.ok() && part.status().code() == absl::StatusCode::kUnimplemented) {
      return absl::UnimplementedError(absl::StrCat("tensor parallelism: ", part.status().message(),
                                                   " (FP8 checkpoints run on one rank)"));
    }
    return part;
  };
  embed_ = Embedding(std::move(weights.embed));
  lm_head_ = LmHead(RmsNorm(std::move(weights.final_norm), eps),
                    ColumnParallelLinear(std::move(weights.lm_head), kOneRank));
  MlaAttention::Dims dims = mla_dims(c);
  dims.n_heads /= tp.world;
  GateParams gate = c.gate_params();
  const int64_t n_experts = c.n_routed_experts.value_or(0);
  if (!ep.single()) {
    gate.local_begin = static_cast<int>(ep.begin(n_experts));
    gate.local_count = static_cast<int>(ep.end(n_experts) - ep.begin(n_experts));
  }
  for (int i = 0; i < static_cast<int>(weights.layers.size()); ++i) {
    DeepseekLayerWeights& w = weights.layers[static_cast<size_t>(i)];
    DecoderLayer layer;
    layer.attn_norm = RmsNorm(std::move(w.attn_norm), eps);
    layer.ffn_norm = RmsNorm(std::move(w.ffn_norm), eps);
    // Heads: rows of q_b / q_proj and the absorbed per-head matrices, columns of o_proj.
    ASSIGN_OR_RETURN(Tensor q_b, shard(w.q_b, 0));
    ASSIGN_OR_RETURN(Tensor q_proj, shard(w.q_proj, 0));
    ASSIGN_OR_RETURN(Tensor w_uk_t, shard(w.w_uk_t, 0));
    ASSIGN_OR_RETURN(Tensor w_uv, shard(w.w_uv, 0));
    ASSIGN_OR_RETURN(Tensor o_proj, shard(w.o_proj, 1));
    layer.attention = MlaAttention(dims,
                                   {.q_a = Linear(std::move(w.q_a)),
                                    .q_a_norm = RmsNorm(std::move(w.q_a_norm), eps),
                                    .q_b = ColumnParallelLinear(std::move(q_b), tp),
                                    .q_proj = ColumnParallelLinear(std::move(q_proj), tp),
                                    .kv_a = Linear(std::move(w.kv_a)),
                                    .kv_a_norm = RmsNorm(std::move(w.kv_a_norm), eps),
                                    .w_uk_t = std::move(w_uk_t),
                                    .w_uv = std::move(w_uv),
                                    .o_proj = RowParallelLinear(std::move(o_proj), tp)},
                                   rope_table_);
    // SwiGLU widths: each rank its share of the gate rows and of the up rows.
    auto mlp = [&](Tensor& gate_up, Tensor& down) -> StatusOr<DenseMlp> {
      ASSIGN_OR_RETURN(Tensor gu, shard(gate_up, 0, 2));
      ASSIGN_OR_RETURN(Tensor dn, shard(down, 1));
      return DenseMlp(ColumnParallelLinear(std::move(gu), tp),
                      RowParallelLinear(std::move(dn), tp));
    };
    layer.is_moe = c.is_moe_layer(i);
    if (layer.is_moe) {
      DenseMlp shared;  // under EP on rank 0 only, so the sum counts it once
      if (w.shared_gate_up.defined() && ep.rank == 0) {
        ASSIGN_OR_RETURN(shared, mlp(w.shared_gate_up, w.shared_down));
      }
      ASSIGN_OR_RETURN(Tensor experts_gate_up, shard(w.experts_gate_up, 1, 2));
      ASSIGN_OR_RETURN(Tensor experts_down, shard(w.experts_down, 2));
      if (!ep.single()) {  // this rank's experts: whole leading rows, block scales with them
        experts_gate_up = experts_gate_up.slice(0, ep.begin(n_experts), ep.end(n_experts));
        experts_down = experts_down.slice(0, ep.begin(n_experts), ep.end(n_experts));
      }
      layer.moe = FusedMoE({.router = Linear(std::move(w.router)),
                            .router_bias = std::move(w.router_bias),
                            .experts_gate_up = std::move(experts_gate_up),
                            .experts_down = std::move(experts_down),
                            .shared = std::move(shared)},
                           gate);
    } else {
      ASSIGN_OR_RETURN(layer.mlp, mlp(w.mlp_gate_up, w.mlp_down));
    }
    layers_.push_back(std::move(layer));
  }
  return absl::OkStatus();
}

Status DeepseekV2Model::reduce(const Tensor& y, Communicator* group) {
  if (group == nullptr) return absl::OkStatus();
  backend_.synchronize();
  return group->all_reduce_sum({y.data<float>(), static_cast<size_t>(y.numel())});
}

void DeepseekV2Model::reserve(const StepLimits& limits) {
  MS_CHECK(backend_.supports_activation_dtype(limits.activations), "model: the ", backend_.name(),
           " backend has no ", dtype_name(limits.activations), " activations");
  MS_CHECK(limits.activations == DType::kF32 || (tp_ == nullptr && ep_ == nullptr),
           "model: host collectives reduce F32 activations only");
  const int64_t arena = activation_bytes(rank_config(config_, tp_size_), limits.max_tokens,
                                         limits.max_logits, limits.activations);
  ctx_ = std::make_unique<StepContext>(backend_, limits, arena);
  reset_graphs();
  MS_LOG_DEBUG(
      "model: step context for {} tokens, {} sequences, {} logit rows: {} arena of {} bytes",
      limits.max_tokens, limits.max_seqs, limits.max_logits, dtype_name(limits.activations), arena);
}

Status DeepseekV2Model::validate(const ForwardBatch& b, const KvCache& cache) const {
  const size_t n = b.tokens.size();
  if (b.positions.size() != n || b.token_seq.size() != n || b.slot_mapping.size() != n) {
    return absl::InvalidArgumentError("forward batch: per-token arrays differ in length");
  }
  if (b.block_tables.size() != static_cast<size_t>(b.n_seqs) * b.max_blocks) {
    return absl::InvalidArgumentError("forward batch: block_tables is not n_seqs × max_blocks");
  }
  if (cache.row_width() != kv_row_width() ||
      static_cast<int>(layers_.size()) != config_.num_hidden_layers) {
    return absl::InvalidArgumentError("forward batch: KV cache does not match the model");
  }
  const int64_t n_slots = static_cast<int64_t>(cache.n_blocks()) * cache.block_size();
  for (size_t t = 0; t < n; ++t) {
    if (b.tokens[t] < 0 || b.tokens[t] >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", b.tokens[t], " is outside the vocabulary [0, ", config_.vocab_size, ")"));
    }
    if (b.positions[t] < 0 || b.positions[t] >= max_positions()) {
      return absl::OutOfRangeError(absl::StrCat(
          "position ", b.positions[t], " is beyond the model's maximum of ", max_positions()));
    }
    if (b.token_seq[t] < 0 || b.token_seq[t] >= b.n_seqs || b.slot_mapping[t] < 0 ||
        b.slot_mapping[t] >= n_slots ||
        b.positions[t] >= static_cast<int64_t>(b.max_blocks) * cache.block_size()) {
      return absl::InvalidArgumentError("forward batch: token refers outside its sequence");
    }
  }
  for (int32_t r : b.logits_rows) {
    if (r < 0 || static_cast<size_t>(r) >= n) {
      return absl::InvalidArgumentError("forward batch: logits row out of range");
    }
  }
  for (int32_t block : b.block_tables) {
    if (block < 0 || block >= cache.n_blocks()) {
      return absl::InvalidArgumentError("forward batch: block id out of range");
    }
  }
  return absl::OkStatus();
}

StatusOr<StepContext*> DeepseekV2Model::plan(const ForwardBatch& batch, const KvCache& cache) {
  RETURN_IF_ERROR(validate(batch, cache));
  if (ctx_ == nullptr || !ctx_->fits(batch)) {
    // Grown to the next powers of two, so a caller that never reserved
    // reallocates a handful of times, not every step.
    auto grow = [](int64_t have, int64_t need) {
      return std::max<int64_t>(
          have,
          static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(std::max<int64_t>(need, 1)))));
    };
    const StepLimits have = ctx_ ? ctx_->limits() : StepLimits{};
    reserve({.max_tokens = grow(have.max_tokens, batch.n_tokens()),
             .max_seqs = grow(have.max_seqs, batch.n_seqs),
             .max_logits = grow(have.max_logits, static_cast<int64_t>(batch.logits_rows.size())),
             .max_blocks = grow(have.max_blocks, static_cast<int64_t>(batch.block_tables.size())),
             .activations = have.activations});
  }
  ctx_->upload(batch, cache.block_size());
  return ctx_.get();
}

StatusOr<Tensor> DeepseekV2Model::forward(StepContext& ctx, const KvCache& cache) {
  Backend& be = backend_;
  ActivationArena& arena = ctx.arena();
  const int64_t n = ctx.n_tokens(), d = config_.hidden_size;
  const Tensor logits = arena.take(DType::kF32, {ctx.n_logits(), config_.vocab_size});
  const Tensor x = arena.take_act({n, d});  // the residual stream
  const Tensor h = arena.take_act({n, d});  // its normed copy
  const Tensor y = arena.take_act({n, d});  // a branch's output
  embed_.forward(be, ctx.tokens(), x);
  for (size_t i = 0; i < layers_.size(); ++i) {
    const DecoderLayer& l = layers_[i];
    // x += y (the previous branch), then h = norm(x): one fused op per branch.
    if (i == 0) {
      l.attn_norm.forward(be, x, h);
    } else {
      l.attn_norm.add_forward(be, x, y, h);
    }
    l.attention.forward(be, ctx, h, cache.layer(static_cast<int>(i)), y);
    RETURN_IF_ERROR(reduce(y, tp_));
    l.ffn_norm.add_forward(be, x, y, h);
    if (l.is_moe) {
      l.moe.forward(be, arena, h, y);
    } else {
      l.mlp.forward(be, arena, h, y);
    }
    RETURN_IF_ERROR(reduce(y, l.is_moe && ep_ != nullptr ? ep_ : tp_));
  }
  if (!layers_.empty()) be.add(x, y, x);
  lm_head_.forward(be, ctx, x, logits);
  return logits;
}

StatusOr<Tensor> DeepseekV2Model::forward(const ForwardBatch& batch, const KvCache& cache) {
  if (const std::optional<int> bucket = graph_bucket(batch, cache)) {
    return forward_graph(batch, cache, *bucket);
  }
  ASSIGN_OR_RETURN(StepContext * ctx, plan(batch, cache));
  return forward(*ctx, cache);
}

void DeepseekV2Model::enable_decode_graphs(int max_graph_batch) {
  MS_CHECK(max_graph_batch >= 1, "model: max_graph_batch ", max_graph_batch);
  max_graph_batch_ = max_graph_batch;
  reset_graphs();
}

void DeepseekV2Model::reset_graphs() {
  graphs_.reset();
  if (max_graph_batch_ == 0 || ctx_ == nullptr || !backend_.supports_graphs() || tp_ != nullptr ||
      ep_ != nullptr) {
    return;
  }
  const StepLimits& l = ctx_->limits();
  const int64_t max_rows = std::min({l.max_seqs, l.max_tokens, l.max_logits});
  if (max_rows < 1 || l.max_blocks / l.max_seqs < 1) return;
  graphs_ =
      std::make_unique<DecodeGraphs>(GraphBucketConfig{.max_num_seqs = static_cast<int>(max_rows),
                                                       .max_graph_batch = max_graph_batch_},
                                     static_cast<int>(l.max_blocks / l.max_seqs));
}

std::optional<int> DeepseekV2Model::graph_bucket(const ForwardBatch& batch,
                                                 const KvCache& cache) const {
  if (graphs_ == nullptr || cache.scratch_block() < 0 || !is_decode_step(batch) ||
      batch.max_blocks > graphs_->max_blocks()) {
    return std::nullopt;
  }
  return graphs_->buckets().bucket_for(batch.n_seqs);
}

StatusOr<Tensor> DeepseekV2Model::forward_graph(const ForwardBatch& batch, const KvCache& cache,
                                                int bucket) {
  RETURN_IF_ERROR(validate(batch, cache));
  graphs_->use_cache(cache.layer(0).raw());
  ctx_->upload(pad_decode_batch(batch, bucket, graphs_->max_blocks(), cache.scratch_block(),
                                cache.block_size()),
               cache.block_size());
  DecodeGraphs::Bucket& b = graphs_->bucket(bucket);
  Tensor logits;
  if (!b.warmed || b.failed) {
    ASSIGN_OR_RETURN(logits, forward(*ctx_, cache));
    b.warmed = true;
  } else {
    if (b.graph == nullptr) {
      RETURN_IF_ERROR(backend_.begin_capture());
      StatusOr<Tensor> captured = forward(*ctx_, cache);
      StatusOr<std::unique_ptr<GraphHandle>> graph = backend_.end_capture();
      RETURN_IF_ERROR(captured.status());
      if (!graph.ok()) {
        MS_LOG_WARN("model: decode steps of {} rows run eagerly: {}", bucket,
                    graph.status().ToString());
        b.failed = true;
        ctx_->arena().reset();  // the eager run takes the same views again
        ASSIGN_OR_RETURN(logits, forward(*ctx_, cache));
        return logits.slice(0, 0, batch.n_seqs);
      }
      b.graph = *std::move(graph);
      b.logits = *captured;
      ++n_graph_captures_;
      MS_LOG_DEBUG("model: captured the decode graph of {} rows", bucket);
    }
    RETURN_IF_ERROR(backend_.replay(*b.graph));
    logits = b.logits;
  }
  return logits.slice(0, 0, batch.n_seqs);  // padding rows' logits are never returned
}

}  // namespace moeserve
