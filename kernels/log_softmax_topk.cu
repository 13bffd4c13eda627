// Design. A CTA of 256 threads reads its chunk of a row with 128-bit loads (scalar loads
// for rows that are not 16-byte aligned). Each thread keeps an online maximum m and sum
// s = Σ exp(x - m) (float exps, double sum) and a sorted list of its K best 64-bit keys
// (value, then lower id: kernels/sampling_math.h); a key enters only if it beats the list's
// last, so after the first few elements a thread mostly compares. The block then merges:
// (m, s) by shuffles and shared memory; the key lists by K rounds of a warp-wide maximum of
// the list heads (two redux.sync), the winner popping its head, then the same over the
// warps' merged lists. K is a template parameter (1, 4, 8 or 20, the smallest ≥ k) so the
// lists stay in registers.
#include <algorithm>
#include <cmath>

#include "kernels/log_softmax_topk.cuh"
#include "kernels/row_reduce.cuh"
#include "kernels/sampling_math.h"
#include "kernels/simt/launch.h"
#include "kernels/simt/simt.h"

namespace moeserve::kernels {
namespace {

constexpr int kWarpSize = 32;
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarpSize;
constexpr unsigned kFull = kFullWarp;
constexpr int kMinChunk = 8192;  // elements: below this a CTA's fixed merge cost dominates
constexpr int64_t kMaxRowBlocks = int64_t{1} << 20;

// A chunk's result for the merge kernel.
struct Partial {
  float m;   // maximum
  double s;  // Σ exp(x - m)
};

// Inserts key into a list sorted largest first, dropping the smallest.
template <int K>
__device__ __forceinline__ void insert(uint64_t (&list)[K], uint64_t key) {
  if (key <= list[K - 1]) return;
  list[K - 1] = key;
  SIMT_UNROLL
  for (int i = K - 1; i > 0; --i) {
    const uint64_t a = list[i - 1], b = list[i];
    list[i - 1] = a > b ? a : b;
    list[i] = a > b ? b : a;
  }
}

template <int K>
__device__ __forceinline__ void pop_front(uint64_t (&list)[K]) {
  SIMT_UNROLL
  for (int i = 0; i + 1 < K; ++i) list[i] = list[i + 1];
  list[K - 1] = 0;
}

// Merges every thread's (m, s) and key list over the block: afterwards `top` holds the K best
// keys and *m_out, *s_out the block's maximum and sum, for every thread.
template <int K>
__device__ void block_merge(float m, double s, uint64_t (&list)[K], uint64_t* top, float* m_out,
                            double* s_out) {
  SIMT_SHARED(uint64_t, warp_top, [kWarps][K]);
  SIMT_SHARED(float, warp_m, [kWarps]);
  SIMT_SHARED(double, warp_s, [kWarps]);
  const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  for (int o = kWarpSize / 2; o > 0; o /= 2) {
    online_merge(m, s, __shfl_xor_sync(kFull, m, o), __shfl_xor_sync(kFull, s, o));
  }
  for (int r = 0; r < K; ++r) {
    const uint64_t best = warp_max_key(list[0]);
    if (list[0] == best) pop_front(list);
    if (lane == 0) warp_top[warp][r] = best;
  }
  if (lane == 0) {
    warp_m[warp] = m;
    warp_s[warp] = s;
  }
  __syncthreads();
  if (warp == 0) {
    float bm = lane < kWarps ? warp_m[lane] : -INFINITY;
    double bs = lane < kWarps ? warp_s[lane] : 0.0;
    for (int o = kWarpSize / 2; o > 0; o /= 2) {
      online_merge(bm, bs, __shfl_xor_sync(kFull, bm, o), __shfl_xor_sync(kFull, bs, o));
    }
    int next = 0;
    for (int r = 0; r < K; ++r) {
      const uint64_t head = lane < kWarps && next < K ? warp_top[lane][next] : 0;
      const uint64_t best = warp_max_key(head);
      next += lane < kWarps && head == best;
      if (lane == 0) top[r] = best;
    }
    if (lane == 0) {
      *m_out = bm;
      *s_out = bs;
    }
  }
  __syncthreads();
}

// Writes the row's k results from the merged keys and the row's (m, s).
__device__ __forceinline__ void write_row(const LogSoftmaxTopkParams& p, int64_t row,
                                          const uint64_t* top, float m, double s) {
  const int r = static_cast<int>(threadIdx.x);
  if (r < p.k) {
    const double lse = static_cast<double>(m) + log(s);
    p.ids[row * p.ids_row_stride + r] = sampling_math::key_id(top[r]);
    p.logprobs[row * p.logprobs_row_stride + r] =
        static_cast<float>(static_cast<double>(sampling_math::key_value(top[r])) - lse);
  }
}

// Grid (n_splits, rows): CTA (c, row) reads chunk c of the row. With one chunk it writes the
// results; otherwise a Partial and its K keys for the merge kernel.
template <int K>
__global__ void __launch_bounds__(kThreads)
    log_softmax_topk_chunk_kernel(const LogSoftmaxTopkParams p) {
  SIMT_SHARED(uint64_t, top, [K]);
  SIMT_SHARED(float, block_m, [1]);
  SIMT_SHARED(double, block_s, [1]);
  const int n_splits = static_cast<int>(gridDim.x);
  const int chunk = ((p.vocab + n_splits - 1) / n_splits + 3) & ~3;  // a multiple of 4
  const int begin = static_cast<int>(blockIdx.x) * chunk;
  const int end = std::min(p.vocab, begin + chunk);
  for (int64_t row = blockIdx.y; row < p.n_rows; row += gridDim.y) {
    const int64_t src = p.rows != nullptr ? p.rows[row] : row;
    const float* x = p.logits + src * p.logits_row_stride;
    float m = -INFINITY;
    double s = 0.0;
    uint64_t list[K];
    SIMT_UNROLL
    for (int i = 0; i < K; ++i) list[i] = 0;
    auto take = [&](float v, int id) {
      online_add(v, m, s);
      insert(list, sampling_math::rank_key(v, id));
    };
    int i = begin + 4 * static_cast<int>(threadIdx.x);
    if ((reinterpret_cast<uintptr_t>(x) & 15) == 0) {
      for (; i + 3 < end; i += 4 * kThreads) {
        const float4 v = *reinterpret_cast<const float4*>(x + i);
        take(v.x, i);
        take(v.y, i + 1);
        take(v.z, i + 2);
        take(v.w, i + 3);
      }
      for (; i < end; ++i) take(x[i], i);  // the row's last < 4 elements, in one thread
    } else {
      for (int j = begin + static_cast<int>(threadIdx.x); j < end; j += kThreads) take(x[j], j);
    }
    block_merge<K>(m, s, list, top, block_m, block_s);
    if (n_splits == 1) {
      write_row(p, row, top, block_m[0], block_s[0]);
    } else {
      const int64_t slot = row * n_splits + blockIdx.x;
      auto* partials = static_cast<Partial*>(p.workspace);
      auto* keys = reinterpret_cast<uint64_t*>(partials + p.n_rows * n_splits);
      if (threadIdx.x == 0) partials[slot] = {block_m[0], block_s[0]};
      if (threadIdx.x < K) keys[slot * K + threadIdx.x] = top[threadIdx.x];
    }
    __syncthreads();  // top and block_m/s are reused by the next row
  }
}

struct MergeParams {
  LogSoftmaxTopkParams p;
  int n_splits;  // chunks per row
};

// One CTA per row: merges the row's n_splits partials.
template <int K>
__global__ void __launch_bounds__(kThreads) log_softmax_topk_merge_kernel(const MergeParams mp) {
  const LogSoftmaxTopkParams& p = mp.p;
  const int n_splits = mp.n_splits;
  SIMT_SHARED(uint64_t, top, [K]);
  SIMT_SHARED(float, block_m, [1]);
  SIMT_SHARED(double, block_s, [1]);
  const auto* partials = static_cast<const Partial*>(p.workspace);
  const auto* keys = reinterpret_cast<const uint64_t*>(partials + p.n_rows * n_splits);
  for (int64_t row = blockIdx.x; row < p.n_rows; row += gridDim.x) {
    float m = -INFINITY;
    double s = 0.0;
    uint64_t list[K];
    SIMT_UNROLL
    for (int i = 0; i < K; ++i) list[i] = 0;
    for (int c = static_cast<int>(threadIdx.x); c < n_splits; c += kThreads) {
      const int64_t slot = row * n_splits + c;
      online_merge(m, s, partials[slot].m, partials[slot].s);
      for (int r = 0; r < K; ++r) {
        const uint64_t key = keys[slot * K + r];
        if (key <= list[K - 1]) break;  // the chunk's keys are sorted: the rest are smaller
        insert(list, key);
      }
    }
    block_merge<K>(m, s, list, top, block_m, block_s);
    write_row(p, row, top, block_m[0], block_s[0]);
    __syncthreads();
  }
}

template <int K>
cudaError_t launch_k(const LogSoftmaxTopkParams& p, cudaStream_t stream) {
  const int n_splits = log_softmax_topk_splits(p.n_rows, p.vocab, p.n_sms);
  const auto grid_rows = static_cast<unsigned>(std::min<int64_t>(p.n_rows, 65535));
  const simt::LaunchResult chunks =
      simt::launch({.kernel_name = "log_softmax_topk_chunk_kernel",
                    .grid = dim3(static_cast<unsigned>(n_splits), grid_rows),
                    .block = dim3(kThreads),
                    .stream = stream},
                   log_softmax_topk_chunk_kernel<K>, p);
  if (!chunks.ok() || n_splits == 1) return chunks.code;
  return simt::launch({.kernel_name = "log_softmax_topk_merge_kernel",
                       .grid = dim3(static_cast<unsigned>(std::min(p.n_rows, kMaxRowBlocks))),
                       .block = dim3(kThreads),
                       .stream = stream},
                      log_softmax_topk_merge_kernel<K>, MergeParams{p, n_splits})
      .code;
}

}  // namespace

int log_softmax_topk_splits(int64_t n_rows, int vocab, int n_sms) {
  // Two CTAs per SM fill the GPU; a chunk below kMinChunk is not worth its merge.
  const int64_t wanted =
      (2 * int64_t{std::max(n_sms, 1)} + n_rows - 1) / std::max<int64_t>(n_rows, 1);
  const int64_t most = std::max(1, (vocab + kMinChunk - 1) / kMinChunk);
  return static_cast<int>(std::clamp<int64_t>(wanted, 1, most));
}

size_t log_softmax_topk_workspace_bytes(int64_t n_rows, int vocab, int k, int n_sms) {
  const int n_splits = log_softmax_topk_splits(n_rows, vocab, n_sms);
  if (n_splits == 1) return 0;
  const int kk = k <= 1 ? 1 : k <= 4 ? 4 : k <= 8 ? 8 : kMaxLogprobTopK;
  return static_cast<size_t>(n_rows * n_splits) * (sizeof(Partial) + kk * sizeof(uint64_t));
}

cudaError_t launch_log_softmax_topk(const LogSoftmaxTopkParams& params, cudaStream_t stream) {
  if (params.n_rows == 0) return cudaSuccess;
  if (params.k <= 1) return launch_k<1>(params, stream);
  if (params.k <= 4) return launch_k<4>(params, stream);
  if (params.k <= 8) return launch_k<8>(params, stream);
  return launch_k<kMaxLogprobTopK>(params, stream);
}

}  // namespace moeserve::kernels
