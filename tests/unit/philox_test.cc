// Philox4x32-10 against the known-answer vectors published with Random123
// (kat_vectors: philox4x32_10), and the uniform draws built on it.
#include "common/philox.h"

#include <cmath>
#include <set>

#include <gtest/gtest.h>

namespace moeserve {
namespace {

uint64_t key(uint32_t k0, uint32_t k1) { return static_cast<uint64_t>(k1) << 32 | k0; }

TEST(PhiloxTest, KnownAnswers) {
  using A = std::array<uint32_t, 4>;
  EXPECT_EQ(philox4x32({0, 0, 0, 0}, key(0, 0)),
            (A{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  EXPECT_EQ(philox4x32({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                       key(0xffffffffu, 0xffffffffu)),
            (A{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
  EXPECT_EQ(philox4x32({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                       key(0xa4093822u, 0x299f31d0u)),
            (A{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

TEST(PhiloxTest, UniformDrawsAreInRangeDistinctAndEvenlySpread) {
  std::set<double> seen;
  int below_half = 0;
  double sum = 0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const double u = philox_uniform01(42, static_cast<uint64_t>(i));
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    seen.insert(u);
    below_half += u < 0.5;
    sum += u;
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(n));
  // Mean 0.5 with standard deviation sqrt(1/12 / n) ≈ 9.1e-4: 6 sigma.
  EXPECT_NEAR(sum / n, 0.5, 6 * 9.2e-4);
  EXPECT_NEAR(below_half, n / 2, 6 * std::sqrt(n / 4.0));
  EXPECT_NE(philox_uniform01(42, 0), philox_uniform01(43, 0));
}

}  // namespace
}  // namespace moeserve
