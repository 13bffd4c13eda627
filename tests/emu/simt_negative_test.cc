// What the emulator must catch: a missing __syncthreads (wrong result in random mode; the
// race report is in simt_racecheck_test.cc), barriers not reached by the whole block (error, no
// hang), shuffles whose mask does not match the arriving lanes (error), and a wrong mma fragment
// index (wrong result). Each bug has a correct twin that must pass, so none of these checks holds
// trivially.
#include <bit>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/simt/emu/grid.h"
#include "kernels/simt/tests/negative_kernels.cuh"
#include <cuda_bf16.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace simt::test {
namespace {

using ::testing::HasSubstr;

class SimtNegative : public ::testing::Test {
 protected:
  void SetUp() override { emu::set_default_options(EmuOptions{}); }
};

std::vector<float> reversed_input(std::vector<float>* in) {
  in->resize(128);
  for (int i = 0; i < 128; ++i) (*in)[i] = static_cast<float>(i) + 0.5f;
  return std::vector<float>(in->rbegin(), in->rend());
}

TEST_F(SimtNegative, MissingSyncthreadsGivesWrongResultInRandomMode) {
  std::vector<float> in;
  const std::vector<float> want = reversed_input(&in);
  int n_wrong = 0;
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    EmuOptions o;
    o.schedule = Schedule::kRandom;
    o.seed = seed;
    o.racecheck = false;  // the race report is simt_racecheck_test's; here the wrong result
    std::vector<float> out(128), fixed(128);
    ASSERT_TRUE(launch_reverse_static({in.data(), out.data(), false}, &o).ok());
    n_wrong += out != want;
    ASSERT_TRUE(launch_reverse_static({in.data(), fixed.data(), true}, &o).ok());
    EXPECT_EQ(fixed, want) << "seed " << seed;
    // The same seed gives the same interleaving.
    std::vector<float> again(128);
    ASSERT_TRUE(launch_reverse_static({in.data(), again.data(), false}, &o).ok());
    EXPECT_EQ(0, std::memcmp(again.data(), out.data(), 128 * sizeof(float)));
  }
  EXPECT_EQ(n_wrong, 4);
}

TEST_F(SimtNegative, BarrierReachedByAllIsFine) {
  std::vector<int> out(64, -1);
  const LaunchResult r = launch_barrier_bug({BarrierBug::kNone, out.data()});
  ASSERT_TRUE(r.ok()) << r.message;
  for (int i = 0; i < 64; ++i) EXPECT_EQ(out[i], i);
}

TEST_F(SimtNegative, BarrierInDivergentCodeIsAnError) {
  std::vector<int> out(64, -1);
  LaunchResult r = launch_barrier_bug({BarrierBug::kHalfBlock, out.data()});
  EXPECT_EQ(r.code, cudaErrorLaunchFailure);
  EXPECT_THAT(r.message, HasSubstr("kernel 'barrier_bug_kernel' block (0,0,0)"));
  EXPECT_THAT(r.message, HasSubstr("__syncthreads"));
  EXPECT_THAT(r.message, HasSubstr("thread (16,0,0)"));  // the first one to skip it

  r = launch_barrier_bug({BarrierBug::kTwoCallSites, out.data()});
  EXPECT_EQ(r.code, cudaErrorLaunchFailure);
  EXPECT_THAT(r.message, HasSubstr("barrier in divergent code"));
  EXPECT_THAT(r.message, HasSubstr("negative_kernels.cu:"));
}

TEST_F(SimtNegative, BarrierAfterSomeThreadsExitedIsAnError) {
  std::vector<int> out(64, -1);
  const LaunchResult r = launch_barrier_bug({BarrierBug::kEarlyExit, out.data()});
  EXPECT_EQ(r.code, cudaErrorLaunchFailure);
  EXPECT_THAT(r.message, HasSubstr("exited"));
  EXPECT_THAT(r.message, HasSubstr("thread (1,0,0)"));
}

TEST_F(SimtNegative, ShuffleWithMatchingMaskIsFine) {
  std::vector<int> out(32, -1);
  const LaunchResult r = launch_mask_bug({MaskBug::kNone, out.data()});
  ASSERT_TRUE(r.ok()) << r.message;
  for (int v : out) EXPECT_EQ(v, 30);
}

TEST_F(SimtNegative, ShuffleWithBadMaskIsAnError) {
  std::vector<int> out(32, -1);
  LaunchResult r = launch_mask_bug({MaskBug::kDivergent, out.data()});
  EXPECT_EQ(r.code, cudaErrorLaunchFailure);
  EXPECT_THAT(r.message, HasSubstr("__shfl_sync"));
  EXPECT_THAT(r.message, HasSubstr("0xffffffff"));
  EXPECT_THAT(r.message, HasSubstr("kernel 'mask_bug_kernel'"));

  r = launch_mask_bug({MaskBug::kExcludesSelf, out.data()});
  EXPECT_EQ(r.code, cudaErrorLaunchFailure);
  EXPECT_THAT(r.message, HasSubstr("does not include it"));
  EXPECT_THAT(r.message, HasSubstr("thread (1,0,0)"));

  r = launch_mask_bug({MaskBug::kOverlapping, out.data()});
  EXPECT_EQ(r.code, cudaErrorLaunchFailure);
  EXPECT_THAT(r.message, HasSubstr("0xffffff00"));
}

TEST_F(SimtNegative, LaneAtBarrierWhileWarpShufflesIsAStallNotAHang) {
  std::vector<int> out(32, -1);
  const LaunchResult r = launch_mask_bug({MaskBug::kLaneAtBarrier, out.data()});
  EXPECT_EQ(r.code, cudaErrorLaunchFailure);
  EXPECT_THAT(r.message, HasSubstr("no thread can make progress"));
  EXPECT_THAT(r.message, HasSubstr("thread (5,0,0) waits at __syncthreads"));
  EXPECT_THAT(r.message, HasSubstr("waits at __shfl_sync"));
}

TEST_F(SimtNegative, WrongMmaFragmentIndexGivesWrongResult) {
  std::mt19937 rng(5);
  std::vector<float> a(256), b(128);
  std::vector<uint16_t> a16(256), b16(128);
  for (int i = 0; i < 256; ++i) {
    a[i] = static_cast<float>(static_cast<int>(rng() % 9) - 4);
    a16[i] = std::bit_cast<uint16_t>(__float2bfloat16(a[i]));
  }
  for (int i = 0; i < 128; ++i) {
    b[i] = static_cast<float>(static_cast<int>(rng() % 9) - 4);
    b16[i] = std::bit_cast<uint16_t>(__float2bfloat16(b[i]));
  }
  std::vector<float> want(128, 0);
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n)
      for (int k = 0; k < 16; ++k) want[m * 8 + n] += a[m * 16 + k] * b[n * 16 + k];
  std::vector<float> right(128, -1), wrong(128, -1);
  ASSERT_TRUE(launch_mma_tile({a16.data(), b16.data(), right.data(), false}).ok());
  ASSERT_TRUE(launch_mma_tile({a16.data(), b16.data(), wrong.data(), true}).ok());
  EXPECT_EQ(right, want);
  int n_diff = 0;
  for (int i = 0; i < 128; ++i) n_diff += wrong[i] != want[i];
  EXPECT_GT(n_diff, 32);  // rows 8..15 of D are computed from rows 0..7 of A in half the k range
}

}  // namespace
}  // namespace simt::test
