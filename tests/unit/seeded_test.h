// A test fixture with a fresh random seed per test, printed when it fails so
// the failing case can be replayed.
#pragma once

#include <cstdint>
#include <cstdio>
#include <random>

#include <gtest/gtest.h>

namespace moeserve::test {

class SeededTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    seed_ = (static_cast<uint64_t>(rd()) << 32) | rd();
    rng_.seed(seed_);
  }
  void TearDown() override {
    if (HasFailure()) {
      const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
      std::printf("%s.%s seed: %llu\n", info->test_suite_name(), info->name(),
                  static_cast<unsigned long long>(seed_));
    }
  }

  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace moeserve::test
