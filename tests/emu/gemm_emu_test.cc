// kernels/gemm_bf16.cu and kernels/moe_ffn.cu under the emulator, through their launch
// functions, against plain double-precision loops written here. The references round x (and
// the MoE's intermediate activation) to the 16-bit type the tensor cores read, so what is
// left is F32 summation error: tolerances are 2e-5 of Σ|x·w| per element (plus BF16 output
// rounding). Random data, padded strides, outputs poisoned with NaN first (padding must stay
// NaN), deterministic and random schedules with racecheck on. FP8 weights: the references use
// bf16(fp8 · block scale), computed here with the toolkit's host conversions, and the kernels
// must also match the BF16 kernel on those dequantized weights bit for bit.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "kernels/gemm_bf16.cuh"
#include "kernels/moe_ffn.cuh"
#include "kernels/simt/emu/grid.h"
#include "tests/emu/emu_schedule.h"
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <gtest/gtest.h>

namespace moeserve::kernels {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr uint16_t kNaN16 = 0x7fff;  // a NaN in both BF16 and F16

uint16_t to_bf16(float v) { return std::bit_cast<uint16_t>(__float2bfloat16(v)); }
uint16_t to_f16(float v) { return std::bit_cast<uint16_t>(__float2half(v)); }
float from_bf16(uint16_t b) { return __bfloat162float(std::bit_cast<__nv_bfloat16>(b)); }
float from_f16(uint16_t b) { return __half2float(std::bit_cast<__half>(b)); }
float from_fp8(uint8_t b) {
  __nv_fp8_e4m3 f;
  f.__x = b;
  return static_cast<float>(f);
}
// What x becomes for the tensor cores of a product with weights of type t (FP8 runs as BF16).
float round_to(ElemType t, float v) {
  return t == ElemType::kF16                               ? from_f16(to_f16(v))
         : t == ElemType::kBF16 || t == ElemType::kFP8E4M3 ? from_bf16(to_bf16(v))
                                                           : v;
}
double silu(double v) { return v / (1.0 + std::exp(-v)); }

// A host matrix of `type` (F32, or 16-bit bits) with rows `stride` elements apart; the
// values, as the kernel reads them, kept in F32 for the reference.
struct Matrix {
  ElemType type = ElemType::kF32;
  int64_t rows = 0, cols = 0, stride = 0;
  std::vector<float> f32;     // F32 storage, or
  std::vector<uint16_t> b16;  // 16-bit storage, or
  std::vector<uint8_t> b8;    // FP8 storage, with
  std::vector<float> scales;  // [n_mats][ceil(rows / n_mats / block_rows)][scale_ld]
  int block_rows = 0, block_cols = 0;
  int64_t scale_ld = 0, scale_mat_stride = 0;
  std::vector<float> value;  // [rows, cols] values as stored (FP8: bf16(fp8 · scale))

  const void* data() const {
    return type == ElemType::kF32       ? static_cast<const void*>(f32.data())
           : type == ElemType::kFP8E4M3 ? static_cast<const void*>(b8.data())
                                        : b16.data();
  }
  void* data() { return const_cast<void*>(std::as_const(*this).data()); }
  // Element (r, c) of the storage read back as F32 (NaN stays NaN).
  float at(int64_t r, int64_t c) const {
    const int64_t i = r * stride + c;
    if (type == ElemType::kF32) return f32[i];
    return type == ElemType::kBF16 ? from_bf16(b16[i]) : from_f16(b16[i]);
  }
};

Matrix random_matrix(ElemType type, int64_t rows, int64_t cols, int64_t stride, std::mt19937& rng,
                     float scale = 1.0f) {
  Matrix m;
  m.type = type, m.rows = rows, m.cols = cols, m.stride = stride;
  std::uniform_real_distribution<float> dist(-scale, scale);
  if (type == ElemType::kF32) {
    m.f32.assign(rows * stride, kNaN);
  } else {
    m.b16.assign(rows * stride, kNaN16);
  }
  m.value.resize(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const float v = dist(rng);
      if (type == ElemType::kF32) {
        m.f32[r * stride + c] = v;
      } else {
        m.b16[r * stride + c] = type == ElemType::kBF16 ? to_bf16(v) : to_f16(v);
      }
      m.value[r * cols + c] = m.at(r, c);
    }
  }
  return m;
}

// n_mats stacked FP8 matrices of rows / n_mats rows each, any finite code, with F32 scales per
// block_rows × block_cols block of each matrix (2^-10 to 2^-4, so a wrong block is far off) in
// rows one float longer than needed.
Matrix random_fp8(int64_t rows, int64_t cols, int64_t stride, int n_mats, int block_rows,
                  int block_cols, std::mt19937& rng) {
  Matrix m;
  m.type = ElemType::kFP8E4M3, m.rows = rows, m.cols = cols, m.stride = stride;
  m.block_rows = block_rows, m.block_cols = block_cols;
  const int64_t mat_rows = rows / n_mats;
  const int64_t scale_rows = (mat_rows + block_rows - 1) / block_rows;
  m.scale_ld = (cols + block_cols - 1) / block_cols + 1;
  m.scale_mat_stride = scale_rows * m.scale_ld;
  std::uniform_real_distribution<float> exp2(-10.0f, -4.0f);
  m.scales.resize(n_mats * m.scale_mat_stride);
  for (float& v : m.scales) v = std::exp2(exp2(rng));
  m.b8.assign(rows * stride, 0x7f);  // NaN past the widths
  m.value.resize(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    const float* srow = m.scales.data() + (r / mat_rows) * m.scale_mat_stride +
                        (r % mat_rows) / block_rows * m.scale_ld;
    for (int64_t c = 0; c < cols; ++c) {
      uint8_t code = static_cast<uint8_t>(rng());
      if ((code & 0x7f) == 0x7f) code ^= 1;  // not NaN
      m.b8[r * stride + c] = code;
      m.value[r * cols + c] = from_bf16(to_bf16(from_fp8(code) * srow[c / block_cols]));
    }
  }
  return m;
}

// The BF16 matrix of m's values (the dequantized twin of an FP8 matrix), same strides.
Matrix bf16_of(const Matrix& m) {
  Matrix b;
  b.type = ElemType::kBF16, b.rows = m.rows, b.cols = m.cols, b.stride = m.stride;
  b.b16.assign(m.rows * m.stride, kNaN16);
  for (int64_t r = 0; r < m.rows; ++r) {
    for (int64_t c = 0; c < m.cols; ++c) b.b16[r * m.stride + c] = to_bf16(m.value[r * m.cols + c]);
  }
  b.value = m.value;
  return b;
}

void set_fp8_scales(GemmParams& p, const Matrix& w) {
  p.w_scales = w.scales.data();
  p.w_scale_row_stride = w.scale_ld;
  p.w_block_rows = w.block_rows;
  p.w_block_cols = w.block_cols;
}

Matrix poisoned(ElemType type, int64_t rows, int64_t cols, int64_t stride) {
  Matrix m;
  m.type = type, m.rows = rows, m.cols = cols, m.stride = stride;
  if (type == ElemType::kF32) {
    m.f32.assign(rows * stride, kNaN);
  } else {
    m.b16.assign(rows * stride, kNaN16);
  }
  return m;
}

class GemmEmu : public ScheduledEmuTest {
 protected:
  std::mt19937 rng_{static_cast<uint32_t>(GetParam() + 7)};
};

struct GemmCase {
  int n, m, k;  // m: weight rows (2f when gated)
  ElemType x_type, w_type, out_type;
  bool gated;
  int batch;
  GemmPlan plan;
  // Row strides are k + x_pad and k + w_pad: multiples of 8 keep rows 16-byte aligned, others
  // (with odd k) take the predicated path.
  int x_pad = 8, w_pad = 16;
  int block_rows = 128, block_cols = 128;  // FP8 weights' scale blocks
};

// Runs one product (batch matrices) and checks every output element and the padding.
void run_case(const GemmCase& c, std::mt19937& rng) {
  SCOPED_TRACE(::testing::Message()
               << "n " << c.n << " m " << c.m << " k " << c.k << " x " << int(c.x_type) << " w "
               << int(c.w_type) << " out " << int(c.out_type) << " gated " << c.gated << " batch "
               << c.batch << " tile " << int(c.plan.tile) << " splits " << c.plan.k_splits
               << " pads " << c.x_pad << " " << c.w_pad);
  const int n_cols = c.gated ? c.m / 2 : c.m;
  // Batches stacked as extra rows; strides padded past the widths.
  const int64_t xs = c.k + c.x_pad, ws = c.k + c.w_pad, os = n_cols + 3;
  Matrix x = random_matrix(c.x_type, int64_t{c.batch} * c.n, c.k, xs, rng);
  const bool fp8 = c.w_type == ElemType::kFP8E4M3;
  Matrix w =
      fp8 ? random_fp8(int64_t{c.batch} * c.m, c.k, ws, c.batch, c.block_rows, c.block_cols, rng)
          : random_matrix(c.w_type, int64_t{c.batch} * c.m, c.k, ws, rng);
  Matrix out = poisoned(c.out_type, int64_t{c.batch} * c.n, n_cols, os);
  GemmParams p{};
  p.x = x.data(), p.x_type = c.x_type, p.x_row_stride = xs;
  p.w = w.data(), p.w_type = c.w_type, p.w_row_stride = ws;
  if (fp8) {
    set_fp8_scales(p, w);
    p.w_scale_batch_stride = w.scale_mat_stride;
  }
  p.out = out.data(), p.out_type = c.out_type, p.out_row_stride = os;
  p.n = c.n, p.m = c.m, p.k = c.k, p.gated = c.gated;
  p.batch = c.batch;
  p.x_batch_stride = int64_t{c.n} * xs;
  p.w_batch_stride = int64_t{c.m} * ws;
  p.out_batch_stride = int64_t{c.n} * os;
  std::vector<float> partials(gemm_workspace_bytes(p, c.plan) / sizeof(float), kNaN);
  p.partials = partials.empty() ? nullptr : partials.data();
  ASSERT_EQ(launch_gemm(p, c.plan, nullptr), cudaSuccess) << simt::emu::peek_last_error().message;

  int n_bad = 0;
  for (int b = 0; b < c.batch; ++b) {
    for (int r = 0; r < c.n; ++r) {
      const int64_t xr = int64_t{b} * c.n + r;
      // Sums for weight row j, and Σ|x·w| (the scale of the F32 summation error).
      auto dot = [&](int j, double& mag) {
        const int64_t wr = int64_t{b} * c.m + j;
        double s = 0;
        mag = 0;
        for (int i = 0; i < c.k; ++i) {
          const double a =
              round_to(c.w_type, x.value[xr * c.k + i]) * double{w.value[wr * c.k + i]};
          s += a;
          mag += std::fabs(a);
        }
        return s;
      };
      for (int j = 0; j < n_cols; ++j) {
        double want, tol;
        if (c.gated) {
          double mg, mu;
          const double g = dot(j, mg), u = dot(n_cols + j, mu);
          want = silu(g) * u;
          tol = 2e-5 * (mg * (std::fabs(u) + 1) + mu * (std::fabs(g) + 1)) + 1e-6;
        } else {
          double mag;
          want = dot(j, mag);
          tol = 2e-5 * mag + 1e-6;
        }
        if (c.out_type == ElemType::kBF16) tol += std::fabs(want) / 256;
        const float got = out.at(xr, j);
        if (!(std::fabs(got - want) <= tol) && n_bad++ < 5) {
          ADD_FAILURE() << "batch " << b << " row " << r << " col " << j << ": got " << got
                        << ", want " << want << " ± " << tol;
        }
      }
      for (int64_t j = n_cols; j < os; ++j) {
        if (!std::isnan(out.at(xr, j)) && n_bad++ < 5) {
          ADD_FAILURE() << "padding written at row " << xr << " col " << j;
        }
      }
    }
  }
  EXPECT_EQ(n_bad, 0);
  if (!fp8) return;
  // The BF16 kernel on the dequantized weights feeds the tensor cores the same values: the
  // same outputs bit for bit (the emulator's mma sums exactly; a GPU's order may differ).
  Matrix wb = bf16_of(w);
  Matrix out_b = poisoned(c.out_type, int64_t{c.batch} * c.n, n_cols, os);
  GemmParams q = p;
  q.w = wb.data(), q.w_type = ElemType::kBF16, q.w_scales = nullptr;
  q.out = out_b.data();
  ASSERT_EQ(launch_gemm(q, c.plan, nullptr), cudaSuccess) << simt::emu::peek_last_error().message;
  for (int64_t r = 0; r < out.rows && n_bad < 5; ++r) {
    for (int64_t j = 0; j < n_cols; ++j) {
      if (std::bit_cast<uint32_t>(out.at(r, j)) != std::bit_cast<uint32_t>(out_b.at(r, j)) &&
          n_bad++ < 5) {
        ADD_FAILURE() << "row " << r << " col " << j << ": FP8 " << out.at(r, j)
                      << ", BF16 of its values " << out_b.at(r, j);
      }
    }
  }
}

GemmPlan forced(GemmTile tile, int k, int k_splits) {
  const int k_tiles = (k + gemm_tile_shape(tile).block_k - 1) / gemm_tile_shape(tile).block_k;
  GemmPlan plan{.tile = tile, .k_splits = 1, .k_tiles_per_split = k_tiles};
  plan.k_tiles_per_split = (k_tiles + k_splits - 1) / k_splits;
  plan.k_splits = (k_tiles + plan.k_tiles_per_split - 1) / plan.k_tiles_per_split;
  return plan;
}

TEST_P(GemmEmu, SkinnyTilesEveryDtypeAndEdge) {
  using E = ElemType;
  constexpr GemmTile kS = GemmTile::kSkinny;
  // Token tails (1, 5, 17 = two 16-row tiles), weight-row tails (136, 261), k tails (72,
  // 200: not multiples of the 64-wide k tile), split-K with a short last split.
  run_case({1, 136, 200, E::kF32, E::kBF16, E::kF32, false, 1, forced(kS, 200, 1)}, rng_);
  run_case({5, 261, 72, E::kBF16, E::kBF16, E::kBF16, false, 1, forced(kS, 72, 1)}, rng_);
  run_case({17, 136, 264, E::kF32, E::kF16, E::kF32, false, 1, forced(kS, 264, 3)}, rng_);
  run_case({3, 128, 520, E::kBF16, E::kF16, E::kF32, false, 2, forced(kS, 520, 4)}, rng_);
  // Gated: f = 100 is not a multiple of the 64 f-columns a block covers; split-K gated.
  run_case({2, 200, 136, E::kF32, E::kBF16, E::kBF16, true, 1, forced(kS, 136, 1)}, rng_);
  run_case({4, 272, 264, E::kBF16, E::kBF16, E::kF32, true, 1, forced(kS, 264, 2)}, rng_);
}

TEST_P(GemmEmu, LargeTilesEveryDtypeAndEdge) {
  using E = ElemType;
  constexpr GemmTile kL = GemmTile::kLarge;
  run_case({130, 136, 72, E::kF32, E::kBF16, E::kF32, false, 1, forced(kL, 72, 1)}, rng_);
  run_case({40, 261, 104, E::kBF16, E::kBF16, E::kBF16, false, 1, forced(kL, 104, 2)}, rng_);
  run_case({33, 128, 40, E::kF32, E::kF16, E::kF32, false, 2, forced(kL, 40, 1)}, rng_);
  run_case({65, 200, 136, E::kBF16, E::kF16, E::kF32, true, 1, forced(kL, 136, 1)}, rng_);
  run_case({50, 136, 264, E::kF32, E::kBF16, E::kBF16, true, 1, forced(kL, 264, 3)}, rng_);
}

// The V3 decode shape q_a_proj (7168 → 1536) as plan_gemm runs it on 132 SMs: split-K.
TEST_P(GemmEmu, RealWidthDecodeAsPlanned) {
  const GemmPlan plan = plan_gemm(1, 1536, 7168, 1, 132);
  EXPECT_GT(plan.k_splits, 1);
  run_case({1, 1536, 7168, ElemType::kBF16, ElemType::kBF16, ElemType::kF32, false, 1, plan}, rng_);
}

// FP8 e4m3 weights with 128×128 block scales (W8A16): both tiles, BF16 and F32 x, token,
// row and k tails (m = 136, 261 and k = 200, 72: partial scale blocks in both directions),
// split-K, batched (one scale table per matrix), gated with f = 100 (the up rows straddle a
// 128-row block) and with block rows of 8 (stacked gate/up of f = 136: gcd(128, 136)), block
// columns of 64 and 256, and the predicated path (k = 136 and 72 are not multiples of 16,
// odd strides, v3_fp8_tiny's moe_intermediate 136 as k).
TEST_P(GemmEmu, Fp8WeightsWithBlockScales) {
  using E = ElemType;
  constexpr GemmTile kS = GemmTile::kSkinny, kL = GemmTile::kLarge;
  constexpr E kF8 = E::kFP8E4M3;
  run_case({1, 136, 200, E::kBF16, kF8, E::kF32, false, 1, forced(kS, 200, 1)}, rng_);
  run_case({5, 261, 512, E::kF32, kF8, E::kBF16, false, 1, forced(kS, 512, 3)}, rng_);
  run_case({3, 130, 384, E::kBF16, kF8, E::kF32, false, 2, forced(kS, 384, 2)}, rng_);
  run_case({2, 200, 192, E::kBF16, kF8, E::kBF16, true, 1, forced(kS, 192, 1)}, rng_);
  GemmCase stacked{4, 272, 192, E::kF32, kF8, E::kF32, true, 1, forced(kS, 192, 1)};
  stacked.block_rows = 8;
  run_case(stacked, rng_);
  run_case({40, 261, 160, E::kBF16, kF8, E::kBF16, false, 1, forced(kL, 160, 2)}, rng_);
  run_case({65, 200, 192, E::kBF16, kF8, E::kF32, true, 1, forced(kL, 192, 1)}, rng_);
  run_case({33, 136, 256, E::kF32, kF8, E::kF32, false, 2, forced(kL, 256, 1)}, rng_);
  GemmCase narrow{3, 64, 320, E::kBF16, kF8, E::kF32, false, 1, forced(kS, 320, 1)};
  narrow.block_cols = 64;
  run_case(narrow, rng_);
  GemmCase wide{50, 136, 600, E::kBF16, kF8, E::kF32, false, 1, forced(kL, 600, 1)};
  wide.block_cols = 256, wide.block_rows = 64;
  run_case(wide, rng_);
  // Predicated: k = 136 (8 past a 16-byte chunk), odd strides.
  run_case({3, 192, 136, E::kBF16, kF8, E::kF32, false, 1, forced(kS, 136, 1), 8, 8}, rng_);
  run_case({2, 40, 72, E::kF32, kF8, E::kBF16, true, 1, forced(kS, 72, 1), 1, 3}, rng_);
  run_case({70, 192, 136, E::kBF16, kF8, E::kF32, false, 1, forced(kL, 136, 1), 0, 5}, rng_);
}

TEST(GemmPlan, ChoosesTilesAndSplits) {
  for (int n_sms : {1, 132}) {
    for (int64_t n : {1, 16, 32, 33, 64, 4096}) {
      for (int64_t m : {576, 1536, 21888}) {
        for (int64_t k : {8, 512, 7168}) {
          const GemmPlan p = plan_gemm(n, m, k, 1, n_sms);
          const GemmTileShape s = gemm_tile_shape(p.tile);
          EXPECT_EQ(p.tile, n <= 32 ? GemmTile::kSkinny : GemmTile::kLarge);
          const int64_t k_tiles = std::max<int64_t>(1, (k + s.block_k - 1) / s.block_k);
          // Every split is non-empty and together they cover k.
          EXPECT_GE(int64_t{p.k_splits} * p.k_tiles_per_split, k_tiles);
          EXPECT_LT(int64_t{p.k_splits - 1} * p.k_tiles_per_split, k_tiles);
          if (p.k_splits > 1) {
            EXPECT_GE(p.k_tiles_per_split, 4) << n << " " << m << " " << k;
          }
          const int64_t blocks =
              (n + s.block_m - 1) / s.block_m * ((m + s.block_n - 1) / s.block_n);
          if (blocks >= 2 * n_sms) {
            EXPECT_EQ(p.k_splits, 1);
          }
        }
      }
    }
  }
  // Decode on an H100/H200: a grid of 12 blocks is split until it fills the SMs.
  const GemmPlan d = plan_gemm(1, 1536, 7168, 1, 132);
  EXPECT_EQ(d.tile, GemmTile::kSkinny);
  EXPECT_GE(d.k_splits * ((1536 + 127) / 128), 132);
  // Prefill with a full grid is not split.
  EXPECT_EQ(plan_gemm(4096, 4096, 7168, 1, 132).k_splits, 1);
  EXPECT_EQ(plan_gemm(1, 3072, 2048, 16, 132).k_splits, 1);
}

// Shapes whose rows are not all 16-byte aligned, or whose k is not a multiple of 8, take the
// predicated instance: the tiny test models' widths (v2_tiny's o_proj k = 3 × 20 = 60 with
// 120-byte BF16 weight rows; q_b k = 24; the shared experts' f = 2 × 20), odd k and strides
// (batch strides odd too, so whole matrices start unaligned), split-K, gated, both tiles.
TEST_P(GemmEmu, UnalignedShapesTakeThePredicatedPath) {
  using E = ElemType;
  constexpr GemmTile kS = GemmTile::kSkinny, kL = GemmTile::kLarge;
  run_case({1, 64, 60, E::kF32, E::kBF16, E::kF32, false, 1, forced(kS, 60, 1), 0, 0}, rng_);
  run_case({5, 64, 60, E::kBF16, E::kBF16, E::kBF16, false, 1, forced(kS, 60, 1), 0, 0}, rng_);
  run_case({3, 130, 333, E::kBF16, E::kF16, E::kF32, false, 2, forced(kS, 333, 3), 1, 3}, rng_);
  run_case({2, 40, 61, E::kF32, E::kBF16, E::kBF16, true, 1, forced(kS, 61, 1), 1, 1}, rng_);
  run_case({70, 64, 60, E::kF32, E::kBF16, E::kF32, false, 1, forced(kL, 60, 1), 0, 0}, rng_);
  run_case({65, 272, 99, E::kBF16, E::kBF16, E::kF32, true, 1, forced(kL, 99, 2), 1, 5}, rng_);
  run_case({33, 20, 44, E::kF32, E::kF16, E::kBF16, false, 3, forced(kL, 44, 1), 2, 4}, rng_);
  // F32 x rows 16-byte aligned at a stride of 4 mod 8: the aligned path.
  run_case({3, 64, 64, E::kF32, E::kBF16, E::kF32, false, 2, forced(kS, 64, 1), 4, 8}, rng_);
}

TEST(GemmLaunch, ChoosesTheCopyPathAndRejectsBadTypes) {
  GemmParams p{};
  alignas(16) static uint16_t buf[64 * 64];
  alignas(16) static float out[64 * 64];
  p.x = buf, p.x_type = ElemType::kBF16, p.x_row_stride = 16;
  p.w = buf, p.w_type = ElemType::kBF16, p.w_row_stride = 16;
  p.out = out, p.out_type = ElemType::kF32, p.out_row_stride = 16;
  p.n = 2, p.m = 2, p.k = 8;
  EXPECT_TRUE(gemm_aligned(p));
  p.x_row_stride = 12;  // BF16 rows 24 bytes apart
  EXPECT_FALSE(gemm_aligned(p));
  p.x_type = ElemType::kF32;  // F32 rows 48 bytes apart
  EXPECT_TRUE(gemm_aligned(p));
  p.k = 12;
  EXPECT_FALSE(gemm_aligned(p));
  p.k = 8;
  p.w = buf + 4;
  EXPECT_FALSE(gemm_aligned(p));
  p.w = buf;
  p.w_batch_stride = 20;
  EXPECT_FALSE(gemm_aligned(p));
  p.w_batch_stride = 0;
  p.groups.w_group_stride = 4;
  EXPECT_FALSE(gemm_aligned(p));
  p.groups.w_group_stride = 0;
  EXPECT_EQ(launch_gemm(p, GemmPlan{}, nullptr), cudaSuccess);
  // FP8: whole chunks need k a multiple of 16; scales must be given, in blocks of whole k tiles.
  p.w_type = ElemType::kFP8E4M3;
  EXPECT_FALSE(gemm_aligned(p));
  p.k = 16;
  EXPECT_TRUE(gemm_aligned(p));
  p.w_row_stride = 24;
  EXPECT_FALSE(gemm_aligned(p));
  p.w_row_stride = 16;
  EXPECT_EQ(launch_gemm(p, GemmPlan{}, nullptr), cudaErrorInvalidValue);  // no scales
  alignas(16) static float scales[4] = {1, 1, 1, 1};
  p.w_scales = scales, p.w_scale_row_stride = 1, p.w_block_rows = 128, p.w_block_cols = 32;
  EXPECT_EQ(launch_gemm(p, GemmPlan{}, nullptr), cudaErrorInvalidValue);  // straddles a tile
  p.w_block_cols = 128;
  EXPECT_EQ(launch_gemm(p, GemmPlan{}, nullptr), cudaSuccess);
  p.w_block_rows = 0;
  EXPECT_EQ(launch_gemm(p, GemmPlan{}, nullptr), cudaErrorInvalidValue);
  p.w_block_rows = 128, p.w_scales = nullptr, p.k = 8;
  p.w_type = ElemType::kF32;
  EXPECT_EQ(launch_gemm(p, GemmPlan{}, nullptr), cudaErrorInvalidValue);
  p.w_type = ElemType::kBF16;
  p.gated = true, p.m = 3;
  EXPECT_EQ(launch_gemm(p, GemmPlan{}, nullptr), cudaErrorInvalidValue);
}

// The MoE FFN kernel by kernel, each stage against its reference: routing tables, the
// grouped gated GEMM (rows gathered through perm_token), the grouped down GEMM (rows
// scattered to their slots), the combine.
// FP8 (w_type): experts' weights with 128×128 block scales, gate/up with block rows gcd(128, f)
// as the loader stacks them.
void run_moe(int n, int top_k, int n_experts, int d, int f, GemmTile tile, ElemType x_type,
             std::mt19937& rng, ElemType w_type = ElemType::kBF16) {
  SCOPED_TRACE(::testing::Message()
               << "n " << n << " top_k " << top_k << " experts " << n_experts << " d " << d << " f "
               << f << " tile " << int(tile) << " w " << int(w_type));
  const int n_rows = n * top_k;
  const int64_t ids_stride = top_k + 1;
  std::vector<int32_t> ids(n * ids_stride, 12345);
  std::uniform_int_distribution<int> pick(0, n_experts - 1);
  for (int t = 0; t < n; ++t) {
    for (int j = 0; j < top_k; ++j) {
      int e = pick(rng);
      if (e == n_experts - 1) e = 0;        // the last expert stays empty; expert 0 is hot
      if ((t + j) % 5 == 4) e = -1;         // another rank's expert
      if (t == 1) e = -1;                   // a token with no local expert at all
      if (t == 2 && j == 0) e = n_experts;  // out of range: skipped like -1
      ids[t * ids_stride + j] = e;
    }
  }
  const int block_m = gemm_tile_shape(tile).block_m;
  const int max_tiles = moe_max_tiles(n_rows, n_experts, block_m);
  std::vector<int32_t> offsets(n_experts + 1, -7), perm_token(n_rows, -7), perm_slot(n_rows, -7);
  std::vector<int32_t> tile_expert(max_tiles, -7), tile_row0(max_tiles, -7), n_tiles(1, -7);
  MoeRouteParams rp{ids.data(),
                    ids_stride,
                    n,
                    top_k,
                    n_experts,
                    block_m,
                    max_tiles,
                    offsets.data(),
                    perm_token.data(),
                    perm_slot.data(),
                    tile_expert.data(),
                    tile_row0.data(),
                    n_tiles.data()};
  ASSERT_EQ(launch_moe_route(rp, nullptr), cudaSuccess) << simt::emu::peek_last_error().message;

  // Routing: per-expert (token, slot) sets, offsets as the scan of the counts, the tiles.
  std::vector<std::multiset<std::pair<int, int>>> want_rows(n_experts);
  for (int t = 0; t < n; ++t) {
    for (int j = 0; j < top_k; ++j) {
      const int e = ids[t * ids_stride + j];
      if (e >= 0 && e < n_experts) want_rows[e].insert({t, t * top_k + j});
    }
  }
  int want_tiles = 0;
  ASSERT_EQ(offsets[0], 0);
  for (int e = 0; e < n_experts; ++e) {
    const int count = static_cast<int>(want_rows[e].size());
    ASSERT_EQ(offsets[e + 1] - offsets[e], count) << "expert " << e;
    std::multiset<std::pair<int, int>> got;
    for (int r = offsets[e]; r < offsets[e + 1]; ++r) got.insert({perm_token[r], perm_slot[r]});
    EXPECT_EQ(got, want_rows[e]) << "expert " << e;
    for (int i = 0; i * block_m < count; ++i, ++want_tiles) {
      EXPECT_EQ(tile_expert[want_tiles], e);
      EXPECT_EQ(tile_row0[want_tiles], offsets[e] + i * block_m);
    }
  }
  ASSERT_EQ(n_tiles[0], want_tiles);
  EXPECT_TRUE(want_rows[n_experts - 1].empty());

  Matrix x = random_matrix(x_type, n, d, d + 8 + d % 2, rng);
  const bool fp8 = w_type == ElemType::kFP8E4M3;
  Matrix wgu =
      fp8 ? random_fp8(int64_t{n_experts} * 2 * f, d, d, n_experts, std::gcd(128, f), 128, rng)
          : random_matrix(ElemType::kBF16, int64_t{n_experts} * 2 * f, d, d, rng);
  Matrix wdn = fp8 ? random_fp8(int64_t{n_experts} * d, f, f, n_experts, 128, 128, rng)
                   : random_matrix(ElemType::kBF16, int64_t{n_experts} * d, f, f, rng);
  Matrix act = poisoned(ElemType::kBF16, n_rows, f, f);
  std::vector<float> y(int64_t{n_rows} * d, kNaN);
  const GemmPlan plan{.tile = tile, .k_splits = 1, .k_tiles_per_split = 1 << 30};
  const GemmGroups groups{tile_expert.data(), tile_row0.data(), offsets.data(),
                          n_tiles.data(),     max_tiles,        0};
  GemmParams gu{};
  gu.x = x.data(), gu.x_type = x_type, gu.x_row_stride = x.stride, gu.x_rows = perm_token.data();
  gu.w = wgu.data(), gu.w_type = w_type, gu.w_row_stride = d;
  if (fp8) set_fp8_scales(gu, wgu), gu.w_scale_group_stride = wgu.scale_mat_stride;
  gu.out = act.data(), gu.out_type = ElemType::kBF16, gu.out_row_stride = f;
  gu.n = n_rows, gu.m = 2 * f, gu.k = d, gu.gated = true;
  gu.groups = groups;
  gu.groups.w_group_stride = int64_t{2} * f * d;
  ASSERT_EQ(launch_gemm(gu, plan, nullptr), cudaSuccess) << simt::emu::peek_last_error().message;
  GemmParams dn{};
  dn.x = act.data(), dn.x_type = ElemType::kBF16, dn.x_row_stride = f;
  dn.w = wdn.data(), dn.w_type = w_type, dn.w_row_stride = f;
  if (fp8) set_fp8_scales(dn, wdn), dn.w_scale_group_stride = wdn.scale_mat_stride;
  dn.out = y.data(), dn.out_type = ElemType::kF32, dn.out_row_stride = d;
  dn.out_rows = perm_slot.data();
  dn.n = n_rows, dn.m = d, dn.k = f;
  dn.groups = groups;
  dn.groups.w_group_stride = int64_t{d} * f;
  ASSERT_EQ(launch_gemm(dn, plan, nullptr), cudaSuccess) << simt::emu::peek_last_error().message;
  std::vector<float> tw(n * ids_stride);
  std::uniform_real_distribution<float> wdist(0.05f, 0.5f);
  for (float& v : tw) v = wdist(rng);
  Matrix out = poisoned(ElemType::kF32, n, d, d + 4);
  const MoeCombineParams cp{y.data(),   ids.data(), ids_stride,     tw.data(),
                            ids_stride, out.data(), ElemType::kF32, d + 4,
                            n,          top_k,      n_experts,      d};
  ASSERT_EQ(launch_moe_combine(cp, nullptr), cudaSuccess) << simt::emu::peek_last_error().message;

  // References, stage by stage, each from the kernels' previous stage (so errors do not
  // compound): act from x, y from act, out from y.
  int n_bad = 0;
  auto check = [&](double got, double want, double tol, const char* what, int r, int c) {
    if (!(std::fabs(got - want) <= tol) && n_bad++ < 5) {
      ADD_FAILURE() << what << " row " << r << " col " << c << ": got " << got << ", want " << want
                    << " ± " << tol;
    }
  };
  for (int r = 0; r < offsets[n_experts]; ++r) {
    int e = 0;
    while (offsets[e + 1] <= r) ++e;
    const int t = perm_token[r];
    for (int j = 0; j < f; ++j) {
      double g = 0, u = 0, mg = 0, mu = 0;
      for (int i = 0; i < d; ++i) {
        const double xv = round_to(ElemType::kBF16, x.value[int64_t{t} * d + i]);
        const double a = xv * wgu.value[(int64_t{e} * 2 * f + j) * d + i];
        const double b = xv * wgu.value[(int64_t{e} * 2 * f + f + j) * d + i];
        g += a, u += b, mg += std::fabs(a), mu += std::fabs(b);
      }
      const double want = silu(g) * u;
      check(
          act.at(r, j), want,
          2e-5 * (mg * (std::fabs(u) + 1) + mu * (std::fabs(g) + 1)) + std::fabs(want) / 256 + 1e-6,
          "act", r, j);
    }
    const int slot = perm_slot[r];
    for (int c = 0; c < d; ++c) {
      double s = 0, mag = 0;
      for (int j = 0; j < f; ++j) {
        const double a = double{act.at(r, j)} * wdn.value[(int64_t{e} * d + c) * f + j];
        s += a, mag += std::fabs(a);
      }
      check(y[int64_t{slot} * d + c], s, 2e-5 * mag + 1e-6, "y", slot, c);
    }
  }
  for (int t = 0; t < n; ++t) {
    for (int c = 0; c < d; ++c) {
      double s = 0, mag = 0;
      for (int j = 0; j < top_k; ++j) {
        const int e = ids[t * ids_stride + j];
        if (e < 0 || e >= n_experts) continue;
        const double v = double{tw[t * ids_stride + j]} * y[(int64_t{t} * top_k + j) * d + c];
        s += v, mag += std::fabs(v);
      }
      if (t == 1) {
        EXPECT_EQ(out.at(t, c), 0.0f);  // no local expert: zero, not NaN
      }
      check(out.at(t, c), s, 1e-6 * mag + 1e-7, "out", t, c);
    }
    for (int c = d; c < d + 4; ++c) {
      if (!std::isnan(out.at(t, c)) && n_bad++ < 5) ADD_FAILURE() << "out padding written";
    }
  }
  EXPECT_EQ(n_bad, 0);
}

TEST_P(GemmEmu, MoeDecodeOnSkinnyTiles) {
  run_moe(3, 6, 8, 264, 136, GemmTile::kSkinny, ElemType::kF32, rng_);
}

TEST_P(GemmEmu, MoePrefillOnLargeTiles) {
  // Expert 0 takes about a third of the rows: more than one 128-row tile.
  run_moe(120, 4, 5, 72, 72, GemmTile::kLarge, ElemType::kBF16, rng_);
}

// Widths that leave rows unaligned: f = 20 (act rows of 40 bytes: the down GEMM is
// predicated), d = 66 (k of the gate/up GEMM not a multiple of 8; the combine column by
// column, d not a multiple of 4); and the tiny models' aligned f = 136 at hidden 192.
TEST_P(GemmEmu, MoeTinyWidths) {
  run_moe(5, 2, 6, 66, 20, GemmTile::kSkinny, ElemType::kF32, rng_);
  run_moe(40, 3, 4, 66, 20, GemmTile::kLarge, ElemType::kBF16, rng_);
  run_moe(4, 2, 6, 192, 136, GemmTile::kSkinny, ElemType::kF32, rng_);
}

// FP8 experts at V3's layout in miniature (decode, prefill) and v3_fp8_tiny's widths (d = 192,
// f = 136: gate/up block rows of 8, the down GEMM's k = 136 predicated, partial blocks).
TEST_P(GemmEmu, MoeFp8Experts) {
  run_moe(3, 6, 8, 256, 136, GemmTile::kSkinny, ElemType::kBF16, rng_, ElemType::kFP8E4M3);
  run_moe(120, 4, 5, 128, 192, GemmTile::kLarge, ElemType::kBF16, rng_, ElemType::kFP8E4M3);
  run_moe(4, 2, 6, 192, 136, GemmTile::kSkinny, ElemType::kF32, rng_, ElemType::kFP8E4M3);
}

INSTANTIATE_TEST_SUITE_P(Schedules, GemmEmu, ::testing::Values(0, 1, 2), [](const auto& info) {
  return info.param == 0 ? std::string("Deterministic") : "Random" + std::to_string(info.param);
});

}  // namespace
}  // namespace moeserve::kernels
