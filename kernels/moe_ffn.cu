#include <algorithm>

#include "kernels/moe_ffn.cuh"
#include "kernels/simt/launch.h"
#include "kernels/simt/simt.h"

namespace moeserve::kernels {
namespace {

constexpr int kRouteThreads = 512;
constexpr int kCombineThreads = 256;  // 4 columns each
constexpr int kMaxGridY = 65535;

// Exclusive scan of v[0, n) in place by warp 0 (32 values a step); returns the total to
// warp 0's lanes. Callers synchronise around it.
__device__ int warp0_exclusive_scan(int* v, int n) {
  const int lane = static_cast<int>(threadIdx.x) % 32;
  int carry = 0;
  for (int base = 0; base < n; base += 32) {
    const int i = base + lane;
    const int own = i < n ? v[i] : 0;
    int inc = own;
    for (int d = 1; d < 32; d *= 2) {
      const int up = __shfl_up_sync(0xffffffffu, inc, d);
      if (lane >= d) inc += up;
    }
    if (i < n) v[i] = carry + inc - own;
    carry += __shfl_sync(0xffffffffu, inc, 31);
  }
  return carry;
}

__global__ void __launch_bounds__(kRouteThreads) moe_route_kernel(const MoeRouteParams p) {
  SIMT_DYNAMIC_SHARED(int, smem);
  const int n_e = p.n_experts;
  int* count = smem;            // [E + 1] rows per expert, scanned to offsets, then cursors
  int* tiles = smem + n_e + 1;  // [E + 1] tiles per expert, scanned to each one's first tile
  const int tid = static_cast<int>(threadIdx.x);
  const int n_slots = p.n_tokens * p.top_k;
  for (int e = tid; e < n_e; e += kRouteThreads) count[e] = 0;
  __syncthreads();
  for (int s = tid; s < n_slots; s += kRouteThreads) {
    const int e = p.topk_ids[(s / p.top_k) * p.ids_row_stride + s % p.top_k];
    if (e >= 0 && e < n_e) atomicAdd(&count[e], 1);
  }
  __syncthreads();
  for (int e = tid; e < n_e; e += kRouteThreads) tiles[e] = (count[e] + p.block_m - 1) / p.block_m;
  __syncthreads();
  if (tid < 32) {
    const int total = warp0_exclusive_scan(count, n_e);
    const int total_tiles = warp0_exclusive_scan(tiles, n_e);
    if (tid == 0) {
      count[n_e] = total;
      tiles[n_e] = std::min(total_tiles, p.max_tiles);
      *p.n_tiles = tiles[n_e];
    }
  }
  __syncthreads();
  for (int e = tid; e <= n_e; e += kRouteThreads) p.expert_offsets[e] = count[e];
  // Tile table: expert e's tiles cover its rows block_m at a time.
  for (int e = tid; e < n_e; e += kRouteThreads) {
    for (int t = tiles[e]; t < std::min(tiles[e + 1], tiles[n_e]); ++t) {
      p.tile_expert[t] = e;
      p.tile_row0[t] = count[e] + (t - tiles[e]) * p.block_m;
    }
  }
  __syncthreads();  // count[] becomes each expert's cursor below
  for (int s = tid; s < n_slots; s += kRouteThreads) {
    const int t = s / p.top_k, j = s % p.top_k;
    const int e = p.topk_ids[t * p.ids_row_stride + j];
    if (e < 0 || e >= n_e) continue;
    const int r = atomicAdd(&count[e], 1);
    p.perm_token[r] = t;
    p.perm_slot[r] = s;
  }
}

// kVec: y and out rows move in 4-column (128-bit y) chunks; otherwise column by column (d not
// a multiple of 4, or out rows not 16-byte aligned).
template <bool kVec>
__global__ void __launch_bounds__(kCombineThreads) moe_combine_kernel(const MoeCombineParams p) {
  constexpr int kCols = kVec ? 4 : 1;
  const int c =
      (static_cast<int>(blockIdx.x) * kCombineThreads + static_cast<int>(threadIdx.x)) * kCols;
  if (c >= p.d) return;
  for (int t = static_cast<int>(blockIdx.y); t < p.n_tokens; t += static_cast<int>(gridDim.y)) {
    float acc[kCols] = {};
    for (int j = 0; j < p.top_k; ++j) {
      const int e = p.topk_ids[t * p.ids_row_stride + j];
      if (e < 0 || e >= p.n_experts) continue;
      const float wgt = p.topk_weights[t * p.weights_row_stride + j];
      const float* y = p.y + (static_cast<int64_t>(t) * p.top_k + j) * p.d + c;
      if constexpr (kVec) {
        const float4 v = *reinterpret_cast<const float4*>(y);
        acc[0] += wgt * v.x, acc[1] += wgt * v.y, acc[2] += wgt * v.z, acc[3] += wgt * v.w;
      } else {
        acc[0] += wgt * y[0];
      }
    }
    const int64_t at = t * p.out_row_stride + c;
    if constexpr (kVec) {
      if (p.out_type == ElemType::kF32) {
        float* o = static_cast<float*>(p.out) + at;
        o[0] = acc[0], o[1] = acc[1], o[2] = acc[2], o[3] = acc[3];
      } else {
        __nv_bfloat162* o =
            reinterpret_cast<__nv_bfloat162*>(static_cast<__nv_bfloat16*>(p.out) + at);
        o[0] = __floats2bfloat162_rn(acc[0], acc[1]);
        o[1] = __floats2bfloat162_rn(acc[2], acc[3]);
      }
    } else if (p.out_type == ElemType::kF32) {
      static_cast<float*>(p.out)[at] = acc[0];
    } else {
      static_cast<__nv_bfloat16*>(p.out)[at] = __float2bfloat16(acc[0]);
    }
  }
}

}  // namespace

int moe_max_tiles(int64_t n_rows, int n_experts, int block_m) {
  return static_cast<int>(n_rows / block_m + std::min<int64_t>(n_experts, n_rows));
}

cudaError_t launch_moe_route(const MoeRouteParams& p, cudaStream_t stream) {
  if (p.n_experts <= 0 || p.n_experts > kMoeMaxExperts || p.top_k < 0 || p.block_m <= 0) {
    return cudaErrorInvalidValue;
  }
  return simt::launch(
             {.kernel_name = "moe_route_kernel",
              .grid = dim3(1),
              .block = dim3(kRouteThreads),
              .dynamic_smem_bytes = 2 * (static_cast<size_t>(p.n_experts) + 1) * sizeof(int),
              .stream = stream},
             moe_route_kernel, p)
      .code;
}

cudaError_t launch_moe_combine(const MoeCombineParams& p, cudaStream_t stream) {
  if (p.n_tokens == 0 || p.d == 0) return cudaSuccess;
  // y rows are d floats apart (128-bit loads); BF16 out is stored in 4-byte pairs.
  const bool vec = p.d % 4 == 0 && reinterpret_cast<uintptr_t>(p.y) % 16 == 0 &&
                   (p.out_type == ElemType::kF32 ||
                    (reinterpret_cast<uintptr_t>(p.out) % 4 == 0 && p.out_row_stride % 2 == 0));
  const int cols_per_block = kCombineThreads * (vec ? 4 : 1);
  return simt::launch(
             {.kernel_name = "moe_combine_kernel",
              .grid = dim3(static_cast<unsigned>((p.d + cols_per_block - 1) / cols_per_block),
                           static_cast<unsigned>(std::min(p.n_tokens, kMaxGridY))),
              .block = dim3(kCombineThreads),
              .stream = stream},
             vec ? moe_combine_kernel<true> : moe_combine_kernel<false>, p)
      .code;
}

}  // namespace moeserve::kernels
