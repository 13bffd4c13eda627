// Row-wise and elementwise kernels: RMSNorm (optionally fused with the residual add), add,
// SiLU·mul, row gather.
//
// Each kernel takes a plain Params struct and is launched through a host
// function that enqueues it on `stream` and returns cudaGetLastError() (the
// caller decides how to treat errors). Pointers are device pointers. Rows are
// contiguous; consecutive rows are `*_row_stride` elements apart, so callers
// can pass column slices of wider tensors. Zero rows or columns launch nothing.
// Activations are F32 or BF16, each tensor independently (`*_type`): values are
// widened to F32, computed in F32 and rounded once on store. Rows whose pointers
// and strides allow it move in 128-bit accesses.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/elem_type.cuh"

namespace moeserve::kernels {

struct RmsNormParams {
  const void* x;           // [n_rows, d] input rows of type x_type
  ElemType x_type;         // kF32 or kBF16
  int64_t x_row_stride;    // elements between consecutive rows of x
  const void* weight;      // [d] per-column scale, contiguous, of type weight_type
  ElemType weight_type;    // kF32 or kBF16
  void* out;               // [n_rows, d] output rows of type out_type; may alias x (same strides)
  ElemType out_type;       // kF32 or kBF16
  int64_t out_row_stride;  // elements between consecutive rows of out
  int64_t n_rows;          // number of rows
  int d;                   // row width
  float eps;               // added to mean(x²) before the square root
};
// out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) * weight
cudaError_t launch_rms_norm(const RmsNormParams& params, cudaStream_t stream);

struct AddRmsNormParams {
  void* residual;               // [n_rows, d] of type residual_type: read, x added, written back
  ElemType residual_type;       // kF32 or kBF16
  int64_t residual_row_stride;  // elements between consecutive rows of residual
  const void* x;                // [n_rows, d] added to the residual, of type x_type
  ElemType x_type;              // kF32 or kBF16
  int64_t x_row_stride;         // elements between consecutive rows of x
  const void* weight;           // [d] per-column scale, contiguous, of type weight_type
  ElemType weight_type;         // kF32 or kBF16
  void* out;                    // [n_rows, d] of type out_type; may alias x, not residual
  ElemType out_type;            // kF32 or kBF16
  int64_t out_row_stride;       // elements between consecutive rows of out
  int64_t n_rows;               // number of rows
  int d;                        // row width
  float eps;                    // added to mean(residual²) before the square root
};
// residual += x (rounded to residual_type), then out = rms_norm(residual) · weight, in one
// pass over the row: the norm is of the residual as stored, as the next layer reads it.
cudaError_t launch_add_rms_norm(const AddRmsNormParams& params, cudaStream_t stream);

struct AddParams {
  const void* a;           // [n_rows, d] first operand, of type a_type
  ElemType a_type;         // kF32 or kBF16
  int64_t a_row_stride;    // elements between consecutive rows of a
  const void* b;           // [n_rows, d] second operand, of type b_type
  ElemType b_type;         // kF32 or kBF16
  int64_t b_row_stride;    // elements between consecutive rows of b
  void* out;               // [n_rows, d] result, of type out_type; may alias a or b (same strides)
  ElemType out_type;       // kF32 or kBF16
  int64_t out_row_stride;  // elements between consecutive rows of out
  int64_t n_rows;          // number of rows
  int64_t d;               // row width
};
// out = a + b
cudaError_t launch_add(const AddParams& params, cudaStream_t stream);

struct SiluMulParams {
  const void* gate_up;         // [n_rows, 2f]: gate in columns [0, f), up in [f, 2f)
  ElemType gate_up_type;       // kF32 or kBF16
  int64_t gate_up_row_stride;  // elements between consecutive rows of gate_up
  void* out;                   // [n_rows, f] result; must not overlap gate_up
  ElemType out_type;           // kF32 or kBF16
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
  void* out;               // [n_rows, d] gathered rows, of type out_type
  ElemType out_type;       // kF32 or kBF16
  int64_t out_row_stride;  // elements between consecutive rows of out
  int64_t n_rows;          // number of output rows (= number of indices)
  int64_t d;               // row width
};
// out[i, :] = src[indices[i], :] converted to out_type. Callers validate indices; an index
// out of range is a bug upstream, so it yields a NaN row rather than a wild read.
cudaError_t launch_gather_rows(const GatherRowsParams& params, cudaStream_t stream);

}  // namespace moeserve::kernels
