#include <algorithm>
#include <cmath>

#include "kernels/rope_kv.cuh"
#include "kernels/simt/launch.h"
#include "kernels/simt/simt.h"
#include "kernels/vec_io.cuh"

namespace moeserve::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;  // the grid loops beyond it

__device__ __forceinline__ float rounded_to(ElemType t, float v) {
  return t == ElemType::kBF16 ? __bfloat162float(__float2bfloat16(v)) : v;
}

// Rotates the interleaved pairs of v by the (cos, sin) pairs of cs.
template <int kPairs>
__device__ __forceinline__ void rotate(float (&v)[2 * kPairs], const float (&cs)[2 * kPairs]) {
  for (int i = 0; i < kPairs; ++i) {
    const float c = cs[2 * i], s = cs[2 * i + 1];
    const float a = v[2 * i], b = v[2 * i + 1];
    v[2 * i] = a * c - b * s;
    v[2 * i + 1] = a * s + b * c;
  }
}

// One unit per thread. Vector path (kVec): a unit is 8 columns, all on one side of
// rope_begin. Scalar path: a unit is one column before rope_begin or one pair after it, so
// a thread rewrites only the columns it read.
template <bool kVec>
__global__ void __launch_bounds__(kThreads) rope_kv_kernel(const RopeKvParams p) {
  const int n_rope_units = kVec ? (p.width - p.rope_begin) / 8 : (p.width - p.rope_begin) / 2;
  const int n_plain_units = kVec ? p.rope_begin / 8 : p.rope_begin;
  const int n_units = n_plain_units + n_rope_units;
  const int64_t n_items = p.n_tokens * p.n_heads * n_units;
  for (int64_t item = int64_t{blockIdx.x} * kThreads + threadIdx.x; item < n_items;
       item += int64_t{gridDim.x} * kThreads) {
    const int unit = static_cast<int>(item % n_units);
    const int64_t row = item / n_units;
    const int64_t token = row / p.n_heads;
    const int head = static_cast<int>(row % p.n_heads);
    const int64_t base = token * p.token_stride + int64_t{head} * p.head_stride;
    const bool rotated = unit >= n_plain_units;
    constexpr int kN = kVec ? 8 : 2;
    const int col = rotated ? p.rope_begin + (unit - n_plain_units) * kN : unit * (kVec ? 8 : 1);
    const int n = kVec || rotated ? kN : 1;
    float v[kN];
    if constexpr (kVec) {
      load8(p.x, p.x_type, base + col, v);
    } else {
      v[0] = load1(p.x, p.x_type, base + col);
      if (n == 2) v[1] = load1(p.x, p.x_type, base + col + 1);
    }
    if (rotated) {
      const int32_t pos = p.positions[token];
      if (pos >= 0 && pos < p.max_pos) {
        // Pair i of the rope columns uses table row entries (2i, 2i + 1).
        const float* cs_row =
            p.cos_sin + int64_t{pos} * (p.width - p.rope_begin) + (col - p.rope_begin);
        float cs[kN];
        if constexpr (kVec) {
          const float4 a = reinterpret_cast<const float4*>(cs_row)[0];
          const float4 b = reinterpret_cast<const float4*>(cs_row)[1];
          cs[0] = a.x, cs[1] = a.y, cs[2] = a.z, cs[3] = a.w;
          cs[4] = b.x, cs[5] = b.y, cs[6] = b.z, cs[7] = b.w;
        } else {
          cs[0] = cs_row[0], cs[1] = cs_row[1];
        }
        rotate<kN / 2>(v, cs);
      } else {
        for (float& x : v) x = NAN;
      }
      for (float& x : v) x = rounded_to(p.x_type, x);
      if constexpr (kVec) {
        store8(p.x, p.x_type, base + col, v);
      } else {
        store1(p.x, p.x_type, base + col, v[0]);
        store1(p.x, p.x_type, base + col + 1, v[1]);
      }
    }
    if (p.cache != nullptr) {
      const int32_t slot = p.slot_mapping[token];
      if (slot >= 0 && slot < p.n_slots) {
        const int64_t dst = int64_t{slot} * p.width + col;
        if constexpr (kVec) {
          store8(p.cache, p.cache_type, dst, v);
        } else {
          store1(p.cache, p.cache_type, dst, v[0]);
          if (n == 2) store1(p.cache, p.cache_type, dst + 1, v[1]);
        }
      }
    }
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

cudaError_t launch_rope_kv(const RopeKvParams& p, cudaStream_t stream) {
  if (p.n_tokens == 0 || p.n_heads == 0 || p.width == 0) return cudaSuccess;
  if ((p.width - p.rope_begin) % 2 != 0 || p.rope_begin < 0 || p.rope_begin > p.width ||
      (p.cache != nullptr && p.n_heads != 1)) {
    return cudaErrorInvalidValue;
  }
  const bool vec = p.width % 8 == 0 && p.rope_begin % 8 == 0 && aligned16(p.x) &&
                   p.token_stride % 8 == 0 && p.head_stride % 8 == 0 &&
                   (p.cache == nullptr || aligned16(p.cache)) &&
                   (p.rope_begin == p.width || aligned16(p.cos_sin));
  const int units = vec ? p.width / 8 : p.rope_begin + (p.width - p.rope_begin) / 2;
  const int64_t items = p.n_tokens * p.n_heads * units;
  const auto blocks =
      static_cast<unsigned>(std::min((items + kThreads - 1) / kThreads, kMaxBlocks));
  const char* name = p.cache == nullptr ? "rope_kernel" : "rope_kv_write_kernel";
  return simt::launch(
             {.kernel_name = name, .grid = dim3(blocks), .block = dim3(kThreads), .stream = stream},
             vec ? rope_kv_kernel<true> : rope_kv_kernel<false>, p)
      .code;
}

}  // namespace moeserve::kernels
