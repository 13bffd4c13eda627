// Device helpers shared by the row kernels (moe_gate, log_softmax_topk, sampling): the online
// (max, Σexp) pair and warp-wide maxima of 64-bit rank keys (kernels/sampling_math.h).
// Device code only; include from .cu files.
#pragma once

// Before simt.h: the emulator's index macros would break the runtime's declarations.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/simt/simt.h"

namespace moeserve::kernels {

inline constexpr unsigned kFullWarp = 0xffffffffu;

// Adds x to the running maximum m and s = Σ exp(v - m): float exps, a double sum.
__device__ __forceinline__ void online_add(float x, float& m, double& s) {
  const float d = x - m;
  if (d > 0.0f) {
    s = s * static_cast<double>(expf(-d)) + 1.0;
    m = x;
  } else if (d == d) {  // not NaN, as -inf - -inf is before the first finite value
    s += static_cast<double>(expf(d));
  }
}

// (m, s) ← the pair of the union of both sets.
__device__ __forceinline__ void online_merge(float& m, double& s, float m2, double s2) {
  const float mx = fmaxf(m, m2);
  if (mx == -INFINITY) return;
  s = (m == -INFINITY ? 0.0 : s * static_cast<double>(expf(m - mx))) +
      (m2 == -INFINITY ? 0.0 : s2 * static_cast<double>(expf(m2 - mx)));
  m = mx;
}

// The largest key of the warp, in every lane: two redux.sync instead of ten shuffles.
__device__ __forceinline__ uint64_t warp_max_key(uint64_t key) {
  const auto hi = static_cast<unsigned>(key >> 32);
  const unsigned best_hi = __reduce_max_sync(kFullWarp, hi);
  const unsigned best_lo =
      __reduce_max_sync(kFullWarp, hi == best_hi ? static_cast<unsigned>(key) : 0u);
  return (static_cast<uint64_t>(best_hi) << 32) | best_lo;
}

}  // namespace moeserve::kernels
