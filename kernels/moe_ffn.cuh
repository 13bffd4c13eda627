// The routed-expert MoE FFN around the grouped GEMMs of gemm_bf16.cuh, with no host round
// trip (the host never reads the per-expert counts):
//   1. launch_moe_route: one block counts the tokens per expert, scans the counts into
//      per-expert row offsets, lists the (token, slot) of each expert's rows contiguously
//      (the permutation), and writes the grouped GEMMs' tile table.
//   2. grouped GEMM, gated: act[r] = silu(x[perm_token[r]] · w_gateᵀ) · (… · w_upᵀ), BF16.
//   3. grouped GEMM: y[perm_slot[r]] = act[r] · w_downᵀ, F32, one row per (token, slot).
//   4. launch_moe_combine: out[t] = Σ_j topk_weights[t, j] · y[t·k + j] over the slots with
//      an id ≥ 0, in slot order: deterministic, no float atomics.
// Rows keep no order within an expert (atomic cursors), which changes nothing: every GEMM
// row is computed on its own, and the combine sums in slot order.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/elementwise.cuh"  // ElemType

namespace moeserve::kernels {

struct MoeRouteParams {
  const int32_t* topk_ids;  // [n_tokens, top_k]; -1 = an expert another rank holds (skipped);
                            // other ids outside [0, n_experts) are skipped too (a bug upstream)
  int64_t ids_row_stride;   // elements between rows of topk_ids
  int n_tokens;
  int top_k;
  int n_experts;
  int block_m;              // rows per tile of the grouped GEMMs (gemm_tile_shape().block_m)
  int max_tiles;            // capacity of the tile table (moe_max_tiles)
  int32_t* expert_offsets;  // [n_experts + 1] out: expert e's rows are [off[e], off[e + 1])
  int32_t* perm_token;      // [n_tokens · top_k] out: token of each permuted row
  int32_t* perm_slot;       // [n_tokens · top_k] out: t · top_k + j of each permuted row
  int32_t* tile_expert;     // [max_tiles] out: expert of each row tile
  int32_t* tile_row0;       // [max_tiles] out: first permuted row of each tile
  int32_t* n_tiles;         // [1] out: tiles in use
};

// Upper bound on the row tiles of n_rows routed rows over n_experts experts.
int moe_max_tiles(int64_t n_rows, int n_experts, int block_m);

// Shared memory bounds the expert count.
constexpr int kMoeMaxExperts = 4096;

cudaError_t launch_moe_route(const MoeRouteParams& p, cudaStream_t stream);

struct MoeCombineParams {
  const float* y;              // [n_tokens · top_k, d] expert outputs by slot, contiguous
  const int32_t* topk_ids;     // [n_tokens, top_k]: slots whose id is outside [0, E) add nothing
  int64_t ids_row_stride;      // elements between rows of topk_ids
  const float* topk_weights;   // [n_tokens, top_k]
  int64_t weights_row_stride;  // elements between rows of topk_weights
  void* out;                   // [n_tokens, d] of out_type (kF32 or kBF16)
  ElemType out_type;
  int64_t out_row_stride;  // elements between rows of out
  int n_tokens;
  int top_k;
  int n_experts;
  int d;  // any; 4 columns a thread when a multiple of 4 with aligned rows, else one
};

cudaError_t launch_moe_combine(const MoeCombineParams& p, cudaStream_t stream);

}  // namespace moeserve::kernels
