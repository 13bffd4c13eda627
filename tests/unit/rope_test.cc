#include "model/rope.h"

#include <cmath>
#include <vector>

#include <gtest/gtest.h>

namespace moeserve {
namespace {

// Only the fields the rope table reads.
ModelConfig rope_config(int rope_dim, double theta) {
  ModelConfig c;
  c.qk_rope_head_dim = rope_dim;
  c.rope_theta = theta;
  return c;
}

// table[p, i, 0 or 1] of a [max_pos, n_pairs, 2] table.
float at(const std::vector<float>& table, int n_pairs, int p, int i, int k) {
  return table[(static_cast<size_t>(p) * n_pairs + i) * 2 + k];
}

// Checks pair i at position p against cos/sin of `angle`, times `scale`.
void expect_pair(const std::vector<float>& table, int n_pairs, int p, int i, double angle,
                 double scale) {
  EXPECT_NEAR(at(table, n_pairs, p, i, 0), std::cos(angle) * scale, 1e-6)
      << "p=" << p << " i=" << i;
  EXPECT_NEAR(at(table, n_pairs, p, i, 1), std::sin(angle) * scale, 1e-6)
      << "p=" << p << " i=" << i;
}

TEST(RopeTest, PlainRopeMatchesHandComputedFrequencies) {
  // d = 8, base 10^4: inv_freq_i = 10^(-4 * 2i / 8) = 1, 0.1, 0.01, 0.001.
  const std::vector<float> t = build_rope_table(rope_config(8, 10000.0), 6);
  ASSERT_EQ(t.size(), 6u * 4u * 2u);
  const double inv_freq[4] = {1.0, 0.1, 0.01, 0.001};
  for (int i = 0; i < 4; ++i) {
    expect_pair(t, 4, 0, i, 0.0, 1.0);
    expect_pair(t, 4, 3, i, 3 * inv_freq[i], 1.0);
    expect_pair(t, 4, 5, i, 5 * inv_freq[i], 1.0);
  }
  // Spot values written out: cos(0.3), sin(0.3), cos(3), sin(3).
  EXPECT_NEAR(at(t, 4, 3, 1, 0), 0.9553364891, 1e-6);
  EXPECT_NEAR(at(t, 4, 3, 1, 1), 0.2955202067, 1e-6);
  EXPECT_NEAR(at(t, 4, 3, 0, 0), -0.9899924966, 1e-6);
  EXPECT_NEAR(at(t, 4, 3, 0, 1), 0.1411200081, 1e-6);
}

TEST(RopeTest, PlainRopeIsARotation) {
  const int n_pairs = 32;
  const std::vector<float> t = build_rope_table(rope_config(64, 10000.0), 2048);
  ASSERT_EQ(t.size(), 2048u * n_pairs * 2u);
  for (int p = 0; p < 2048; p += 97) {
    for (int i = 0; i < n_pairs; ++i) {
      const double c = at(t, n_pairs, p, i, 0);
      const double s = at(t, n_pairs, p, i, 1);
      EXPECT_NEAR(c * c + s * s, 1.0, 1e-6) << "p=" << p << " i=" << i;
    }
  }
}

TEST(RopeTest, OtherBase) {
  // d = 4, base 100: inv_freq = 1, 100^(-1/2) = 0.1.
  const std::vector<float> t = build_rope_table(rope_config(4, 100.0), 8);
  expect_pair(t, 2, 7, 0, 7.0, 1.0);
  expect_pair(t, 2, 7, 1, 0.7, 1.0);
}

TEST(RopeTest, YarnBlendsFrequenciesAndScales) {
  ModelConfig c = rope_config(8, 10000.0);
  c.rope_scaling =
      YarnScaling{/*factor=*/4.0,        /*original_max_position_embeddings=*/64,
                  /*beta_fast=*/32.0,    /*beta_slow=*/1.0,
                  /*mscale=*/1.0,
                  /*mscale_all_dim=*/0.0};
  // Correction dims d*ln(64/(beta*2π))/(2 ln 10^4): beta 32 → -0.497 → floor -1 → clamp 0;
  // beta 1 → 1.008 → ceil 2. ramp_i = i/2 → 0, 0.5, 1, 1; extra_mask = 1, 0.5, 0, 0.
  // inv_freq = 1; 0.5*0.1/4 + 0.5*0.1 = 0.0625; 0.01/4 = 0.0025; 0.001/4 = 0.00025.
  // Scale = (0.1*1*ln 4 + 1) / 1 = 1.1386294361.
  const double inv_freq[4] = {1.0, 0.0625, 0.0025, 0.00025};
  const double scale = 1.1386294361;
  const std::vector<float> t = build_rope_table(c, 10);
  for (int p : {0, 1, 5, 9}) {
    for (int i = 0; i < 4; ++i) expect_pair(t, 4, p, i, p * inv_freq[i], scale);
  }
  // Written out: pair 1 at position 5 is 1.1386294 * (cos 0.3125, sin 0.3125).
  EXPECT_NEAR(at(t, 4, 5, 1, 0), 1.0834832761, 1e-6);
  EXPECT_NEAR(at(t, 4, 5, 1, 1), 0.3500585425, 1e-6);
}

TEST(RopeTest, YarnZeroWidthRampIsWidened) {
  ModelConfig c = rope_config(8, 10000.0);
  // original 1: both correction dims are negative, clamp to 0, so low == high
  // and high becomes 0.001: ramp = 0, 1, 1, 1 → only pair 0 keeps its frequency.
  // mscale == mscale_all_dim: the cos/sin scale is exactly 1.
  c.rope_scaling = YarnScaling{10.0, 1, 32.0, 1.0, 0.707, 0.707};
  const double inv_freq[4] = {1.0, 0.01, 0.001, 0.0001};  // 0.1/10, 0.01/10, 0.001/10
  const std::vector<float> t = build_rope_table(c, 8);
  for (int i = 0; i < 4; ++i) expect_pair(t, 4, 7, i, 7 * inv_freq[i], 1.0);
}

TEST(RopeTest, YarnBothCorrectionsClampedHighKeepsAllFrequencies) {
  ModelConfig c = rope_config(8, 100.0);
  // base 100, original 2^24: correction dims 8*ln(2^24/(32*2π))/(2 ln 100) = 9.84 and
  // 8*ln(2^24/(2π))/(2 ln 100) = 12.85 both clamp to d-1 = 7, so low == high = 7
  // (+0.001) and every pair i <= 3 keeps its original frequency 100^(-i/4).
  c.rope_scaling = YarnScaling{4.0, 1 << 24, 32.0, 1.0, 1.0, 1.0};
  const double inv_freq[4] = {1.0, 0.31622776601683794, 0.1, 0.031622776601683794};
  const std::vector<float> t = build_rope_table(c, 8);
  for (int i = 0; i < 4; ++i) expect_pair(t, 4, 6, i, 6 * inv_freq[i], 1.0);
}

TEST(RopeTest, DeepseekV3Yarn) {
  ModelConfig c = rope_config(64, 10000.0);
  c.rope_scaling = YarnScaling{40.0, 4096, 32.0, 1.0, 1.0, 1.0};
  // Correction dims: 64*ln(4096/(32*2π))/(2 ln 10^4) = 10.47 → low 10;
  // 64*ln(4096/(2π))/(2 ln 10^4) = 22.5 → high 23. Pairs 0..10 keep 10^(-4i/32),
  // pairs 23..31 are divided by 40, pair 16 is (16-10)/13 interpolated.
  const int n_pairs = 32;
  const std::vector<float> t = build_rope_table(c, 200);
  ASSERT_EQ(t.size(), 200u * n_pairs * 2u);
  auto base_freq = [](int i) { return std::pow(10000.0, -2.0 * i / 64); };
  expect_pair(t, n_pairs, 100, 0, 100.0, 1.0);
  expect_pair(t, n_pairs, 100, 5, 100.0 * base_freq(5), 1.0);
  expect_pair(t, n_pairs, 199, 31, 199.0 * base_freq(31) / 40.0, 1.0);
  const double ramp = 6.0 / 13.0;
  expect_pair(t, n_pairs, 150, 16,
              150.0 * (base_freq(16) / 40.0 * ramp + base_freq(16) * (1.0 - ramp)), 1.0);
}

TEST(RopeTest, EmptyTable) { EXPECT_TRUE(build_rope_table(rope_config(8, 10000.0), 0).empty()); }

}  // namespace
}  // namespace moeserve
