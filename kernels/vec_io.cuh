// Device-side loads and stores of activations whose element type is chosen at run time
// (kernels/elem_type.cuh): values are widened to F32 on load and rounded once, to nearest
// even, on store. Include from kernel sources only (.cu); host code never needs it.
#pragma once

#include <cstring>

#include "kernels/elem_type.cuh"
#include "kernels/simt/simt.h"

// Loop unrolling hints that both compilers take (nvcc's `#pragma unroll`, GCC's own).
#if defined(__CUDACC__)
#define KERNEL_UNROLL _Pragma("unroll")
#define KERNEL_NO_UNROLL _Pragma("unroll 1")
#else
#define KERNEL_UNROLL _Pragma("GCC unroll 64")
#define KERNEL_NO_UNROLL _Pragma("GCC unroll 1")
#endif

namespace moeserve::kernels {

// The bits of `from` as a To of the same size (no aliasing through casts).
template <typename To, typename From>
__device__ __forceinline__ To bit_as(const From& from) {
  static_assert(sizeof(To) == sizeof(From));
  To to;
  memcpy(static_cast<void*>(&to), static_cast<const void*>(&from), sizeof(To));
  return to;
}

// Element i of p as F32.
__device__ __forceinline__ float load1(const void* p, ElemType t, int64_t i) {
  switch (t) {
    case ElemType::kBF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case ElemType::kF16: return __half2float(static_cast<const __half*>(p)[i]);
    case ElemType::kF32:
    case ElemType::kFP8E4M3: break;  // never passed here (GEMM weights only)
  }
  return static_cast<const float*>(p)[i];
}

__device__ __forceinline__ void store1(void* p, ElemType t, int64_t i, float v) {
  switch (t) {
    case ElemType::kBF16: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(v); return;
    case ElemType::kF16: static_cast<__half*>(p)[i] = __float2half(v); return;
    case ElemType::kF32:
    case ElemType::kFP8E4M3: break;  // never passed here (GEMM weights only)
  }
  static_cast<float*>(p)[i] = v;
}

// Elements [i, i + 8) of p as F32, in 128-bit loads: p + i must be 16-byte aligned.
__device__ __forceinline__ void load8(const void* p, ElemType t, int64_t i, float (&v)[8]) {
  if (t == ElemType::kF32) {
    const float4* q = reinterpret_cast<const float4*>(static_cast<const float*>(p) + i);
    const float4 a = q[0], b = q[1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    return;
  }
  const uint4 raw = *reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(p) + i);
  const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
  for (int k = 0; k < 4; ++k) {
    if (t == ElemType::kBF16) {
      const float2 f = __bfloat1622float2(bit_as<__nv_bfloat162>(w[k]));
      v[2 * k] = f.x, v[2 * k + 1] = f.y;
    } else {
      const float2 f = __half22float2(bit_as<__half2>(w[k]));
      v[2 * k] = f.x, v[2 * k + 1] = f.y;
    }
  }
}

// Two F32 values as one 32-bit pair of BF16 (lo in the low half), rounded to nearest even.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  return bit_as<uint32_t>(__floats2bfloat162_rn(lo, hi));
}

__device__ __forceinline__ void store8(void* p, ElemType t, int64_t i, const float (&v)[8]) {
  if (t == ElemType::kF32) {
    float4* q = reinterpret_cast<float4*>(static_cast<float*>(p) + i);
    q[0] = make_float4(v[0], v[1], v[2], v[3]);
    q[1] = make_float4(v[4], v[5], v[6], v[7]);
    return;
  }
  uint32_t w[4];
  for (int k = 0; k < 4; ++k) {
    if (t == ElemType::kBF16) {
      w[k] = pack_bf16x2(v[2 * k], v[2 * k + 1]);
    } else {
      w[k] = bit_as<uint32_t>(__floats2half2_rn(v[2 * k], v[2 * k + 1]));
    }
  }
  *reinterpret_cast<uint4*>(static_cast<uint16_t*>(p) + i) = make_uint4(w[0], w[1], w[2], w[3]);
}

}  // namespace moeserve::kernels
