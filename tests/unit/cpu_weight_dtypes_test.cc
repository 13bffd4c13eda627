// The CPU backend reads weights in the dtype a checkpoint stores: F16, and
// FP8 E4M3 with block scales (DeepSeek's weight_scale_inv), in linear,
// gather_rows and moe_ffn, against a double-precision reference written here
// from the raw codes (fp8e4m3_to_f32 × the block's scale, indexed by hand).
// Error bound as in cpu_backend_ops_test: |got − ref| ≤ 1e-5 · Σ|x·w|.
#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "common/dtype.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

constexpr double kRelTol = 1e-5;

class CpuWeightDtypesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = std::random_device{}();
    rng_.seed(seed_);
  }
  void TearDown() override {
    if (HasFailure()) std::printf("CpuWeightDtypesTest seed: %u\n", seed_);
  }
  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng_); }

  Tensor activations(int64_t n, int64_t k) {
    Tensor x = Tensor::empty_host(DType::kF32, {n, k});
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = uniform(-1.0f, 1.0f);
    return x;
  }

  // Random E4M3 codes (every finite code, never NaN) for `lead` stacked
  // [rows, cols] matrices, with positive block scales of block br × bc.
  // `ref` gets the dequantised values computed here.
  Tensor fp8(int64_t lead, int64_t rows, int64_t cols, int64_t br, int64_t bc,
             std::vector<double>& ref) {
    std::vector<int64_t> shape = {rows, cols};
    const int64_t sr = (rows + br - 1) / br, sc = (cols + bc - 1) / bc;
    std::vector<int64_t> s_shape = {sr, sc};
    if (lead > 0) {
      shape.insert(shape.begin(), lead);
      s_shape.insert(s_shape.begin(), lead);
    }
    Tensor w = Tensor::empty_host(DType::kFP8E4M3, shape);
    Tensor s = Tensor::empty_host(DType::kF32, s_shape);
    for (int64_t i = 0; i < s.numel(); ++i) s.data<float>()[i] = uniform(0.5f, 2.0f) / 256.0f;
    const int64_t n_mat = std::max<int64_t>(lead, 1);
    ref.assign(static_cast<size_t>(w.numel()), 0.0);
    for (int64_t e = 0; e < n_mat; ++e) {
      for (int64_t i = 0; i < rows; ++i) {
        for (int64_t j = 0; j < cols; ++j) {
          uint8_t code = static_cast<uint8_t>(rng_() & 0xFF);
          if ((code & 0x7F) == 0x7F) code = 0x3F;
          const int64_t at = (e * rows + i) * cols + j;
          w.data<uint8_t>()[at] = code;
          const double scale = s.data<float>()[(e * sr + i / br) * sc + j / bc];
          ref[static_cast<size_t>(at)] = static_cast<double>(fp8e4m3_to_f32(code)) * scale;
        }
      }
    }
    w.set_block_scales(s, br, bc);
    return w;
  }

  static void expect_xwt(const Tensor& out, const Tensor& x, const std::vector<double>& w,
                         int64_t n, int64_t m, int64_t k) {
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < m; ++j) {
        double s = 0.0, mag = 0.0;
        for (int64_t p = 0; p < k; ++p) {
          const double v = static_cast<double>(x.data<float>()[i * k + p]) * w[j * k + p];
          s += v;
          mag += std::fabs(v);
        }
        ASSERT_NEAR(out.data<float>()[i * m + j], s, kRelTol * mag + 1e-30)
            << "row " << i << " col " << j;
      }
    }
  }

  unsigned seed_ = 0;
  std::mt19937 rng_;
  CpuBackend be_{3};
};

TEST_F(CpuWeightDtypesTest, LinearFp8BlockScaled) {
  struct Block {
    int64_t rows, cols;
  };
  // 128×128 as DeepSeek ships; small blocks; and columns that are no multiple
  // of 8 (the scalar path).
  for (const Block b : {Block{128, 128}, Block{16, 32}, Block{3, 5}}) {
    for (int64_t n : {1, 2, 7, 8, 9, 16, 17, 33}) {
      for (int64_t k : {8, 100, 256, 300}) {
        for (int64_t m : {1, 5, 130}) {
          SCOPED_TRACE(::testing::Message() << "block " << b.rows << "x" << b.cols << " n " << n
                                            << " k " << k << " m " << m);
          std::vector<double> ref;
          const Tensor w = fp8(0, m, k, b.rows, b.cols, ref);
          const Tensor x = activations(n, k);
          Tensor out = Tensor::empty_host(DType::kF32, {n, m});
          be_.linear(x, w, out);
          expect_xwt(out, x, ref, n, m, k);
          if (HasFailure()) return;
        }
      }
    }
  }
}

TEST_F(CpuWeightDtypesTest, LinearF16) {
  for (int64_t n : {1, 3, 8, 16, 21}) {
    for (int64_t k : {7, 64, 129}) {
      for (int64_t m : {1, 33}) {
        SCOPED_TRACE(::testing::Message() << "n " << n << " k " << k << " m " << m);
        Tensor w = Tensor::empty_host(DType::kF16, {m, k});
        std::vector<double> ref(static_cast<size_t>(m * k));
        for (int64_t i = 0; i < m * k; ++i) {
          w.data<uint16_t>()[i] = f32_to_f16(uniform(-1.0f, 1.0f));
          ref[static_cast<size_t>(i)] = f16_to_f32(w.data<uint16_t>()[i]);
        }
        const Tensor x = activations(n, k);
        Tensor out = Tensor::empty_host(DType::kF32, {n, m});
        be_.linear(x, w, out);
        expect_xwt(out, x, ref, n, m, k);
        if (HasFailure()) return;
      }
    }
  }
}

TEST_F(CpuWeightDtypesTest, GatherRowsFp8) {
  std::vector<double> ref;
  const int64_t rows = 300, d = 260;
  const Tensor table = fp8(0, rows, d, 128, 128, ref);
  std::vector<int32_t> idx = {0, 299, 128, 127, 5, 5};
  Tensor indices = Tensor::empty_host(DType::kI32, {static_cast<int64_t>(idx.size())});
  std::copy(idx.begin(), idx.end(), indices.data<int32_t>());
  Tensor out = Tensor::empty_host(DType::kF32, {static_cast<int64_t>(idx.size()), d});
  be_.gather_rows(table, indices, out);
  for (size_t i = 0; i < idx.size(); ++i) {
    for (int64_t j = 0; j < d; ++j) {
      // One product of two floats: exact in double, rounded once to F32.
      ASSERT_EQ(out.data<float>()[static_cast<int64_t>(i) * d + j],
                static_cast<float>(ref[static_cast<size_t>(idx[i] * d + j)]))
          << i << " " << j;
    }
  }
}

// Stacked experts keep each expert's scales: selecting expert e must apply
// expert e's blocks, including block rows shorter than 128 (the loader's
// stacking of gate and up rows for widths that 128 does not divide).
TEST_F(CpuWeightDtypesTest, MoeFfnFp8StackedExperts) {
  const int64_t n_experts = 4, top_k = 2;
  for (int64_t n : {1, 6, 20}) {
    for (int64_t f : {24, 128}) {
      const int64_t d = 136, br = f == 128 ? 128 : 8;
      SCOPED_TRACE(::testing::Message() << "n " << n << " f " << f);
      std::vector<double> gu, dn;
      const Tensor w_gate_up = fp8(n_experts, 2 * f, d, br, 128, gu);
      const Tensor w_down = fp8(n_experts, d, f, 128, 128, dn);
      const Tensor x = activations(n, d);
      Tensor ids = Tensor::empty_host(DType::kI32, {n, top_k});
      Tensor tw = Tensor::empty_host(DType::kF32, {n, top_k});
      for (int64_t t = 0; t < n; ++t) {
        ids.data<int32_t>()[t * top_k] = static_cast<int32_t>(t % n_experts);
        ids.data<int32_t>()[t * top_k + 1] = static_cast<int32_t>((t + 1 + t / 3) % n_experts);
        if (ids.data<int32_t>()[t * top_k + 1] == ids.data<int32_t>()[t * top_k]) {
          ids.data<int32_t>()[t * top_k + 1] = static_cast<int32_t>((t + 2) % n_experts);
        }
        tw.data<float>()[t * top_k] = uniform(0.1f, 1.0f);
        tw.data<float>()[t * top_k + 1] = uniform(0.1f, 1.0f);
      }
      Tensor out = Tensor::empty_host(DType::kF32, {n, d});
      be_.moe_ffn(x, ids, tw, w_gate_up, w_down, out);
      for (int64_t t = 0; t < n; ++t) {
        std::vector<double> ref(static_cast<size_t>(d), 0.0), mag(ref.size(), 0.0);
        for (int64_t j = 0; j < top_k; ++j) {
          const int64_t e = ids.data<int32_t>()[t * top_k + j];
          const double wgt = tw.data<float>()[t * top_k + j];
          std::vector<double> act(static_cast<size_t>(f)), act_mag(act.size());
          for (int64_t c = 0; c < f; ++c) {
            double g = 0, u = 0, ga = 0, ua = 0;
            for (int64_t i = 0; i < d; ++i) {
              const double xi = x.data<float>()[t * d + i];
              g += gu[static_cast<size_t>((e * 2 * f + c) * d + i)] * xi;
              u += gu[static_cast<size_t>((e * 2 * f + f + c) * d + i)] * xi;
              ga += std::fabs(gu[static_cast<size_t>((e * 2 * f + c) * d + i)] * xi);
              ua += std::fabs(gu[static_cast<size_t>((e * 2 * f + f + c) * d + i)] * xi);
            }
            const double s = g / (1.0 + std::exp(-g));
            act[static_cast<size_t>(c)] = s * u;
            act_mag[static_cast<size_t>(c)] = std::fabs(s) * ua + std::fabs(u) * ga + 1e-6;
          }
          for (int64_t o = 0; o < d; ++o) {
            for (int64_t c = 0; c < f; ++c) {
              const double w = dn[static_cast<size_t>((e * d + o) * f + c)];
              ref[static_cast<size_t>(o)] += wgt * w * act[static_cast<size_t>(c)];
              mag[static_cast<size_t>(o)] += std::fabs(wgt * w) * act_mag[static_cast<size_t>(c)];
            }
          }
        }
        for (int64_t o = 0; o < d; ++o) {
          ASSERT_NEAR(out.data<float>()[t * d + o], ref[static_cast<size_t>(o)],
                      kRelTol * 10 * mag[static_cast<size_t>(o)])
              << "token " << t << " col " << o;
        }
      }
      if (HasFailure()) return;
    }
  }
}

}  // namespace
}  // namespace moeserve
