#include "model/deepseek_weights.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>
#include <numeric>
#include <thread>

#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/process_memory.h"
#include "common/thread_pool.h"
#include "model/checkpoint.h"

namespace moeserve {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

Status check_float(const Tensor& t, const std::string& name) {
  if (t.dtype() == DType::kF32 || t.dtype() == DType::kBF16 || t.dtype() == DType::kF16 ||
      t.dtype() == DType::kFP8E4M3) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has dtype ",
                                                 dtype_name(t.dtype()),
                                                 "; expected F32, BF16, F16 or F8_E4M3"));
}

// Host copy of `src` (any float dtype, scales applied) in F32, BF16 or F16.
void convert_into(const Tensor& src, const Tensor& dst) {
  const std::vector<float> v = to_f32_vector(src);
  switch (dst.dtype()) {
    case DType::kF32: std::memcpy(dst.raw(), v.data(), v.size() * sizeof(float)); return;
    case DType::kBF16:
      for (size_t i = 0; i < v.size(); ++i) dst.data<uint16_t>()[i] = f32_to_bf16(v[i]);
      return;
    case DType::kF16:
      for (size_t i = 0; i < v.size(); ++i) dst.data<uint16_t>()[i] = f32_to_f16(v[i]);
      return;
    default: MS_CHECK(false, "convert to ", dtype_name(dst.dtype()));
  }
}

// Index of the first E4M3 NaN code (0x7F / 0xFF) in `n` bytes, or -1.
int64_t find_fp8_nan(const uint8_t* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if ((p[i] & 0x7F) == 0x7F) return i;
  }
  return -1;
}

// A checkpoint tensor as read: FP8 carries its F32 block scales, which are
// the file's own tensor or, when it stores them as BF16, a converted copy.
struct Source {
  std::string name;
  Tensor t;
  bool scales_in_file = false;
};

// Reads checkpoint tensors into prepared weights. With no backend it only
// plans: tensors carry shapes and dtypes but no memory, nothing is read.
class Loader {
 public:
  // `sizer`, when planning: the backend the weights are planned for, which says
  // what each prepared weight will take (a device backend may store it in
  // another dtype).
  Loader(const ModelConfig& config, const Checkpoint& ckpt, Backend* backend,
         const LoadProgress& progress, const Backend* sizer = nullptr)
      : config_(config), ckpt_(ckpt), backend_(backend), sizer_(sizer), progress_(progress) {
    if (backend_ != nullptr) {
      const int hw = static_cast<int>(std::thread::hardware_concurrency());
      pool_ = std::make_unique<ThreadPool>(std::clamp(hw, 1, 8));
    }
  }

  const WeightBytes& bytes() const { return bytes_; }
  // Bytes of checkpoint tensors read so far (all of them once done).
  int64_t n_read() const { return n_read_; }
  // Bytes the loading will read, for progress (from the plan's n_read()).
  void set_total(int64_t total) { total_ = total; }

  // A vector (norm weight, bias) as F32.
  StatusOr<Tensor> vector(const std::string& name, int64_t n) {
    ASSIGN_OR_RETURN(Source s, source(name, {n}));
    if (s.t.dtype() == DType::kF32) return keep_mapped(s);
    Tensor out = make(DType::kF32, {n});
    if (!planning()) convert_into(s.t, out);
    release(s);
    return keep_repacked(out);
  }

  // A [rows, cols] weight used as stored (FP8 with its block scales).
  StatusOr<Tensor> matrix(const std::string& name, int64_t rows, int64_t cols) {
    ASSIGN_OR_RETURN(Source s, source(name, {rows, cols}));
    return keep_mapped(s);
  }

  // A [rows, cols] weight as F32 (the router, which stays in full precision).
  StatusOr<Tensor> matrix_f32(const std::string& name, int64_t rows, int64_t cols) {
    ASSIGN_OR_RETURN(Source s, source(name, {rows, cols}));
    if (s.t.dtype() == DType::kF32) return keep_mapped(s);
    Tensor out = make(DType::kF32, {rows, cols});
    if (!planning()) convert_into(s.t, out);
    release(s);
    return keep_repacked(out);
  }

  // parts[e] lists the [part_rows, cols] tensors whose rows are stacked for
  // expert e. The result is [E, Σ part_rows, cols], or 2-D when `flat` (one
  // expert: the dense or shared MLP).
  StatusOr<Tensor> stacked(const std::vector<std::vector<std::string>>& parts, int64_t part_rows,
                           int64_t cols, bool flat);

  // kv_b_proj [H * (nope + v), kv_lora] → w_uk_t [H, kv_lora, nope] and
  // w_uv [H, v, kv_lora], in kv_b's dtype (F32 when it is FP8: the halves are
  // transposed per head, which 128×128 blocks do not survive).
  Status split_kv_b(const std::string& name, Tensor* w_uk_t, Tensor* w_uv);

  // Reads every weight used in place into memory, in parallel, and checks FP8
  // weights for NaN codes on the way.
  Status populate_mapped();

 private:
  bool planning() const { return backend_ == nullptr; }

  Tensor make(DType dtype, std::vector<int64_t> shape) const {
    if (planning()) return Tensor(nullptr, dtype, std::move(shape));
    return Tensor::empty_host(dtype, std::move(shape));
  }

  // A checkpoint tensor of the given shape, validated; FP8 gets its block
  // scales attached (F32; converted when the file stores them as BF16).
  StatusOr<Source> source(const std::string& name, const std::vector<int64_t>& shape) {
    Source src{name, {}, false};
    ASSIGN_OR_RETURN(src.t, ckpt_.get(name, shape));
    RETURN_IF_ERROR(check_float(src.t, name));
    n_read_ += src.t.n_bytes();
    if (src.t.dtype() != DType::kFP8E4M3) return src;
    if (shape.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' is F8_E4M3; only matrices may be FP8"));
    }
    if (!config_.quantization.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", name, "' is F8_E4M3 but config.json has no fp8 quantization_config"));
    }
    const int64_t bn = config_.quantization->block_n, bk = config_.quantization->block_k;
    const std::string scale_name = name + "_scale_inv";
    ASSIGN_OR_RETURN(Tensor scale,
                     ckpt_.get(scale_name, {ceil_div(shape[0], bn), ceil_div(shape[1], bk)}));
    n_read_ += scale.n_bytes();
    if (scale.dtype() == DType::kBF16) {
      Tensor f = make(DType::kF32, scale.shape());
      if (!planning()) convert_into(scale, f);
      scale = f;
    } else if (scale.dtype() == DType::kF32) {
      src.scales_in_file = true;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", scale_name, "' has dtype ",
                                                     dtype_name(scale.dtype()),
                                                     "; expected F32 or BF16"));
    }
    src.t.set_block_scales(scale, bn, bk);
    return src;
  }

  void account(const Tensor& t, bool mapped) {
    const int64_t n = t.n_bytes();
    bytes_.by_dtype[t.dtype()] += n;
    (mapped ? bytes_.mapped : bytes_.repacked) += n;
  }

  // A weight a device backend holds: what it prepared, or plans to.
  void account_device(const Tensor& t) {
    if (planning()) {
      bytes_.by_dtype[t.dtype()] += sizer_->prepared_bytes(t);
      bytes_.repacked += sizer_->prepared_bytes(t);
      return;
    }
    account(t, false);
    if (t.block_scales() != nullptr) account(*t.block_scales(), false);
  }
  bool on_device() const {
    const Backend* b = planning() ? sizer_ : backend_;
    return b != nullptr && b->device() != Device::kCpu;
  }

  // A source used as it is: its pages (and its scales', when in the file) are the weight.
  Tensor keep_mapped(const Source& s) {
    if (on_device()) {
      // Uploaded: the host pages were only a staging copy.
      if (planning()) {
        account_device(s.t);
        return s.t;
      }
      Tensor dev = backend_->prepare_weight(s.t);
      account_device(dev);
      ckpt_.release(s.name);
      advance(s.t.n_bytes());
      return dev;
    }
    account(s.t, true);
    mapped_names_.push_back(s.name);
    if (s.t.block_scales() != nullptr) {
      account(*s.t.block_scales(), s.scales_in_file);
      if (s.scales_in_file) mapped_names_.push_back(s.name + "_scale_inv");
    }
    return planning() ? s.t : backend_->prepare_weight(s.t);
  }

  // A weight in a buffer of its own.
  Tensor keep_repacked(const Tensor& t) {
    if (on_device()) {
      if (planning()) {
        account_device(t);
        return t;
      }
      Tensor dev = backend_->prepare_weight(t);
      account_device(dev);
      return dev;
    }
    account(t, false);
    if (t.block_scales() != nullptr) account(*t.block_scales(), false);
    return planning() ? t : backend_->prepare_weight(t);
  }

  // The source's own pages are no longer needed: it was copied elsewhere.
  void release(const Source& s) {
    if (planning()) return;
    ckpt_.release(s.name);
    advance(s.t.n_bytes());
  }

  void advance(int64_t n) {
    if (!progress_) return;
    std::lock_guard<std::mutex> lock(progress_mu_);
    done_ += n;
    progress_(done_, total_);
  }
  const ModelConfig& config_;
  const Checkpoint& ckpt_;
  Backend* backend_;
  const Backend* sizer_;
  LoadProgress progress_;
  std::unique_ptr<ThreadPool> pool_;
  WeightBytes bytes_;
  std::vector<std::string> mapped_names_;  // used in place; populated at the end
  int64_t n_read_ = 0;
  std::mutex progress_mu_;
  int64_t done_ = 0;
  int64_t total_ = 0;
};

StatusOr<Tensor> Loader::stacked(const std::vector<std::vector<std::string>>& parts,
                                 int64_t part_rows, int64_t cols, bool flat) {
  const int64_t n_experts = static_cast<int64_t>(parts.size());
  const int64_t n_parts = static_cast<int64_t>(parts[0].size()), rows = n_parts * part_rows;
  std::vector<std::vector<Source>> src(parts.size());
  for (size_t e = 0; e < parts.size(); ++e) {
    for (const std::string& name : parts[e]) {
      ASSIGN_OR_RETURN(Source s, source(name, {part_rows, cols}));
      const DType first = e == 0 && src[0].empty() ? s.t.dtype() : src[0][0].t.dtype();
      if (s.t.dtype() != first) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor '", name, "' is ", dtype_name(s.t.dtype()), " but '", parts[0][0], "' is ",
            dtype_name(first), "; the tensors stacked into one weight must share a dtype"));
      }
      src[e].push_back(std::move(s));
    }
  }
  const DType dtype = src[0][0].t.dtype();
  std::vector<int64_t> shape = {n_experts, rows, cols};
  if (flat) shape = {rows, cols};
  Tensor out = make(dtype, shape);
  const int64_t part_bytes = src[0][0].t.n_bytes();
  // FP8: block rows that never straddle a part, so each maps to one source block row.
  const int64_t bn = dtype == DType::kFP8E4M3 ? config_.quantization->block_n : 0;
  const int64_t bk = dtype == DType::kFP8E4M3 ? config_.quantization->block_k : 0;
  const int64_t g = bn > 0 ? std::gcd(bn, part_rows) : 0;
  Tensor scales;
  if (bn > 0) {
    std::vector<int64_t> s_shape = {n_experts, rows / g, ceil_div(cols, bk)};
    if (flat) s_shape.erase(s_shape.begin());
    scales = make(DType::kF32, s_shape);
  }
  if (!planning()) {
    const int64_t scale_cols = bn > 0 ? ceil_div(cols, bk) : 0;
    std::vector<Status> errors(static_cast<size_t>(n_experts));
    pool_->parallel_for(n_experts, [&](int64_t e0, int64_t e1) {
      for (int64_t e = e0; e < e1; ++e) {
        for (int64_t p = 0; p < n_parts; ++p) {
          const Source& sp = src[static_cast<size_t>(e)][static_cast<size_t>(p)];
          const Tensor& t = sp.t;
          char* dst = static_cast<char*>(out.raw()) + (e * n_parts + p) * part_bytes;
          std::memcpy(dst, t.raw(), static_cast<size_t>(part_bytes));
          if (bn > 0) {
            const int64_t at = find_fp8_nan(reinterpret_cast<const uint8_t*>(dst), part_bytes);
            if (at >= 0) {
              errors[static_cast<size_t>(e)] = absl::InvalidArgumentError(
                  absl::StrCat("tensor '", sp.name, "' holds the E4M3 NaN code at element ", at));
            }
            const float* s = t.block_scales()->data<float>();
            float* d = scales.data<float>() + (e * rows + p * part_rows) / g * scale_cols;
            for (int64_t i = 0; i < part_rows / g; ++i) {
              std::memcpy(d + i * scale_cols, s + (i * g / bn) * scale_cols,
                          static_cast<size_t>(scale_cols) * sizeof(float));
            }
          }
          release(sp);
        }
      }
    });
    for (const Status& err : errors) RETURN_IF_ERROR(err);
  }
  if (bn > 0) out.set_block_scales(scales, g, bk);
  return keep_repacked(out);
}

Status Loader::split_kv_b(const std::string& name, Tensor* w_uk_t, Tensor* w_uv) {
  const ModelConfig& c = config_;
  const int64_t n_heads = c.num_attention_heads, nope = c.qk_nope_head_dim, v = c.v_head_dim,
                r = c.kv_lora_rank;
  ASSIGN_OR_RETURN(Source kv_b, source(name, {n_heads * (nope + v), r}));
  const DType dtype = kv_b.t.dtype() == DType::kFP8E4M3 ? DType::kF32 : kv_b.t.dtype();
  Tensor uk = make(dtype, {n_heads, r, nope});
  Tensor uv = make(dtype, {n_heads, v, r});
  if (!planning()) {
    const std::vector<float> w = to_f32_vector(kv_b.t);
    if (const auto nan = std::find_if(w.begin(), w.end(), [](float v) { return std::isnan(v); });
        nan != w.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' holds a NaN at element ", nan - w.begin()));
    }
    Tensor uk32 = Tensor::empty_host(DType::kF32, {n_heads, r, nope});
    Tensor uv32 = Tensor::empty_host(DType::kF32, {n_heads, v, r});
    for (int64_t h = 0; h < n_heads; ++h) {
      const float* head = w.data() + h * (nope + v) * r;
      for (int64_t i = 0; i < nope; ++i) {
        for (int64_t j = 0; j < r; ++j)
          uk32.data<float>()[(h * r + j) * nope + i] = head[i * r + j];
      }
      std::memcpy(uv32.data<float>() + h * v * r, head + nope * r,
                  static_cast<size_t>(v * r) * sizeof(float));
    }
    convert_into(uk32, uk);
    convert_into(uv32, uv);
    release(kv_b);
  }
  *w_uk_t = keep_repacked(uk);
  *w_uv = keep_repacked(uv);
  return absl::OkStatus();
}

Status Loader::populate_mapped() {
  if (planning()) return absl::OkStatus();
  std::vector<Status> errors(mapped_names_.size());
  pool_->parallel_for(static_cast<int64_t>(mapped_names_.size()), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const std::string& name = mapped_names_[static_cast<size_t>(i)];
      ckpt_.populate(name);
      StatusOr<Tensor> t = ckpt_.get(name);
      MS_CHECK(t.ok(), t.status().ToString());
      if (t->dtype() == DType::kFP8E4M3) {
        const int64_t at = find_fp8_nan(t->data<uint8_t>(), t->n_bytes());
        if (at >= 0) {
          errors[static_cast<size_t>(i)] = absl::InvalidArgumentError(
              absl::StrCat("tensor '", name, "' holds the E4M3 NaN code at element ", at));
        }
      }
      advance(t->n_bytes());
    }
  });
  for (const Status& s : errors) RETURN_IF_ERROR(s);
  return absl::OkStatus();
}

// Walks every weight of the model through `ld`: one code path for loading and
// for planning.
StatusOr<DeepseekWeights> read_weights(const ModelConfig& c, Loader& ld) {
  const int64_t d = c.hidden_size, n_heads = c.num_attention_heads;
  const int64_t qk = c.qk_nope_head_dim + c.qk_rope_head_dim;
  DeepseekWeights w;
  ASSIGN_OR_RETURN(w.embed, ld.matrix("model.embed_tokens.weight", c.vocab_size, d));
  ASSIGN_OR_RETURN(w.final_norm, ld.vector("model.norm.weight", d));
  if (c.tie_word_embeddings) {
    w.lm_head = w.embed;
  } else {
    ASSIGN_OR_RETURN(w.lm_head, ld.matrix("lm_head.weight", c.vocab_size, d));
  }
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    DeepseekLayerWeights l;
    ASSIGN_OR_RETURN(l.attn_norm, ld.vector(p + "input_layernorm.weight", d));
    ASSIGN_OR_RETURN(l.ffn_norm, ld.vector(p + "post_attention_layernorm.weight", d));

    const std::string a = p + "self_attn.";
    if (c.q_lora_rank.has_value()) {
      const int64_t q_lora = *c.q_lora_rank;
      ASSIGN_OR_RETURN(l.q_a, ld.matrix(a + "q_a_proj.weight", q_lora, d));
      ASSIGN_OR_RETURN(l.q_a_norm, ld.vector(a + "q_a_layernorm.weight", q_lora));
      ASSIGN_OR_RETURN(l.q_b, ld.matrix(a + "q_b_proj.weight", n_heads * qk, q_lora));
    } else {
      ASSIGN_OR_RETURN(l.q_proj, ld.matrix(a + "q_proj.weight", n_heads * qk, d));
    }
    ASSIGN_OR_RETURN(
        l.kv_a, ld.matrix(a + "kv_a_proj_with_mqa.weight", c.kv_lora_rank + c.qk_rope_head_dim, d));
    ASSIGN_OR_RETURN(l.kv_a_norm, ld.vector(a + "kv_a_layernorm.weight", c.kv_lora_rank));
    RETURN_IF_ERROR(ld.split_kv_b(a + "kv_b_proj.weight", &l.w_uk_t, &l.w_uv));
    ASSIGN_OR_RETURN(l.o_proj, ld.matrix(a + "o_proj.weight", d, n_heads * c.v_head_dim));

    const std::string m = p + "mlp.";
    if (c.is_moe_layer(i)) {
      const int64_t n_experts = *c.n_routed_experts, f = c.moe_intermediate_size;
      ASSIGN_OR_RETURN(l.router, ld.matrix_f32(m + "gate.weight", n_experts, d));
      if (c.topk_method == TopkMethod::kNoauxTc) {
        ASSIGN_OR_RETURN(l.router_bias, ld.vector(m + "gate.e_score_correction_bias", n_experts));
      }
      std::vector<std::vector<std::string>> gate_up, down;
      for (int64_t e = 0; e < n_experts; ++e) {
        const std::string x = absl::StrCat(m, "experts.", e, ".");
        gate_up.push_back({x + "gate_proj.weight", x + "up_proj.weight"});
        down.push_back({x + "down_proj.weight"});
      }
      ASSIGN_OR_RETURN(l.experts_gate_up, ld.stacked(gate_up, f, d, /*flat=*/false));
      ASSIGN_OR_RETURN(l.experts_down, ld.stacked(down, d, f, /*flat=*/false));
      if (c.n_shared_experts > 0) {
        const int64_t fs = f * c.n_shared_experts;
        const std::string s = m + "shared_experts.";
        ASSIGN_OR_RETURN(
            l.shared_gate_up,
            ld.stacked({{s + "gate_proj.weight", s + "up_proj.weight"}}, fs, d, /*flat=*/true));
        ASSIGN_OR_RETURN(l.shared_down, ld.matrix(s + "down_proj.weight", d, fs));
      }
    } else {
      const int64_t f = c.intermediate_size;
      ASSIGN_OR_RETURN(l.mlp_gate_up,
                       ld.stacked({{m + "gate_proj.weight", m + "up_proj.weight"}}, f, d,
                                  /*flat=*/true));
      ASSIGN_OR_RETURN(l.mlp_down, ld.matrix(m + "down_proj.weight", d, f));
    }
    w.layers.push_back(std::move(l));
  }
  return w;
}

}  // namespace

LoadProgress periodic_load_log(double interval_s) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  auto last = std::make_shared<Clock::time_point>(start);
  return [=](int64_t done, int64_t total) {
    const Clock::time_point now = Clock::now();
    if (std::chrono::duration<double>(now - *last).count() < interval_s) return;
    *last = now;
    const double elapsed = std::chrono::duration<double>(now - start).count();
    MS_LOG_INFO("loading weights: {} / {} ({}/s)", format_bytes(done), format_bytes(total),
                format_bytes(static_cast<int64_t>(static_cast<double>(done) / elapsed)));
  };
}

std::string WeightBytes::describe() const {
  std::vector<std::string> parts;
  for (const auto& [dtype, n] : by_dtype)
    parts.push_back(absl::StrCat(dtype_name(dtype), " ", format_bytes(n)));
  return absl::StrCat(format_bytes(total()), " (", absl::StrJoin(parts, ", "), "; ",
                      format_bytes(mapped), " used in place from the checkpoint, ",
                      format_bytes(repacked), " repacked)");
}

StatusOr<WeightBytes> plan_deepseek_weights(const ModelConfig& config, const Checkpoint& checkpoint,
                                            const Backend* backend) {
  Loader ld(config, checkpoint, nullptr, {}, backend);
  RETURN_IF_ERROR(read_weights(config, ld).status());
  WeightBytes bytes = ld.bytes();
  bytes.checkpoint = ld.n_read();
  return bytes;
}

StatusOr<DeepseekWeights> load_deepseek_weights(const ModelConfig& config,
                                                const Checkpoint& checkpoint, Backend& backend,
                                                const LoadProgress& progress) {
  ASSIGN_OR_RETURN(const WeightBytes plan, plan_deepseek_weights(config, checkpoint, &backend));
  Loader ld(config, checkpoint, &backend, progress);
  ld.set_total(plan.checkpoint);
  ASSIGN_OR_RETURN(DeepseekWeights w, read_weights(config, ld));
  RETURN_IF_ERROR(ld.populate_mapped());
  w.bytes = ld.bytes();
  w.bytes.checkpoint = ld.n_read();
  return w;
}

}  // namespace moeserve
