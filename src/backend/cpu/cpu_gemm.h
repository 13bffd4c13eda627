// CPU matrix products: out = x · wᵀ for F32 activations and F32, BF16, F16,
// block-scaled FP8 E4M3 or per-row-scaled INT8 weights, read in their stored
// dtype (INT8 runs W8A8: cpu_gemm_int8.h).
#pragma once

#include "common/tensor.h"
#include "common/thread_pool.h"

namespace moeserve::cpu {

// A [m, k] weight matrix as the kernels read it.
struct WeightView {
  const void* data = nullptr;     // row j starts `j * ld` elements in
  DType dtype = DType::kF32;      // kF32, kBF16, kF16, kFP8E4M3 or kI8
  int64_t ld = 0;                 // elements between consecutive rows
  const float* scales = nullptr;  // FP8, I8: [ceil(m / block_rows), scale_ld]
  int64_t scale_ld = 0;           // scales between consecutive scale rows
  int64_t block_rows = 0;         // FP8, I8: rows sharing one scale row
  int64_t block_cols = 0;         // FP8: columns sharing one scale (I8: the whole row)

  // Scale of row j's block of columns starting at column i.
  float scale(int64_t j, int64_t i) const {
    return scales[(j / block_rows) * scale_ld + i / block_cols];
  }

  // A 2-D weight tensor (FP8 and I8 must carry F32 block scales; I8's cover
  // whole rows, one scale column).
  static WeightView of(const Tensor& w);
};

// Row j of `w` widened to F32 (scales applied): out[0, k).
void decode_row(const WeightView& w, int64_t j, int64_t k, float* out);

// x: [n, k] F32 (row stride x_ld); out: [n, m] F32 (row stride out_ld). Few
// rows (decode) stream the weights once through a vectorised kernel; many rows
// (prefill) widen panels of weight rows and go to OpenBLAS. INT8 weights run
// W8A8 (gemm_xwt_int8 with the best kernel for this CPU).
void gemm_xwt(const float* x, int64_t x_ld, const WeightView& w, float* out, int64_t out_ld,
              int64_t n, int64_t m, int64_t k, ThreadPool& pool);

}  // namespace moeserve::cpu
