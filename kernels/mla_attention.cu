#include <algorithm>
#include <cmath>

#include "kernels/mla_attention.cuh"
#include "kernels/simt/launch.h"
#include "kernels/simt/simt.h"
#include "kernels/vec_io.cuh"

namespace moeserve::kernels {
namespace {

constexpr int kTileN = 32;         // cache positions per pipeline stage
constexpr int kSRow = kTileN + 8;  // smem row of the partial scores (F32) and of P (BF16)
constexpr int kQuarters = 4;       // warps per 16-row m-tile: each owns a quarter of the score
                                   // width's k-steps and of the output's 16-column pairs
constexpr int kMaxKSteps = (kMlaMaxLatent + kMlaMaxRope) / 16 / kQuarters;  // 9 per warp
constexpr int kMaxPairs = kMlaMaxLatent / 16 / kQuarters;  // 8 pairs of n8 tiles per warp
constexpr int kMaxPitch = kMlaMaxLatent + kMlaMaxRope + 8;
constexpr int kMergeRows = 4;  // (token, head) rows per merge CTA, a warp each
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kNegInf = -INFINITY;
constexpr int kRowPad = -1;  // row_pos of a row outside the current run: no output
constexpr int kRowBad = -2;  // row_pos of a token whose position is beyond its block table

// The widths an instance runs. kFixed: DeepSeek's latent 512 + rope 64 as constants (the fast
// path: every bound below folds); otherwise any supported pair, read from the params. The
// score width `cols` is a cache row with its rope part zero-padded to a multiple of 16 (the
// mma k-step). Shared rows of Q and K are `pitch` = cols + 8 elements, an odd number of
// 16-byte units, so ldmatrix's 8 rows hit 8 different banks. Each of a 16-row m-tile's 4 warps
// takes `k_steps` 16-wide k-steps of the scores and `pairs` 16-column pairs of the output.
template <bool kFixed>
struct Widths;
template <>
struct Widths<true> {
  static constexpr int latent = kMlaMaxLatent, rope = kMlaMaxRope;
  static constexpr int row = latent + rope;  // elements of a cache row
  static constexpr int cols = row;           // 576: 36 k-steps, 9 per warp
  static constexpr int pitch = kMaxPitch;    // 1168 bytes
  static constexpr int k_steps = kMaxKSteps;
  static constexpr int pairs = kMaxPairs;  // 128 output columns per warp
  __host__ __device__ explicit Widths(const MlaAttentionParams&) {}
};
template <>
struct Widths<false> {
  int latent, rope, row, cols, pitch, k_steps, pairs;
  __host__ __device__ explicit Widths(const MlaAttentionParams& p)
      : latent(p.latent),
        rope(p.rope),
        row(p.latent + p.rope),
        cols(p.latent + (p.rope + 15) / 16 * 16),
        pitch(cols + 8),
        k_steps((cols / 16 + kQuarters - 1) / kQuarters),
        pairs((p.latent / 16 + kQuarters - 1) / kQuarters) {}
};

// Byte offsets of the shared memory of a CTA with m query rows and shared rows of `pitch`.
struct SmemLayout {
  size_t kv;     // [2][kTileN][pitch] BF16 cache rows (Q [m][pitch] BF16 is at 0)
  size_t s;      // [4][m][kSRow] F32 partial scores
  size_t p;      // [m][kSRow] BF16 softmax weights
  size_t rows;   // [4][m] per-row values (alpha, l, m, last position)
  size_t total;  // bytes
};
__host__ __device__ constexpr SmemLayout smem_layout(int m, int pitch) {
  SmemLayout l{};
  l.kv = size_t(m) * pitch * 2;
  l.s = l.kv + size_t{2} * kTileN * pitch * 2;
  l.p = l.s + size_t{kQuarters} * m * kSRow * 4;
  l.rows = l.p + size_t(m) * kSRow * 2;
  l.total = l.rows + size_t{4} * m * 4;
  return l;
}
// sm_90's opt-in limit per block; two 16-row CTAs must also share an SM's 228 KiB.
static_assert(smem_layout(64, kMaxPitch).total <= 227 * 1024 &&
              2 * (smem_layout(16, kMaxPitch).total + 1024) <= 228 * 1024);

// What both kernels take: the op's parameters and the plan they were cut by.
struct MlaArgs {
  MlaAttentionParams p;
  MlaPlan plan;
};

__host__ __device__ constexpr int tile_threads(int m_frags) { return 128 * m_frags; }

// The cache row (block · block_size + offset) holding position pos of a sequence, or -1
// when the table's block id is not a cache block.
__device__ __forceinline__ int64_t cache_row_index(const MlaAttentionParams& p,
                                                   const int32_t* table, int pos) {
  const int32_t blk = table[pos / p.block_size];
  if (blk < 0 || blk >= p.n_blocks) return -1;
  return int64_t{blk} * p.block_size + pos % p.block_size;
}

// Stages cache positions [tile_begin, tile_begin + kTileN) as BF16 rows; positions at or past
// kv_end (and rows of invalid blocks) become zeros, so that P = 0 meets finite V, and so does
// the rope padding past a cache row's end. BF16 rows are copied with cp.async (the caller
// commits and waits); F32 rows are converted through registers, loaded in batches so several
// loads are in flight.
template <int kThreads, class W>
__device__ __forceinline__ void stage_tile(const MlaAttentionParams& p, const W& w,
                                           const int32_t* table, int tile_begin, int kv_end,
                                           uint16_t* dst) {
  const int chunks = w.cols / 8;  // 16-byte BF16 chunks per shared row
  const int total = kTileN * chunks;
  const int per_thread = (total + kThreads - 1) / kThreads;
  const int tid = static_cast<int>(threadIdx.x);
  // Chunk at column col of position pos: its cache row, or -1 for zeros.
  auto source_row = [&](int pos, int col) -> int64_t {
    const bool in_row = w.cols == w.row || col < w.row;  // folds for the fixed widths
    return pos < kv_end && in_row ? cache_row_index(p, table, pos) : -1;
  };
  if (p.cache_type == ElemType::kBF16) {
    const auto* cache = static_cast<const uint16_t*>(p.cache);
    KERNEL_NO_UNROLL  // cp.async needs no unrolling to keep copies in flight
        for (int i = 0; i < per_thread; ++i) {
      const int c = tid + i * kThreads;
      if (total % kThreads != 0 && c >= total) break;
      const int r = c / chunks, col = (c % chunks) * 8;
      const int64_t row = source_row(tile_begin + r, col);
      const uint16_t* src = row >= 0 ? cache + row * w.row + col : cache;
      simt::cp_async<16, simt::CacheOp::kCg>(dst + r * w.pitch + col, src, row >= 0 ? 16 : 0);
    }
    return;
  }
  const auto* cache = static_cast<const float*>(p.cache);
  constexpr int kBatch = 3;
  KERNEL_UNROLL
  for (int i0 = 0; i0 < per_thread; i0 += kBatch) {
    float4 v[kBatch][2];
    KERNEL_UNROLL
    for (int i = 0; i < kBatch; ++i) {
      const int c = tid + (i0 + i) * kThreads;
      v[i][0] = v[i][1] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (i0 + i >= per_thread || c >= total) continue;
      const int r = c / chunks, col = (c % chunks) * 8;
      const int64_t row = source_row(tile_begin + r, col);
      if (row < 0) continue;
      const float4* src = reinterpret_cast<const float4*>(cache + row * w.row + col);
      v[i][0] = __ldg(src);
      v[i][1] = __ldg(src + 1);
    }
    KERNEL_UNROLL
    for (int i = 0; i < kBatch; ++i) {
      const int c = tid + (i0 + i) * kThreads;
      if (i0 + i >= per_thread || c >= total) continue;
      const int r = c / chunks, col = (c % chunks) * 8;
      *reinterpret_cast<uint4*>(dst + r * w.pitch + col) =
          make_uint4(pack_bf16x2(v[i][0].x, v[i][0].y), pack_bf16x2(v[i][0].z, v[i][0].w),
                     pack_bf16x2(v[i][1].x, v[i][1].y), pack_bf16x2(v[i][1].z, v[i][1].w));
    }
  }
}

// Elements [i, i + 8) of p as F32: 128-bit loads when p + i is 16-byte aligned, else one by
// one (query rows need no alignment; the check is once per chunk of a run's Q).
__device__ __forceinline__ void load8_any(const void* p, ElemType t, int64_t i, float (&v)[8]) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(p) + i * (t == ElemType::kF32 ? 4 : 2);
  if (at % 16 != 0) {
    for (int e = 0; e < 8; ++e) v[e] = load1(p, t, i + e);
    return;
  }
  load8(p, t, i, v);
}

// Two adjacent output values of row (token, head).
__device__ __forceinline__ void store2(void* base, ElemType t, int64_t i, float a, float b) {
  if (t == ElemType::kBF16) {
    *reinterpret_cast<uint32_t*>(static_cast<uint16_t*>(base) + i) = pack_bf16x2(a, b);
  } else {
    *reinterpret_cast<float2*>(static_cast<float*>(base) + i) = make_float2(a, b);
  }
}

// One CTA: kMFrags m-tiles of 16 query rows, 4 warps per m-tile. Warp (mi, quarter) computes
// the scores of its 16 rows over k-steps [k_steps·quarter, +k_steps) of the score width
// (DeepSeek: columns [144·quarter, +144); partial sums meet in shared memory) and owns output
// columns [16·pairs·quarter, +16·pairs) of those rows (DeepSeek: 128). The 8 threads of each
// row run its online softmax (running max and sum in registers).
template <int kMFrags, bool kFixed>
__global__ void __launch_bounds__(tile_threads(kMFrags)) mla_attention_kernel(const MlaArgs args) {
  const MlaAttentionParams& p = args.p;
  const MlaPlan& plan = args.plan;
  const Widths<kFixed> w(p);
  constexpr int kM = 16 * kMFrags;
  constexpr int kThreads = tile_threads(kMFrags);
  const SmemLayout lay = smem_layout(kM, w.pitch);
  SIMT_DYNAMIC_SHARED(unsigned char, smem);
  auto* q_s = reinterpret_cast<uint16_t*>(smem);               // [kM][pitch]
  auto* kv_s = reinterpret_cast<uint16_t*>(smem + lay.kv);     // [2][kTileN][pitch]
  auto* s_part = reinterpret_cast<float*>(smem + lay.s);       // [4][kM][kSRow]
  auto* p_s = reinterpret_cast<uint16_t*>(smem + lay.p);       // [kM][kSRow]
  auto* row_f = reinterpret_cast<float*>(smem + lay.rows);     // [4][kM]
  float* alpha_s = row_f;                                      // [kM] rescale of this tile
  float* l_s = row_f + kM;                                     // [kM] final softmax sums
  float* m_s = row_f + 2 * kM;                                 // [kM] final maxima (log2 units)
  auto* row_pos = reinterpret_cast<int32_t*>(row_f + 3 * kM);  // [kM] last visible position

  const int tid = static_cast<int>(threadIdx.x);
  const int lane = tid % 32, warp = tid / 32;
  const int mi = warp / kQuarters, quarter = warp % kQuarters;
  const int group = lane / 4, tig = lane % 4;
  const int soft_row = tid / 8, soft_j = tid % 8;  // softmax: row and its 4-position slice
  // This warp's k-steps of the scores and 16-column pairs of the output (a warp may have none
  // at small widths); constants for the fixed widths.
  const int k_begin = quarter * w.k_steps * 16, n_begin = quarter * w.pairs * 16;  // columns
  const int n_ks = kFixed ? kMaxKSteps : std::min(w.k_steps, (w.cols - k_begin) / 16);
  const int n_np = kFixed ? kMaxPairs : std::min(w.pairs, (w.latent - n_begin) / 16);
  const int hpt = plan.heads_per_tile;
  const int64_t tok0 = int64_t{blockIdx.x} * plan.tokens_per_tile;
  const int64_t tok_end = std::min<int64_t>(tok0 + plan.tokens_per_tile, p.n_tokens);
  const int head0 = static_cast<int>(blockIdx.y) * hpt;
  const int split = static_cast<int>(blockIdx.z);
  const int max_ctx = p.max_blocks * p.block_size;
  const float scale_log2 = p.scale * kLog2e;

  // Tokens of a tile that belong to one sequence (a run) share its cache rows; a tile that
  // spans sequences takes them one run at a time.
  for (int64_t run = tok0; run < tok_end;) {
    const int32_t seq = p.token_seq[run];
    int64_t run_end = run;
    int ctx = 0;  // positions [0, ctx) are visible to some token of the run
    for (; run_end < tok_end && p.token_seq[run_end] == seq; ++run_end) {
      const int32_t pos = p.token_pos[run_end];
      if (pos >= 0 && pos < max_ctx) ctx = std::max(ctx, pos + 1);
    }
    const int32_t* table = p.block_tables + int64_t{seq} * p.max_blocks;
    const int chunk = ((ctx + plan.n_splits - 1) / plan.n_splits + kTileN - 1) / kTileN * kTileN;
    const int kv_begin = std::min(ctx, split * chunk);
    const int kv_end = std::min(ctx, kv_begin + chunk);
    const int n_tiles = (kv_end - kv_begin + kTileN - 1) / kTileN;

    __syncthreads();  // the previous run's readers of q_s, row_pos, l_s and m_s are done
    // Q rows as BF16, zeros for rows outside the run (their scores are never used).
    // The rope padding is zeros too.
    const int q_chunks = w.cols / 8;
    for (int c = tid; c < kM * q_chunks; c += kThreads) {
      const int r = c / q_chunks, col = (c % q_chunks) * 8;
      const int64_t token = tok0 + r / hpt;
      const int head = head0 + r % hpt;
      float v[8] = {};
      if (r / hpt < plan.tokens_per_tile && token >= run && token < run_end && head < p.n_heads) {
        if (col < w.latent) {
          load8_any(p.q_latent, p.q_latent_type,
                    token * p.q_latent_token_stride + head * p.q_latent_head_stride + col, v);
        } else if (w.cols == w.row || col < w.row) {
          load8_any(p.q_rope, p.q_rope_type,
                    token * p.q_rope_token_stride + head * p.q_rope_head_stride + col - w.latent,
                    v);
        }
      }
      *reinterpret_cast<uint4*>(q_s + r * w.pitch + col) =
          make_uint4(pack_bf16x2(v[0], v[1]), pack_bf16x2(v[2], v[3]), pack_bf16x2(v[4], v[5]),
                     pack_bf16x2(v[6], v[7]));
    }
    for (int r = tid; r < kM; r += kThreads) {
      const int64_t token = tok0 + r / hpt;
      const int head = head0 + r % hpt;
      int32_t limit = kRowPad;
      if (r / hpt < plan.tokens_per_tile && token >= run && token < run_end && head < p.n_heads) {
        const int32_t pos = p.token_pos[token];
        limit = pos >= 0 && pos < max_ctx ? pos : kRowBad;
      }
      row_pos[r] = limit;
    }

    float o[2 * kMaxPairs][4] = {};
    float m_run = kNegInf, l_run = 0.0f;
    if (n_tiles > 0) stage_tile<kThreads>(p, w, table, kv_begin, kv_end, kv_s);
    simt::cp_async_commit();
    for (int t = 0; t < n_tiles; ++t) {
      const int stage = t & 1;
      const uint16_t* k_tile = kv_s + stage * kTileN * w.pitch;
      simt::cp_async_wait<0>();
      __syncthreads();  // tile t (and Q) landed for all; everyone is done with tile t - 1
      if (t + 1 < n_tiles) {
        stage_tile<kThreads>(p, w, table, kv_begin + (t + 1) * kTileN, kv_end,
                             kv_s + (stage ^ 1) * kTileN * w.pitch);
      }
      simt::cp_async_commit();

      // Partial scores of 16 rows × 32 positions over this warp's score columns.
      float sacc[kTileN / 8][4] = {};
      KERNEL_UNROLL
      for (int ks = 0; ks < kMaxKSteps; ++ks) {
        if (ks >= n_ks) break;
        const int k0 = k_begin + ks * 16;
        uint32_t a[4];
        simt::ldmatrix<4>(a, q_s + (mi * 16 + lane % 16) * w.pitch + k0 + (lane / 16) * 8);
        KERNEL_UNROLL
        for (int np = 0; np < kTileN / 16; ++np) {
          // Matrices (positions 0-7, k 0-7), (0-7, k 8-15), (8-15, k 0-7), (8-15, k 8-15).
          uint32_t r[4];
          simt::ldmatrix<4>(r, k_tile + (np * 16 + (lane / 16) * 8 + lane % 8) * w.pitch + k0 +
                                   ((lane / 8) % 2) * 8);
          const uint32_t b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
          simt::mma_m16n8k16_bf16(sacc[2 * np], a, b0, sacc[2 * np]);
          simt::mma_m16n8k16_bf16(sacc[2 * np + 1], a, b1, sacc[2 * np + 1]);
        }
      }
      float* s_mine = s_part + (quarter * kM + mi * 16) * kSRow;
      KERNEL_UNROLL
      for (int nt = 0; nt < kTileN / 8; ++nt) {
        *reinterpret_cast<float2*>(s_mine + group * kSRow + nt * 8 + tig * 2) =
            make_float2(sacc[nt][0], sacc[nt][1]);
        *reinterpret_cast<float2*>(s_mine + (group + 8) * kSRow + nt * 8 + tig * 2) =
            make_float2(sacc[nt][2], sacc[nt][3]);
      }
      __syncthreads();

      // Online softmax (log2 units) of row soft_row over positions [4·soft_j, +4) of the tile.
      {
        float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        KERNEL_UNROLL
        for (int qq = 0; qq < kQuarters; ++qq) {
          const float4 v =
              *reinterpret_cast<const float4*>(s_part + (qq * kM + soft_row) * kSRow + soft_j * 4);
          s[0] += v.x, s[1] += v.y, s[2] += v.z, s[3] += v.w;
        }
        const int limit = row_pos[soft_row];
        const int pos0 = kv_begin + t * kTileN + soft_j * 4;
        float mx = kNegInf;
        KERNEL_UNROLL
        for (int i = 0; i < 4; ++i) {
          const bool visible = pos0 + i < kv_end && pos0 + i <= limit;
          s[i] = visible ? s[i] * scale_log2 : kNegInf;
          mx = fmaxf(mx, s[i]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
        const float m_new = fmaxf(m_run, mx);
        const float base = m_new == kNegInf ? 0.0f : m_new;  // a row with nothing visible yet
        // P is rounded to BF16 for the tensor cores; the sum is of the rounded values, so the
        // normalisation matches what P·V adds up.
        const __nv_bfloat162 p01 = __floats2bfloat162_rn(exp2f(s[0] - base), exp2f(s[1] - base));
        const __nv_bfloat162 p23 = __floats2bfloat162_rn(exp2f(s[2] - base), exp2f(s[3] - base));
        float sum = __low2float(p01) + __high2float(p01) + __low2float(p23) + __high2float(p23);
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        sum += __shfl_xor_sync(0xffffffffu, sum, 4);
        const float alpha = exp2f(m_run - base);
        l_run = l_run * alpha + sum;
        m_run = m_new;
        *reinterpret_cast<uint2*>(p_s + soft_row * kSRow + soft_j * 4) =
            make_uint2(bit_as<uint32_t>(p01), bit_as<uint32_t>(p23));
        if (soft_j == 0) alpha_s[soft_row] = alpha;
      }
      __syncthreads();

      // O = O · alpha + P · V over this warp's output columns.
      const float a_lo = alpha_s[mi * 16 + group], a_hi = alpha_s[mi * 16 + group + 8];
      KERNEL_UNROLL
      for (int nt = 0; nt < 2 * kMaxPairs; ++nt) {
        o[nt][0] *= a_lo, o[nt][1] *= a_lo, o[nt][2] *= a_hi, o[nt][3] *= a_hi;
      }
      KERNEL_UNROLL
      for (int ks = 0; ks < kTileN / 16; ++ks) {
        uint32_t a[4];
        simt::ldmatrix<4>(a, p_s + (mi * 16 + lane % 16) * kSRow + ks * 16 + (lane / 16) * 8);
        KERNEL_UNROLL
        for (int np = 0; np < kMaxPairs; ++np) {
          if (np >= n_np) break;
          // Transposed matrices (positions 0-7, n 0-7), (8-15, n 0-7), (0-7, n 8-15),
          // (8-15, n 8-15): V is stored [position][column], B wants columns of positions.
          uint32_t r[4];
          simt::ldmatrix<4, true>(r, k_tile +
                                         (ks * 16 + lane % 8 + ((lane / 8) % 2) * 8) * w.pitch +
                                         n_begin + np * 16 + (lane / 16) * 8);
          const uint32_t b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
          simt::mma_m16n8k16_bf16(o[2 * np], a, b0, o[2 * np]);
          simt::mma_m16n8k16_bf16(o[2 * np + 1], a, b1, o[2 * np + 1]);
        }
      }
    }
    if (soft_j == 0) {
      l_s[soft_row] = l_run;
      m_s[soft_row] = m_run;
    }
    __syncthreads();

    // Rows outside the run write nothing; a bad position writes NaN.
    KERNEL_UNROLL
    for (int half = 0; half < 2; ++half) {
      const int r = mi * 16 + group + half * 8;
      const int limit = row_pos[r];
      if (limit == kRowPad) continue;
      const int64_t token = tok0 + r / hpt;
      const int head = head0 + r % hpt;
      const float l = l_s[r];
      const float inv_l = limit == kRowBad ? NAN : l > 0.0f ? 1.0f / l : 0.0f;
      if (plan.n_splits == 1) {
        const int64_t base = token * p.out_token_stride + int64_t{head} * p.out_head_stride;
        KERNEL_UNROLL
        for (int nt = 0; nt < 2 * kMaxPairs; ++nt) {
          if (nt / 2 >= n_np) break;
          store2(p.out, p.out_type, base + n_begin + nt * 8 + tig * 2, o[nt][2 * half] * inv_l,
                 o[nt][2 * half + 1] * inv_l);
        }
      } else {
        const int64_t prow = (split * p.n_tokens + token) * p.n_heads + head;
        KERNEL_UNROLL
        for (int nt = 0; nt < 2 * kMaxPairs; ++nt) {
          if (nt / 2 >= n_np) break;
          *reinterpret_cast<float2*>(p.partial_out + prow * w.latent + n_begin + nt * 8 + tig * 2) =
              make_float2(o[nt][2 * half] * inv_l, o[nt][2 * half + 1] * inv_l);
        }
        if (quarter == 0 && tig == 0) {
          // log2-sum-exp of the split; -inf for a split with no visible position (weight 0).
          p.partial_lse[prow] = limit == kRowBad ? 0.0f : l > 0.0f ? m_s[r] + log2f(l) : kNegInf;
        }
      }
    }
    run = run_end;
  }
}

// out[row] = Σ_z w_z · partial[z][row] / Σ_z w_z, w_z = 2^(lse_z - max lse), one warp per
// (token, head) row, 4 columns per lane and 128-column chunk in 128-bit loads (DeepSeek: 4
// chunks). Splits of weight 0 are not read.
template <bool kFixed>
__global__ void __launch_bounds__(32 * kMergeRows) mla_merge_kernel(const MlaArgs args) {
  constexpr int kChunks = kMlaMaxLatent / 128;
  const MlaAttentionParams& p = args.p;
  const MlaPlan& plan = args.plan;
  const Widths<kFixed> w(p);
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int64_t row = int64_t{blockIdx.x} * kMergeRows + threadIdx.x / 32;
  const int64_t n_rows = p.n_tokens * p.n_heads;
  if (row >= n_rows) return;
  // Chunk k of this lane covers columns (32k + lane) · 4 + [0, 4); latent is a multiple of 16.
  auto in_row = [&](int k) { return kFixed || (k * 32 + lane) * 4 < w.latent; };
  float lse_max = kNegInf;
  for (int z = 0; z < plan.n_splits; ++z) lse_max = fmaxf(lse_max, p.partial_lse[z * n_rows + row]);
  float acc[kChunks][4] = {};
  float wsum = 0.0f;
  for (int z = 0; z < plan.n_splits; ++z) {
    const float lse = p.partial_lse[z * n_rows + row];
    if (lse == kNegInf) continue;
    const float weight = exp2f(lse - lse_max);
    wsum += weight;
    const float4* src =
        reinterpret_cast<const float4*>(p.partial_out + (z * n_rows + row) * w.latent);
    KERNEL_UNROLL
    for (int k = 0; k < kChunks; ++k) {
      if (!in_row(k)) break;
      const float4 v = src[k * 32 + lane];
      acc[k][0] += weight * v.x, acc[k][1] += weight * v.y;
      acc[k][2] += weight * v.z, acc[k][3] += weight * v.w;
    }
  }
  const float inv = 1.0f / wsum;  // NaN rows (bad positions) stay NaN; wsum > 0 otherwise
  const int64_t token = row / p.n_heads;
  const int head = static_cast<int>(row % p.n_heads);
  const int64_t base = token * p.out_token_stride + int64_t{head} * p.out_head_stride;
  KERNEL_UNROLL
  for (int k = 0; k < kChunks; ++k) {
    if (!in_row(k)) break;
    const int col = (k * 32 + lane) * 4;
    store2(p.out, p.out_type, base + col, acc[k][0] * inv, acc[k][1] * inv);
    store2(p.out, p.out_type, base + col + 2, acc[k][2] * inv, acc[k][3] * inv);
  }
}

template <int kMFrags, bool kFixed>
cudaError_t launch_tiles(const MlaAttentionParams& p, const MlaPlan& plan, cudaStream_t stream) {
  const Widths<kFixed> w(p);
  return simt::launch({.kernel_name = "mla_attention_kernel",
                       .grid = dim3(static_cast<unsigned>(plan.query_tiles),
                                    static_cast<unsigned>(plan.head_tiles),
                                    static_cast<unsigned>(plan.n_splits)),
                       .block = dim3(tile_threads(kMFrags)),
                       .dynamic_smem_bytes = smem_layout(16 * kMFrags, w.pitch).total,
                       .stream = stream},
                      mla_attention_kernel<kMFrags, kFixed>, MlaArgs{p, plan})
      .code;
}

template <bool kFixed>
cudaError_t launch_widths(const MlaAttentionParams& p, const MlaPlan& plan, cudaStream_t stream) {
  const cudaError_t e = plan.rows == 16 ? launch_tiles<1, kFixed>(p, plan, stream)
                                        : launch_tiles<4, kFixed>(p, plan, stream);
  if (e != cudaSuccess || plan.n_splits == 1) return e;
  const int64_t rows = p.n_tokens * p.n_heads;
  return simt::launch({.kernel_name = "mla_merge_kernel",
                       .grid = dim3(static_cast<unsigned>((rows + kMergeRows - 1) / kMergeRows)),
                       .block = dim3(32 * kMergeRows),
                       .stream = stream},
                      mla_merge_kernel<kFixed>, MlaArgs{p, plan})
      .code;
}

}  // namespace

MlaPlan plan_mla_attention(int64_t n_tokens, int64_t n_seqs, int n_heads, int64_t max_context,
                           int n_sms) {
  constexpr int kMaxSplits = 64;
  MlaPlan plan;
  const bool decode = n_tokens <= n_seqs;
  plan.rows = decode && n_heads <= 16 ? 16 : 64;
  plan.heads_per_tile = std::min(n_heads, plan.rows);
  plan.tokens_per_tile = decode ? 1 : plan.rows / plan.heads_per_tile;
  plan.query_tiles = (n_tokens + plan.tokens_per_tile - 1) / plan.tokens_per_tile;
  plan.head_tiles = (n_heads + plan.heads_per_tile - 1) / plan.heads_per_tile;
  // Two 16-row CTAs fit an SM (105 KiB of shared memory each), one 64-row CTA (197 KiB).
  const int64_t slots = int64_t{std::max(n_sms, 1)} * (plan.rows == 16 ? 2 : 1);
  const int64_t ctas = std::max<int64_t>(plan.query_tiles * plan.head_tiles, 1);
  // A split's cache rows (1152 bytes each in BF16) should outweigh its partial output
  // (written and read again, 2 · 2048 bytes per row of the tile).
  const int64_t min_positions = std::max<int64_t>(128, 4 * plan.heads_per_tile);
  const int64_t by_context = std::max<int64_t>(1, max_context / min_positions);
  // Splits beyond one wave of CTAs would only add merge work.
  const int64_t wanted = slots / ctas;
  plan.n_splits =
      static_cast<int>(std::clamp<int64_t>(wanted, 1, std::min<int64_t>(by_context, kMaxSplits)));
  return plan;
}

int64_t mla_partial_out_floats(const MlaPlan& plan, int64_t n_tokens, int n_heads, int latent) {
  return plan.n_splits > 1 ? int64_t{plan.n_splits} * n_tokens * n_heads * latent : 0;
}

int64_t mla_partial_lse_floats(const MlaPlan& plan, int64_t n_tokens, int n_heads) {
  return plan.n_splits > 1 ? int64_t{plan.n_splits} * n_tokens * n_heads : 0;
}

cudaError_t launch_mla_attention(const MlaAttentionParams& p, const MlaPlan& plan,
                                 cudaStream_t stream) {
  if (p.n_tokens == 0 || p.n_heads == 0) return cudaSuccess;
  if ((plan.rows != 16 && plan.rows != 64) || !mla_widths_supported(p.latent, p.rope)) {
    return cudaErrorInvalidValue;
  }
  return p.latent == kMlaMaxLatent && p.rope == kMlaMaxRope ? launch_widths<true>(p, plan, stream)
                                                            : launch_widths<false>(p, plan, stream);
}

}  // namespace moeserve::kernels
