#include "kernels/simt/launch.h"
#include "kernels/simt/simt.h"
#include "kernels/simt/tests/negative_kernels.cuh"

namespace simt::test {
namespace {

__global__ void reverse_static_kernel(const ReverseStaticParams p) {
  SIMT_SHARED(float, row, [128]);
  row[threadIdx.x] = p.in[threadIdx.x];
  if (p.sync) __syncthreads();
  p.out[threadIdx.x] = row[127 - threadIdx.x];
}

__global__ void barrier_bug_kernel(const BarrierBugParams p) {
  const unsigned t = threadIdx.x;
  switch (p.bug) {
    case BarrierBug::kNone: __syncthreads(); break;
    case BarrierBug::kHalfBlock:
      if (t < 16) __syncthreads();
      break;
    case BarrierBug::kTwoCallSites:
      if (t % 2 == 0) {
        __syncthreads();
      } else {
        __syncthreads();
      }
      break;
    case BarrierBug::kEarlyExit:
      if (t % 2 == 1) return;
      __syncthreads();
      break;
  }
  p.out[t] = static_cast<int>(t);
}

__global__ void mask_bug_kernel(const MaskBugParams p) {
  const int lane = static_cast<int>(threadIdx.x);
  int v = lane * 10;
  switch (p.bug) {
    case MaskBug::kNone: v = __shfl_sync(0xffffffffu, v, 3); break;
    case MaskBug::kDivergent:
      if (lane < 16) v = __shfl_sync(0xffffffffu, v, 3);
      break;
    case MaskBug::kExcludesSelf: v = __shfl_sync(0x1u, v, 0); break;
    case MaskBug::kOverlapping:
      if (lane < 16) {
        v = __shfl_sync(0x0000ffffu, v, 0);
      } else {
        v = __shfl_sync(0xffffff00u, v, 8);
      }
      break;
    case MaskBug::kLaneAtBarrier:
      if (lane == 5) {
        __syncthreads();
      } else {
        v = __shfl_sync(0xffffffffu, v, 0);
      }
      break;
  }
  p.out[lane] = v;
}

__global__ void warp_staging_kernel(const WarpStagingParams p) {
  SIMT_SHARED(float, stage, [32]);
  const unsigned lane = threadIdx.x;
  stage[lane] = static_cast<float>(lane) * 1.5f;
  if (p.syncwarp) __syncwarp();
  p.out[lane] = stage[(lane + 1) % 32];
}

__global__ void mma_tile_kernel(const MmaTileParams p) {
  const unsigned lane = threadIdx.x;
  const unsigned group = lane >> 2, tig = lane % 4;
  const auto pair = [](const uint16_t* x) { return uint32_t{x[0]} | uint32_t{x[1]} << 16; };
  const unsigned row_hi = p.wrong_index ? group : group + 8;
  const uint32_t a[4] = {pair(p.a + group * 16 + tig * 2), pair(p.a + row_hi * 16 + tig * 2),
                         pair(p.a + group * 16 + tig * 2 + 8),
                         pair(p.a + (group + 8) * 16 + tig * 2 + 8)};
  const uint32_t b[2] = {pair(p.b + group * 16 + tig * 2), pair(p.b + group * 16 + tig * 2 + 8)};
  const float c[4] = {0, 0, 0, 0};
  float d[4];
  mma_m16n8k16_bf16(d, a, b, c);
  p.d[group * 8 + tig * 2] = d[0];
  p.d[group * 8 + tig * 2 + 1] = d[1];
  p.d[(group + 8) * 8 + tig * 2] = d[2];
  p.d[(group + 8) * 8 + tig * 2 + 1] = d[3];
}

__global__ void out_of_bounds_kernel(const OutOfBoundsParams p) {
  p.out[threadIdx.x] = 1.0f;  // no bounds check: thread n writes out[n]
}

}  // namespace

LaunchResult launch_out_of_bounds(const OutOfBoundsParams& p) {
  return launch(
      {.kernel_name = "out_of_bounds_kernel", .block = dim3(static_cast<unsigned>(p.n + 1))},
      out_of_bounds_kernel, p);
}

LaunchResult launch_reverse_static(const ReverseStaticParams& p, const EmuOptions* o) {
  return launch({.kernel_name = "reverse_static_kernel", .block = dim3(128), .emu = o},
                reverse_static_kernel, p);
}

LaunchResult launch_barrier_bug(const BarrierBugParams& p) {
  return launch({.kernel_name = "barrier_bug_kernel", .block = dim3(64)}, barrier_bug_kernel, p);
}

LaunchResult launch_mask_bug(const MaskBugParams& p) {
  return launch({.kernel_name = "mask_bug_kernel", .block = dim3(32)}, mask_bug_kernel, p);
}

LaunchResult launch_warp_staging(const WarpStagingParams& p, const EmuOptions* o) {
  return launch({.kernel_name = "warp_staging_kernel", .block = dim3(32), .emu = o},
                warp_staging_kernel, p);
}

LaunchResult launch_mma_tile(const MmaTileParams& p) {
  return launch({.kernel_name = "mma_tile_kernel", .block = dim3(32)}, mma_tile_kernel, p);
}

}  // namespace simt::test
