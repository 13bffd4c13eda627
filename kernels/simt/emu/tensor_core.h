// Tensor-core and async-copy instructions under the emulator (host compiler only). Same
// signatures as kernels/simt/ptx.h. mma and ldmatrix are warp collectives over all 32 lanes
// (.sync.aligned); they gather every lane's registers and compute the result with the PTX
// ISA's fragment layouts (emu/tensor_core.cc states them).
#pragma once

#include <cstdint>
#include <source_location>

namespace simt {

// D = A·B + C, A 16×16 row-major, B 16×8 column-major, fp32 accumulate.
void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                       const float (&c)[4],
                       const std::source_location& loc = std::source_location::current());
void mma_m16n8k16_f16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                      const float (&c)[4],
                      const std::source_location& loc = std::source_location::current());
// D = A·B + C, A 16×32, B 32×8, 8-bit inputs.
void mma_m16n8k32_s8(int32_t (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                     const int32_t (&c)[4],
                     const std::source_location& loc = std::source_location::current());
void mma_m16n8k32_e4m3(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                       const float (&c)[4],
                       const std::source_location& loc = std::source_location::current());

namespace emu {
void ldmatrix(uint32_t* regs, int n_matrices, bool trans, const void* smem_row,
              const std::source_location& loc);
void cp_async(void* smem_dst, const void* global_src, int bytes, int src_bytes,
              const std::source_location& loc);
void cp_async_commit();
void cp_async_wait(int n_pending_groups);
}  // namespace emu

// ldmatrix.sync.aligned.m8n8.x{N}{.trans}.shared.b16: lane i supplies the address of row i%8
// of matrix i/8 (lanes 0-7 for x1, 0-15 for x2).
template <int N, bool kTrans = false>
void ldmatrix(uint32_t (&regs)[N], const void* smem_row,
              const std::source_location& loc = std::source_location::current()) {
  static_assert(N == 1 || N == 2 || N == 4, "ldmatrix loads 1, 2 or 4 matrices");
  emu::ldmatrix(regs, N, kTrans, smem_row, loc);
}

enum class CacheOp : uint8_t { kCa, kCg };  // .ca (L1+L2) or .cg (L2 only)

// cp.async.{ca,cg}.shared.global [dst], [src], kBytes, src_bytes: copies src_bytes and
// zero-fills the rest of kBytes. Visible only after cp_async_wait covers its group.
template <int kBytes, CacheOp kOp = CacheOp::kCa>
void cp_async(void* smem_dst, const void* global_src, int src_bytes = kBytes,
              const std::source_location& loc = std::source_location::current()) {
  static_assert(kBytes == 4 || kBytes == 8 || kBytes == 16, "cp.async copies 4, 8 or 16 bytes");
  static_assert(kOp == CacheOp::kCa || kBytes == 16, "cp.async.cg copies 16 bytes only");
  emu::cp_async(smem_dst, global_src, kBytes, src_bytes, loc);
}
inline void cp_async_commit() { emu::cp_async_commit(); }
// cp.async.wait_group N: all but the newest N committed groups are complete.
template <int kPending>
void cp_async_wait() {
  emu::cp_async_wait(kPending);
}

}  // namespace simt
