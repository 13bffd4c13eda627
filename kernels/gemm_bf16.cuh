// Tensor-core GEMM out = x · wᵀ with 16-bit weights (BF16, or F16) or FP8 e4m3 weights with
// F32 block scales (W8A16), F32 accumulation: the CUDA backend's linear, head_linear,
// gate_up_silu and the MoE grouped GEMMs.
//
// One kernel template, two tile shapes (GemmTile):
//  - kSkinny, for decode (a few tokens): 16 token rows × 128 weight rows × 64 k per block,
//    4 warps of 16×32, 4 cp.async stages. Memory-bound: weights stream through shared memory
//    with 16-byte cp.async, and split-K (GemmPlan::k_splits) makes enough blocks to keep every
//    SM's loads in flight; a second kernel sums the F32 partials in a fixed order.
//  - kLarge, for prefill: 128 × 128 × 32 per block, 8 warps of 64×32, 4 stages (3 with F32
//    x, to keep two blocks per SM).
// Both stage x and w tiles in shared memory with cp.async (x in its own dtype: F32 x is
// rounded to the weights' 16-bit type as the mma fragments are built, BF16 x goes through
// ldmatrix as it is) and run mma.sync m16n8k16.
//
// Gated mode (gate_up_silu, MoE gate/up): w = [w_gate; w_up], [2f, k]. A block's weight
// rows are f-columns j0..j0+63 of w_gate and the same of w_up, laid out so that one thread
// holds gate j and up j of a token in registers: the epilogue writes silu(gate)·up only.
//
// FP8 weights (w_type kFP8E4M3): tiles are staged as FP8 bytes (16 weights a cp.async, half
// the bytes of BF16) and converted as the B fragments are built: each lane reads its two
// e4m3 pairs from shared memory, widens them and multiplies by the block scale of its weight
// row and the tile's k block, and rounds to BF16 for mma.sync (BF16 x, or F32 x rounded to
// BF16). A k tile (64 or 32) never straddles a k block (block_cols a multiple of 64), so each
// lane loads one scale per n8 tile per k tile; rows look their block up one by one, so any
// block_rows works (stacked gate/up weights have block rows of gcd(128, f)). The weights the
// tensor cores see, bf16(fp8 · scale), are exactly those of dequantizing to BF16 at load.
//
// Grouped mode (MoE): the rows of x are gathered through x_rows, the block's weight matrix
// is chosen per row tile by a device-side tile table (moe_ffn.cuh builds it), and out rows
// may be scattered through out_rows; the host never reads the table.
//
// Any k and strides: when k is a multiple of 8 and every x and w row starts 16-byte aligned
// (gemm_aligned), tiles move in 16-byte cp.async copies only; otherwise a predicated instance
// copies the chunks that are partial (the k tail) or unaligned element by element, zeros past
// k (the tiny test models' widths, e.g. o_proj's k = 3 heads × 20). Out elements are stored
// in pairs where 8-byte (F32) or 4-byte (BF16) aligned, else one by one.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/elementwise.cuh"  // ElemType

namespace moeserve::kernels {

enum class GemmTile : uint8_t { kSkinny, kLarge };

// FP8 block scales must span whole k tiles of both tile shapes (64 and 32 wide).
constexpr int kGemmFp8BlockColsMultiple = 64;

struct GemmTileShape {
  int block_m;  // token rows per block
  int block_n;  // weight rows per block
  int block_k;  // k per pipeline stage
};
GemmTileShape gemm_tile_shape(GemmTile tile);

// How one GEMM runs: tile shape and split-K. Chosen on the host from the shape alone.
struct GemmPlan {
  GemmTile tile = GemmTile::kSkinny;
  int k_splits = 1;           // blocks along k; > 1 writes F32 partials, then reduces
  int k_tiles_per_split = 1;  // block_k-wide k tiles per split (every split non-empty)
};

// n token rows, m weight rows (2f when gated), depth k, `batch` independent matrices
// (heads), on a device with n_sms multiprocessors. kSkinny for n ≤ 32 tokens, kLarge above;
// split-K while the grid has fewer than two blocks per SM and every split keeps ≥ 4 k tiles.
GemmPlan plan_gemm(int64_t n, int64_t m, int64_t k, int64_t batch, int n_sms);

// Rows of a device-side tile table for grouped GEMMs (moe_ffn.cuh fills it).
struct GemmGroups {
  const int32_t* tile_group;     // [max_tiles] group (expert) of each row tile
  const int32_t* tile_row0;      // [max_tiles] first row of each tile
  const int32_t* group_offsets;  // [n_groups + 1] rows [off[g], off[g+1]) belong to group g
  const int32_t* n_tiles;        // [1] tiles in use; blocks beyond it exit
  int max_tiles;                 // grid rows launched (an upper bound on *n_tiles)
  int64_t w_group_stride;        // elements between consecutive groups' weight matrices
};

struct GemmParams {
  const void* x;  // [n, k] activations, x_type kF32 or kBF16
  ElemType x_type;
  int64_t x_row_stride;   // elements between rows of x
  const int32_t* x_rows;  // [n] or null: row r of the product reads x row x_rows[r]
  const void* w;          // [m, k] weights, w_type kBF16, kF16 or kFP8E4M3
  ElemType w_type;
  int64_t w_row_stride;  // elements between rows of w
  void* out;             // [n, m] (gated: [n, m/2]) out_type kF32 or kBF16
  ElemType out_type;
  int64_t out_row_stride;   // elements between rows of out
  const int32_t* out_rows;  // [n] or null: row r of the product goes to out row out_rows[r]
  int n;                    // rows of the product (tokens; grouped: all groups' rows)
  int m;                    // weight rows (gated: 2f, gate rows then up rows)
  int k;                    // depth
  bool gated;               // out[:, j] = silu(p[:, j]) · p[:, f + j], f = m / 2
  // Batched matrices (head_linear): matrix b starts at these offsets (elements).
  int batch = 1;
  int64_t x_batch_stride = 0;
  int64_t w_batch_stride = 0;
  int64_t out_batch_stride = 0;
  GemmGroups groups{};  // tile_group null: not grouped
  // kFP8E4M3 only: weight (j, i) is w[j, i] · w_scales[(j / block_rows) · w_scale_row_stride +
  // i / block_cols], for each batch matrix (+ batch · w_scale_batch_stride) and group (+ g ·
  // w_scale_group_stride).
  const float* w_scales = nullptr;  // [.., ceil(m / block_rows), ceil(k / block_cols)] F32
  int64_t w_scale_row_stride = 0;   // floats between scale rows
  int64_t w_scale_batch_stride = 0;
  int64_t w_scale_group_stride = 0;
  int w_block_rows = 0;  // any ≥ 1
  int w_block_cols = 0;  // a multiple of kGemmFp8BlockColsMultiple
  // Split-K scratch, [k_splits, batch, n, m] F32 (gemm_workspace_bytes); unused when
  // plan.k_splits == 1.
  float* partials = nullptr;
};

// Whether every x and w chunk of the product is 16-byte aligned and whole (k a multiple of 8,
// 16 with FP8 weights; the strides multiples of 16 bytes, x and w 16-byte aligned): the
// 16-byte copy path.
bool gemm_aligned(const GemmParams& p);

// Bytes of `partials` the plan needs (0 without split-K).
size_t gemm_workspace_bytes(const GemmParams& p, const GemmPlan& plan);

// Enqueues the product (and the split-K reduction) on `stream`. Zero rows or columns
// launch nothing.
cudaError_t launch_gemm(const GemmParams& p, const GemmPlan& plan, cudaStream_t stream);

}  // namespace moeserve::kernels
