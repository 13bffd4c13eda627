#include <algorithm>
#include <cmath>

#include "kernels/elementwise.cuh"
#include "kernels/simt/launch.h"
#include "kernels/simt/simt.h"
#include "kernels/vec_io.cuh"

namespace moeserve::kernels {
namespace {

constexpr int kWarpSize = 32;
constexpr int kMaxRowThreads = 1024;  // threads per row for row reductions, at most
constexpr int kNormCached = 4;        // chunks per thread a norm keeps in registers
constexpr int kColThreads = 256;      // threads per block along a row for elementwise ops
constexpr int64_t kMaxGridY = 65535;  // CUDA's limit on gridDim.y (rows loop beyond it)
constexpr int64_t kMaxRowBlocks = int64_t{1} << 20;         // row-per-block kernels loop beyond it
constexpr int kWarpRowMaxChunks = kWarpSize * kNormCached;  // widest row a warp normalises
constexpr int kWarpRowThreads = 256;  // threads per block when each warp takes a row

// Whether rows at `p` with `stride` can move in 8-element, 128-bit-aligned chunks.
bool vec8_ok(const void* p, int64_t stride) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0 && stride % 8 == 0;
}

// Chunks of kVec elements: 8-wide (128-bit) or single elements.
template <int kVec>
__device__ __forceinline__ void load_chunk(const void* p, ElemType t, int64_t i, float (&v)[kVec]) {
  if constexpr (kVec == 8) {
    load8(p, t, i, v);
  } else {
    v[0] = load1(p, t, i);
  }
}
template <int kVec>
__device__ __forceinline__ void store_chunk(void* p, ElemType t, int64_t i,
                                            const float (&v)[kVec]) {
  if constexpr (kVec == 8) {
    store8(p, t, i, v);
  } else {
    store1(p, t, i, v[0]);
  }
}

// v as it reads back after a store to type t.
__device__ __forceinline__ float rounded_to(ElemType t, float v) {
  return t == ElemType::kBF16 ? __bfloat162float(__float2bfloat16(v)) : v;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

// Sum of `v` over the block; every thread gets the result. blockDim.x must be a
// multiple of the warp size and at most kMaxRowThreads.
__device__ float block_sum(float v) {
  SIMT_SHARED(float, warp_sums, [kMaxRowThreads / kWarpSize]);
  v = warp_sum(v);
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

// rms_norm and add_rms_norm: `res` is the row that is normalised (add_rms_norm: x is added
// to it and the sum written back first).
struct NormArgs {
  void* res;
  ElemType res_type;
  int64_t res_stride;
  const void* x;
  ElemType x_type;
  int64_t x_stride;
  const void* weight;
  ElemType weight_type;
  void* out;
  ElemType out_type;
  int64_t out_stride;
  int64_t n_rows;
  int d;
  float eps;
};

// One row per warp (kWarpRow, narrow rows: no barriers) or per block. The first kNormCached
// chunks of each thread stay in registers between the sum of squares and the scaling, so a
// row of up to kNormCached · 8 · blockDim elements is read once; wider rows read their tail
// again (the thread's own writes).
template <bool kAdd, int kVec, bool kWarpRow>
__global__ void __launch_bounds__(kWarpRow ? kWarpRowThreads : kMaxRowThreads)
    norm_kernel(const NormArgs p) {
  const int row_threads = kWarpRow ? kWarpSize : static_cast<int>(blockDim.x);
  const int rows_per_block = static_cast<int>(blockDim.x) / row_threads;
  const int t = static_cast<int>(threadIdx.x) % row_threads;
  const int n_chunks = p.d / kVec;
  const int64_t row_step = int64_t{gridDim.x} * rows_per_block;
  for (int64_t row = int64_t{blockIdx.x} * rows_per_block + threadIdx.x / row_threads;
       row < p.n_rows; row += row_step) {
    const int64_t res0 = row * p.res_stride, x0 = row * p.x_stride, out0 = row * p.out_stride;
    // Reads chunk c of the row to normalise, adding x and storing the sum first (kAdd).
    auto fetch = [&](int c, float(&v)[kVec]) {
      load_chunk<kVec>(p.res, p.res_type, res0 + int64_t{c} * kVec, v);
      if constexpr (kAdd) {
        float xv[kVec];
        load_chunk<kVec>(p.x, p.x_type, x0 + int64_t{c} * kVec, xv);
        for (int k = 0; k < kVec; ++k) v[k] = rounded_to(p.res_type, v[k] + xv[k]);
        store_chunk<kVec>(p.res, p.res_type, res0 + int64_t{c} * kVec, v);
      }
    };
    float cached[kNormCached][kVec] = {};
    float sum_sq = 0.0f;
    KERNEL_UNROLL
    for (int i = 0; i < kNormCached; ++i) {
      const int c = t + i * row_threads;
      if (c < n_chunks) {
        fetch(c, cached[i]);
        for (int k = 0; k < kVec; ++k) sum_sq += cached[i][k] * cached[i][k];
      }
    }
    for (int c = t + kNormCached * row_threads; c < n_chunks; c += row_threads) {
      float v[kVec];
      fetch(c, v);
      for (int k = 0; k < kVec; ++k) sum_sq += v[k] * v[k];
    }
    const float total = kWarpRow ? warp_sum(sum_sq) : block_sum(sum_sq);
    const float inv_rms = rsqrtf(total / static_cast<float>(p.d) + p.eps);
    // Each thread writes exactly the chunks it read, so out may alias x (or, for rms_norm,
    // the row itself).
    auto emit = [&](int c, const float(&v)[kVec]) {
      float w[kVec], o[kVec];
      load_chunk<kVec>(p.weight, p.weight_type, int64_t{c} * kVec, w);
      for (int k = 0; k < kVec; ++k) o[k] = v[k] * inv_rms * w[k];
      store_chunk<kVec>(p.out, p.out_type, out0 + int64_t{c} * kVec, o);
    };
    KERNEL_UNROLL
    for (int i = 0; i < kNormCached; ++i) {
      const int c = t + i * row_threads;
      if (c < n_chunks) emit(c, cached[i]);
    }
    for (int c = t + kNormCached * row_threads; c < n_chunks; c += row_threads) {
      float v[kVec];
      load_chunk<kVec>(p.res, p.res_type, res0 + int64_t{c} * kVec, v);
      emit(c, v);
    }
  }
}

template <bool kAdd, int kVec>
cudaError_t launch_norm_vec(const NormArgs& a, cudaStream_t stream) {
  const int n_chunks = a.d / kVec;
  if (n_chunks <= kWarpRowMaxChunks) {
    constexpr int kRowsPerBlock = kWarpRowThreads / kWarpSize;
    const auto blocks = static_cast<unsigned>(
        std::min((a.n_rows + kRowsPerBlock - 1) / kRowsPerBlock, kMaxRowBlocks));
    return simt::launch({.kernel_name = kAdd ? "add_rms_norm_kernel" : "rms_norm_kernel",
                         .grid = dim3(blocks),
                         .block = dim3(kWarpRowThreads),
                         .stream = stream},
                        norm_kernel<kAdd, kVec, true>, a)
        .code;
  }
  // Enough threads that each keeps at most kNormCached chunks, rounded up to whole warps
  // (block_sum needs that).
  const int per_thread = (n_chunks + kNormCached - 1) / kNormCached;
  const int threads =
      std::min(kMaxRowThreads, (per_thread + kWarpSize - 1) / kWarpSize * kWarpSize);
  const auto blocks = static_cast<unsigned>(std::min(a.n_rows, kMaxRowBlocks));
  return simt::launch({.kernel_name = kAdd ? "add_rms_norm_kernel" : "rms_norm_kernel",
                       .grid = dim3(blocks),
                       .block = dim3(static_cast<unsigned>(threads)),
                       .stream = stream},
                      norm_kernel<kAdd, kVec, false>, a)
      .code;
}

template <bool kAdd>
cudaError_t launch_norm(const NormArgs& a, cudaStream_t stream) {
  if (a.n_rows == 0 || a.d == 0) return cudaSuccess;
  const bool vec = a.d % 8 == 0 && vec8_ok(a.res, a.res_stride) && vec8_ok(a.out, a.out_stride) &&
                   vec8_ok(a.weight, 0) && (!kAdd || vec8_ok(a.x, a.x_stride));
  return vec ? launch_norm_vec<kAdd, 8>(a, stream) : launch_norm_vec<kAdd, 1>(a, stream);
}

template <int kVec>
__global__ void add_kernel(const AddParams p) {
  const int64_t c = (int64_t{blockIdx.x} * blockDim.x + threadIdx.x) * kVec;
  if (c >= p.d) return;
  for (int64_t row = blockIdx.y; row < p.n_rows; row += gridDim.y) {
    float a[kVec], b[kVec];
    load_chunk<kVec>(p.a, p.a_type, row * p.a_row_stride + c, a);
    load_chunk<kVec>(p.b, p.b_type, row * p.b_row_stride + c, b);
    for (int k = 0; k < kVec; ++k) a[k] += b[k];
    store_chunk<kVec>(p.out, p.out_type, row * p.out_row_stride + c, a);
  }
}

template <int kVec>
__global__ void silu_mul_kernel(const SiluMulParams p) {
  const int64_t c = (int64_t{blockIdx.x} * blockDim.x + threadIdx.x) * kVec;
  if (c >= p.f) return;
  for (int64_t row = blockIdx.y; row < p.n_rows; row += gridDim.y) {
    const int64_t g0 = row * p.gate_up_row_stride;
    float g[kVec], u[kVec];
    load_chunk<kVec>(p.gate_up, p.gate_up_type, g0 + c, g);
    load_chunk<kVec>(p.gate_up, p.gate_up_type, g0 + p.f + c, u);
    // expf, not __expf: this is the accuracy reference for fused variants later.
    for (int k = 0; k < kVec; ++k) g[k] = g[k] / (1.0f + expf(-g[k])) * u[k];
    store_chunk<kVec>(p.out, p.out_type, row * p.out_row_stride + c, g);
  }
}

template <int kVec>
__global__ void gather_rows_kernel(const GatherRowsParams p) {
  const int64_t c = (int64_t{blockIdx.x} * blockDim.x + threadIdx.x) * kVec;
  if (c >= p.d) return;
  for (int64_t row = blockIdx.y; row < p.n_rows; row += gridDim.y) {
    const int64_t src_row = p.indices[row];
    float v[kVec];
    if (src_row >= 0 && src_row < p.n_src_rows) {
      load_chunk<kVec>(p.src, p.src_type, src_row * p.src_row_stride + c, v);
    } else {
      for (float& x : v) x = NAN;
    }
    store_chunk<kVec>(p.out, p.out_type, row * p.out_row_stride + c, v);
  }
}

// Grid for the elementwise kernels: x covers the column chunks, y loops over rows.
dim3 column_grid(int64_t n_chunks, int64_t n_rows) {
  return dim3(static_cast<unsigned>((n_chunks + kColThreads - 1) / kColThreads),
              static_cast<unsigned>(std::min(n_rows, kMaxGridY)));
}

// Launches kernel<8> when every row moves in aligned 8-element chunks, else kernel<1>.
template <typename Params>
cudaError_t launch_columns(const char* name, void (*vec_kernel)(Params),
                           void (*scalar_kernel)(Params), const Params& p, bool vec, int64_t width,
                           int64_t n_rows, cudaStream_t stream) {
  const int kv = vec ? 8 : 1;
  return simt::launch({.kernel_name = name,
                       .grid = column_grid((width + kv - 1) / kv, n_rows),
                       .block = dim3(kColThreads),
                       .stream = stream},
                      vec ? vec_kernel : scalar_kernel, p)
      .code;
}

}  // namespace

cudaError_t launch_rms_norm(const RmsNormParams& p, cudaStream_t stream) {
  const NormArgs a{const_cast<void*>(p.x),
                   p.x_type,
                   p.x_row_stride,
                   nullptr,
                   ElemType::kF32,
                   0,
                   p.weight,
                   p.weight_type,
                   p.out,
                   p.out_type,
                   p.out_row_stride,
                   p.n_rows,
                   p.d,
                   p.eps};
  return launch_norm<false>(a, stream);
}

cudaError_t launch_add_rms_norm(const AddRmsNormParams& p, cudaStream_t stream) {
  const NormArgs a{p.residual,
                   p.residual_type,
                   p.residual_row_stride,
                   p.x,
                   p.x_type,
                   p.x_row_stride,
                   p.weight,
                   p.weight_type,
                   p.out,
                   p.out_type,
                   p.out_row_stride,
                   p.n_rows,
                   p.d,
                   p.eps};
  return launch_norm<true>(a, stream);
}

cudaError_t launch_add(const AddParams& p, cudaStream_t stream) {
  if (p.n_rows == 0 || p.d == 0) return cudaSuccess;
  const bool vec = p.d % 8 == 0 && vec8_ok(p.a, p.a_row_stride) && vec8_ok(p.b, p.b_row_stride) &&
                   vec8_ok(p.out, p.out_row_stride);
  return launch_columns("add_kernel", add_kernel<8>, add_kernel<1>, p, vec, p.d, p.n_rows, stream);
}

cudaError_t launch_silu_mul(const SiluMulParams& p, cudaStream_t stream) {
  if (p.n_rows == 0 || p.f == 0) return cudaSuccess;
  const bool vec =
      p.f % 8 == 0 && vec8_ok(p.gate_up, p.gate_up_row_stride) && vec8_ok(p.out, p.out_row_stride);
  return launch_columns("silu_mul_kernel", silu_mul_kernel<8>, silu_mul_kernel<1>, p, vec, p.f,
                        p.n_rows, stream);
}

cudaError_t launch_gather_rows(const GatherRowsParams& p, cudaStream_t stream) {
  if (p.n_rows == 0 || p.d == 0) return cudaSuccess;
  const bool vec =
      p.d % 8 == 0 && vec8_ok(p.src, p.src_row_stride) && vec8_ok(p.out, p.out_row_stride);
  return launch_columns("gather_rows_kernel", gather_rows_kernel<8>, gather_rows_kernel<1>, p, vec,
                        p.d, p.n_rows, stream);
}

}  // namespace moeserve::kernels
