#include "backend/cpu/cpu_gemm.h"

#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "common/status.h"

namespace moeserve::cpu {
namespace {

// Rows of x handled together by the streaming kernel: every weight row is
// loaded once and used for up to this many activation rows.
constexpr int64_t kMaxStreamRows = 8;
// Above this many activation rows, products go to OpenBLAS (compute-bound).
constexpr int64_t kBlasMinRows = 16;

inline float load_w(const void* w, DType t, int64_t i) {
  return t == DType::kBF16 ? bf16_to_f32(static_cast<const uint16_t*>(w)[i])
                           : static_cast<const float*>(w)[i];
}

// Scalar fallback: out[r][j] for rows r < n_rows of x and weight rows [j0, j1).
void stream_rows_scalar(const float* x, int64_t x_ld, const void* w, DType wt, int64_t w_ld,
                        float* out, int64_t out_ld, int64_t n_rows, int64_t j0, int64_t j1,
                        int64_t k) {
  for (int64_t j = j0; j < j1; ++j) {
    const int64_t base = j * w_ld;
    for (int64_t r = 0; r < n_rows; ++r) {
      const float* xr = x + r * x_ld;
      float acc = 0.0f;
      for (int64_t i = 0; i < k; ++i) acc += xr[i] * load_w(w, wt, base + i);
      out[r * out_ld + j] = acc;
    }
  }
}

__attribute__((target("avx2,fma"))) inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) inline __m256 load8(const void* w, DType t, int64_t i) {
  if (t == DType::kBF16) {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  return _mm256_loadu_ps(static_cast<const float*>(w) + i);
}

// AVX2: each weight row is read once and dotted with n_rows (≤ 8) activation rows.
template <int kRows>
__attribute__((target("avx2,fma"))) void stream_rows_avx2(const float* x, int64_t x_ld,
                                                          const void* w, DType wt, int64_t w_ld,
                                                          float* out, int64_t out_ld, int64_t j0,
                                                          int64_t j1, int64_t k) {
  const int64_t k8 = k / 8 * 8;
  for (int64_t j = j0; j < j1; ++j) {
    const int64_t base = j * w_ld;
    __m256 acc[kRows];
    for (int r = 0; r < kRows; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < k8; i += 8) {
      const __m256 wv = load8(w, wt, base + i);
      for (int r = 0; r < kRows; ++r) {
        acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * x_ld + i), wv, acc[r]);
      }
    }
    for (int r = 0; r < kRows; ++r) {
      float s = hsum256(acc[r]);
      for (int64_t i = k8; i < k; ++i) s += x[r * x_ld + i] * load_w(w, wt, base + i);
      out[r * out_ld + j] = s;
    }
  }
}

using StreamFn = void (*)(const float*, int64_t, const void*, DType, int64_t, float*, int64_t,
                          int64_t, int64_t, int64_t);

StreamFn avx2_kernel(int64_t n_rows) {
  switch (n_rows) {
    case 1: return stream_rows_avx2<1>;
    case 2: return stream_rows_avx2<2>;
    case 3: return stream_rows_avx2<3>;
    case 4: return stream_rows_avx2<4>;
    case 5: return stream_rows_avx2<5>;
    case 6: return stream_rows_avx2<6>;
    case 7: return stream_rows_avx2<7>;
    default: return stream_rows_avx2<8>;
  }
}

bool have_avx2() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

}  // namespace

void gemm_xwt(const float* x, int64_t x_ld, const void* w, DType w_dtype, int64_t w_ld, float* out,
              int64_t out_ld, int64_t n, int64_t m, int64_t k, ThreadPool& pool) {
  MS_CHECK(w_dtype == DType::kF32 || w_dtype == DType::kBF16, "gemm weight dtype ",
           dtype_name(w_dtype));
  if (n == 0 || m == 0) return;
  if (n >= kBlasMinRows) {
    if (w_dtype == DType::kF32) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(m),
                  static_cast<int>(k), 1.0f, x, static_cast<int>(x_ld),
                  static_cast<const float*>(w), static_cast<int>(w_ld), 0.0f, out,
                  static_cast<int>(out_ld));
      return;
    }
    // BF16 weights: widen a panel of rows at a time, then one SGEMM per panel.
    constexpr int64_t kPanel = 256;
    std::vector<float> panel(static_cast<size_t>(std::min(kPanel, m) * k));
    for (int64_t j0 = 0; j0 < m; j0 += kPanel) {
      const int64_t rows = std::min(kPanel, m - j0);
      pool.parallel_for(rows, [&](int64_t b, int64_t e) {
        for (int64_t j = b; j < e; ++j) {
          const uint16_t* src = static_cast<const uint16_t*>(w) + (j0 + j) * w_ld;
          for (int64_t i = 0; i < k; ++i) panel[j * k + i] = bf16_to_f32(src[i]);
        }
      });
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n),
                  static_cast<int>(rows), static_cast<int>(k), 1.0f, x, static_cast<int>(x_ld),
                  panel.data(), static_cast<int>(k), 0.0f, out + j0, static_cast<int>(out_ld));
    }
    return;
  }
  const bool avx2 = have_avx2();
  // Weight rows are split across threads; each chunk covers all activation rows.
  pool.parallel_for(
      m,
      [&](int64_t j0, int64_t j1) {
        for (int64_t r0 = 0; r0 < n; r0 += kMaxStreamRows) {
          const int64_t rows = std::min(kMaxStreamRows, n - r0);
          if (avx2) {
            avx2_kernel(rows)(x + r0 * x_ld, x_ld, w, w_dtype, w_ld, out + r0 * out_ld, out_ld, j0,
                              j1, k);
          } else {
            stream_rows_scalar(x + r0 * x_ld, x_ld, w, w_dtype, w_ld, out + r0 * out_ld, out_ld,
                               rows, j0, j1, k);
          }
        }
      },
      /*min_chunk=*/16);
}

}  // namespace moeserve::cpu
