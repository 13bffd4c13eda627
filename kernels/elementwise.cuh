// Simple row-wise and elementwise kernels: RMSNorm, add, SiLU·mul, row gather.
//
// Each kernel takes a plain Params struct and is launched through a host
// function that enqueues it on `stream` and returns cudaGetLastError() (the
// caller decides how to treat errors). Pointers are device pointers. Rows are
// contiguous; consecutive rows are `*_row_stride` elements apart, so callers
// can pass column slices of wider tensors. Zero rows or columns launch nothing.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace moeserve::kernels {

// Element type of a kernel input that may be stored narrower than F32.
enum class ElemType : uint8_t { kF32, kBF16, kF16 };

struct RmsNormParams {
  const float* x;          // [n_rows, d] input rows
  int64_t x_row_stride;    // elements between consecutive rows of x
  const void* weight;      // [d] per-column scale, contiguous, of type weight_type
  ElemType weight_type;    // kF32 or kBF16
  float* out;              // [n_rows, d] output rows; may alias x (same strides)
  int64_t out_row_stride;  // elements between consecutive rows of out
  int64_t n_rows;          // number of rows
  int d;                   // row width
  float eps;               // added to mean(x²) before the square root
};
// out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) * weight
cudaError_t launch_rms_norm(const RmsNormParams& params, cudaStream_t stream);

struct AddParams {
  const float* a;          // [n_rows, d] first operand
  int64_t a_row_stride;    // elements between consecutive rows of a
  const float* b;          // [n_rows, d] second operand
  int64_t b_row_stride;    // elements between consecutive rows of b
  float* out;              // [n_rows, d] result; may alias a or b (same strides)
  int64_t out_row_stride;  // elements between consecutive rows of out
  int64_t n_rows;          // number of rows
  int64_t d;               // row width
};
// out = a + b
cudaError_t launch_add(const AddParams& params, cudaStream_t stream);

struct SiluMulParams {
  const float* gate_up;        // [n_rows, 2f]: gate in columns [0, f), up in [f, 2f)
  int64_t gate_up_row_stride;  // elements between consecutive rows of gate_up
  float* out;                  // [n_rows, f] result; must not overlap gate_up
  int64_t out_row_stride;      // elements between consecutive rows of out
  int64_t n_rows;              // number of rows
  int64_t f;                   // intermediate width (half the width of gate_up)
};
// out = silu(gate) * up, silu(x) = x / (1 + exp(-x))
cudaError_t launch_silu_mul(const SiluMulParams& params, cudaStream_t stream);

struct GatherRowsParams {
  const void* src;         // [n_src_rows, d] table of type src_type
  ElemType src_type;       // kF32, kBF16 or kF16
  int64_t src_row_stride;  // elements between consecutive rows of src
  int64_t n_src_rows;      // rows in src; indices outside [0, n_src_rows) give NaN rows
  const int32_t* indices;  // [n_rows] row of src to read for each output row
  float* out;              // [n_rows, d] gathered rows widened to F32
  int64_t out_row_stride;  // elements between consecutive rows of out
  int64_t n_rows;          // number of output rows (= number of indices)
  int64_t d;               // row width
};
// out[i, :] = src[indices[i], :] as F32. Callers validate indices; an index out
// of range is a bug upstream, so it yields a NaN row rather than a wild read.
cudaError_t launch_gather_rows(const GatherRowsParams& params, cudaStream_t stream);

}  // namespace moeserve::kernels
