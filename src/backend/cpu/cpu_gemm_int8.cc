#include "backend/cpu/cpu_gemm_int8.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/status.h"

namespace moeserve::cpu {
namespace {

// Bytes of weight rows one thread keeps in L2 while every tile of activation
// rows passes over them (a quarter of a 1 MiB L2).
constexpr int64_t kPanelBytes = int64_t{256} << 10;
// From this many activation rows on, they are quantized across the pool.
constexpr int64_t kParallelQuantizeRows = 16;
// Adding then subtracting 1.5 · 2^23 rounds an F32 of magnitude < 2^22 to the
// nearest integer, ties to even (the default rounding mode), as vcvtps2dq does.
constexpr float kRoundMagic = 12582912.0f;
// Rows whose largest magnitude is below this quantize to zero (127 / max|x|
// would overflow F32 near its smallest normals).
constexpr float kMinAbsMax = 1e-30f;

float finish(int32_t acc, float x_scale, float w_scale) {
  return static_cast<float>(acc) * (x_scale * w_scale);
}

float quantize_row_scalar(const float* x, int64_t k, int8_t* q) {
  float amax = 0.0f;
  for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(x[i]));
  if (!(amax >= kMinAbsMax)) {
    std::fill(q, q + k, int8_t{0});
    return 0.0f;
  }
  const float inv = 127.0f / amax;
  for (int64_t i = 0; i < k; ++i) {
    const float r = (x[i] * inv + kRoundMagic) - kRoundMagic;
    q[i] = static_cast<int8_t>(std::clamp(r, -127.0f, 127.0f));
  }
  return amax / 127.0f;
}

__attribute__((target("avx2"))) float quantize_row_avx2(const float* x, int64_t k, int8_t* q) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 vmax = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= k; i += 8)
    vmax = _mm256_max_ps(vmax, _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  float amax = _mm_cvtss_f32(m4);
  for (; i < k; ++i) amax = std::max(amax, std::fabs(x[i]));
  if (!(amax >= kMinAbsMax)) {
    std::fill(q, q + k, int8_t{0});
    return 0.0f;
  }
  const float inv = 127.0f / amax;
  const __m256 vinv = _mm256_set1_ps(inv);
  const __m128i lo = _mm_set1_epi8(-127), hi = _mm_set1_epi8(127);
  i = 0;
  for (; i + 16 <= k; i += 16) {
    // vcvtps2dq rounds to nearest even; the packs saturate, the min/max clamp to ±127.
    const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
    const __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), vinv));
    const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8);
    __m128i b8 = _mm_packs_epi16(_mm256_castsi256_si128(w16), _mm256_extracti128_si256(w16, 1));
    b8 = _mm_min_epi8(_mm_max_epi8(b8, lo), hi);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), b8);
  }
  for (; i < k; ++i) {
    const float r = (x[i] * inv + kRoundMagic) - kRoundMagic;
    q[i] = static_cast<int8_t>(std::clamp(r, -127.0f, 127.0f));
  }
  return amax / 127.0f;
}

// Activations quantized for one product: row r at q + r * k, scale s[r].
struct QuantizedRows {
  const int8_t* q;
  const float* s;
  int64_t k;
};

// A tile: kW weight rows from j0 against kX activation rows from r0.
using TileFn = void (*)(const QuantizedRows& x, int64_t r0, const WeightView& w, int64_t j0,
                        float* out, int64_t out_ld);

const int8_t* weight_row(const WeightView& w, int64_t j) {
  return static_cast<const int8_t*>(w.data) + j * w.ld;
}

__attribute__((target("avx2"))) inline int32_t hsum256_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// Through memory: GCC 12's 512-to-256-bit extracts (and _mm512_reduce_add_epi32
// built on them) trip -Wuninitialized. Once per output, so the cost is nil.
__attribute__((target("avx512f"))) inline int32_t hsum512_epi32(__m512i v) {
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, v);
  int32_t total = 0;
  for (int32_t lane : lanes) total += lane;
  return total;
}

struct ScalarTiles {
  static constexpr int kW = 4, kX = 4;
  template <int kWr, int kXr>
  static void run(const QuantizedRows& x, int64_t r0, const WeightView& w, int64_t j0, float* out,
                  int64_t out_ld) {
    for (int a = 0; a < kWr; ++a) {
      const int8_t* wr = weight_row(w, j0 + a);
      for (int r = 0; r < kXr; ++r) {
        const int8_t* xr = x.q + (r0 + r) * x.k;
        int32_t acc = 0;
        for (int64_t i = 0; i < x.k; ++i) acc += int32_t{xr[i]} * int32_t{wr[i]};
        out[(r0 + r) * out_ld + j0 + a] = finish(acc, x.s[r0 + r], w.scale(j0 + a, 0));
      }
    }
  }
};

// The tiles' loops over weight and activation rows have constant trip counts;
// they are unrolled by hand-placed pragmas (GCC at -O2 would keep them as
// loops, with the sums in memory instead of registers).
struct Avx2Tiles {
  // 16 ymm registers: kW · kX sums, kX activations, the weights, |w|, ones.
  static constexpr int kW = 4, kX = 2;
  template <int kWr, int kXr>
  __attribute__((target("avx2"))) static void run(const QuantizedRows& x, int64_t r0,
                                                  const WeightView& w, int64_t j0, float* out,
                                                  int64_t out_ld) {
    const int64_t k = x.k, k32 = k / 32 * 32;
    const int8_t* wr[kWr];
    const int8_t* xr[kXr];
    __m256i acc[kWr][kXr];
#pragma GCC unroll 4
    for (int a = 0; a < kWr; ++a) {
      wr[a] = weight_row(w, j0 + a);
#pragma GCC unroll 4
      for (int r = 0; r < kXr; ++r) acc[a][r] = _mm256_setzero_si256();
    }
#pragma GCC unroll 4
    for (int r = 0; r < kXr; ++r) xr[r] = x.q + (r0 + r) * k;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t i = 0; i < k32; i += 32) {
      __m256i xv[kXr];
#pragma GCC unroll 4
      for (int r = 0; r < kXr; ++r) {
        xv[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xr[r] + i));
      }
#pragma GCC unroll 4
      for (int a = 0; a < kWr; ++a) {
        const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr[a] + i));
        const __m256i wabs = _mm256_sign_epi8(wv, wv);
#pragma GCC unroll 4
        for (int r = 0; r < kXr; ++r) {
          // |w| · sign(x, w) = w · x; a pair of products is at most 2 · 127 · 127,
          // so the 16-bit sums never saturate.
          const __m256i p = _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(xv[r], wv));
          acc[a][r] = _mm256_add_epi32(acc[a][r], _mm256_madd_epi16(p, ones));
        }
      }
    }
#pragma GCC unroll 4
    for (int a = 0; a < kWr; ++a) {
#pragma GCC unroll 4
      for (int r = 0; r < kXr; ++r) {
        int32_t total = hsum256_epi32(acc[a][r]);
        for (int64_t i = k32; i < k; ++i) total += int32_t{xr[r][i]} * int32_t{wr[a][i]};
        out[(r0 + r) * out_ld + j0 + a] = finish(total, x.s[r0 + r], w.scale(j0 + a, 0));
      }
    }
  }
};

struct Avx512VnniTiles {
  // 32 zmm registers: 16 sums, 4 weight sums, 4 activations, the weights, constants.
  static constexpr int kW = 4, kX = 4;

  // One 64-byte step at column i; `mask` selects the bytes below k. Masked-off
  // weights are zero, so whatever the activation bytes there hold does not count.
  template <int kWr, int kXr>
  __attribute__((target("avx2,avx512f,avx512bw,avx512vnni"), always_inline)) static inline void
  step(const int8_t* const (&xr)[kXr], const int8_t* const (&wr)[kWr], int64_t i, __mmask64 mask,
       __m512i (&acc)[kWr][kXr], __m512i (&wsum)[kWr]) {
    // vpdpbusd multiplies unsigned by signed bytes: x + 128 is unsigned, and
    // Σ (x + 128) · w = Σ x · w + 128 · Σ w, with Σ w from a second vpdpbusd.
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i xv[kXr];
#pragma GCC unroll 4
    for (int r = 0; r < kXr; ++r) {
      xv[r] = _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, xr[r] + i), flip);
    }
#pragma GCC unroll 4
    for (int a = 0; a < kWr; ++a) {
      const __m512i wv = _mm512_maskz_loadu_epi8(mask, wr[a] + i);
      wsum[a] = _mm512_dpbusd_epi32(wsum[a], ones, wv);
#pragma GCC unroll 4
      for (int r = 0; r < kXr; ++r) acc[a][r] = _mm512_dpbusd_epi32(acc[a][r], xv[r], wv);
    }
  }

  template <int kWr, int kXr>
  __attribute__((target("avx2,avx512f,avx512bw,avx512vnni"))) static void run(
      const QuantizedRows& x, int64_t r0, const WeightView& w, int64_t j0, float* out,
      int64_t out_ld) {
    const int64_t k = x.k;
    const int8_t* wr[kWr];
    const int8_t* xr[kXr];
    __m512i acc[kWr][kXr], wsum[kWr];
#pragma GCC unroll 4
    for (int a = 0; a < kWr; ++a) {
      wr[a] = weight_row(w, j0 + a);
      wsum[a] = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int r = 0; r < kXr; ++r) acc[a][r] = _mm512_setzero_si512();
    }
#pragma GCC unroll 4
    for (int r = 0; r < kXr; ++r) xr[r] = x.q + (r0 + r) * k;
    int64_t i = 0;
    for (; i + 64 <= k; i += 64) step<kWr, kXr>(xr, wr, i, ~__mmask64{0}, acc, wsum);
    if (i < k) step<kWr, kXr>(xr, wr, i, (__mmask64{1} << (k - i)) - 1, acc, wsum);
#pragma GCC unroll 4
    for (int a = 0; a < kWr; ++a) {
      const int32_t correction = 128 * hsum512_epi32(wsum[a]);
#pragma GCC unroll 4
      for (int r = 0; r < kXr; ++r) {
        const int32_t total = hsum512_epi32(acc[a][r]) - correction;
        out[(r0 + r) * out_ld + j0 + a] = finish(total, x.s[r0 + r], w.scale(j0 + a, 0));
      }
    }
  }
};

template <class Tiles, int kWr>
TileFn tile_for(int64_t rows) {
  static_assert(Tiles::kX == 2 || Tiles::kX == 4);
  switch (rows) {
    case 1: return &Tiles::template run<kWr, 1>;
    case 2: return &Tiles::template run<kWr, 2>;
    case 3:
      if constexpr (Tiles::kX == 4) return &Tiles::template run<kWr, 3>;
      break;
    default:
      if constexpr (Tiles::kX == 4) return &Tiles::template run<kWr, 4>;
      break;
  }
  MS_CHECK(false, "no INT8 tile for ", rows, " rows");
  return nullptr;
}

// Weight rows [j0, j1) against every activation row.
template <class Tiles>
void run_rows(const QuantizedRows& x, int64_t n, const WeightView& w, int64_t j0, int64_t j1,
              float* out, int64_t out_ld) {
  constexpr int kW = Tiles::kW;
  const int64_t panel = std::max<int64_t>(kW, kPanelBytes / std::max<int64_t>(x.k, 1) / kW * kW);
  for (int64_t p0 = j0; p0 < j1; p0 += panel) {
    const int64_t p1 = std::min(j1, p0 + panel);
    for (int64_t r0 = 0; r0 < n; r0 += Tiles::kX) {
      const int64_t rows = std::min<int64_t>(Tiles::kX, n - r0);
      const TileFn wide = tile_for<Tiles, kW>(rows), narrow = tile_for<Tiles, 1>(rows);
      int64_t j = p0;
      for (; j + kW <= p1; j += kW) wide(x, r0, w, j, out, out_ld);
      for (; j < p1; ++j) narrow(x, r0, w, j, out, out_ld);
    }
  }
}

bool cpu_has_avx2() {
  static const bool ok = __builtin_cpu_supports("avx2");
  return ok;
}

bool cpu_has_avx512_vnni() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vnni");
  return ok;
}

}  // namespace

const char* int8_kernel_name(Int8Kernel kernel) {
  switch (kernel) {
    case Int8Kernel::kScalar: return "scalar";
    case Int8Kernel::kAvx2: return "avx2";
    case Int8Kernel::kAvx512Vnni: return "avx512-vnni";
  }
  return "?";
}

bool int8_kernel_supported(Int8Kernel kernel) {
  switch (kernel) {
    case Int8Kernel::kScalar: return true;
    case Int8Kernel::kAvx2: return cpu_has_avx2();
    case Int8Kernel::kAvx512Vnni: return cpu_has_avx2() && cpu_has_avx512_vnni();
  }
  return false;
}

Int8Kernel best_int8_kernel() {
  if (int8_kernel_supported(Int8Kernel::kAvx512Vnni)) return Int8Kernel::kAvx512Vnni;
  if (int8_kernel_supported(Int8Kernel::kAvx2)) return Int8Kernel::kAvx2;
  return Int8Kernel::kScalar;
}

float quantize_activation_row(const float* x, int64_t k, int8_t* q, Int8Kernel kernel) {
  MS_CHECK(int8_kernel_supported(kernel), "INT8 kernel ", int8_kernel_name(kernel),
           " does not run on this CPU");
  return kernel == Int8Kernel::kScalar ? quantize_row_scalar(x, k, q) : quantize_row_avx2(x, k, q);
}

void gemm_xwt_int8(const float* x, int64_t x_ld, const WeightView& w, float* out, int64_t out_ld,
                   int64_t n, int64_t m, int64_t k, ThreadPool& pool, Int8Kernel kernel) {
  MS_CHECK(w.dtype == DType::kI8 && w.scales != nullptr, "INT8 product needs an I8 weight");
  MS_CHECK(int8_kernel_supported(kernel), "INT8 kernel ", int8_kernel_name(kernel),
           " does not run on this CPU");
  if (n == 0 || m == 0) return;
  std::vector<int8_t> q(static_cast<size_t>(n * k));
  std::vector<float> s(static_cast<size_t>(n));
  auto quantize = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      s[static_cast<size_t>(r)] =
          quantize_activation_row(x + r * x_ld, k, q.data() + r * k, kernel);
    }
  };
  if (n >= kParallelQuantizeRows) {
    pool.parallel_for(n, quantize);
  } else {
    quantize(0, n);
  }
  const QuantizedRows xq{q.data(), s.data(), k};
  pool.parallel_for(
      m,
      [&](int64_t j0, int64_t j1) {
        switch (kernel) {
          case Int8Kernel::kScalar: run_rows<ScalarTiles>(xq, n, w, j0, j1, out, out_ld); break;
          case Int8Kernel::kAvx2: run_rows<Avx2Tiles>(xq, n, w, j0, j1, out, out_ld); break;
          case Int8Kernel::kAvx512Vnni:
            run_rows<Avx512VnniTiles>(xq, n, w, j0, j1, out, out_ld);
            break;
        }
      },
      /*min_chunk=*/16);
}

}  // namespace moeserve::cpu
