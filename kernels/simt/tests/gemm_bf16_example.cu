#include "kernels/simt/launch.h"
#include "kernels/simt/simt.h"
#include "kernels/simt/tests/gemm_bf16_example.cuh"

namespace simt::test {
namespace {

constexpr int kBlockM = 64;
constexpr int kBlockN = 64;
constexpr int kBlockK = 32;
constexpr int kPad = 8;  // keeps rows 16-byte aligned for ldmatrix and spreads banks
constexpr int kRow = kBlockK + kPad;
constexpr int kThreads = 128;

// Issues the cp.async copies of one k-tile of A and B into stage `s`; chunks beyond m, n or k
// are zero-filled (src-size 0) from a valid address.
__device__ __forceinline__ void load_tile(const GemmBf16Params& p, uint16_t (*as)[kRow],
                                          uint16_t (*bs)[kRow], int m0, int n0, int k0) {
  const int tid = static_cast<int>(threadIdx.x);
  for (int i = 0; i < 2; ++i) {
    const int chunk = tid + i * kThreads;  // 64 rows × 4 chunks of 8 elements
    const int row = chunk / 4;
    const int kc = (chunk % 4) * 8;
    const int gk = k0 + kc;
    const bool a_ok = m0 + row < p.m && gk < p.k;
    const bool b_ok = n0 + row < p.n && gk < p.k;
    const uint16_t* a_src = a_ok ? p.a + (m0 + row) * p.lda + gk : p.a;
    const uint16_t* b_src = b_ok ? p.b + (n0 + row) * p.ldb + gk : p.b;
    cp_async<16, CacheOp::kCg>(&as[row][kc], a_src, a_ok ? 16 : 0);
    cp_async<16, CacheOp::kCg>(&bs[row][kc], b_src, b_ok ? 16 : 0);
  }
}

__global__ void __launch_bounds__(kThreads) gemm_bf16_kernel(const GemmBf16Params p) {
  SIMT_SHARED(uint16_t, a_smem, [2][kBlockM][kRow]);
  SIMT_SHARED(uint16_t, b_smem, [2][kBlockN][kRow]);
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int warp = static_cast<int>(threadIdx.x / 32);
  const int wm = warp / 2, wn = warp % 2;  // this warp's 32×32 quadrant
  const int m0 = static_cast<int>(blockIdx.y) * kBlockM;
  const int n0 = static_cast<int>(blockIdx.x) * kBlockN;
  const int n_tiles = (p.k + kBlockK - 1) / kBlockK;

  float acc[2][4][4] = {};
  load_tile(p, a_smem[0], b_smem[0], m0, n0, 0);
  cp_async_commit();
  for (int t = 0; t < n_tiles; ++t) {
    const int s = t & 1;
    if (t + 1 < n_tiles) load_tile(p, a_smem[s ^ 1], b_smem[s ^ 1], m0, n0, (t + 1) * kBlockK);
    cp_async_commit();  // possibly empty, so that wait_group 1 always means "tile t landed"
    cp_async_wait<1>();
    __syncthreads();
    for (int ks = 0; ks < kBlockK; ks += 16) {
      uint32_t a[2][4];
      uint32_t b[4][2];
      for (int mt = 0; mt < 2; ++mt) {
        // Lanes 0-15 give rows 0-15 at k 0-7, lanes 16-31 the same rows at k 8-15: a0..a3.
        ldmatrix<4>(a[mt], &a_smem[s][wm * 32 + mt * 16 + lane % 16][ks + (lane / 16) * 8]);
      }
      for (int np = 0; np < 2; ++np) {
        // Matrices: (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15).
        uint32_t r[4];
        ldmatrix<4>(
            r,
            &b_smem[s][wn * 32 + np * 16 + (lane / 16) * 8 + lane % 8][ks + ((lane / 8) % 2) * 8]);
        b[np * 2][0] = r[0], b[np * 2][1] = r[1];
        b[np * 2 + 1][0] = r[2], b[np * 2 + 1][1] = r[3];
      }
      for (int mt = 0; mt < 2; ++mt) {
        for (int nt = 0; nt < 4; ++nt) mma_m16n8k16_bf16(acc[mt][nt], a[mt], b[nt], acc[mt][nt]);
      }
    }
    __syncthreads();  // the next iteration's loads overwrite the stage just read
  }

  const int group = lane >> 2, tig = lane % 4;
  for (int mt = 0; mt < 2; ++mt) {
    for (int nt = 0; nt < 4; ++nt) {
      for (int i = 0; i < 4; ++i) {
        const int row = m0 + wm * 32 + mt * 16 + group + (i >= 2 ? 8 : 0);
        const int col = n0 + wn * 32 + nt * 8 + tig * 2 + (i & 1);
        if (row < p.m && col < p.n) p.c[row * p.ldc + col] = acc[mt][nt][i];
      }
    }
  }
}

}  // namespace

LaunchResult launch_gemm_bf16(const GemmBf16Params& p, const EmuOptions* emu, cudaStream_t stream) {
  if (p.m == 0 || p.n == 0) return {};
  if (p.k % 8 != 0 || p.lda % 8 != 0 || p.ldb % 8 != 0) {
    return {cudaErrorInvalidValue, "gemm_bf16: k, lda and ldb must be multiples of 8"};
  }
  const dim3 grid(static_cast<unsigned>((p.n + kBlockN - 1) / kBlockN),
                  static_cast<unsigned>((p.m + kBlockM - 1) / kBlockM));
  return launch({.kernel_name = "gemm_bf16_kernel",
                 .grid = grid,
                 .block = dim3(kThreads),
                 .stream = stream,
                 .emu = emu},
                gemm_bf16_kernel, p);
}

}  // namespace simt::test
