// Global memory under the emulator is host heap, so AddressSanitizer is the emulator's
// memcheck: an out-of-bounds write in a kernel must kill the process with ASan's report.
// Only meaningful in the MOESERVE_SANITIZE build; skipped elsewhere.
#include <vector>

#include "kernels/simt/tests/negative_kernels.cuh"
#include <gtest/gtest.h>

namespace simt::test {
namespace {

TEST(SimtMemcheckDeathTest, OutOfBoundsGlobalWriteIsCaughtByAsan) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const auto run = [](int n) {
    std::vector<float> out(static_cast<size_t>(n));
    (void)launch_out_of_bounds({out.data(), n});
  };
  EXPECT_DEATH(run(37), "heap-buffer-overflow");
#else
  GTEST_SKIP() << "needs the AddressSanitizer build (MOESERVE_SANITIZE=ON)";
#endif
}

}  // namespace
}  // namespace simt::test
