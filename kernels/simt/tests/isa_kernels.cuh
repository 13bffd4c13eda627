// One-warp probes of the tensor-core and copy instructions: each lane's registers go in and
// come out through global memory, so tests/emu/simt_isa_test.cc can place and read them with
// the PTX ISA's fragment tables written out independently.
#pragma once

#include <cstdint>

#include "kernels/simt/launch_config.h"

namespace simt::test {

enum class MmaKind : int { kBf16, kF16, kS8, kE4m3 };
struct MmaProbeParams {
  MmaKind kind;
  const uint32_t* a;  // [32 lanes, 4] A fragment registers
  const uint32_t* b;  // [32 lanes, 2] B fragment registers
  const uint32_t* c;  // [32 lanes, 4] C fragment (f32 or s32 bits)
  uint32_t* d;        // [32 lanes, 4] D fragment (f32 or s32 bits)
};
LaunchResult launch_mma_probe(const MmaProbeParams& p);

struct LdmatrixProbeParams {
  const uint16_t* smem_image;  // [64 rows, 8] b16 values copied into shared memory first
  const int* lane_row;         // [32] row of the image whose address each lane supplies
  int n_matrices;              // 1, 2 or 4
  bool trans;
  uint32_t* regs;              // [32 lanes, 4] destination registers
  bool skip_syncwarp = false;  // true drops the __syncwarp before ldmatrix (a race)
};
LaunchResult launch_ldmatrix_probe(const LdmatrixProbeParams& p);

// Thread t issues cp.async of cp_bytes from src + t·16 to shared + t·16 with src_bytes,
// in two commit groups (threads' first and second halves of the buffer), then:
// stage 0 wait_group 1 (first group complete), stage 1 wait_group 0 (all complete).
struct CpAsyncProbeParams {
  const uint8_t* src;    // [2, n_threads·16]
  int cp_bytes;          // 4, 8 or 16
  int src_bytes;         // <= cp_bytes; the rest is zero-filled
  bool cache_global;     // .cg instead of .ca (16 bytes only)
  uint8_t* after_wait1;  // [2, n_threads·16] this thread's shared bytes after wait_group 1
  uint8_t* after_wait0;  // [2, n_threads·16] after wait_group 0
};
LaunchResult launch_cp_async_probe(const CpAsyncProbeParams& p, unsigned n_threads);

}  // namespace simt::test
