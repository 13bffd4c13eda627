// Multi-head latent attention (DeepSeek MLA) in the weight-absorbed form over the paged
// latent cache, for decode and (chunked, variable-length, causal) prefill alike.
//
// Every head of a token attends to the same cache rows [latent | rope key] (DeepSeek: 512 |
// 64), so a CTA takes a tile of query rows (token, head) that share one sequence: Q
// [rows × (latent + rope)] sits in shared memory as BF16, the sequence's cache rows stream
// through shared memory 32 at a time (cp.async double buffering for a BF16 cache), and scores
// S = Q·Kᵀ and the output O += P·V (V = the latent part of the same rows) run on tensor cores
// (mma.sync m16n8k16, BF16 inputs, F32 accumulation) with an online softmax in F32. Long
// contexts are split across CTAs (split-KV); a second kernel merges the partial results by
// their log-sum-exp. plan_mla_attention picks the tile shape and the split count per batch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/elem_type.cuh"

namespace moeserve::kernels {

// Supported widths: latent (the output width too) a multiple of 16 in [16, 512], rope a
// multiple of 8 in [0, 64]. DeepSeek's 512 + 64 runs an instance with the widths as constants;
// any other pair (the tiny test models: latent 32..144, rope 8 or 16) a general instance that
// zero-pads the rope part to a multiple of 16 in shared memory, with the same tiles.
inline constexpr int kMlaMaxLatent = 512;
inline constexpr int kMlaMaxRope = 64;
inline constexpr bool mla_widths_supported(int64_t latent, int64_t rope) {
  return latent >= 16 && latent <= kMlaMaxLatent && latent % 16 == 0 && rope >= 0 &&
         rope <= kMlaMaxRope && rope % 8 == 0;
}

// How one mla_attention call is cut into CTAs; a function of the batch's shape only (no
// device data), so it can be made once per step.
struct MlaPlan {
  int rows = 0;             // query rows (token, head) per CTA: 16 or 64
  int heads_per_tile = 0;   // heads of one token in a CTA's rows
  int tokens_per_tile = 0;  // consecutive tokens per CTA (rows = tokens × heads, at most)
  int64_t query_tiles = 0;  // CTAs along the tokens (grid x)
  int head_tiles = 0;       // CTAs along the heads (grid y)
  int n_splits = 0;         // CTAs along each context (grid z); > 1 needs the merge
};

// n_seqs: rows of the block table; max_context: the positions it can hold (its width ×
// block_size); n_sms: multiprocessors of the device. Decode-shaped batches (at most one
// token per sequence) get one token per CTA and 16-row tiles when there are at most 16
// heads; prefill-shaped ones 64-row tiles of several tokens. Contexts are split until the
// CTAs fill one wave of the SMs, but each split keeps at least enough positions that reading
// its cache rows outweighs writing and merging its partial output.
MlaPlan plan_mla_attention(int64_t n_tokens, int64_t n_seqs, int n_heads, int64_t max_context,
                           int n_sms);

struct MlaAttentionParams {
  int latent;                     // latent width (mla_widths_supported)
  int rope;                       // rope key width (mla_widths_supported)
  const void* q_latent;           // [n_tokens, n_heads, latent] of type q_latent_type
  ElemType q_latent_type;         // kF32 or kBF16
  int64_t q_latent_token_stride;  // elements between tokens
  int64_t q_latent_head_stride;   // elements between heads
  const void* q_rope;             // [n_tokens, n_heads, rope] of type q_rope_type
  ElemType q_rope_type;           // kF32 or kBF16
  int64_t q_rope_token_stride;    // elements between tokens
  int64_t q_rope_head_stride;     // elements between heads
  const void* cache;         // [n_blocks, block_size, latent + rope] contiguous, of type cache_type
  ElemType cache_type;       // kF32 or kBF16
  int64_t n_blocks;          // blocks in the cache; other block ids read as zero rows
  int block_size;            // positions per cache block
  const int32_t* token_seq;  // [n_tokens] row of block_tables per token
  const int32_t* token_pos;  // [n_tokens] position; the token sees positions [0, pos]. A
                             // position beyond the block table gives NaN outputs
  const int32_t* block_tables;  // [n_seqs, max_blocks] block ids per sequence
  int max_blocks;               // columns of block_tables
  int64_t n_tokens;             // query tokens
  int n_heads;                  // heads per token
  float scale;                  // softmax scale on the scores
  void* out;                    // [n_tokens, n_heads, latent] of type out_type
  ElemType out_type;            // kF32 or kBF16
  int64_t out_token_stride;     // elements between tokens (even)
  int64_t out_head_stride;      // elements between heads (even)
  float* partial_out;  // [n_splits, n_tokens, n_heads, latent] workspace when plan.n_splits > 1
  float* partial_lse;  // [n_splits, n_tokens, n_heads] workspace when plan.n_splits > 1
};

// F32 elements of partial_out and of partial_lse a plan needs (0 without a split).
int64_t mla_partial_out_floats(const MlaPlan& plan, int64_t n_tokens, int n_heads, int latent);
int64_t mla_partial_lse_floats(const MlaPlan& plan, int64_t n_tokens, int n_heads);

// out[t, h] = Σ_p softmax_p(scale · (q_latent[t, h]·latent(p) + q_rope[t, h]·rope(p)))
// · latent(p) over the positions p ≤ token_pos[t] of sequence token_seq[t]. Q and P are
// rounded to BF16 for the tensor cores (an F32 cache too), so results match an F32
// reference to about 1e-3 relative. Q rows need no alignment (16-byte aligned ones load in
// 128-bit chunks); out must be 8-byte aligned with even strides. Widths outside
// mla_widths_supported are refused (cudaErrorInvalidValue).
cudaError_t launch_mla_attention(const MlaAttentionParams& params, const MlaPlan& plan,
                                 cudaStream_t stream);

}  // namespace moeserve::kernels
