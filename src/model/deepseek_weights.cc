#include "model/deepseek_weights.h"

#include <cstring>

#include "model/checkpoint.h"

namespace moeserve {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Host F32 or BF16 copy of `t` in `dtype` (exact for BF16 → F32).
Tensor convert_host(const Tensor& t, DType dtype) {
  if (t.dtype() == dtype) return t;
  const std::vector<float> v = to_f32_vector(t);
  Tensor out = Tensor::empty_host(dtype, t.shape());
  if (dtype == DType::kF32) {
    std::memcpy(out.raw(), v.data(), v.size() * sizeof(float));
  } else {
    MS_CHECK(dtype == DType::kBF16, "convert_host to ", dtype_name(dtype));
    uint16_t* o = out.data<uint16_t>();
    for (size_t i = 0; i < v.size(); ++i) o[i] = f32_to_bf16(v[i]);
  }
  return out;
}

Tensor upload(Backend& backend, const Tensor& host) {
  Tensor dev = backend.alloc(host.dtype(), host.shape());
  backend.copy(host, dev);
  return dev;
}

class Loader {
 public:
  Loader(const ModelConfig& config, const Checkpoint& ckpt) : config_(config), ckpt_(ckpt) {}

  // A vector (norm weight, bias) as F32.
  StatusOr<Tensor> vector(const std::string& name, int64_t n) {
    ASSIGN_OR_RETURN(Tensor t, ckpt_.get(name, {n}));
    RETURN_IF_ERROR(check_float(t, name));
    return convert_host(t, DType::kF32);
  }

  // A [rows, cols] weight as F32 or BF16 host tensor; FP8 is dequantized.
  StatusOr<Tensor> matrix(const std::string& name, int64_t rows, int64_t cols) {
    ASSIGN_OR_RETURN(Tensor t, ckpt_.get(name, {rows, cols}));
    if (t.dtype() == DType::kFP8E4M3) {
      if (!config_.quantization.has_value()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor '", name, "' is F8_E4M3 but config.json has no fp8 quantization_config"));
      }
      const int bn = config_.quantization->block_n, bk = config_.quantization->block_k;
      ASSIGN_OR_RETURN(Tensor scale,
                       ckpt_.get(name + "_scale_inv", {ceil_div(rows, bn), ceil_div(cols, bk)}));
      return dequantize_fp8_block(t, scale, bn, bk, name);
    }
    RETURN_IF_ERROR(check_float(t, name));
    return t.dtype() == DType::kF16 ? convert_host(t, DType::kF32) : t;
  }

  // Rows of `a` then rows of `b`, in one tensor (gate and up projections fused).
  StatusOr<Tensor> stacked_rows(const std::string& a, const std::string& b, int64_t rows,
                                int64_t cols) {
    ASSIGN_OR_RETURN(Tensor ta, matrix(a, rows, cols));
    ASSIGN_OR_RETURN(Tensor tb, matrix(b, rows, cols));
    const DType dt = ta.dtype() == tb.dtype() ? ta.dtype() : DType::kF32;
    ta = convert_host(ta, dt);
    tb = convert_host(tb, dt);
    Tensor out = Tensor::empty_host(dt, {2 * rows, cols});
    std::memcpy(out.raw(), ta.raw(), static_cast<size_t>(ta.n_bytes()));
    std::memcpy(static_cast<char*>(out.raw()) + ta.n_bytes(), tb.raw(),
                static_cast<size_t>(tb.n_bytes()));
    return out;
  }

 private:
  static Status check_float(const Tensor& t, const std::string& name) {
    if (t.dtype() == DType::kF32 || t.dtype() == DType::kBF16 || t.dtype() == DType::kF16) {
      return absl::OkStatus();
    }
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has dtype ",
                                                   dtype_name(t.dtype()),
                                                   "; expected F32, BF16, F16 or F8_E4M3"));
  }

  const ModelConfig& config_;
  const Checkpoint& ckpt_;
};

// Stacks per-expert host matrices into one [n, rows, cols] tensor.
Tensor stack(const std::vector<Tensor>& parts) {
  DType dt = parts[0].dtype();
  for (const Tensor& p : parts) {
    if (p.dtype() != dt) dt = DType::kF32;
  }
  std::vector<int64_t> shape = parts[0].shape();
  shape.insert(shape.begin(), static_cast<int64_t>(parts.size()));
  Tensor out = Tensor::empty_host(dt, shape);
  char* dst = static_cast<char*>(out.raw());
  for (const Tensor& p : parts) {
    const Tensor c = convert_host(p, dt);
    std::memcpy(dst, c.raw(), static_cast<size_t>(c.n_bytes()));
    dst += c.n_bytes();
  }
  return out;
}

// kv_b_proj [H * (nope + v), kv_lora] → w_uk_t [H, kv_lora, nope] and w_uv [H, v, kv_lora].
void split_kv_b(const ModelConfig& c, const Tensor& kv_b, Tensor* w_uk_t, Tensor* w_uv) {
  const int64_t n_heads = c.num_attention_heads, nope = c.qk_nope_head_dim, v = c.v_head_dim,
                r = c.kv_lora_rank;
  const std::vector<float> w = to_f32_vector(kv_b);
  Tensor uk = Tensor::empty_host(DType::kF32, {n_heads, r, nope});
  Tensor uv = Tensor::empty_host(DType::kF32, {n_heads, v, r});
  for (int64_t h = 0; h < n_heads; ++h) {
    const float* head = w.data() + h * (nope + v) * r;
    for (int64_t i = 0; i < nope; ++i) {
      for (int64_t j = 0; j < r; ++j) uk.data<float>()[(h * r + j) * nope + i] = head[i * r + j];
    }
    std::memcpy(uv.data<float>() + h * v * r, head + nope * r,
                static_cast<size_t>(v * r) * sizeof(float));
  }
  *w_uk_t = convert_host(uk, kv_b.dtype());
  *w_uv = convert_host(uv, kv_b.dtype());
}

}  // namespace

StatusOr<Tensor> dequantize_fp8_block(const Tensor& fp8, const Tensor& scale_inv, int block_n,
                                      int block_k, const std::string& name) {
  if (scale_inv.dtype() != DType::kF32 && scale_inv.dtype() != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "_scale_inv' has dtype ",
                                                   dtype_name(scale_inv.dtype()),
                                                   "; expected F32 or BF16"));
  }
  const int64_t rows = fp8.dim(0), cols = fp8.dim(1);
  const std::vector<float> scale = to_f32_vector(scale_inv);
  const int64_t scale_cols = scale_inv.dim(1);
  Tensor out = Tensor::empty_host(DType::kF32, {rows, cols});
  const uint8_t* src = fp8.data<uint8_t>();
  float* dst = out.data<float>();
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      dst[i * cols + j] = fp8e4m3_to_f32(src[i * cols + j]) *
                          scale[static_cast<size_t>((i / block_n) * scale_cols + j / block_k)];
    }
  }
  return out;
}

StatusOr<DeepseekWeights> load_deepseek_weights(const ModelConfig& c, const Checkpoint& ckpt,
                                                Backend& backend) {
  Loader ld(c, ckpt);
  const int64_t d = c.hidden_size, n_heads = c.num_attention_heads;
  const int64_t qk = c.qk_nope_head_dim + c.qk_rope_head_dim;
  DeepseekWeights w;
  ASSIGN_OR_RETURN(Tensor embed, ld.matrix("model.embed_tokens.weight", c.vocab_size, d));
  w.embed = upload(backend, embed);
  ASSIGN_OR_RETURN(Tensor norm, ld.vector("model.norm.weight", d));
  w.final_norm = upload(backend, norm);
  if (c.tie_word_embeddings) {
    w.lm_head = w.embed;
  } else {
    ASSIGN_OR_RETURN(Tensor head, ld.matrix("lm_head.weight", c.vocab_size, d));
    w.lm_head = upload(backend, head);
  }
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    DeepseekLayerWeights l;
    ASSIGN_OR_RETURN(Tensor attn_norm, ld.vector(p + "input_layernorm.weight", d));
    l.attn_norm = upload(backend, attn_norm);
    ASSIGN_OR_RETURN(Tensor ffn_norm, ld.vector(p + "post_attention_layernorm.weight", d));
    l.ffn_norm = upload(backend, ffn_norm);

    const std::string a = p + "self_attn.";
    if (c.q_lora_rank.has_value()) {
      const int64_t q_lora = *c.q_lora_rank;
      ASSIGN_OR_RETURN(Tensor q_a, ld.matrix(a + "q_a_proj.weight", q_lora, d));
      l.q_a = upload(backend, q_a);
      ASSIGN_OR_RETURN(Tensor q_a_norm, ld.vector(a + "q_a_layernorm.weight", q_lora));
      l.q_a_norm = upload(backend, q_a_norm);
      ASSIGN_OR_RETURN(Tensor q_b, ld.matrix(a + "q_b_proj.weight", n_heads * qk, q_lora));
      l.q_b = upload(backend, q_b);
    } else {
      ASSIGN_OR_RETURN(Tensor q_proj, ld.matrix(a + "q_proj.weight", n_heads * qk, d));
      l.q_proj = upload(backend, q_proj);
    }
    ASSIGN_OR_RETURN(Tensor kv_a, ld.matrix(a + "kv_a_proj_with_mqa.weight",
                                            c.kv_lora_rank + c.qk_rope_head_dim, d));
    l.kv_a = upload(backend, kv_a);
    ASSIGN_OR_RETURN(Tensor kv_a_norm, ld.vector(a + "kv_a_layernorm.weight", c.kv_lora_rank));
    l.kv_a_norm = upload(backend, kv_a_norm);
    ASSIGN_OR_RETURN(Tensor kv_b,
                     ld.matrix(a + "kv_b_proj.weight",
                               n_heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank));
    Tensor w_uk_t, w_uv;
    split_kv_b(c, kv_b, &w_uk_t, &w_uv);
    l.w_uk_t = upload(backend, w_uk_t);
    l.w_uv = upload(backend, w_uv);
    ASSIGN_OR_RETURN(Tensor o_proj, ld.matrix(a + "o_proj.weight", d, n_heads * c.v_head_dim));
    l.o_proj = upload(backend, o_proj);

    const std::string m = p + "mlp.";
    if (c.is_moe_layer(i)) {
      const int64_t n_experts = *c.n_routed_experts, f = c.moe_intermediate_size;
      ASSIGN_OR_RETURN(Tensor router, ld.matrix(m + "gate.weight", n_experts, d));
      l.router = upload(backend, convert_host(router, DType::kF32));
      if (c.topk_method == TopkMethod::kNoauxTc) {
        ASSIGN_OR_RETURN(Tensor bias, ld.vector(m + "gate.e_score_correction_bias", n_experts));
        l.router_bias = upload(backend, bias);
      }
      std::vector<Tensor> gate_up, down;
      for (int64_t e = 0; e < n_experts; ++e) {
        const std::string x = absl::StrCat(m, "experts.", e, ".");
        ASSIGN_OR_RETURN(Tensor gu,
                         ld.stacked_rows(x + "gate_proj.weight", x + "up_proj.weight", f, d));
        gate_up.push_back(std::move(gu));
        ASSIGN_OR_RETURN(Tensor dn, ld.matrix(x + "down_proj.weight", d, f));
        down.push_back(std::move(dn));
      }
      l.experts_gate_up = upload(backend, stack(gate_up));
      l.experts_down = upload(backend, stack(down));
      if (c.n_shared_experts > 0) {
        const int64_t fs = f * c.n_shared_experts;
        ASSIGN_OR_RETURN(Tensor sgu, ld.stacked_rows(m + "shared_experts.gate_proj.weight",
                                                     m + "shared_experts.up_proj.weight", fs, d));
        l.shared_gate_up = upload(backend, sgu);
        ASSIGN_OR_RETURN(Tensor sd, ld.matrix(m + "shared_experts.down_proj.weight", d, fs));
        l.shared_down = upload(backend, sd);
      }
    } else {
      const int64_t f = c.intermediate_size;
      ASSIGN_OR_RETURN(Tensor gu,
                       ld.stacked_rows(m + "gate_proj.weight", m + "up_proj.weight", f, d));
      l.mlp_gate_up = upload(backend, gu);
      ASSIGN_OR_RETURN(Tensor dn, ld.matrix(m + "down_proj.weight", d, f));
      l.mlp_down = upload(backend, dn);
    }
    w.layers.push_back(std::move(l));
  }
  return w;
}

}  // namespace moeserve
