// CPU matrix products: out = x · wᵀ for F32 activations and F32/BF16 weights.
#pragma once

#include "common/tensor.h"
#include "common/thread_pool.h"

namespace moeserve::cpu {

// x: [n, k] F32 (row stride x_ld); w: [m, k] F32 or BF16 (row stride w_ld);
// out: [n, m] F32 (row stride out_ld). Few rows (decode) stream the weights
// once through a vectorised kernel; many rows (prefill) go to OpenBLAS.
void gemm_xwt(const float* x, int64_t x_ld, const void* w, DType w_dtype, int64_t w_ld, float* out,
              int64_t out_ld, int64_t n, int64_t m, int64_t k, ThreadPool& pool);

}  // namespace moeserve::cpu
