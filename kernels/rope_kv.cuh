// Rotary embedding of interleaved pairs and the paged KV-cache row write, in one kernel
// that serves three ops: rope (rotate in place), kv_cache_write (copy rows into cache
// slots, rounding to the cache's type) and their fusion rope_kv_write (rotate the rope
// columns of each row, write them back and write the whole row into its slot), so the
// fused op reads each row once.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/elem_type.cuh"

namespace moeserve::kernels {

struct RopeKvParams {
  void* x;               // [n_tokens, n_heads, width] rows of type x_type; rotated columns are
                         // written back in place
  ElemType x_type;       // kF32 or kBF16
  int64_t token_stride;  // elements between consecutive tokens of x
  int64_t head_stride;   // elements between consecutive heads of one token
  int64_t n_tokens;      // number of tokens
  int n_heads;           // rows per token (1 for cache rows)
  int width;             // row width
  int rope_begin;        // columns [rope_begin, width) hold the pairs (x[2i], x[2i+1]) to rotate;
                         // width - rope_begin is even; = width: nothing is rotated
  const int32_t* positions;     // [n_tokens] row of cos_sin per token (when rotating); outside
                                // [0, max_pos) the rotated columns become NaN
  const float* cos_sin;         // [max_pos, (width - rope_begin) / 2, 2] F32 (cos, sin)
  int64_t max_pos;              // rows of cos_sin
  void* cache;                  // nullptr (rope only) or [n_slots, width] contiguous rows of
                                // cache_type; needs n_heads == 1
  ElemType cache_type;          // kF32 or kBF16
  const int32_t* slot_mapping;  // [n_tokens] cache row per token; outside [0, n_slots) the
                                // token is not written (padding tokens carry -1)
  int64_t n_slots;              // rows of cache
};
// For each token t and head h: rotate x[t, h, rope_begin:] by positions[t], store it back
// (rounded to x_type), and with a cache write the row, as stored, to cache[slot_mapping[t]]
// rounded to cache_type. Rows whose pointers, strides, width and rope_begin allow it move in
// 128-bit chunks of 8 elements; others a pair (or a non-rotated element) per thread.
cudaError_t launch_rope_kv(const RopeKvParams& params, cudaStream_t stream);

}  // namespace moeserve::kernels
