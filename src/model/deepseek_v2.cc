#include "model/deepseek_v2.h"

#include <algorithm>
#include <cstring>

#include "model/checkpoint.h"
#include "model/rope.h"

namespace moeserve {
namespace {

Tensor upload_i32(Backend& backend, const std::vector<int32_t>& v, std::vector<int64_t> shape) {
  Tensor host(
      Buffer::borrowed(const_cast<int32_t*>(v.data()),
                       static_cast<int64_t>(v.size() * sizeof(int32_t)), Device::kCpu, nullptr),
      DType::kI32, std::move(shape));
  Tensor dev = backend.alloc(DType::kI32, host.shape());
  backend.copy(host, dev);
  return dev;
}

}  // namespace

struct DeepseekV2Model::Step {
  int64_t n = 0;        // tokens in the step
  AttentionBatch attn;  // shared by every layer
  Tensor positions;     // [n] I32
};

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

int64_t DeepseekV2Model::activation_bytes(const ModelConfig& c, int64_t n, int64_t n_logit_rows) {
  const int64_t d = c.hidden_size, h = c.num_attention_heads, nope = c.qk_nope_head_dim,
                rope = c.qk_rope_head_dim, latent = c.kv_lora_rank, v = c.v_head_dim;
  // The residual stream and the normed / branch outputs live across layers.
  const int64_t stream = 3 * n * d;
  const int64_t attention =
      n * (h * (nope + rope) + c.q_lora_rank.value_or(0) + latent + rope + 2 * h * latent + h * v);
  const int64_t dense = 3 * n * c.intermediate_size;
  int64_t moe = 0;
  if (c.n_routed_experts.has_value()) {
    const int64_t f = c.moe_intermediate_size, fs = f * c.n_shared_experts;
    moe = n * (*c.n_routed_experts + 2 * c.num_experts_per_tok) + n * (2 * d + 3 * f) +
          n * (d + 3 * fs);
  }
  const int64_t head = n_logit_rows * (d + c.vocab_size);
  return static_cast<int64_t>(sizeof(float)) * (stream + std::max({attention, dense, moe, head}));
}

DeepseekV2Model::DeepseekV2Model(ModelConfig config, DeepseekWeights weights, Backend& backend)
    : config_(std::move(config)), weights_(std::move(weights)), backend_(backend) {
  const int64_t n_pos = config_.max_position_embeddings;
  const std::vector<float> table = build_rope_table(config_, n_pos);
  Tensor host = Tensor::empty_host(DType::kF32, {n_pos, config_.qk_rope_head_dim / 2, 2});
  std::memcpy(host.raw(), table.data(), table.size() * sizeof(float));
  rope_table_ = backend_.alloc(DType::kF32, host.shape());
  backend_.copy(host, rope_table_);
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
      static_cast<int>(weights_.layers.size()) != config_.num_hidden_layers) {
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

StatusOr<Tensor> DeepseekV2Model::forward(const ForwardBatch& batch, const KvCache& cache) {
  RETURN_IF_ERROR(validate(batch, cache));
  Backend& be = backend_;
  const int64_t n = batch.n_tokens(), d = config_.hidden_size;
  Step s;
  s.n = n;
  s.positions = upload_i32(be, batch.positions, {n});
  s.attn.token_pos = s.positions;
  s.attn.token_seq = upload_i32(be, batch.token_seq, {n});
  s.attn.slot_mapping = upload_i32(be, batch.slot_mapping, {n});
  s.attn.block_tables = upload_i32(be, batch.block_tables, {batch.n_seqs, batch.max_blocks});
  s.attn.block_size = cache.block_size();

  Tensor x = be.alloc(DType::kF32, {n, d});  // the residual stream
  be.gather_rows(weights_.embed, upload_i32(be, batch.tokens, {n}), x);
  Tensor h = be.alloc(DType::kF32, {n, d});
  Tensor y = be.alloc(DType::kF32, {n, d});
  for (int i = 0; i < config_.num_hidden_layers; ++i) {
    const DeepseekLayerWeights& l = weights_.layers[static_cast<size_t>(i)];
    be.rms_norm(x, l.attn_norm, config_.rms_norm_eps, h);
    attention(s, i, h, y, cache);
    be.add(x, y, x);
    be.rms_norm(x, l.ffn_norm, config_.rms_norm_eps, h);
    mlp(s, i, h, y);
    be.add(x, y, x);
  }
  const int64_t n_logits = static_cast<int64_t>(batch.logits_rows.size());
  Tensor last = be.alloc(DType::kF32, {n_logits, d});
  be.gather_rows(x, upload_i32(be, batch.logits_rows, {n_logits}), last);
  be.rms_norm(last, weights_.final_norm, config_.rms_norm_eps, last);
  Tensor logits = be.alloc(DType::kF32, {n_logits, config_.vocab_size});
  be.linear(last, weights_.lm_head, logits);
  return logits;
}

void DeepseekV2Model::attention(Step& s, int layer, const Tensor& x, const Tensor& out,
                                const KvCache& cache) {
  Backend& be = backend_;
  const DeepseekLayerWeights& l = weights_.layers[static_cast<size_t>(layer)];
  const int64_t n = s.n, n_heads = config_.num_attention_heads;
  const int64_t nope = config_.qk_nope_head_dim, rope = config_.qk_rope_head_dim;
  const int64_t latent = config_.kv_lora_rank, v = config_.v_head_dim;

  // Queries: [n, H, nope + rope].
  Tensor q = be.alloc(DType::kF32, {n, n_heads * (nope + rope)});
  if (config_.q_lora_rank.has_value()) {
    Tensor q_a = be.alloc(DType::kF32, {n, *config_.q_lora_rank});
    be.linear(x, l.q_a, q_a);
    be.rms_norm(q_a, l.q_a_norm, config_.rms_norm_eps, q_a);
    be.linear(q_a, l.q_b, q);
  } else {
    be.linear(x, l.q_proj, q);
  }
  const Tensor q3 = q.reshape({n, n_heads, nope + rope});
  const Tensor q_nope = q3.slice(2, 0, nope);            // [n, H, nope]
  const Tensor q_rope = q3.slice(2, nope, nope + rope);  // [n, H, rope]
  be.rope(q_rope, s.positions, rope_table_);

  // The new cache rows: [normalised latent | rotated rope key].
  Tensor kv = be.alloc(DType::kF32, {n, latent + rope});
  be.linear(x, l.kv_a, kv);
  const Tensor kv_latent = kv.slice(1, 0, latent);
  be.rms_norm(kv_latent, l.kv_a_norm, config_.rms_norm_eps, kv_latent);
  be.rope(kv.slice(1, latent, latent + rope), s.positions, rope_table_);
  be.kv_cache_write(kv, s.attn.slot_mapping, cache.layer(layer));

  // Absorb W_UK into the queries, attend over latents, then apply W_UV.
  Tensor q_latent = be.alloc(DType::kF32, {n, n_heads, latent});
  be.head_linear(q_nope, l.w_uk_t, q_latent);
  Tensor o_latent = be.alloc(DType::kF32, {n, n_heads, latent});
  be.mla_attention(q_latent, q_rope, cache.layer(layer), s.attn, config_.softmax_scale(), o_latent);
  Tensor o = be.alloc(DType::kF32, {n, n_heads, v});
  be.head_linear(o_latent, l.w_uv, o);
  be.linear(o.reshape({n, n_heads * v}), l.o_proj, out);
}

void DeepseekV2Model::mlp(Step& s, int layer, const Tensor& x, const Tensor& out) {
  Backend& be = backend_;
  const DeepseekLayerWeights& l = weights_.layers[static_cast<size_t>(layer)];
  const int64_t n = s.n;
  auto swiglu = [&](const Tensor& gate_up, const Tensor& down, const Tensor& dst) {
    const int64_t f = down.dim(1);
    Tensor gu = be.alloc(DType::kF32, {n, 2 * f});
    be.linear(x, gate_up, gu);
    Tensor act = be.alloc(DType::kF32, {n, f});
    be.silu_mul(gu, act);
    be.linear(act, down, dst);
  };
  if (!config_.is_moe_layer(layer)) {
    swiglu(l.mlp_gate_up, l.mlp_down, out);
    return;
  }
  const GateParams gp = config_.gate_params();
  Tensor logits = be.alloc(DType::kF32, {n, *config_.n_routed_experts});
  be.linear(x, l.router, logits);
  Tensor ids = be.alloc(DType::kI32, {n, gp.top_k});
  Tensor weights = be.alloc(DType::kF32, {n, gp.top_k});
  be.moe_gate(logits, l.router_bias, gp, ids, weights);
  be.moe_ffn(x, ids, weights, l.experts_gate_up, l.experts_down, out);
  if (l.shared_gate_up.defined()) {
    Tensor shared = be.alloc(DType::kF32, {n, config_.hidden_size});
    swiglu(l.shared_gate_up, l.shared_down, shared);
    be.add(out, shared, out);
  }
}

}  // namespace moeserve
