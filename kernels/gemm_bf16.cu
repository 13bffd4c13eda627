#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernels/gemm_bf16.cuh"
#include "kernels/simt/launch.h"
#include "kernels/simt/simt.h"

// Fully unrolled loops keep the fragment and accumulator arrays in registers (nvcc only;
// GCC rejects the pragma and the emulator does not care).
#if defined(__CUDACC__)
#define GEMM_UNROLL _Pragma("unroll")
#else
#define GEMM_UNROLL
#endif

namespace moeserve::kernels {
namespace {

template <GemmTile kTile>
struct Cfg;
// Decode: one 16-row mma tile of tokens; 128 weight rows × 64 k = 16 KiB of weights a stage.
template <>
struct Cfg<GemmTile::kSkinny> {
  static constexpr int kBM = 16, kBN = 128, kBK = 64, kWM = 16, kWN = 32, kStages = 4;
};
// Prefill: 128 × 128 output tiles, each warp 64 × 32 (4 × 4 mma tiles, 64 F32 accumulators).
template <>
struct Cfg<GemmTile::kLarge> {
  static constexpr int kBM = 128, kBN = 128, kBK = 32, kWM = 64, kWN = 32, kStages = 4;
};

// 8 elements of padding per shared row: 16-bit rows (kBK + 8) · 2 bytes and F32 rows
// (kBK + 8) · 4 bytes put the 8 rows an ldmatrix (or a half-warp's float2 reads) touches in
// distinct banks, and keep every row 16-byte aligned for cp.async. FP8 rows get 16 bytes
// (80 or 48 bytes a row): the 8 rows a B fragment read touches start 20 or 12 words apart,
// distinct banks (multiples of 4) for every lane's 2-byte reads.
constexpr int kPad = 8;
constexpr int kPadFp8 = 16;
constexpr int kMaxSplits = 32;

template <GemmTile kTile, bool kXF32, bool kW8 = false>
struct Layout {
  using C = Cfg<kTile>;
  using XT = std::conditional_t<kXF32, float, uint16_t>;
  using WT = std::conditional_t<kW8, uint8_t, uint16_t>;  // weight storage
  static constexpr int kWarpsN = C::kBN / C::kWN;
  static constexpr int kThreads = 32 * (C::kBM / C::kWM) * kWarpsN;
  static constexpr int kMT = C::kWM / 16;  // mma tiles along tokens per warp
  static constexpr int kNT = C::kWN / 8;   // mma tiles along weight rows per warp
  // Large F32-x tiles keep 3 stages: 4 would take 120 KiB, one block per SM.
  static constexpr int kStages = kTile == GemmTile::kLarge && kXF32 ? 3 : C::kStages;
  static constexpr int kPitch = C::kBK + kPad;                     // x rows, XT elements
  static constexpr int kBPitch = C::kBK + (kW8 ? kPadFp8 : kPad);  // w rows, WT elements
  static constexpr int kAStage = C::kBM * kPitch;                  // XT elements
  static constexpr int kBStage = C::kBN * kBPitch;                 // WT elements
  static constexpr int kAChunksPerRow = C::kBK * static_cast<int>(sizeof(XT)) / 16;
  static constexpr int kBChunksPerRow = C::kBK * static_cast<int>(sizeof(WT)) / 16;
  static constexpr int kAPerThread = C::kBM * kAChunksPerRow / kThreads;
  static constexpr int kBPerThread = C::kBN * kBChunksPerRow / kThreads;
  static constexpr size_t kSmemBytes =
      static_cast<size_t>(kStages) * (kAStage * sizeof(XT) + kBStage * sizeof(WT));
  static_assert(kAPerThread * kThreads == C::kBM * kAChunksPerRow, "A chunks split evenly");
  static_assert(kBPerThread * kThreads == C::kBN * kBChunksPerRow, "B chunks split evenly");
  static_assert(kNT % 4 == 0, "each half of a warp's weight rows is whole ldmatrix.x4 pairs");
};

struct KernelParams {
  GemmParams p;
  int k_splits;
  int k_tiles_per_split;
};

template <bool kF16>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  uint32_t u;
  if constexpr (kF16) {
    const __half2 h = __floats2half2_rn(lo, hi);
    memcpy(&u, &h, 4);
  } else {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    memcpy(&u, &h, 4);
  }
  return u;
}

__device__ __forceinline__ float bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }

// Two e4m3 weights (the low byte first in k) times their block scale, as the BF16 pair an
// mma B register holds: exact widening, one F32 multiply, one BF16 rounding, the same
// arithmetic as dequantizing to BF16 at load.
__device__ __forceinline__ uint32_t fp8x2_scaled_bf16x2(uint16_t v, float scale) {
  const __half2 h(__nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(v), __NV_E4M3));
  const float2 f = __half22float2(h);
  return pack2<false>(f.x * scale, f.y * scale);
}

__device__ __forceinline__ float silu(float v) { return v / (1.0f + expf(-v)); }

// Stores v0, v1 at columns col, col + 1 of an output row (those < n_cols), as one 8- or
// 4-byte store when aligned.
__device__ __forceinline__ void store_pair(void* row, ElemType type, int col, int n_cols, float v0,
                                           float v1) {
  if (type == ElemType::kF32) {
    float* dst = static_cast<float*>(row) + col;
    if (col + 1 < n_cols && (reinterpret_cast<uintptr_t>(dst) & 7) == 0) {
      *reinterpret_cast<float2*>(dst) = make_float2(v0, v1);
    } else {
      if (col < n_cols) dst[0] = v0;
      if (col + 1 < n_cols) dst[1] = v1;
    }
  } else {
    __nv_bfloat16* dst = static_cast<__nv_bfloat16*>(row) + col;
    if (col + 1 < n_cols && (reinterpret_cast<uintptr_t>(dst) & 3) == 0) {
      *reinterpret_cast<__nv_bfloat162*>(dst) = __floats2bfloat162_rn(v0, v1);
    } else {
      if (col < n_cols) dst[0] = __float2bfloat16(v0);
      if (col + 1 < n_cols) dst[1] = __float2bfloat16(v1);
    }
  }
}

// 16 bytes of `elems` elements of src into dst, zeros past element `valid` (of 0..elems): one
// cp.async when the chunk is whole and src 16-byte aligned, else element by element through
// registers (plain shared stores, which land before the barrier that publishes the stage).
template <typename T>
__device__ __forceinline__ void copy_chunk_any(T* dst, const T* src, int valid) {
  constexpr int kElems = 16 / static_cast<int>(sizeof(T));
  if (valid >= kElems && (reinterpret_cast<uintptr_t>(src) & 15) == 0) {
    simt::cp_async<16, simt::CacheOp::kCg>(dst, src, 16);
    return;
  }
  for (int e = 0; e < kElems; ++e) dst[e] = e < valid ? src[e] : T{0};
}

// kAligned: every chunk of x and w is 16-byte aligned and k a multiple of 8 (launch_gemm
// checks), so tiles move in 16-byte cp.async copies only; otherwise chunks that are partial
// (the k tail) or unaligned (odd k or strides) are copied element by element.
// FP8 large tiles ask for two blocks per SM (≤ 128 registers), which the aligned BF16 ones
// reach as they are; the FP8 fragment conversion would otherwise take 154-166. Not the
// predicated F32-x instance: like its BF16 twin (168) it would spill.
template <GemmTile kTile, bool kXF32, ElemType kW, bool kAligned>
constexpr int kMinBlocks = kTile == GemmTile::kLarge&& kW == ElemType::kFP8E4M3 &&
                                   (!kXF32 || kAligned)
                               ? 2
                               : 0;

template <GemmTile kTile, bool kXF32, ElemType kW, bool kAligned>
__global__ void __launch_bounds__(Layout<kTile, kXF32>::kThreads,
                                  (kMinBlocks<kTile, kXF32, kW, kAligned>))
    gemm_kernel(const KernelParams kp) {
  constexpr bool kWF16 = kW == ElemType::kF16, kW8 = kW == ElemType::kFP8E4M3;
  using C = Cfg<kTile>;
  using L = Layout<kTile, kXF32, kW8>;
  using XT = typename L::XT;
  using WT = typename L::WT;
  constexpr int kBM = C::kBM, kBN = C::kBN, kBK = C::kBK, kStages = L::kStages;
  constexpr int kPitch = L::kPitch, kBPitch = L::kBPitch, kMT = L::kMT, kNT = L::kNT;
  constexpr int kHalf = kBN / 2;
  const GemmParams& p = kp.p;

  SIMT_DYNAMIC_SHARED(unsigned char, smem);
  XT* a_smem = reinterpret_cast<XT*>(smem);  // [kStages][kBM][kPitch]
  WT* b_smem =
      reinterpret_cast<WT*>(smem + kStages * L::kAStage * sizeof(XT));  // [kStages][kBN][kBPitch]

  const int tid = static_cast<int>(threadIdx.x);
  const int lane = tid % 32, warp = tid / 32;
  const int wm = warp / L::kWarpsN, wn = warp % L::kWarpsN;
  const int batch = static_cast<int>(blockIdx.z) / kp.k_splits;
  const int split = static_cast<int>(blockIdx.z) % kp.k_splits;

  // This block's rows of the product and its weight matrix.
  int row0, row_end;
  const WT* w = static_cast<const WT*>(p.w) + batch * p.w_batch_stride;
  const float* scales = kW8 ? p.w_scales + batch * p.w_scale_batch_stride : nullptr;
  if (p.groups.tile_group != nullptr) {
    const int t = static_cast<int>(blockIdx.y);
    if (t >= *p.groups.n_tiles) return;  // the whole block: the grid is an upper bound
    const int g = p.groups.tile_group[t];
    row0 = p.groups.tile_row0[t];
    row_end = std::min(row0 + kBM, p.groups.group_offsets[g + 1]);
    w += g * p.groups.w_group_stride;
    if constexpr (kW8) scales += g * p.w_scale_group_stride;
  } else {
    row0 = static_cast<int>(blockIdx.y) * kBM;
    row_end = std::min(p.n, row0 + kBM);
  }
  const XT* x = static_cast<const XT*>(p.x) + batch * p.x_batch_stride;
  const int f = p.m / 2;
  // Gated: shared rows [0, kHalf) are gate rows wcol0.., rows [kHalf, kBN) the same up rows.
  const int wcol0 = static_cast<int>(blockIdx.x) * (p.gated ? kHalf : kBN);
  const int kt_total = (p.k + kBK - 1) / kBK;
  const int kt0 = split * kp.k_tiles_per_split;
  const int n_kt = std::max(0, std::min(kt_total, kt0 + kp.k_tiles_per_split) - kt0);

  // Each thread copies the same chunks of every k tile: resolve their rows once.
  const XT* a_src[L::kAPerThread];
  int a_dst[L::kAPerThread], a_col[L::kAPerThread];
  for (int i = 0; i < L::kAPerThread; ++i) {
    const int chunk = tid + i * L::kThreads;
    const int r = chunk / L::kAChunksPerRow;
    a_col[i] = (chunk % L::kAChunksPerRow) * (16 / static_cast<int>(sizeof(XT)));
    a_dst[i] = r * kPitch + a_col[i];
    const int row = row0 + r;
    a_src[i] = nullptr;
    if (row < row_end) {
      const int src_row = p.x_rows != nullptr ? p.x_rows[row] : row;
      a_src[i] = x + src_row * p.x_row_stride;
    }
  }
  const WT* b_src[L::kBPerThread];
  int b_dst[L::kBPerThread], b_col[L::kBPerThread];
  for (int i = 0; i < L::kBPerThread; ++i) {
    const int chunk = tid + i * L::kThreads;
    const int c = chunk / L::kBChunksPerRow;
    b_col[i] = (chunk % L::kBChunksPerRow) * (16 / static_cast<int>(sizeof(WT)));
    b_dst[i] = c * kBPitch + b_col[i];
    const int j = p.gated ? wcol0 + c % kHalf : wcol0 + c;
    const int wrow = p.gated && c >= kHalf ? f + j : j;
    b_src[i] = (p.gated ? j < f : j < p.m) ? w + wrow * p.w_row_stride : nullptr;
  }

  // Chunks past the k end or the last row are zero-filled (src-size 0) from a valid address.
  auto load_tile = [&](int stage, int kt) {
    const int k0 = kt * kBK;
    XT* as = a_smem + stage * L::kAStage;
    WT* bs = b_smem + stage * L::kBStage;
    if constexpr (kAligned) {
      for (int i = 0; i < L::kAPerThread; ++i) {
        const bool ok = a_src[i] != nullptr && k0 + a_col[i] < p.k;
        simt::cp_async<16, simt::CacheOp::kCg>(as + a_dst[i], ok ? a_src[i] + k0 + a_col[i] : x,
                                               ok ? 16 : 0);
      }
      for (int i = 0; i < L::kBPerThread; ++i) {
        const bool ok = b_src[i] != nullptr && k0 + b_col[i] < p.k;
        simt::cp_async<16, simt::CacheOp::kCg>(bs + b_dst[i], ok ? b_src[i] + k0 + b_col[i] : w,
                                               ok ? 16 : 0);
      }
    } else {
      for (int i = 0; i < L::kAPerThread; ++i) {
        const int valid = a_src[i] != nullptr ? p.k - (k0 + a_col[i]) : 0;
        copy_chunk_any(as + a_dst[i], valid > 0 ? a_src[i] + k0 + a_col[i] : x, valid);
      }
      for (int i = 0; i < L::kBPerThread; ++i) {
        const int valid = b_src[i] != nullptr ? p.k - (k0 + b_col[i]) : 0;
        copy_chunk_any(bs + b_dst[i], valid > 0 ? b_src[i] + k0 + b_col[i] : w, valid);
      }
    }
  };
  // Shared row of the warp's n8 tile nt: the first half of its tiles are gate-side rows, the
  // second half the matching up-side rows (the same layout serves ungated products).
  auto tile_row = [&](int nt) {
    return nt < kNT / 2 ? wn * (L::kNT * 4) + nt * 8
                        : kHalf + wn * (L::kNT * 4) + (nt - kNT / 2) * 8;
  };

  // FP8: the scale row of the weight row this lane's B fragments read in each n8 tile (rows
  // past the end read zeros; any finite scale will do).
  const float* scale_row[kW8 ? kNT : 1];
  if constexpr (kW8) {
    GEMM_UNROLL
    for (int nt = 0; nt < kNT; ++nt) {
      // The weight row of shared row c, as the copies above find it.
      const int c = tile_row(nt) + (lane >> 2);
      const int j = p.gated ? wcol0 + c % kHalf : wcol0 + c;
      const int wrow = p.gated && c >= kHalf ? f + j : j;
      const bool valid = p.gated ? j < f : j < p.m;
      scale_row[nt] = scales + (valid ? wrow / p.w_block_rows : 0) * p.w_scale_row_stride;
    }
  }

  float acc[kMT][kNT][4] = {};
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < n_kt) load_tile(s, kt0 + s);
    simt::cp_async_commit();  // possibly empty: group i always holds tile i
  }
  const int group = lane >> 2, tig = lane & 3;
  for (int t = 0; t < n_kt; ++t) {
    // FP8: this k tile's scales, loaded before the wait so the barrier hides their latency.
    float scale[kW8 ? kNT : 1];
    if constexpr (kW8) {
      const int kb = (kt0 + t) * kBK / p.w_block_cols;
      GEMM_UNROLL
      for (int nt = 0; nt < kNT; ++nt) scale[nt] = __ldg(scale_row[nt] + kb);
    }
    simt::cp_async_wait<kStages - 2>();
    // Tile t has landed for every thread, and every thread is done with tile t - 1, whose
    // stage the prefetch below overwrites.
    __syncthreads();
    if (t + kStages - 1 < n_kt) load_tile((t + kStages - 1) % kStages, kt0 + t + kStages - 1);
    simt::cp_async_commit();
    const XT* as = a_smem + (t % kStages) * L::kAStage;
    const WT* bs = b_smem + (t % kStages) * L::kBStage;
    GEMM_UNROLL
    for (int ks = 0; ks < kBK; ks += 16) {
      uint32_t af[kMT][4];
      GEMM_UNROLL
      for (int mt = 0; mt < kMT; ++mt) {
        const int r = wm * C::kWM + mt * 16;
        if constexpr (kXF32) {
          // Rows g and g + 8 at columns 2·tig (+8): a0a1, a2a3, a4a5, a6a7.
          const float* lo = as + (r + group) * kPitch + ks + tig * 2;
          const float* hi = lo + 8 * kPitch;
          const float2 v0 = *reinterpret_cast<const float2*>(lo);
          const float2 v1 = *reinterpret_cast<const float2*>(hi);
          const float2 v2 = *reinterpret_cast<const float2*>(lo + 8);
          const float2 v3 = *reinterpret_cast<const float2*>(hi + 8);
          af[mt][0] = pack2<kWF16>(v0.x, v0.y);
          af[mt][1] = pack2<kWF16>(v1.x, v1.y);
          af[mt][2] = pack2<kWF16>(v2.x, v2.y);
          af[mt][3] = pack2<kWF16>(v3.x, v3.y);
        } else {
          // Lanes 0-15 address rows 0-15 at k 0-7, lanes 16-31 the same rows at k 8-15.
          simt::ldmatrix<4>(af[mt], as + (r + lane % 16) * kPitch + ks + (lane / 16) * 8);
          if constexpr (kWF16) {
            for (int i = 0; i < 4; ++i)
              af[mt][i] = pack2<true>(bf16_lo(af[mt][i]), bf16_hi(af[mt][i]));
          }
        }
      }
      uint32_t bf[kNT][2];
      if constexpr (kW8) {
        // Row n = group of each n8 tile at k 2·tig, 2·tig + 1 (b0 b1) and 8 more (b2 b3).
        GEMM_UNROLL
        for (int nt = 0; nt < kNT; ++nt) {
          const WT* src = bs + (tile_row(nt) + group) * kBPitch + ks + tig * 2;
          bf[nt][0] = fp8x2_scaled_bf16x2(*reinterpret_cast<const uint16_t*>(src), scale[nt]);
          bf[nt][1] = fp8x2_scaled_bf16x2(*reinterpret_cast<const uint16_t*>(src + 8), scale[nt]);
        }
      } else {
        GEMM_UNROLL
        for (int np = 0; np < kNT; np += 2) {
          // Matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15).
          uint32_t r4[4];
          simt::ldmatrix<4>(r4, bs + (tile_row(np) + (lane / 16) * 8 + lane % 8) * kBPitch + ks +
                                    ((lane / 8) % 2) * 8);
          bf[np][0] = r4[0], bf[np][1] = r4[1];
          bf[np + 1][0] = r4[2], bf[np + 1][1] = r4[3];
        }
      }
      GEMM_UNROLL
      for (int mt = 0; mt < kMT; ++mt) {
        GEMM_UNROLL
        for (int nt = 0; nt < kNT; ++nt) {
          if constexpr (kWF16) {
            simt::mma_m16n8k16_f16(acc[mt][nt], af[mt], bf[nt], acc[mt][nt]);
          } else {
            simt::mma_m16n8k16_bf16(acc[mt][nt], af[mt], bf[nt], acc[mt][nt]);
          }
        }
      }
    }
  }
  simt::cp_async_wait<0>();  // no copy may still target shared memory when the block exits

  // Accumulator i of an mma tile: row group (+8 for i ≥ 2), column 2·tig + (i & 1).
  const int n_out_cols = p.gated ? f : p.m;
  GEMM_UNROLL
  for (int mt = 0; mt < kMT; ++mt) {
    GEMM_UNROLL
    for (int h = 0; h < 2; ++h) {
      const int row = row0 + wm * C::kWM + mt * 16 + group + h * 8;
      if (row >= row_end) continue;
      if (kp.k_splits > 1) {
        float* prow = p.partials + ((static_cast<int64_t>(split) * p.batch + batch) * p.n + row) *
                                       static_cast<int64_t>(p.m);
        GEMM_UNROLL
        for (int nt = 0; nt < kNT; ++nt) {
          const int c = tile_row(nt) + tig * 2;
          if (p.gated) {
            const int j = wcol0 + c % kHalf;
            store_pair(prow + (c >= kHalf ? f : 0), ElemType::kF32, j, f, acc[mt][nt][h * 2],
                       acc[mt][nt][h * 2 + 1]);
          } else {
            store_pair(prow, ElemType::kF32, wcol0 + c, p.m, acc[mt][nt][h * 2],
                       acc[mt][nt][h * 2 + 1]);
          }
        }
        continue;
      }
      const int out_row = p.out_rows != nullptr ? p.out_rows[row] : row;
      char* orow = static_cast<char*>(p.out) +
                   (batch * p.out_batch_stride + static_cast<int64_t>(out_row) * p.out_row_stride) *
                       (p.out_type == ElemType::kF32 ? 4 : 2);
      GEMM_UNROLL
      for (int nt = 0; nt < kNT; ++nt) {
        const int c = tile_row(nt) + tig * 2;
        if (p.gated) {
          if (nt >= kNT / 2) continue;  // the up half, consumed with its gate half
          const float* gate = acc[mt][nt];
          const float* up = acc[mt][nt + kNT / 2];
          store_pair(orow, p.out_type, wcol0 + c, n_out_cols, silu(gate[h * 2]) * up[h * 2],
                     silu(gate[h * 2 + 1]) * up[h * 2 + 1]);
        } else {
          store_pair(orow, p.out_type, wcol0 + c, n_out_cols, acc[mt][nt][h * 2],
                     acc[mt][nt][h * 2 + 1]);
        }
      }
    }
  }
}

constexpr int kReduceThreads = 256;
constexpr int kMaxGridY = 65535;

// out = the sum of the k_splits partials in split order (then silu·up when gated).
__global__ void __launch_bounds__(kReduceThreads) gemm_reduce_kernel(const KernelParams kp) {
  const GemmParams& p = kp.p;
  const int f = p.m / 2;
  const int n_cols = p.gated ? f : p.m;
  const int col = static_cast<int>(blockIdx.x) * kReduceThreads + static_cast<int>(threadIdx.x);
  if (col >= n_cols) return;
  const int batch = static_cast<int>(blockIdx.z);
  const int64_t split_stride = static_cast<int64_t>(p.batch) * p.n * p.m;
  for (int row = static_cast<int>(blockIdx.y); row < p.n; row += static_cast<int>(gridDim.y)) {
    const float* part =
        p.partials + (static_cast<int64_t>(batch) * p.n + row) * static_cast<int64_t>(p.m) + col;
    float a = 0.0f, b = 0.0f;
    for (int s = 0; s < kp.k_splits; ++s) {
      a += part[s * split_stride];
      if (p.gated) b += part[s * split_stride + f];
    }
    const float v = p.gated ? silu(a) * b : a;
    const int out_row = p.out_rows != nullptr ? p.out_rows[row] : row;
    const int64_t at =
        batch * p.out_batch_stride + static_cast<int64_t>(out_row) * p.out_row_stride + col;
    if (p.out_type == ElemType::kF32) {
      static_cast<float*>(p.out)[at] = v;
    } else {
      static_cast<__nv_bfloat16*>(p.out)[at] = __float2bfloat16(v);
    }
  }
}

template <GemmTile kTile, bool kXF32, ElemType kW, bool kAligned>
cudaError_t launch_tile(const KernelParams& kp, dim3 grid, cudaStream_t stream) {
  using L = Layout<kTile, kXF32, kW == ElemType::kFP8E4M3>;
  return simt::launch({.kernel_name = "gemm_kernel",
                       .grid = grid,
                       .block = dim3(L::kThreads),
                       .dynamic_smem_bytes = L::kSmemBytes,
                       .stream = stream},
                      gemm_kernel<kTile, kXF32, kW, kAligned>, kp)
      .code;
}

template <GemmTile kTile, bool kXF32, bool kAligned>
cudaError_t launch_w(const KernelParams& kp, dim3 grid, cudaStream_t stream) {
  switch (kp.p.w_type) {
    case ElemType::kF16:
      return launch_tile<kTile, kXF32, ElemType::kF16, kAligned>(kp, grid, stream);
    case ElemType::kFP8E4M3:
      return launch_tile<kTile, kXF32, ElemType::kFP8E4M3, kAligned>(kp, grid, stream);
    default: return launch_tile<kTile, kXF32, ElemType::kBF16, kAligned>(kp, grid, stream);
  }
}

template <GemmTile kTile, bool kAligned>
cudaError_t launch_dtypes(const KernelParams& kp, dim3 grid, cudaStream_t stream) {
  return kp.p.x_type == ElemType::kF32 ? launch_w<kTile, true, kAligned>(kp, grid, stream)
                                       : launch_w<kTile, false, kAligned>(kp, grid, stream);
}

template <GemmTile kTile>
cudaError_t launch_layout(const KernelParams& kp, bool aligned, dim3 grid, cudaStream_t stream) {
  return aligned ? launch_dtypes<kTile, true>(kp, grid, stream)
                 : launch_dtypes<kTile, false>(kp, grid, stream);
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

bool gemm_aligned(const GemmParams& p) {
  const int64_t x_elems = p.x_type == ElemType::kF32 ? 4 : 8;  // elements per 16 bytes
  const int64_t w_elems = p.w_type == ElemType::kFP8E4M3 ? 16 : 8;
  return p.k % 8 == 0 && p.k % w_elems == 0 && p.x_row_stride % x_elems == 0 &&
         p.x_batch_stride % x_elems == 0 && p.w_row_stride % w_elems == 0 &&
         p.w_batch_stride % w_elems == 0 && p.groups.w_group_stride % w_elems == 0 &&
         aligned16(p.x) && aligned16(p.w);
}

GemmTileShape gemm_tile_shape(GemmTile tile) {
  if (tile == GemmTile::kSkinny) {
    using C = Cfg<GemmTile::kSkinny>;
    return {C::kBM, C::kBN, C::kBK};
  }
  using C = Cfg<GemmTile::kLarge>;
  return {C::kBM, C::kBN, C::kBK};
}

GemmPlan plan_gemm(int64_t n, int64_t m, int64_t k, int64_t batch, int n_sms) {
  GemmPlan plan;
  plan.tile = n <= 32 ? GemmTile::kSkinny : GemmTile::kLarge;
  const GemmTileShape s = gemm_tile_shape(plan.tile);
  const int64_t k_tiles = std::max<int64_t>(1, ceil_div(k, s.block_k));
  const int64_t blocks = ceil_div(n, s.block_m) * ceil_div(m, s.block_n) * batch;
  const int64_t want = 2 * static_cast<int64_t>(std::max(n_sms, 1));
  int64_t splits = 1;
  // Split only while each split keeps ≥ 4 k tiles: shorter ones cannot fill the pipeline,
  // and their partials cost more traffic than the weights they spread.
  if (blocks < want)
    splits =
        std::min({ceil_div(want, std::max<int64_t>(blocks, 1)), k_tiles / 4, int64_t{kMaxSplits}});
  splits = std::max<int64_t>(splits, 1);
  plan.k_tiles_per_split = static_cast<int>(ceil_div(k_tiles, splits));
  plan.k_splits = static_cast<int>(ceil_div(k_tiles, plan.k_tiles_per_split));
  return plan;
}

size_t gemm_workspace_bytes(const GemmParams& p, const GemmPlan& plan) {
  if (plan.k_splits <= 1) return 0;
  return static_cast<size_t>(plan.k_splits) * static_cast<size_t>(p.batch) *
         static_cast<size_t>(p.n) * static_cast<size_t>(p.m) * sizeof(float);
}

cudaError_t launch_gemm(const GemmParams& p, const GemmPlan& plan, cudaStream_t stream) {
  if (p.n == 0 || p.m == 0 || p.batch == 0) return cudaSuccess;
  const bool fp8 = p.w_type == ElemType::kFP8E4M3;
  const bool types_ok = (p.x_type == ElemType::kF32 || p.x_type == ElemType::kBF16) &&
                        (p.w_type == ElemType::kBF16 || p.w_type == ElemType::kF16 || fp8) &&
                        (p.out_type == ElemType::kF32 || p.out_type == ElemType::kBF16);
  const bool scales_ok =
      !fp8 || (p.w_scales != nullptr && p.w_block_rows >= 1 && p.w_block_cols > 0 &&
               p.w_block_cols % kGemmFp8BlockColsMultiple == 0);
  const bool split_ok =
      plan.k_splits >= 1 && plan.k_tiles_per_split >= 1 &&
      (plan.k_splits == 1 || (p.partials != nullptr && p.groups.tile_group == nullptr));
  if (!types_ok || !scales_ok || !split_ok || (p.gated && p.m % 2 != 0))
    return cudaErrorInvalidValue;
  const GemmTileShape s = gemm_tile_shape(plan.tile);
  const int64_t grid_x = p.gated ? ceil_div(p.m / 2, s.block_n / 2) : ceil_div(p.m, s.block_n);
  const int64_t grid_y =
      p.groups.tile_group != nullptr ? p.groups.max_tiles : ceil_div(p.n, s.block_m);
  const int64_t grid_z = static_cast<int64_t>(p.batch) * plan.k_splits;
  if (grid_y > kMaxGridY || grid_z > kMaxGridY) return cudaErrorInvalidValue;
  if (grid_y == 0) return cudaSuccess;
  const KernelParams kp{p, plan.k_splits, plan.k_tiles_per_split};
  const dim3 grid(static_cast<unsigned>(grid_x), static_cast<unsigned>(grid_y),
                  static_cast<unsigned>(grid_z));
  const bool aligned = gemm_aligned(p);
  const cudaError_t e = plan.tile == GemmTile::kSkinny
                            ? launch_layout<GemmTile::kSkinny>(kp, aligned, grid, stream)
                            : launch_layout<GemmTile::kLarge>(kp, aligned, grid, stream);
  if (e != cudaSuccess || plan.k_splits == 1) return e;
  const int64_t n_cols = p.gated ? p.m / 2 : p.m;
  return simt::launch({.kernel_name = "gemm_reduce_kernel",
                       .grid = dim3(static_cast<unsigned>(ceil_div(n_cols, kReduceThreads)),
                                    static_cast<unsigned>(std::min<int64_t>(p.n, kMaxGridY)),
                                    static_cast<unsigned>(p.batch)),
                       .block = dim3(kReduceThreads),
                       .stream = stream},
                      gemm_reduce_kernel, kp)
      .code;
}

}  // namespace moeserve::kernels
