#include "backend/cpu/cpu_gemm.h"

#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <vector>

#include "backend/cpu/cpu_gemm_int8.h"
#include "common/status.h"

namespace moeserve::cpu {
namespace {

// Rows of x handled together by the streaming kernel: every weight row is
// loaded once and used for up to this many activation rows.
constexpr int64_t kMaxStreamRows = 8;
// Above this many activation rows, products go to OpenBLAS (compute-bound).
constexpr int64_t kBlasMinRows = 16;
// E4M3 bits placed in an F16's sign/exponent/mantissa fields read as the
// value times 2^-8 (exponent bias 15 instead of 7), subnormals included; the
// F16 → F32 conversion then yields normal F32 values (no subnormal stalls).
constexpr float kFp8Rebias = 256.0f;

const float* scale_row(const WeightView& w, int64_t j) {
  return w.scales + (j / w.block_rows) * w.scale_ld;
}

// Scalar fallback: out[r][j] for rows r < n_rows of x and weight rows [j0, j1).
void stream_rows_scalar(const float* x, int64_t x_ld, const WeightView& w, float* out,
                        int64_t out_ld, int64_t n_rows, int64_t j0, int64_t j1, int64_t k) {
  std::vector<float> wr(static_cast<size_t>(k));
  for (int64_t j = j0; j < j1; ++j) {
    decode_row(w, j, k, wr.data());
    for (int64_t r = 0; r < n_rows; ++r) {
      const float* xr = x + r * x_ld;
      float acc = 0.0f;
      for (int64_t i = 0; i < k; ++i) acc += xr[i] * wr[static_cast<size_t>(i)];
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

// Eight weights from element `i` of a row, widened to F32 (FP8 unscaled, times 2^-8).
template <DType kDt>
__attribute__((target("avx2,fma,f16c"))) inline __m256 load8(const void* row, int64_t i) {
  if constexpr (kDt == DType::kBF16) {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else if constexpr (kDt == DType::kF16) {
    return _mm256_cvtph_ps(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + i)));
  } else if constexpr (kDt == DType::kFP8E4M3) {
    const __m128i b = _mm_cvtepu8_epi16(
        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(static_cast<const uint8_t*>(row) + i)));
    const __m128i sign = _mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x80)), 8);
    const __m128i mag = _mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x7F)), 7);
    return _mm256_cvtph_ps(_mm_or_si128(sign, mag));
  } else {
    return _mm256_loadu_ps(static_cast<const float*>(row) + i);
  }
}

// One weight widened to F32, as load8 does (FP8 times 2^-8).
template <DType kDt>
inline float load1(const void* row, int64_t i) {
  if constexpr (kDt == DType::kBF16) return bf16_to_f32(static_cast<const uint16_t*>(row)[i]);
  if constexpr (kDt == DType::kF16) return f16_to_f32(static_cast<const uint16_t*>(row)[i]);
  if constexpr (kDt == DType::kFP8E4M3) {
    return fp8e4m3_to_f32(static_cast<const uint8_t*>(row)[i]) / kFp8Rebias;
  }
  if constexpr (kDt == DType::kF32) return static_cast<const float*>(row)[i];
  return 0.0f;
}

// AVX2: each weight row is read once and dotted with kRows (≤ 8) activation
// rows. The dtype is a template parameter so the inner loop is only loads and
// FMAs: a memory-bound loop with fewer instructions keeps more loads in
// flight. An FP8 row is walked in spans that share one scale, whose partial
// sums are scaled once per span.
template <int kRows, DType kDt>
__attribute__((target("avx2,fma,f16c"))) void stream_rows_avx2(const float* x, int64_t x_ld,
                                                               const WeightView& w, float* out,
                                                               int64_t out_ld, int64_t j0,
                                                               int64_t j1, int64_t k) {
  constexpr bool kFp8 = kDt == DType::kFP8E4M3;
  // kU independent sums per row: one FMA chain (4 cycles a step) would cap a
  // few activation rows at 8 weights per 4 cycles, below memory speed for 1-
  // and 2-byte weights.
  constexpr int kU = kRows == 1 ? 4 : kRows <= 3 ? 2 : 1;
  const int64_t span = kFp8 ? w.block_cols : k;
  constexpr int64_t kElemBytes = kDt == DType::kF32 ? 4 : kFp8 ? 1 : 2;
  for (int64_t j = j0; j < j1; ++j) {
    const void* wrow = static_cast<const char*>(w.data) + j * w.ld * kElemBytes;
    const float* srow = kFp8 ? scale_row(w, j) : nullptr;
    // Every loop over r and u is unrolled (GCC -O2 would keep them, and the
    // sums in `acc` on the stack), so the sums live in registers.
    __m256 acc[kRows][kU];
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 4
      for (int u = 0; u < kU; ++u) acc[r][u] = _mm256_setzero_ps();
    }
    float tail[kRows] = {};
    for (int64_t s0 = 0, block = 0; s0 < k; s0 += span, ++block) {
      const int64_t s1 = std::min(k, s0 + span), s8 = s0 + (s1 - s0) / 8 * 8;
      // FP8: the block's scale goes into the weights (one multiply per 8), so
      // the sums run on across blocks.
      const float scale = kFp8 ? srow[block] * kFp8Rebias : 1.0f;
      const __m256 sv = _mm256_set1_ps(scale);
      int64_t i = s0;
      for (; i + 8 * kU <= s8; i += 8 * kU) {
#pragma GCC unroll 4
        for (int u = 0; u < kU; ++u) {
          __m256 wv = load8<kDt>(wrow, i + 8 * u);
          if constexpr (kFp8) wv = _mm256_mul_ps(wv, sv);
#pragma GCC unroll 8
          for (int r = 0; r < kRows; ++r) {
            acc[r][u] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * x_ld + i + 8 * u), wv, acc[r][u]);
          }
        }
      }
      for (; i < s8; i += 8) {
        __m256 wv = load8<kDt>(wrow, i);
        if constexpr (kFp8) wv = _mm256_mul_ps(wv, sv);
#pragma GCC unroll 8
        for (int r = 0; r < kRows; ++r) {
          acc[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * x_ld + i), wv, acc[r][0]);
        }
      }
      for (int r = 0; r < kRows; ++r) {
        for (int64_t t = s8; t < s1; ++t) tail[r] += x[r * x_ld + t] * load1<kDt>(wrow, t) * scale;
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 4
      for (int u = 1; u < kU; ++u) acc[r][0] = _mm256_add_ps(acc[r][0], acc[r][u]);
      out[r * out_ld + j] = hsum256(acc[r][0]) + tail[r];
    }
  }
}

using StreamFn = void (*)(const float*, int64_t, const WeightView&, float*, int64_t, int64_t,
                          int64_t, int64_t);

template <DType kDt>
StreamFn avx2_kernel_for(int64_t n_rows) {
  switch (n_rows) {
    case 1: return stream_rows_avx2<1, kDt>;
    case 2: return stream_rows_avx2<2, kDt>;
    case 3: return stream_rows_avx2<3, kDt>;
    case 4: return stream_rows_avx2<4, kDt>;
    case 5: return stream_rows_avx2<5, kDt>;
    case 6: return stream_rows_avx2<6, kDt>;
    case 7: return stream_rows_avx2<7, kDt>;
    default: return stream_rows_avx2<8, kDt>;
  }
}

StreamFn avx2_kernel(int64_t n_rows, DType dt) {
  switch (dt) {
    case DType::kBF16: return avx2_kernel_for<DType::kBF16>(n_rows);
    case DType::kF16: return avx2_kernel_for<DType::kF16>(n_rows);
    case DType::kFP8E4M3: return avx2_kernel_for<DType::kFP8E4M3>(n_rows);
    default: return avx2_kernel_for<DType::kF32>(n_rows);
  }
}

bool have_avx2() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                         __builtin_cpu_supports("f16c");
  return ok;
}

}  // namespace

WeightView WeightView::of(const Tensor& w) {
  MS_CHECK(w.ndim() == 2, "weight ", w.describe(), " must be 2-D");
  WeightView v;
  v.data = w.raw();
  v.dtype = w.dtype();
  v.ld = w.stride(0);
  MS_CHECK(v.dtype == DType::kF32 || v.dtype == DType::kBF16 || v.dtype == DType::kF16 ||
               v.dtype == DType::kFP8E4M3 || v.dtype == DType::kI8,
           "weight dtype ", dtype_name(v.dtype), " is not supported by the CPU backend");
  if (v.dtype == DType::kFP8E4M3 || v.dtype == DType::kI8) {
    MS_CHECK(w.block_scales() != nullptr, dtype_name(v.dtype), " weight ", w.describe(),
             " has no block scales");
    const Tensor& s = *w.block_scales();
    MS_CHECK(v.dtype != DType::kI8 || s.dim(1) == 1, "INT8 weight ", w.describe(),
             " needs one scale per row, has scales ", s.describe());
    v.scales = s.data<float>();
    v.scale_ld = s.stride(0);
    v.block_rows = w.block_rows();
    v.block_cols = w.block_cols();
  }
  return v;
}

void decode_row(const WeightView& w, int64_t j, int64_t k, float* out) {
  switch (w.dtype) {
    case DType::kF32: {
      const float* src = static_cast<const float*>(w.data) + j * w.ld;
      std::copy(src, src + k, out);
      return;
    }
    case DType::kBF16: {
      const uint16_t* src = static_cast<const uint16_t*>(w.data) + j * w.ld;
      for (int64_t i = 0; i < k; ++i) out[i] = bf16_to_f32(src[i]);
      return;
    }
    case DType::kF16: {
      const uint16_t* src = static_cast<const uint16_t*>(w.data) + j * w.ld;
      for (int64_t i = 0; i < k; ++i) out[i] = f16_to_f32(src[i]);
      return;
    }
    case DType::kFP8E4M3: {
      static const std::array<float, 256> kValues = [] {
        std::array<float, 256> v{};
        for (int c = 0; c < 256; ++c)
          v[static_cast<size_t>(c)] = fp8e4m3_to_f32(static_cast<uint8_t>(c));
        return v;
      }();
      const uint8_t* src = static_cast<const uint8_t*>(w.data) + j * w.ld;
      const float* srow = scale_row(w, j);
      for (int64_t b0 = 0; b0 < k; b0 += w.block_cols) {
        const float scale = srow[b0 / w.block_cols];
        const int64_t b1 = std::min(k, b0 + w.block_cols);
        for (int64_t i = b0; i < b1; ++i) out[i] = kValues[src[i]] * scale;
      }
      return;
    }
    case DType::kI8: {
      const int8_t* src = static_cast<const int8_t*>(w.data) + j * w.ld;
      const float scale = w.scale(j, 0);
      for (int64_t i = 0; i < k; ++i) out[i] = static_cast<float>(src[i]) * scale;
      return;
    }
    default: MS_CHECK(false, "gemm weight dtype ", dtype_name(w.dtype));
  }
}

void gemm_xwt(const float* x, int64_t x_ld, const WeightView& w, float* out, int64_t out_ld,
              int64_t n, int64_t m, int64_t k, ThreadPool& pool) {
  if (n == 0 || m == 0) return;
  if (w.dtype == DType::kI8) {
    gemm_xwt_int8(x, x_ld, w, out, out_ld, n, m, k, pool, best_int8_kernel());
    return;
  }
  if (n >= kBlasMinRows) {
    // One set of threads: each of ours runs single-threaded SGEMMs over its own
    // share of weight rows, widening narrow weights a panel at a time. (OpenBLAS's
    // own threads, alternating with ours for every panel, left 2 cores at
    // 1-3 GFLOP/s.)
    constexpr int64_t kPanel = 128;
    pool.parallel_for(
        m,
        [&](int64_t j0, int64_t j1) {
          std::vector<float> panel;
          for (int64_t p0 = j0; p0 < j1; p0 += kPanel) {
            const int64_t rows = std::min(kPanel, j1 - p0);
            const float* wp = nullptr;
            int64_t ld = k;
            if (w.dtype == DType::kF32) {
              wp = static_cast<const float*>(w.data) + p0 * w.ld;
              ld = w.ld;
            } else {
              panel.resize(static_cast<size_t>(rows * k));
              for (int64_t j = 0; j < rows; ++j) decode_row(w, p0 + j, k, panel.data() + j * k);
              wp = panel.data();
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n),
                        static_cast<int>(rows), static_cast<int>(k), 1.0f, x,
                        static_cast<int>(x_ld), wp, static_cast<int>(ld), 0.0f, out + p0,
                        static_cast<int>(out_ld));
          }
        },
        /*min_chunk=*/kPanel);
    return;
  }
  // The vector kernel scales FP8 once per block of columns, so a block must
  // hold whole 8-wide loads; other block widths take the scalar path.
  const bool avx2 = have_avx2() && (w.dtype != DType::kFP8E4M3 || w.block_cols % 8 == 0);
  // Weight rows are split across threads; each chunk covers all activation rows.
  pool.parallel_for(
      m,
      [&](int64_t j0, int64_t j1) {
        for (int64_t r0 = 0; r0 < n; r0 += kMaxStreamRows) {
          const int64_t rows = std::min(kMaxStreamRows, n - r0);
          if (avx2) {
            avx2_kernel(rows, w.dtype)(x + r0 * x_ld, x_ld, w, out + r0 * out_ld, out_ld, j0, j1,
                                       k);
          } else {
            stream_rows_scalar(x + r0 * x_ld, x_ld, w, out + r0 * out_ld, out_ld, rows, j0, j1, k);
          }
        }
      },
      /*min_chunk=*/16);
}

}  // namespace moeserve::cpu
