// CudaBackend's attention-side ops: rope, kv_cache_write, rope_kv_write (kernels/rope_kv.cu)
// and mla_attention (kernels/mla_attention.cu). Activations (q, kv, out) are F32 or BF16,
// each tensor independently; the cache is F32 or BF16.
#include <algorithm>

#include "backend/cuda/cuda_internal.h"
#include "kernels/mla_attention.cuh"
#include "kernels/rope_kv.cuh"

namespace moeserve {

using namespace cuda_detail;

namespace {

// cos_sin: [max_pos, half, 2] F32, contiguous, on CUDA.
void check_cos_sin(const Tensor& cos_sin, int64_t half, const char* op) {
  MS_CHECK(cos_sin.defined() && cos_sin.device() == Device::kCuda && cos_sin.ndim() == 3 &&
               cos_sin.dim(1) == half && cos_sin.dim(2) == 2 && cos_sin.is_contiguous() &&
               cos_sin.dtype() == DType::kF32,
           "CudaBackend::", op, ": cos_sin ", cos_sin.describe(),
           " must be contiguous F32[max_pos, ", half, ", 2] on CUDA");
}

// cache: [n_blocks, block_size, width] F32 or BF16, contiguous, on CUDA.
void check_cache(const Tensor& cache, int64_t width, const char* op) {
  MS_CHECK(cache.defined() && cache.device() == Device::kCuda && cache.ndim() == 3 &&
               cache.dim(2) == width && cache.is_contiguous() &&
               (cache.dtype() == DType::kF32 || cache.dtype() == DType::kBF16),
           "CudaBackend::", op, ": cache ", cache.describe(),
           " must be contiguous F32 or BF16 [n_blocks, block_size, ", width, "] on CUDA");
}

// The rope_kv kernel's row view of kv [n, width] (as for kv_cache_write and rope_kv_write).
kernels::RopeKvParams kv_rows(const Tensor& kv, const Tensor& slot_mapping, const Tensor& cache,
                              const char* op) {
  const Rows r = rows_of(kv, op, "kv");
  MS_CHECK(kv.ndim() == 2, "CudaBackend::", op, ": kv ", kv.describe(), " must be [n, width]");
  MS_CHECK(r.width <= (int64_t{1} << 30), "CudaBackend::", op, ": row width ", r.width,
           " too large");
  check_vector(slot_mapping, DType::kI32, r.n_rows, op, "slot_mapping");
  check_cache(cache, r.width, op);
  kernels::RopeKvParams p{};
  p.x = kv.raw();
  p.x_type = act_type(kv, op, "kv");
  p.token_stride = r.row_stride;
  p.head_stride = 0;
  p.n_tokens = r.n_rows;
  p.n_heads = 1;
  p.width = static_cast<int>(r.width);
  p.rope_begin = p.width;
  p.cache = cache.raw();
  p.cache_type = elem_type(cache.dtype());
  p.slot_mapping = slot_mapping.data<int32_t>();
  p.n_slots = cache.dim(0) * cache.dim(1);
  return p;
}

}  // namespace

void CudaBackend::rope(const Tensor& x, const Tensor& positions, const Tensor& cos_sin) {
  MS_CHECK(x.defined() && (x.ndim() == 2 || x.ndim() == 3) && x.device() == Device::kCuda &&
               (x.dim(-1) <= 1 || x.stride(-1) == 1),
           "CudaBackend::rope: x ", x.describe(),
           " must be [n, heads, rope_dim] or [n, rope_dim] on CUDA, innermost dim contiguous");
  const int64_t rope_dim = x.dim(-1);
  MS_CHECK(rope_dim % 2 == 0 && rope_dim <= (int64_t{1} << 30), "CudaBackend::rope: x ",
           x.describe(), " has an odd or too large rope_dim");
  check_vector(positions, DType::kI32, x.dim(0), "rope", "positions");
  check_cos_sin(cos_sin, rope_dim / 2, "rope");
  kernels::RopeKvParams p{};
  p.x = x.raw();
  p.x_type = act_type(x, "rope", "x");
  p.token_stride = x.stride(0);
  p.head_stride = x.ndim() == 3 ? x.stride(1) : 0;
  p.n_tokens = x.dim(0);
  p.n_heads = x.ndim() == 3 ? static_cast<int>(x.dim(1)) : 1;
  p.width = static_cast<int>(rope_dim);
  p.rope_begin = 0;
  p.positions = positions.data<int32_t>();
  p.cos_sin = cos_sin.data<float>();
  p.max_pos = cos_sin.dim(0);
  MS_CUDA_CHECK(cudaSetDevice(device_));
  MS_CUDA_CHECK(kernels::launch_rope_kv(p, stream_->get()));
}

void CudaBackend::kv_cache_write(const Tensor& kv, const Tensor& slot_mapping,
                                 const Tensor& cache) {
  const kernels::RopeKvParams p = kv_rows(kv, slot_mapping, cache, "kv_cache_write");
  MS_CUDA_CHECK(cudaSetDevice(device_));
  MS_CUDA_CHECK(kernels::launch_rope_kv(p, stream_->get()));
}

void CudaBackend::rope_kv_write(const Tensor& kv, int64_t rope_begin, const Tensor& positions,
                                const Tensor& cos_sin, const Tensor& slot_mapping,
                                const Tensor& cache) {
  kernels::RopeKvParams p = kv_rows(kv, slot_mapping, cache, "rope_kv_write");
  MS_CHECK(rope_begin >= 0 && rope_begin <= p.width && (p.width - rope_begin) % 2 == 0,
           "CudaBackend::rope_kv_write: rope_begin ", rope_begin, " for kv ", kv.describe(),
           " must leave an even number of rope columns");
  check_vector(positions, DType::kI32, p.n_tokens, "rope_kv_write", "positions");
  check_cos_sin(cos_sin, (p.width - rope_begin) / 2, "rope_kv_write");
  p.rope_begin = static_cast<int>(rope_begin);
  p.positions = positions.data<int32_t>();
  p.cos_sin = cos_sin.data<float>();
  p.max_pos = cos_sin.dim(0);
  MS_CUDA_CHECK(cudaSetDevice(device_));
  MS_CUDA_CHECK(kernels::launch_rope_kv(p, stream_->get()));
}

void CudaBackend::mla_attention(const Tensor& q_latent, const Tensor& q_rope, const Tensor& cache,
                                const AttentionBatch& batch, float scale, const Tensor& out) {
  constexpr const char* kOp = "mla_attention";
  for (const auto& [t, name] :
       {std::pair{&q_latent, "q_latent"}, std::pair{&q_rope, "q_rope"}, std::pair{&out, "out"}}) {
    MS_CHECK(t->defined() && t->ndim() == 3 && t->device() == Device::kCuda && t->stride(2) == 1,
             "CudaBackend::mla_attention: ", name, " ", t->describe(),
             " must be [n, heads, width] on CUDA with a contiguous innermost dim");
  }
  const int64_t n = q_latent.dim(0), n_heads = q_latent.dim(1);
  const int64_t latent = q_latent.dim(2), rope = q_rope.dim(2);
  MS_CHECK(kernels::mla_widths_supported(latent, rope), "CudaBackend::mla_attention: q_latent ",
           q_latent.describe(), " and q_rope ", q_rope.describe(), ": latent ", latent,
           " and rope ", rope,
           " are not supported (latent a multiple of 16 up to 512, rope a multiple of 8 up to 64)");
  MS_CHECK(q_rope.dim(0) == n && q_rope.dim(1) == n_heads && out.dim(0) == n &&
               out.dim(1) == n_heads && out.dim(2) == latent,
           "CudaBackend::mla_attention: shapes q_latent ", q_latent.describe(), ", q_rope ",
           q_rope.describe(), ", out ", out.describe());
  // The output moves in pairs (Q rows in 16-byte chunks where aligned, else one by one).
  MS_CHECK(reinterpret_cast<uintptr_t>(out.raw()) % 8 == 0 && out.stride(0) % 2 == 0 &&
               out.stride(1) % 2 == 0,
           "CudaBackend::mla_attention: out ", out.describe(), " needs 8-byte aligned rows");
  check_cache(cache, latent + rope, kOp);
  MS_CHECK(cache.dim(1) == batch.block_size && batch.block_size > 0,
           "CudaBackend::mla_attention: cache ", cache.describe(), " for block_size ",
           batch.block_size);
  check_vector(batch.token_seq, DType::kI32, n, kOp, "token_seq");
  check_vector(batch.token_pos, DType::kI32, n, kOp, "token_pos");
  const Tensor& tables = batch.block_tables;
  MS_CHECK(tables.defined() && tables.device() == Device::kCuda && tables.ndim() == 2 &&
               tables.dtype() == DType::kI32 && tables.is_contiguous() &&
               tables.dim(1) * batch.block_size <= (int64_t{1} << 30),
           "CudaBackend::mla_attention: block_tables ", tables.describe(),
           " must be contiguous I32[n_seqs, max_blocks] on CUDA");
  if (n == 0 || n_heads == 0) return;

  const kernels::MlaPlan plan = kernels::plan_mla_attention(
      n, tables.dim(0), static_cast<int>(n_heads), tables.dim(1) * batch.block_size, n_sms());
  kernels::MlaAttentionParams p{};
  p.latent = static_cast<int>(latent);
  p.rope = static_cast<int>(rope);
  p.q_latent = q_latent.raw();
  p.q_latent_type = act_type(q_latent, kOp, "q_latent");
  p.q_latent_token_stride = q_latent.stride(0);
  p.q_latent_head_stride = q_latent.stride(1);
  p.q_rope = q_rope.raw();
  p.q_rope_type = act_type(q_rope, kOp, "q_rope");
  p.q_rope_token_stride = q_rope.stride(0);
  p.q_rope_head_stride = q_rope.stride(1);
  p.cache = cache.raw();
  p.cache_type = elem_type(cache.dtype());
  p.n_blocks = cache.dim(0);
  p.block_size = batch.block_size;
  p.token_seq = batch.token_seq.data<int32_t>();
  p.token_pos = batch.token_pos.data<int32_t>();
  p.block_tables = tables.data<int32_t>();
  p.max_blocks = static_cast<int>(tables.dim(1));
  p.n_tokens = n;
  p.n_heads = static_cast<int>(n_heads);
  p.scale = scale;
  p.out = out.raw();
  p.out_type = act_type(out, kOp, "out");
  p.out_token_stride = out.stride(0);
  p.out_head_stride = out.stride(1);
  const int64_t out_floats = kernels::mla_partial_out_floats(plan, n, p.n_heads, p.latent);
  const int64_t lse_floats = kernels::mla_partial_lse_floats(plan, n, p.n_heads);
  if (out_floats > 0) {
    p.partial_out = static_cast<float*>(
        workspace(static_cast<size_t>(out_floats + lse_floats) * sizeof(float)));
    p.partial_lse = p.partial_out + out_floats;  // 16-byte aligned: out_floats % 16 == 0
  }
  MS_CUDA_CHECK(cudaSetDevice(device_));
  MS_CUDA_CHECK(kernels::launch_mla_attention(p, plan, stream_->get()));
}

}  // namespace moeserve
