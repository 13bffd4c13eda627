#include <algorithm>
#include <cmath>

#include "kernels/elementwise.cuh"
#include "kernels/simt/launch.h"
#include "kernels/simt/simt.h"

namespace moeserve::kernels {
namespace {

constexpr int kWarpSize = 32;
constexpr int kRowThreads = 256;      // threads per row for row reductions
constexpr int kColThreads = 256;      // threads per block along a row for elementwise ops
constexpr int64_t kMaxGridY = 65535;  // CUDA's limit on gridDim.y (rows loop beyond it)
constexpr int64_t kMaxRowBlocks = int64_t{1} << 20;  // row-per-block kernels loop beyond it

__device__ __forceinline__ float load_as_f32(const void* p, ElemType type, int64_t i) {
  switch (type) {
    case ElemType::kBF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case ElemType::kF16: return __half2float(static_cast<const __half*>(p)[i]);
    case ElemType::kF32: break;
  }
  return static_cast<const float*>(p)[i];
}

// Sum of `v` over the block; every thread gets the result. blockDim.x must be a
// multiple of the warp size and at most kRowThreads.
__device__ float block_sum(float v) {
  SIMT_SHARED(float, warp_sums, [kRowThreads / kWarpSize]);
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int n_warps = blockDim.x / kWarpSize;
  __syncthreads();  // warp_sums may still be read by a previous call
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < n_warps; ++w) total += warp_sums[w];
  return total;
}

__global__ void rms_norm_kernel(RmsNormParams p) {
  for (int64_t row = blockIdx.x; row < p.n_rows; row += gridDim.x) {
    const float* x = p.x + row * p.x_row_stride;
    float* out = p.out + row * p.out_row_stride;
    float sum_sq = 0.0f;
    for (int c = threadIdx.x; c < p.d; c += blockDim.x) sum_sq += x[c] * x[c];
    const float inv_rms = rsqrtf(block_sum(sum_sq) / static_cast<float>(p.d) + p.eps);
    // Each thread rewrites exactly the columns it read, so out may alias x.
    for (int c = threadIdx.x; c < p.d; c += blockDim.x) {
      out[c] = x[c] * inv_rms * load_as_f32(p.weight, p.weight_type, c);
    }
  }
}

__global__ void add_kernel(AddParams p) {
  const int64_t c = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (c >= p.d) return;
  for (int64_t row = blockIdx.y; row < p.n_rows; row += gridDim.y) {
    p.out[row * p.out_row_stride + c] =
        p.a[row * p.a_row_stride + c] + p.b[row * p.b_row_stride + c];
  }
}

__global__ void silu_mul_kernel(SiluMulParams p) {
  const int64_t c = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (c >= p.f) return;
  for (int64_t row = blockIdx.y; row < p.n_rows; row += gridDim.y) {
    const float* gu = p.gate_up + row * p.gate_up_row_stride;
    const float gate = gu[c];
    // expf, not __expf: this is the accuracy reference for fused variants later.
    p.out[row * p.out_row_stride + c] = gate / (1.0f + expf(-gate)) * gu[p.f + c];
  }
}

__global__ void gather_rows_kernel(GatherRowsParams p) {
  const int64_t c = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (c >= p.d) return;
  for (int64_t row = blockIdx.y; row < p.n_rows; row += gridDim.y) {
    const int64_t src_row = p.indices[row];
    float v = NAN;
    if (src_row >= 0 && src_row < p.n_src_rows) {
      v = load_as_f32(p.src, p.src_type, src_row * p.src_row_stride + c);
    }
    p.out[row * p.out_row_stride + c] = v;
  }
}

// Grid for the elementwise kernels: x covers the columns, y loops over rows.
dim3 column_grid(int64_t n_cols, int64_t n_rows) {
  return dim3(static_cast<unsigned>((n_cols + kColThreads - 1) / kColThreads),
              static_cast<unsigned>(std::min(n_rows, kMaxGridY)));
}

}  // namespace

cudaError_t launch_rms_norm(const RmsNormParams& params, cudaStream_t stream) {
  if (params.n_rows == 0 || params.d == 0) return cudaSuccess;
  // Small rows get fewer threads, rounded up to whole warps (block_sum needs that).
  const int threads = std::min(kRowThreads, (params.d + kWarpSize - 1) / kWarpSize * kWarpSize);
  const auto blocks = static_cast<unsigned>(std::min(params.n_rows, kMaxRowBlocks));
  return simt::launch({.kernel_name = "rms_norm_kernel",
                       .grid = dim3(blocks),
                       .block = dim3(static_cast<unsigned>(threads)),
                       .stream = stream},
                      rms_norm_kernel, params)
      .code;
}

cudaError_t launch_add(const AddParams& params, cudaStream_t stream) {
  if (params.n_rows == 0 || params.d == 0) return cudaSuccess;
  return simt::launch({.kernel_name = "add_kernel",
                       .grid = column_grid(params.d, params.n_rows),
                       .block = dim3(kColThreads),
                       .stream = stream},
                      add_kernel, params)
      .code;
}

cudaError_t launch_silu_mul(const SiluMulParams& params, cudaStream_t stream) {
  if (params.n_rows == 0 || params.f == 0) return cudaSuccess;
  return simt::launch({.kernel_name = "silu_mul_kernel",
                       .grid = column_grid(params.f, params.n_rows),
                       .block = dim3(kColThreads),
                       .stream = stream},
                      silu_mul_kernel, params)
      .code;
}

cudaError_t launch_gather_rows(const GatherRowsParams& params, cudaStream_t stream) {
  if (params.n_rows == 0 || params.d == 0) return cudaSuccess;
  return simt::launch({.kernel_name = "gather_rows_kernel",
                       .grid = column_grid(params.d, params.n_rows),
                       .block = dim3(kColThreads),
                       .stream = stream},
                      gather_rows_kernel, params)
      .code;
}

}  // namespace moeserve::kernels
