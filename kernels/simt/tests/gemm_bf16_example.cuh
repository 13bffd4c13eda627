// A small tensor-core GEMM written on the SIMT layer: cp.async double buffering into shared
// memory, ldmatrix into mma fragments, mma.m16n8k16 bf16 with fp32 accumulation. It is the
// emulator's end-to-end check (tests/emu/simt_gemm_test.cc) and compiles unchanged for sm_90a.
#pragma once

#include <cstdint>

#include "kernels/simt/launch_config.h"

namespace simt::test {

struct GemmBf16Params {
  const uint16_t* a;  // [m, k] bf16 bits, row-major, rows lda elements apart
  const uint16_t* b;  // [n, k] bf16 bits, row-major (column j of B is row j here)
  float* c;           // [m, n] fp32, row-major, rows ldc elements apart
  int m;
  int n;
  int k;        // multiple of 8 (16-byte cp.async chunks)
  int64_t lda;  // multiple of 8; a is 16-byte aligned
  int64_t ldb;  // multiple of 8; b is 16-byte aligned
  int64_t ldc;
};
// c = a · bᵀ. 64×64 output tiles, 128 threads (2×2 warps of 32×32) per block.
LaunchResult launch_gemm_bf16(const GemmBf16Params& p, const EmuOptions* emu = nullptr,
                              cudaStream_t stream = nullptr);

}  // namespace simt::test
