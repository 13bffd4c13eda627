// Kernels with the bugs a GPU punishes (a missing barrier, a barrier in divergent code, a
// shuffle with a bad mask, a race hidden by warp-synchronous code, a wrong mma fragment index),
// and their correct twins; tests/emu/simt_negative_test.cc checks the emulator catches each.
#pragma once

#include <cstdint>

#include "kernels/simt/launch_config.h"

namespace simt::test {

struct ReverseStaticParams {
  const float* in;  // [128]
  float* out;       // [128] in reversed through static shared memory
  bool sync;        // false drops the __syncthreads between the store and the load
};
LaunchResult launch_reverse_static(const ReverseStaticParams& p, const EmuOptions* o);

enum class BarrierBug : int {
  kNone,          // every thread reaches the same barrier
  kHalfBlock,     // only threads < 16 call __syncthreads
  kTwoCallSites,  // even and odd threads call __syncthreads at different sites
  kEarlyExit,     // odd threads return before the barrier
};
struct BarrierBugParams {
  BarrierBug bug;
  int* out;  // [64]
};
LaunchResult launch_barrier_bug(const BarrierBugParams& p);

enum class MaskBug : int {
  kNone,           // full warp, full mask
  kDivergent,      // lanes < 16 shuffle with the full mask
  kExcludesSelf,   // every lane passes mask 0x1
  kOverlapping,    // lanes < 16 use 0x0000ffff, lanes >= 16 use 0xffffff00
  kLaneAtBarrier,  // lane 5 calls __syncthreads while the others shuffle with the full mask
};
struct MaskBugParams {
  MaskBug bug;
  int* out;  // [32]
};
LaunchResult launch_mask_bug(const MaskBugParams& p);

struct WarpStagingParams {
  float* out;     // [32] each lane reads its neighbour's staged value
  bool syncwarp;  // false drops the __syncwarp between the store and the load
};
LaunchResult launch_warp_staging(const WarpStagingParams& p, const EmuOptions* o);

// One m16n8k16 bf16 mma with fragments loaded straight from global memory.
struct MmaTileParams {
  const uint16_t* a;  // [16, 16] bf16 bits, row-major
  const uint16_t* b;  // [8, 16] bf16 bits: column n of B is row n here (k contiguous)
  float* d;           // [16, 8] row-major
  bool wrong_index;   // true loads a2,a3 from row groupID instead of groupID+8
};
LaunchResult launch_mma_tile(const MmaTileParams& p);

struct OutOfBoundsParams {
  float* out;  // [n] heap buffer; thread n writes one past its end
  int n;
};
// n + 1 threads, each writes out[threadIdx.x]: the last write is out of bounds (for ASan).
LaunchResult launch_out_of_bounds(const OutOfBoundsParams& p);

}  // namespace simt::test
