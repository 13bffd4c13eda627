#include "kernels/simt/launch.h"
#include "kernels/simt/simt.h"
#include "kernels/simt/tests/isa_kernels.cuh"

namespace simt::test {
namespace {

__global__ void mma_probe_kernel(const MmaProbeParams p) {
  const unsigned lane = threadIdx.x;
  uint32_t a[4], b[2];
  for (int i = 0; i < 4; ++i) a[i] = p.a[lane * 4 + i];
  for (int i = 0; i < 2; ++i) b[i] = p.b[lane * 2 + i];
  if (p.kind == MmaKind::kS8) {
    int32_t c[4], d[4];
    for (int i = 0; i < 4; ++i) c[i] = static_cast<int32_t>(p.c[lane * 4 + i]);
    mma_m16n8k32_s8(d, a, b, c);
    for (int i = 0; i < 4; ++i) p.d[lane * 4 + i] = static_cast<uint32_t>(d[i]);
    return;
  }
  float c[4], d[4];
  for (int i = 0; i < 4; ++i) c[i] = __uint_as_float(p.c[lane * 4 + i]);
  switch (p.kind) {
    case MmaKind::kBf16: mma_m16n8k16_bf16(d, a, b, c); break;
    case MmaKind::kF16: mma_m16n8k16_f16(d, a, b, c); break;
    default: mma_m16n8k32_e4m3(d, a, b, c); break;
  }
  for (int i = 0; i < 4; ++i) p.d[lane * 4 + i] = __float_as_uint(d[i]);
}

__global__ void ldmatrix_probe_kernel(const LdmatrixProbeParams p) {
  SIMT_SHARED(uint16_t, image, [64][8]);
  const unsigned lane = threadIdx.x;
  for (int r = static_cast<int>(lane); r < 64; r += 32) {
    for (int c = 0; c < 8; ++c) image[r][c] = p.smem_image[r * 8 + c];
  }
  if (!p.skip_syncwarp) __syncwarp();
  const void* row = &image[p.lane_row[lane]][0];
  uint32_t regs[4] = {0, 0, 0, 0};
  if (p.n_matrices == 1) {
    uint32_t r[1];
    p.trans ? ldmatrix<1, true>(r, row) : ldmatrix<1>(r, row);
    regs[0] = r[0];
  } else if (p.n_matrices == 2) {
    uint32_t r[2];
    p.trans ? ldmatrix<2, true>(r, row) : ldmatrix<2>(r, row);
    regs[0] = r[0], regs[1] = r[1];
  } else {
    p.trans ? ldmatrix<4, true>(regs, row) : ldmatrix<4>(regs, row);
  }
  for (int i = 0; i < 4; ++i) p.regs[lane * 4 + i] = regs[i];
}

template <int kBytes, CacheOp kOp>
__device__ void issue(void* dst, const void* src, int src_bytes) {
  cp_async<kBytes, kOp>(dst, src, src_bytes);
}

__device__ void issue_sized(const CpAsyncProbeParams& p, void* dst, const void* src) {
  if (p.cache_global) return issue<16, CacheOp::kCg>(dst, src, p.src_bytes);
  switch (p.cp_bytes) {
    case 4: return issue<4, CacheOp::kCa>(dst, src, p.src_bytes);
    case 8: return issue<8, CacheOp::kCa>(dst, src, p.src_bytes);
    default: return issue<16, CacheOp::kCa>(dst, src, p.src_bytes);
  }
}

__global__ void cp_async_probe_kernel(const CpAsyncProbeParams p) {
  SIMT_DYNAMIC_SHARED(uint8_t, buf);  // [2, n_threads·16]
  const unsigned t = threadIdx.x;
  const unsigned half = blockDim.x * 16;
  issue_sized(p, buf + t * 16, p.src + t * 16);
  cp_async_commit();
  issue_sized(p, buf + half + t * 16, p.src + half + t * 16);
  cp_async_commit();
  cp_async_wait<1>();
  for (unsigned i = 0; i < 16; ++i) {
    p.after_wait1[t * 16 + i] = buf[t * 16 + i];
    p.after_wait1[half + t * 16 + i] = buf[half + t * 16 + i];
  }
  cp_async_wait<0>();
  for (unsigned i = 0; i < 16; ++i) {
    p.after_wait0[t * 16 + i] = buf[t * 16 + i];
    p.after_wait0[half + t * 16 + i] = buf[half + t * 16 + i];
  }
}

}  // namespace

LaunchResult launch_mma_probe(const MmaProbeParams& p) {
  return launch({.kernel_name = "mma_probe_kernel", .block = dim3(32)}, mma_probe_kernel, p);
}

LaunchResult launch_ldmatrix_probe(const LdmatrixProbeParams& p) {
  return launch({.kernel_name = "ldmatrix_probe_kernel", .block = dim3(32)}, ldmatrix_probe_kernel,
                p);
}

LaunchResult launch_cp_async_probe(const CpAsyncProbeParams& p, unsigned n_threads) {
  return launch({.kernel_name = "cp_async_probe_kernel",
                 .block = dim3(n_threads),
                 .dynamic_smem_bytes = size_t{n_threads} * 32},
                cp_async_probe_kernel, p);
}

}  // namespace simt::test
