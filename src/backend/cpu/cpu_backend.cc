#include "backend/cpu/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <numeric>
#include <type_traits>
#include <utility>
#include <vector>

#include "backend/cpu/cpu_gemm.h"

namespace moeserve {
namespace {

// Row r of a 2-D (or leading-flattened) tensor whose innermost dim is contiguous.
template <typename T>
T* row(const Tensor& t, int64_t r) {
  return t.data<T>() + r * t.stride(0);
}

void check_host(const Tensor& t, const char* what) {
  MS_CHECK(t.defined() && t.device() == Device::kCpu, what, " must be a host tensor");
  MS_CHECK(t.ndim() == 0 || t.stride(-1) == 1 || t.dim(-1) == 1, what, " ", t.describe(),
           " must have a contiguous innermost dim");
}

void check_dtype(const Tensor& t, DType d, const char* what) {
  MS_CHECK(t.dtype() == d, what, " is ", t.describe(), ", expected ", dtype_name(d));
}

// The CPU backend is the F32 reference: every activation argument is F32.
void check_act(std::initializer_list<std::pair<const Tensor*, const char*>> args) {
  for (const auto& [t, what] : args) {
    MS_CHECK(t->dtype() == DType::kF32, what, " is ", t->describe(),
             ": the CPU backend computes activations in F32");
  }
}

float silu(float v) { return v / (1.0f + std::exp(-v)); }

// out = x / rms(x) * w over one row of d values (out may alias x).
void rms_norm_row(const float* x, const float* w, int64_t d, float eps, float* out) {
  double ss = 0.0;
  for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(x[j]) * x[j];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(d) + eps));
  for (int64_t j = 0; j < d; ++j) out[j] = x[j] * inv * w[j];
}

// Rotates the interleaved pairs of v[0, 2 * half) by one position's cos/sin table row.
void rotate_pairs(float* v, const float* cs, int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float c = cs[2 * i], s = cs[2 * i + 1];
    const float a = v[2 * i], b = v[2 * i + 1];
    v[2 * i] = a * c - b * s;
    v[2 * i + 1] = a * s + b * c;
  }
}

// Writes one F32 row into a cache row of `width` values in the cache's dtype.
void write_cache_row(const float* src, int64_t width, const Tensor& cache, int64_t slot) {
  if (cache.dtype() == DType::kF32) {
    std::memcpy(cache.data<float>() + slot * width, src,
                static_cast<size_t>(width) * sizeof(float));
  } else {
    uint16_t* dst = cache.data<uint16_t>() + slot * width;
    for (int64_t i = 0; i < width; ++i) dst[i] = f32_to_bf16(src[i]);
  }
}

void check_cache(const Tensor& kv, const Tensor& slot_mapping, const Tensor& cache) {
  check_dtype(slot_mapping, DType::kI32, "slot_mapping");
  MS_CHECK(cache.dtype() == DType::kF32 || cache.dtype() == DType::kBF16, "kv cache is ",
           cache.describe(), ", expected F32 or BF16");
  MS_CHECK(cache.dim(2) == kv.dim(1) && cache.is_contiguous(), "kv cache write shapes ",
           kv.describe(), " ", cache.describe());
}

}  // namespace

CpuBackend::CpuBackend(int n_threads) : pool_(n_threads) {
  // Products are split across this backend's own threads (cpu_gemm.cc), each
  // calling OpenBLAS single-threaded.
  openblas_set_num_threads(1);
}

Tensor CpuBackend::alloc(DType dtype, std::vector<int64_t> shape) {
  return Tensor::empty_host(dtype, std::move(shape));
}

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  MS_CHECK(src.dtype() == dst.dtype() && src.numel() == dst.numel(), "copy ", src.describe(),
           " -> ", dst.describe());
  MS_CHECK(src.is_contiguous() && dst.is_contiguous(), "copy needs contiguous tensors");
  MS_CHECK(src.device() == Device::kCpu && dst.device() == Device::kCpu,
           "the CPU backend copies host memory only");
  std::memcpy(dst.raw(), src.raw(), static_cast<size_t>(src.n_bytes()));
}

void CpuBackend::gather_rows(const Tensor& src, const Tensor& indices, const Tensor& out) {
  check_host(src, "gather src");
  check_host(out, "gather out");
  check_dtype(indices, DType::kI32, "gather indices");
  check_act({{&out, "gather out"}});
  const int64_t n = indices.dim(0), d = src.dim(1), n_rows = src.dim(0);
  MS_CHECK(out.dim(0) == n && out.dim(1) == d, "gather out ", out.describe());
  const int32_t* idx = indices.data<int32_t>();
  const cpu::WeightView table = cpu::WeightView::of(src);
  pool_.parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      MS_CHECK(idx[i] >= 0 && idx[i] < n_rows, "gather index ", idx[i], " out of range ", n_rows);
      cpu::decode_row(table, idx[i], d, row<float>(out, i));
    }
  });
}

void CpuBackend::rms_norm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out) {
  check_act({{&x, "rms_norm x"}, {&out, "rms_norm out"}});
  check_host(x, "rms_norm x");
  check_host(out, "rms_norm out");
  const int64_t n = x.dim(0), d = x.dim(1);
  MS_CHECK(weight.numel() == d && out.dim(0) == n && out.dim(1) == d, "rms_norm shapes ",
           x.describe(), " ", weight.describe(), " ", out.describe());
  const float* w = norm_weight(weight);
  pool_.parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) rms_norm_row(row<float>(x, r), w, d, eps, row<float>(out, r));
  });
}

void CpuBackend::add_rms_norm(const Tensor& residual, const Tensor& x, const Tensor& weight,
                              float eps, const Tensor& out) {
  check_act(
      {{&residual, "add_rms_norm residual"}, {&x, "add_rms_norm x"}, {&out, "add_rms_norm out"}});
  check_host(residual, "add_rms_norm residual");
  check_host(x, "add_rms_norm x");
  check_host(out, "add_rms_norm out");
  const int64_t n = x.dim(0), d = x.dim(1);
  MS_CHECK(residual.dim(0) == n && residual.dim(1) == d && weight.numel() == d && out.dim(0) == n &&
               out.dim(1) == d,
           "add_rms_norm shapes ", residual.describe(), " ", x.describe(), " ", weight.describe(),
           " ", out.describe());
  const float* w = norm_weight(weight);
  pool_.parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      float* res = row<float>(residual, r);
      const float* xr = row<float>(x, r);
      for (int64_t j = 0; j < d; ++j) res[j] += xr[j];
      rms_norm_row(res, w, d, eps, row<float>(out, r));
    }
  });
}

std::vector<StatusOr<SampledToken>> CpuBackend::sample(const Tensor& logits,
                                                       std::span<const SamplingRow> rows) {
  check_host(logits, "sample logits");
  check_sample_rows(logits, rows);
  std::vector<StatusOr<SampledToken>> out(rows.size(), absl::UnknownError("not sampled"));
  const size_t vocab = static_cast<size_t>(logits.dim(1));
  pool_.parallel_for(static_cast<int64_t>(rows.size()), [&](int64_t b, int64_t e) {
    std::vector<float> scratch;
    for (int64_t i = b; i < e; ++i) {
      const SamplingRow& r = rows[static_cast<size_t>(i)];
      out[static_cast<size_t>(i)] =
          sample_row({row<float>(logits, r.logits_row), vocab}, r, scratch);
    }
  });
  return out;
}

const float* CpuBackend::norm_weight(const Tensor& weight) {
  if (weight.dtype() == DType::kF32) return weight.data<float>();
  // Widened once per call into a buffer that only grows.
  norm_weight_.resize(static_cast<size_t>(weight.numel()));
  cpu::decode_row(cpu::WeightView::of(weight.reshape({1, weight.numel()})), 0, weight.numel(),
                  norm_weight_.data());
  return norm_weight_.data();
}

void CpuBackend::add(const Tensor& a, const Tensor& b, const Tensor& out) {
  check_act({{&a, "add a"}, {&b, "add b"}, {&out, "add out"}});
  const int64_t n = a.dim(0), d = a.dim(1);
  MS_CHECK(b.dim(0) == n && b.dim(1) == d && out.dim(0) == n && out.dim(1) == d, "add shapes");
  for (int64_t r = 0; r < n; ++r) {
    const float* ar = row<float>(a, r);
    const float* br = row<float>(b, r);
    float* o = row<float>(out, r);
    for (int64_t j = 0; j < d; ++j) o[j] = ar[j] + br[j];
  }
}

void CpuBackend::linear(const Tensor& x, const Tensor& w, const Tensor& out) {
  check_host(x, "linear x");
  check_host(w, "linear w");
  check_host(out, "linear out");
  check_act({{&x, "linear x"}, {&out, "linear out"}});
  const int64_t n = x.dim(0), k = x.dim(1), m = w.dim(0);
  MS_CHECK(w.dim(1) == k && out.dim(0) == n && out.dim(1) == m, "linear shapes ", x.describe(), " ",
           w.describe(), " ", out.describe());
  cpu::gemm_xwt(x.data<float>(), x.stride(0), cpu::WeightView::of(w), out.data<float>(),
                out.stride(0), n, m, k, pool_);
}

void CpuBackend::head_linear(const Tensor& x, const Tensor& w, const Tensor& out) {
  check_act({{&x, "head_linear x"}, {&out, "head_linear out"}});
  const int64_t n = x.dim(0), n_heads = x.dim(1), k = x.dim(2), m = w.dim(1);
  MS_CHECK(w.dim(0) == n_heads && w.dim(2) == k && out.dim(0) == n && out.dim(1) == n_heads &&
               out.dim(2) == m,
           "head_linear shapes ", x.describe(), " ", w.describe(), " ", out.describe());
  for (int64_t h = 0; h < n_heads; ++h) {
    // Head h of every token is a [n, k] matrix with row stride x.stride(0).
    const Tensor w_h = w.select(0, h);
    cpu::gemm_xwt(x.data<float>() + h * x.stride(1), x.stride(0), cpu::WeightView::of(w_h),
                  out.data<float>() + h * out.stride(1), out.stride(0), n, m, k, pool_);
  }
}

void CpuBackend::silu_mul(const Tensor& gate_up, const Tensor& out) {
  check_act({{&gate_up, "silu_mul gate_up"}, {&out, "silu_mul out"}});
  const int64_t n = gate_up.dim(0), f = out.dim(1);
  MS_CHECK(gate_up.dim(1) == 2 * f && out.dim(0) == n, "silu_mul shapes");
  pool_.parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* g = row<float>(gate_up, r);
      float* o = row<float>(out, r);
      for (int64_t j = 0; j < f; ++j) o[j] = silu(g[j]) * g[f + j];
    }
  });
}

void CpuBackend::rope(const Tensor& x, const Tensor& positions, const Tensor& cos_sin) {
  check_act({{&x, "rope x"}});
  check_dtype(positions, DType::kI32, "rope positions");
  const int64_t n = x.dim(0);
  const int64_t n_heads = x.ndim() == 3 ? x.dim(1) : 1;
  const int64_t head_stride = x.ndim() == 3 ? x.stride(1) : 0;
  const int64_t rope_dim = x.dim(-1), half = rope_dim / 2, max_pos = cos_sin.dim(0);
  MS_CHECK(rope_dim % 2 == 0 && cos_sin.dim(1) == half && cos_sin.dim(2) == 2, "rope shapes ",
           x.describe(), " ", cos_sin.describe());
  const int32_t* pos = positions.data<int32_t>();
  const float* table = cos_sin.data<float>();
  for (int64_t t = 0; t < n; ++t) {
    MS_CHECK(pos[t] >= 0 && pos[t] < max_pos, "rope position ", pos[t], " beyond table ", max_pos);
    const float* cs = table + pos[t] * half * 2;
    for (int64_t h = 0; h < n_heads; ++h) {
      rotate_pairs(x.data<float>() + t * x.stride(0) + h * head_stride, cs, half);
    }
  }
}

void CpuBackend::kv_cache_write(const Tensor& kv, const Tensor& slot_mapping, const Tensor& cache) {
  check_act({{&kv, "kv_cache_write kv"}});
  check_cache(kv, slot_mapping, cache);
  const int64_t n = kv.dim(0), width = kv.dim(1), n_slots = cache.dim(0) * cache.dim(1);
  const int32_t* slots = slot_mapping.data<int32_t>();
  for (int64_t t = 0; t < n; ++t) {
    MS_CHECK(slots[t] >= 0 && slots[t] < n_slots, "cache slot ", slots[t], " out of range");
    write_cache_row(row<float>(kv, t), width, cache, slots[t]);
  }
}

void CpuBackend::rope_kv_write(const Tensor& kv, int64_t rope_begin, const Tensor& positions,
                               const Tensor& cos_sin, const Tensor& slot_mapping,
                               const Tensor& cache) {
  check_act({{&kv, "rope_kv_write kv"}});
  check_cache(kv, slot_mapping, cache);
  check_dtype(positions, DType::kI32, "rope positions");
  const int64_t n = kv.dim(0), width = kv.dim(1), n_slots = cache.dim(0) * cache.dim(1);
  const int64_t half = (width - rope_begin) / 2, max_pos = cos_sin.dim(0);
  MS_CHECK((width - rope_begin) % 2 == 0 && cos_sin.dim(1) == half && cos_sin.dim(2) == 2,
           "rope_kv_write shapes ", kv.describe(), " rope from ", rope_begin, " ",
           cos_sin.describe());
  const int32_t* pos = positions.data<int32_t>();
  const int32_t* slots = slot_mapping.data<int32_t>();
  for (int64_t t = 0; t < n; ++t) {
    MS_CHECK(pos[t] >= 0 && pos[t] < max_pos, "rope position ", pos[t], " beyond table ", max_pos);
    MS_CHECK(slots[t] >= 0 && slots[t] < n_slots, "cache slot ", slots[t], " out of range");
    float* r = row<float>(kv, t);
    rotate_pairs(r + rope_begin, cos_sin.data<float>() + pos[t] * half * 2, half);
    write_cache_row(r, width, cache, slots[t]);
  }
}

namespace {

// One cached row [latent | rope key] widened to F32 (a no-op view for F32).
template <typename T>
const float* cache_row_f32(const T* row, int64_t width, std::vector<float>& buf) {
  if constexpr (std::is_same_v<T, float>) {
    return row;
  } else {
    buf.resize(static_cast<size_t>(width));
    for (int64_t i = 0; i < width; ++i) buf[static_cast<size_t>(i)] = bf16_to_f32(row[i]);
    return buf.data();
  }
}

template <typename T>
void mla_attention_impl(const Tensor& q_latent, const Tensor& q_rope, const Tensor& cache,
                        const AttentionBatch& batch, float scale, const Tensor& out,
                        ThreadPool& pool) {
  const int64_t n = q_latent.dim(0), n_heads = q_latent.dim(1), latent = q_latent.dim(2);
  const int64_t rope_dim = q_rope.dim(2), width = cache.dim(2), block_size = cache.dim(1);
  const int32_t* seq = batch.token_seq.data<int32_t>();
  const int32_t* pos = batch.token_pos.data<int32_t>();
  const int32_t* tables = batch.block_tables.data<int32_t>();
  const int64_t max_blocks = batch.block_tables.dim(1);
  const T* kv = cache.data<T>();
  pool.parallel_for(n * n_heads, [&](int64_t b, int64_t e) {
    std::vector<float> scores, buf;
    for (int64_t th = b; th < e; ++th) {
      const int64_t t = th / n_heads, h = th % n_heads;
      const int64_t n_ctx = pos[t] + 1;
      MS_CHECK(n_ctx <= max_blocks * block_size, "position ", pos[t], " beyond block table");
      const float* ql = q_latent.data<float>() + t * q_latent.stride(0) + h * q_latent.stride(1);
      const float* qr = q_rope.data<float>() + t * q_rope.stride(0) + h * q_rope.stride(1);
      const int32_t* table = tables + seq[t] * max_blocks;
      auto cache_row = [&](int64_t p) {
        return cache_row_f32(
            kv +
                (static_cast<int64_t>(table[p / block_size]) * block_size + p % block_size) * width,
            width, buf);
      };
      scores.resize(static_cast<size_t>(n_ctx));
      float max_score = -std::numeric_limits<float>::infinity();
      for (int64_t p = 0; p < n_ctx; ++p) {
        const float* r = cache_row(p);
        float s = 0.0f;
        for (int64_t i = 0; i < latent; ++i) s += ql[i] * r[i];
        for (int64_t i = 0; i < rope_dim; ++i) s += qr[i] * r[latent + i];
        scores[static_cast<size_t>(p)] = s * scale;
        max_score = std::max(max_score, s * scale);
      }
      double denom = 0.0;
      for (float& s : scores) {
        s = std::exp(s - max_score);
        denom += s;
      }
      float* o = out.data<float>() + t * out.stride(0) + h * out.stride(1);
      std::fill(o, o + latent, 0.0f);
      for (int64_t p = 0; p < n_ctx; ++p) {
        const float wgt = static_cast<float>(scores[static_cast<size_t>(p)] / denom);
        const float* r = cache_row(p);
        for (int64_t i = 0; i < latent; ++i) o[i] += wgt * r[i];
      }
    }
  });
}

}  // namespace

void CpuBackend::mla_attention(const Tensor& q_latent, const Tensor& q_rope, const Tensor& cache,
                               const AttentionBatch& batch, float scale, const Tensor& out) {
  check_act({{&q_latent, "mla_attention q_latent"},
             {&q_rope, "mla_attention q_rope"},
             {&out, "mla_attention out"}});
  const int64_t latent = q_latent.dim(2), rope_dim = q_rope.dim(2), width = cache.dim(2);
  MS_CHECK(latent + rope_dim == width && cache.dim(1) == batch.block_size && out.dim(2) == latent,
           "mla_attention shapes ", q_latent.describe(), " ", q_rope.describe(), " ",
           cache.describe());
  if (cache.dtype() == DType::kF32) {
    mla_attention_impl<float>(q_latent, q_rope, cache, batch, scale, out, pool_);
  } else {
    MS_CHECK(cache.dtype() == DType::kBF16, "kv cache is ", cache.describe(),
             ", expected F32 or BF16");
    mla_attention_impl<uint16_t>(q_latent, q_rope, cache, batch, scale, out, pool_);
  }
}

void CpuBackend::moe_gate(const Tensor& logits, const Tensor& bias, const GateParams& params,
                          const Tensor& topk_ids, const Tensor& topk_weights) {
  const int64_t n = logits.dim(0), n_experts = logits.dim(1);
  const int k = params.top_k, n_group = params.n_group;
  MS_CHECK(topk_ids.dim(1) == k && topk_weights.dim(1) == k && n_experts % n_group == 0,
           "moe_gate shapes");
  const int64_t per_group = n_experts / n_group;
  const bool grouped = n_group > 1 && params.method != TopkMethod::kGreedy;
  const float* b = bias.defined() ? bias.data<float>() : nullptr;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (int64_t t = 0; t < n; ++t) {
    const float* l = row<float>(logits, t);
    std::vector<float> scores(static_cast<size_t>(n_experts));
    if (params.scoring == ScoringFunc::kSoftmax) {
      const float mx = *std::max_element(l, l + n_experts);
      double sum = 0.0;
      for (int64_t e = 0; e < n_experts; ++e) sum += std::exp(static_cast<double>(l[e] - mx));
      for (int64_t e = 0; e < n_experts; ++e) {
        scores[e] = static_cast<float>(std::exp(static_cast<double>(l[e] - mx)) / sum);
      }
    } else {
      // In double, rounded once: a GPU's expf and glibc's differ in the last bit, their
      // double exps (almost) never do after the rounding.
      for (int64_t e = 0; e < n_experts; ++e) {
        scores[e] = static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(l[e]))));
      }
    }
    // The bias steers which experts are chosen, never how much they weigh.
    std::vector<float> choice = scores;
    if (b != nullptr) {
      for (int64_t e = 0; e < n_experts; ++e) choice[e] += b[e];
    }
    if (grouped) {
      std::vector<float> group_score(static_cast<size_t>(n_group));
      for (int g = 0; g < n_group; ++g) {
        std::vector<float> v(choice.begin() + g * per_group, choice.begin() + (g + 1) * per_group);
        std::sort(v.begin(), v.end(), std::greater<>());
        group_score[g] = params.method == TopkMethod::kNoauxTc ? v[0] + v[1] : v[0];
      }
      std::vector<int> order(static_cast<size_t>(n_group));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int x, int y) { return group_score[x] > group_score[y]; });
      for (int gi = params.topk_group; gi < n_group; ++gi) {
        const int g = order[gi];
        std::fill(choice.begin() + g * per_group, choice.begin() + (g + 1) * per_group, kNegInf);
      }
    }
    std::vector<int> experts(static_cast<size_t>(n_experts));
    std::iota(experts.begin(), experts.end(), 0);
    std::partial_sort(experts.begin(), experts.begin() + k, experts.end(), [&](int x, int y) {
      return choice[x] > choice[y] || (choice[x] == choice[y] && x < y);
    });
    int32_t* ids = row<int32_t>(topk_ids, t);
    float* w = row<float>(topk_weights, t);
    double sum = 0.0;
    for (int j = 0; j < k; ++j) {
      ids[j] = experts[j];
      w[j] = scores[experts[j]];
      sum += w[j];
    }
    for (int j = 0; j < k; ++j) {
      if (params.norm_topk_prob && k > 1) w[j] = static_cast<float>(w[j] / sum);
      w[j] *= params.routed_scaling_factor;
    }
    if (params.local_count >= 0) {
      for (int j = 0; j < k; ++j) {
        const int local = ids[j] - params.local_begin;
        ids[j] = local >= 0 && local < params.local_count ? local : -1;
      }
    }
  }
}

void CpuBackend::moe_ffn(const Tensor& x, const Tensor& topk_ids, const Tensor& topk_weights,
                         const Tensor& w_gate_up, const Tensor& w_down, const Tensor& out) {
  check_act({{&x, "moe_ffn x"}, {&out, "moe_ffn out"}});
  const int64_t n = x.dim(0), d = x.dim(1), k = topk_ids.dim(1);
  const int64_t n_experts = w_gate_up.dim(0), f = w_down.dim(2);
  MS_CHECK(w_gate_up.dim(1) == 2 * f && w_gate_up.dim(2) == d && w_down.dim(1) == d &&
               out.dim(0) == n && out.dim(1) == d,
           "moe_ffn shapes ", x.describe(), " ", w_gate_up.describe(), " ", w_down.describe());
  // Tokens grouped by expert, so each expert's weights are read once per step.
  std::vector<std::vector<std::pair<int64_t, float>>> routed(static_cast<size_t>(n_experts));
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = row<int32_t>(topk_ids, t)[j];
      if (e == -1) continue;  // held by another rank
      MS_CHECK(e >= 0 && e < n_experts, "expert id ", e, " out of range");
      routed[static_cast<size_t>(e)].push_back({t, row<float>(topk_weights, t)[j]});
    }
  }
  for (int64_t t = 0; t < n; ++t) std::fill(row<float>(out, t), row<float>(out, t) + d, 0.0f);
  std::vector<float> xs, gu, act, y;
  for (int64_t e = 0; e < n_experts; ++e) {
    const auto& toks = routed[static_cast<size_t>(e)];
    const int64_t m = static_cast<int64_t>(toks.size());
    if (m == 0) continue;
    xs.resize(static_cast<size_t>(m * d));
    for (int64_t i = 0; i < m; ++i) {
      std::memcpy(&xs[i * d], row<float>(x, toks[i].first), static_cast<size_t>(d) * 4);
    }
    gu.resize(static_cast<size_t>(m * 2 * f));
    act.resize(static_cast<size_t>(m * f));
    y.resize(static_cast<size_t>(m * d));
    const Tensor wgu = w_gate_up.select(0, e), wd = w_down.select(0, e);
    cpu::gemm_xwt(xs.data(), d, cpu::WeightView::of(wgu), gu.data(), 2 * f, m, 2 * f, d, pool_);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < f; ++j)
        act[i * f + j] = silu(gu[i * 2 * f + j]) * gu[i * 2 * f + f + j];
    }
    cpu::gemm_xwt(act.data(), f, cpu::WeightView::of(wd), y.data(), d, m, d, f, pool_);
    for (int64_t i = 0; i < m; ++i) {
      float* o = row<float>(out, toks[i].first);
      const float wgt = toks[i].second;
      for (int64_t j = 0; j < d; ++j) o[j] += wgt * y[i * d + j];
    }
  }
}

}  // namespace moeserve
