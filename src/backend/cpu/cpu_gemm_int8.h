// W8A8 products for INT8 weights with one F32 scale per output row
// (backend/quantize.h): each activation row is quantized on the fly
// (symmetric, s_x = max|x| / 127, round to nearest even), dotted with the
// weight rows in INT32, and out[r, j] = acc · (s_x[r] · s_w[j]).
//
// Every kernel computes the same INT32 sums and the same final F32 multiply,
// so all of them give bit-identical results; they differ only in speed.
#pragma once

#include <cstdint>

#include "backend/cpu/cpu_gemm.h"
#include "common/thread_pool.h"

namespace moeserve::cpu {

enum class Int8Kernel : uint8_t {
  kScalar,      // portable C++
  kAvx2,        // vpmaddubsw on |w| and sign(x, w), vpmaddwd to INT32
  kAvx512Vnni,  // vpdpbusd on x + 128 (unsigned) and w, less 128 · Σw
};

const char* int8_kernel_name(Int8Kernel kernel);
// Whether this CPU runs `kernel` (checked at run time: the binary is built for
// any x86-64 CPU).
bool int8_kernel_supported(Int8Kernel kernel);
// The fastest kernel this CPU runs.
Int8Kernel best_int8_kernel();

// One activation row quantized: q[i] = clamp(rne(x[i] · (127 / max|x|)), ±127).
// Returns the scale max|x| / 127 (0, with q all 0, when max|x| < 1e-30). The
// scalar kernel quantizes in plain C++, the others with AVX2; both give the
// same bytes.
float quantize_activation_row(const float* x, int64_t k, int8_t* q, Int8Kernel kernel);

// out = x · wᵀ in W8A8 with `kernel` (which must be supported). x: [n, k] F32
// (row stride x_ld); w: [m, k] I8 with per-row scales; out: [n, m] F32 (row
// stride out_ld). Weight rows are split across the pool's threads; each thread
// walks its rows in panels that stay in L2 while every tile of activation rows
// passes over them, so many rows (prefill) are not re-read from memory.
void gemm_xwt_int8(const float* x, int64_t x_ld, const WeightView& w, float* out, int64_t out_ld,
                   int64_t n, int64_t m, int64_t k, ThreadPool& pool, Int8Kernel kernel);

}  // namespace moeserve::cpu
