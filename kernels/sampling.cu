// One CTA of 512 threads per row; every pass reads the row with 128-bit loads when it is
// aligned (the first from HBM, the rest mostly from L2).
//  1. Shaping, when the row has any: copy the raw row into the workspace, then the bias
//     entries, the penalty entries and the mask, stage by stage (the CPU's order), each stage
//     in parallel when its tokens are distinct, else in order by one thread.
//  2. One pass: non-finite raw logits (the first index), bad shaped values, the unmasked
//     count, the best key (value, lower id) and the raw (max, Σexp) for the log-probability.
//  3. Greedy rows take the best key's id. Others choose sets by thresholds on the rank key,
//     found by radix select (8-bit digits of the 64-bit key from the top, the id digits only
//     when ties straddle the threshold) with a count
//     (top_k) or a fixed-point mass (top_p) per element, then min_p by weight, then the draw:
//     per-thread contiguous segments, their masses scanned over the block, and the one
//     thread whose segment holds the target walks it in id order.
// All masses are integer sums (kernels/sampling_math.h), so the order of the atomics, shuffles
// and scans cannot change a threshold or the token.
#include <algorithm>
#include <climits>
#include <cmath>

#include "kernels/row_reduce.cuh"
#include "kernels/sampling.cuh"
#include "kernels/sampling_math.h"
#include "kernels/simt/launch.h"
#include "kernels/simt/simt.h"

namespace moeserve::kernels {
namespace {

namespace sm = sampling_math;
using u64 = unsigned long long;

constexpr int kWarpSize = 32;
constexpr int kThreads = 512;
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kRadixBits = 8;
constexpr int kBins = 1 << kRadixBits;
constexpr int kBinsPerLane = kBins / kWarpSize;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;

struct Shared {
  u64 hist[kBins];  // radix select: measure per digit
  u64 slot_u64[kWarps];
  int slot_int[kWarps];
  float slot_m[kWarps];
  double slot_s[kWarps];
  int digit;       // radix select: the chosen digit …
  u64 remaining;   // … the measure still needed below it …
  bool whole_bin;  // … and whether that is the whole bin
  int token;       // the draw's winner
};

// Calls f(value, index) once for every element of row[0, n).
template <typename F>
__device__ __forceinline__ void for_each(const float* row, int n, F&& f) {
  const int t = static_cast<int>(threadIdx.x);
  int tail = 0;
  if ((reinterpret_cast<uintptr_t>(row) & 15) == 0) {
    const int n4 = n / 4;
    for (int j = t; j < n4; j += kThreads) {
      const float4 v = reinterpret_cast<const float4*>(row)[j];
      f(v.x, 4 * j);
      f(v.y, 4 * j + 1);
      f(v.z, 4 * j + 2);
      f(v.w, 4 * j + 3);
    }
    tail = 4 * n4;
  }
  for (int i = tail + t; i < n; i += kThreads) f(row[i], i);
}

// for_each for warp collectives: every lane of a warp runs the same iterations, and
// f(value, index, valid) gets valid = false (and value 0) past the end.
template <typename F>
__device__ __forceinline__ void for_each_warp_uniform(const float* row, int n, F&& f) {
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const int first = static_cast<int>(threadIdx.x) - lane;
  int tail = 0;
  if ((reinterpret_cast<uintptr_t>(row) & 15) == 0) {
    const int n4 = n / 4;
    for (int jb = first; jb < n4; jb += kThreads) {
      const int j = jb + lane;
      const bool ok = j < n4;
      const float4 v = ok ? reinterpret_cast<const float4*>(row)[j] : make_float4(0, 0, 0, 0);
      f(v.x, 4 * j, ok);
      f(v.y, 4 * j + 1, ok);
      f(v.z, 4 * j + 2, ok);
      f(v.w, 4 * j + 3, ok);
    }
    tail = 4 * n4;
  }
  for (int ib = tail + first; ib < n; ib += kThreads) {
    const int i = ib + lane;
    f(i < n ? row[i] : 0.0f, i, i < n);
  }
}

// hist[bin] += w for the lanes with `in`, aggregated over the warp: most of a row shares the
// top digits, and same-address shared atomics serialize. Counts: one atomic per distinct bin
// (its lanes' popcount). Masses: when the warp's lanes fall into few bins, one full-warp
// redux.sync per bin (22-bit halves: masses are below 2^45, so 32 lanes' halves fit 32
// bits); when they spread, contention is low and each lane adds its own. Every collective
// names the whole warp, whose lanes all call this (the emulator rejects, and the GPU would
// not need, per-bin masks). All lanes of the warp call it.
template <bool kMass>
__device__ __forceinline__ void warp_hist_add(u64* hist, int bin, u64 w, bool in) {
  constexpr int kMaxAggregatedBins = 4;
  const unsigned lane = threadIdx.x % kWarpSize;
  const int my_bin = in ? bin : -1;
  const unsigned peers = __match_any_sync(kFullWarp, my_bin);
  const bool leader = in && (peers & ((1u << lane) - 1u)) == 0;
  if constexpr (!kMass) {
    if (leader) atomicAdd(&hist[bin], static_cast<u64>(__popc(peers)));
  } else {
    unsigned leaders = __ballot_sync(kFullWarp, leader);
    if (__popc(leaders) > kMaxAggregatedBins) {
      if (in) atomicAdd(&hist[bin], w);
      return;
    }
    constexpr u64 kLow = (u64{1} << 22) - 1;
    while (leaders != 0) {
      const int src = __ffs(static_cast<int>(leaders)) - 1;
      const int b = __shfl_sync(kFullWarp, my_bin, src);
      const u64 mine = my_bin == b ? w : 0;
      const unsigned lo = __reduce_add_sync(kFullWarp, static_cast<unsigned>(mine & kLow));
      const unsigned hi = __reduce_add_sync(kFullWarp, static_cast<unsigned>(mine >> 22));
      if (static_cast<int>(lane) == src) atomicAdd(&hist[b], (static_cast<u64>(hi) << 22) + lo);
      leaders &= leaders - 1;
    }
  }
}

// Block-wide reductions: every thread gets the result. Each starts with a barrier, since the
// slots may still be read by the previous reduction.
template <typename T, typename Op>
__device__ __forceinline__ T block_reduce(T v, Op op, T* slots) {
  for (int o = kWarpSize / 2; o > 0; o /= 2) v = op(v, __shfl_xor_sync(kFullWarp, v, o));
  __syncthreads();
  if (threadIdx.x % kWarpSize == 0) slots[threadIdx.x / kWarpSize] = v;
  __syncthreads();
  T r = slots[0];
  for (int w = 1; w < kWarps; ++w) r = op(r, slots[w]);
  return r;
}
__device__ __forceinline__ u64 block_sum(u64 v, Shared& sh) {
  return block_reduce(
      v, [](u64 a, u64 b) { return a + b; }, sh.slot_u64);
}
__device__ __forceinline__ u64 block_max(u64 v, Shared& sh) {
  return block_reduce(
      v, [](u64 a, u64 b) { return a > b ? a : b; }, sh.slot_u64);
}
__device__ __forceinline__ int block_min(int v, Shared& sh) {
  return block_reduce(
      v, [](int a, int b) { return a < b ? a : b; }, sh.slot_int);
}
__device__ __forceinline__ int block_max(int v, Shared& sh) {
  return block_reduce(
      v, [](int a, int b) { return a > b ? a : b; }, sh.slot_int);
}

// Exclusive prefix sum over the threads in index order.
__device__ __forceinline__ u64 block_exclusive_scan(u64 v, Shared& sh) {
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
  u64 inclusive = v;
  for (int o = 1; o < kWarpSize; o *= 2) {
    const u64 up = __shfl_up_sync(kFullWarp, inclusive, o);
    if (lane >= o) inclusive += up;
  }
  __syncthreads();
  if (lane == kWarpSize - 1) sh.slot_u64[warp] = inclusive;
  __syncthreads();
  u64 offset = 0;
  for (int w = 0; w < warp; ++w) offset += sh.slot_u64[w];
  return offset + inclusive - v;
}

// The row's (max, Σexp) over the block, in every thread.
__device__ __forceinline__ void block_online(float& m, double& s, Shared& sh) {
  for (int o = kWarpSize / 2; o > 0; o /= 2) {
    online_merge(m, s, __shfl_xor_sync(kFullWarp, m, o), __shfl_xor_sync(kFullWarp, s, o));
  }
  __syncthreads();
  if (threadIdx.x % kWarpSize == 0) {
    sh.slot_m[threadIdx.x / kWarpSize] = m;
    sh.slot_s[threadIdx.x / kWarpSize] = s;
  }
  __syncthreads();
  m = sh.slot_m[0];
  s = sh.slot_s[0];
  for (int w = 1; w < kWarps; ++w) online_merge(m, s, sh.slot_m[w], sh.slot_s[w]);
}

// The CPU's penalty arithmetic (sampling.cc, shape_unchecked), unfused: a contracted
// multiply-subtract would round differently.
__device__ __forceinline__ float penalize(float l, const SamplePenalty& e, const SampleRowDesc& d) {
  if (d.repetition_penalty != 1.0f) {
    l = l > 0 ? l / d.repetition_penalty : __fmul_rn(l, d.repetition_penalty);
  }
  if (e.n_output > 0) {
    l = __fadd_rn(l, -__fmul_rn(d.frequency_penalty, static_cast<float>(e.n_output)));
    l = __fadd_rn(l, -d.presence_penalty);
  }
  return l;
}

// Applies f to entries [0, n) of a stage: in parallel when their tokens are distinct, else in
// order by thread 0. Barriers around, so stages follow one another.
template <typename F>
__device__ __forceinline__ void stage(int n, bool distinct, F&& f) {
  __syncthreads();
  if (distinct) {
    for (int j = static_cast<int>(threadIdx.x); j < n; j += kThreads) f(j);
  } else if (threadIdx.x == 0) {
    for (int j = 0; j < n; ++j) f(j);
  }
  __syncthreads();
}

// The largest key thr such that the elements of the set (unmasked, key ≥ min_key) with
// key ≥ thr weigh at least `target` (≥ 1, at most the set's weight): each weighs 1, or its
// fixed-point weight when kMass. Radix select from the top digit down.
template <bool kMass>
__device__ __forceinline__ u64 select_threshold(const float* l, int vocab, u64 min_key, float best,
                                                double inv_temp, u64 target, Shared& sh) {
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  u64 prefix = 0, mask = 0, remaining = target;
  for (int shift = 64 - kRadixBits; shift >= 0; shift -= kRadixBits) {
    __syncthreads();  // the previous digit's histogram may still be read
    for (int b = static_cast<int>(threadIdx.x); b < kBins; b += kThreads) sh.hist[b] = 0;
    __syncthreads();
    for_each_warp_uniform(l, vocab, [&](float v, int i, bool valid) {
      const u64 key = sm::rank_key(v, i);
      bool in = valid && v != -INFINITY && key >= min_key && (key & mask) == prefix;
      const u64 w = in && kMass ? sm::fixed_weight(sm::weight(v, best, inv_temp)) : 1;
      in = in && w != 0;
      warp_hist_add<kMass>(sh.hist, static_cast<int>((key >> shift) & (kBins - 1)), w, in);
    });
    __syncthreads();
    if (threadIdx.x < kWarpSize) {
      // Lane 0 holds the top kBinsPerLane bins, lane 1 the next, …
      const int top_bin = kBins - 1 - lane * kBinsPerLane;
      u64 mine = 0;
      for (int b = 0; b < kBinsPerLane; ++b) mine += sh.hist[top_bin - b];
      u64 above = mine;  // inclusive scan from lane 0
      for (int o = 1; o < kWarpSize; o *= 2) {
        const u64 up = __shfl_up_sync(kFullWarp, above, o);
        if (lane >= o) above += up;
      }
      above -= mine;
      if (above < remaining && remaining <= above + mine) {
        for (int b = 0; b < kBinsPerLane; ++b) {
          const u64 h = sh.hist[top_bin - b];
          if (above + h >= remaining) {
            const int digit = top_bin - b;
            const u64 need = remaining - above;
            sh.digit = digit;
            sh.remaining = need;
            // Whether the set needs every element of the bin. Counts: all of them. Masses: once
            // the value is fixed (shift ≤ 32) every element weighs the same q, so all are needed
            // when one fewer falls short; a coarser bin may end in zero weights, which the
            // CPU's prefix leaves out, so it never counts as whole.
            if constexpr (kMass) {
              const u64 hi = (prefix | static_cast<u64>(digit) << shift) >> 32 << 32;
              const u64 q = sm::fixed_weight(sm::weight(sm::key_value(hi), best, inv_temp));
              sh.whole_bin = shift <= 32 && h - q < need;
            } else {
              sh.whole_bin = h == need;
            }
            break;
          }
          above += h;
        }
      }
    }
    __syncthreads();
    prefix |= static_cast<u64>(sh.digit) << shift;
    mask |= static_cast<u64>(kBins - 1) << shift;
    remaining = sh.remaining;
    // The whole bin is needed: its lowest key is the threshold, and zero low digits select the
    // same set. Without ties at the threshold this skips the 4 id digits.
    if (sh.whole_bin) break;
  }
  return prefix;
}

__device__ __forceinline__ void sample_row(const SampleParams& p, int64_t r, Shared& sh) {
  const SampleRowDesc d = p.rows[r];
  const int vocab = p.vocab;
  const float* raw = p.logits + d.logits_row * p.logits_row_stride;
  const float* l = raw;
  if (d.shaped_row >= 0) {
    float* out = p.shaped + d.shaped_row * p.shaped_row_stride;
    for_each(raw, vocab, [&](float v, int i) { out[i] = v; });
    stage(d.n_bias, d.bias_distinct, [&](int j) {
      const SampleBias& b = p.bias[d.bias_begin + j];
      out[b.token] += b.bias;
    });
    stage(d.n_penalty, d.penalty_distinct, [&](int j) {
      const SamplePenalty& e = p.penalties[d.penalty_begin + j];
      out[e.token] = penalize(out[e.token], e, d);
    });
    stage(d.n_mask, true, [&](int j) { out[p.masks[d.mask_begin + j]] = -INFINITY; });
    l = out;
  }
  float m = -INFINITY;
  double s = 0.0;
  int bad_raw = INT_MAX, bad_shaped = INT_MAX, n_unmasked = 0;
  u64 best = 0;
  for_each(raw, vocab, [&](float v, int i) {
    if (!(fabsf(v) < INFINITY)) bad_raw = std::min(bad_raw, i);  // NaN or ±inf
    online_add(v, m, s);
    const float x = l == raw ? v : l[i];
    if (x != x || x == INFINITY) bad_shaped = std::min(bad_shaped, i);
    if (x != -INFINITY) {
      ++n_unmasked;
      const u64 key = sm::rank_key(x, i);
      best = key > best ? key : best;
    }
  });
  bad_raw = block_min(bad_raw, sh);
  bad_shaped = block_min(bad_shaped, sh);
  n_unmasked = static_cast<int>(block_sum(static_cast<u64>(n_unmasked), sh));
  best = block_max(best, sh);
  block_online(m, s, sh);
  SampleResult res{};
  res.status = SampleStatus::kOk;
  if (bad_raw != INT_MAX) {
    res.status = SampleStatus::kNonFiniteRaw;
    res.bad_index = bad_raw;
    res.bad_value = raw[bad_raw];
  } else if (bad_shaped != INT_MAX) {
    res.status = SampleStatus::kBadShaped;
    res.bad_index = bad_shaped;
    res.bad_value = l[bad_shaped];
  } else if (n_unmasked == 0) {
    res.status = SampleStatus::kAllMasked;
  }
  if (res.status == SampleStatus::kOk) {
    int token = sm::key_id(best);
    if (d.temperature > p.greedy_temperature) {
      const float best_v = sm::key_value(best);
      const double inv_temp = sm::inverse_temperature(d.temperature);
      auto q_of = [&](float v) { return sm::fixed_weight(sm::weight(v, best_v, inv_temp)); };
      u64 min_key = 0;  // the set so far: unmasked with key ≥ min_key
      if (d.top_k > 0 && d.top_k < n_unmasked) {
        min_key = select_threshold<false>(l, vocab, 0, best_v, inv_temp, d.top_k, sh);
      }
      if (d.top_p < 1.0f) {
        u64 mass = 0;
        for_each(l, vocab, [&](float v, int i) {
          if (v != -INFINITY && sm::rank_key(v, i) >= min_key) mass += q_of(v);
        });
        const u64 target = sm::top_p_target(d.top_p, block_sum(mass, sh));
        // The select's threshold may end in zero id digits below top_k's: keep both cuts.
        min_key = std::max(min_key,
                           select_threshold<true>(l, vocab, min_key, best_v, inv_temp, target, sh));
      }
      auto kept = [&](float v, int i) {
        return v != -INFINITY && sm::rank_key(v, i) >= min_key &&
               (d.min_p <= 0.0f || sm::weight(v, best_v, inv_temp) >= static_cast<double>(d.min_p));
      };
      // The draw: thread t's segment is [t·len, (t+1)·len), walked in id order.
      const int len = (vocab + kThreads - 1) / kThreads;
      const int seg_begin = std::min(vocab, static_cast<int>(threadIdx.x) * len);
      const int seg_end = std::min(vocab, seg_begin + len);
      u64 seg_mass = 0;
      int last = -1;
      for (int i = seg_begin; i < seg_end; ++i) {
        const float v = l[i];
        if (kept(v, i)) {
          seg_mass += q_of(v);
          last = i;
        }
      }
      const u64 total = block_sum(seg_mass, sh);
      last = block_max(last, sh);
      const u64 target = sm::draw_target(d.u, total);
      const u64 before = block_exclusive_scan(seg_mass, sh);
      if (threadIdx.x == 0) sh.token = last;  // the target rounded up to the total
      __syncthreads();
      if (before <= target && target < before + seg_mass) {
        u64 mass = before;
        for (int i = seg_begin; i < seg_end; ++i) {
          const float v = l[i];
          if (!kept(v, i)) continue;
          mass += q_of(v);
          if (mass > target) {
            sh.token = i;
            break;
          }
        }
      }
      __syncthreads();
      token = sh.token;
    }
    res.token = token;
    res.logprob =
        static_cast<float>(static_cast<double>(raw[token]) - (static_cast<double>(m) + log(s)));
  }
  if (threadIdx.x == 0) p.results[r] = res;
  __syncthreads();  // sh.token and the slots are reused by the next row
}

__global__ void __launch_bounds__(kThreads) sample_kernel(const SampleParams p) {
  SIMT_SHARED(Shared, shared, [1]);
  for (int64_t r = blockIdx.x; r < p.n_rows; r += gridDim.x) sample_row(p, r, shared[0]);
}

}  // namespace

cudaError_t launch_sample(const SampleParams& params, cudaStream_t stream) {
  if (params.n_rows == 0) return cudaSuccess;
  return simt::launch({.kernel_name = "sample_kernel",
                       .grid = dim3(static_cast<unsigned>(std::min(params.n_rows, kMaxBlocks))),
                       .block = dim3(kThreads),
                       .stream = stream},
                      sample_kernel, params)
      .code;
}

}  // namespace moeserve::kernels
