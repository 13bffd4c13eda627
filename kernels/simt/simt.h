// The SIMT portability layer: include this (and launch.h for host launch code) from kernel
// source. Compiled by nvcc it is real CUDA (builtins, inline PTX); compiled by the host C++
// compiler it maps the same names onto the emulator (kernels/simt/emu/).
//
// What kernel source uses beyond plain CUDA C++:
//   SIMT_SHARED(T, name, dims)   static shared memory, e.g. SIMT_SHARED(float, tile, [32][33]);
//                                one per block (a plain local in a fiber would be per thread)
//   SIMT_DYNAMIC_SHARED(T, name) T* name = the block's dynamic shared memory
//   simt::mma_*, simt::ldmatrix, simt::cp_async*  tensor-core and async-copy instructions
//   simt::lane_id()
//   SIMT_UNROLL for (...)        `#pragma unroll` for nvcc (GCC would warn on it; the emulator
//                                does not need unrolled loops)
#pragma once

#include <vector_functions.h>
#include <vector_types.h>

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#if defined(__CUDACC__)

#include <cuda_runtime.h>

#include "kernels/simt/ptx.h"

#define SIMT_SHARED(T, name, dims) __shared__ __align__(16) T name dims
#define SIMT_UNROLL _Pragma("unroll")
#define SIMT_DYNAMIC_SHARED(T, name)                               \
  extern __shared__ __align__(16) unsigned char simt_dyn_##name[]; \
  T* name = reinterpret_cast<T*>(simt_dyn_##name)

namespace simt {
__device__ __forceinline__ unsigned lane_id() {
  unsigned lane;
  asm("mov.u32 %0, %%laneid;" : "=r"(lane));
  return lane;
}
}  // namespace simt

#else  // host compiler: the emulator

#include "kernels/simt/emu/device.h"
#include "kernels/simt/emu/tensor_core.h"

#define SIMT_UNROLL

// The tag's address identifies the declaration, so every thread of a block gets the same slot.
#define SIMT_SHARED(T, name, dims)                                                   \
  static const char simt_tag_##name = 0;                                             \
  using simt_type_##name = T dims;                                                   \
  simt_type_##name& name = *static_cast<simt_type_##name*>(::simt::emu::shared_slot( \
      &simt_tag_##name, sizeof(simt_type_##name),                                    \
      alignof(simt_type_##name) < 16 ? 16 : alignof(simt_type_##name), #name))
#define SIMT_DYNAMIC_SHARED(T, name) T* name = static_cast<T*>(::simt::emu::dynamic_shared())

namespace simt {
// Lane of the thread in its warp, for a 1-D block as on the GPU (threadIdx.x & 31) and for
// 2-D/3-D blocks by the linear thread index.
inline unsigned lane_id() {
  const auto& v = *::simt::emu::tls_view;
  return (v.thread_idx.x + v.block_dim.x * (v.thread_idx.y + v.block_dim.y * v.thread_idx.z)) & 31u;
}
}  // namespace simt

#endif
