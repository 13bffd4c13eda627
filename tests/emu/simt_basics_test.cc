// The emulator's execution model: indices, barriers with reductions, shuffles against the
// CUDA programming guide's rules, votes, atomics across parallel blocks, shared memory per
// block, launch validation, and the random schedule's reproducibility.
#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/simt/emu/grid.h"
#include "kernels/simt/tests/basic_kernels.cuh"
#include <gtest/gtest.h>

namespace simt::test {
namespace {

class SimtBasics : public ::testing::Test {
 protected:
  void SetUp() override {
    EmuOptions o;
    o.racecheck = true;
    emu::set_default_options(o);
  }
};

TEST_F(SimtBasics, IndicesCover3dGridAndBlock) {
  const dim3 grid(3, 2, 2);
  const dim3 block(4, 3, 5);  // 60 threads: a partial second warp
  const size_t n_threads = 60, n_blocks = 12;
  std::vector<uint32_t> out(n_threads * n_blocks * 12, 0xdeadbeef);
  ASSERT_TRUE(launch_index({out.data()}, grid, block).ok());
  for (unsigned bz = 0; bz < 2; ++bz)
    for (unsigned by = 0; by < 2; ++by)
      for (unsigned bx = 0; bx < 3; ++bx)
        for (unsigned tz = 0; tz < 5; ++tz)
          for (unsigned ty = 0; ty < 3; ++ty)
            for (unsigned tx = 0; tx < 4; ++tx) {
              const size_t blk = bx + 3 * (by + 2 * bz);
              const size_t t = tx + 4 * (ty + 3 * tz);
              const uint32_t* o = &out[(blk * n_threads + t) * 12];
              const uint32_t want[12] = {tx, ty, tz, bx, by, bz, 4, 3, 5, 3, 2, 2};
              for (int i = 0; i < 12; ++i) ASSERT_EQ(o[i], want[i]) << "field " << i;
            }
}

TEST_F(SimtBasics, BarrierReductions) {
  for (unsigned n : {1u, 33u, 128u, 1024u}) {
    for (int pattern = 0; pattern < 3; ++pattern) {
      std::vector<int> pred(n);
      int count = 0;
      for (unsigned i = 0; i < n; ++i) {
        pred[i] = pattern == 0 ? 1 : pattern == 1 ? 0 : static_cast<int>(i % 3 == 1) * 7;
        count += pred[i] != 0;
      }
      std::vector<int> out(n * 3, -5);
      ASSERT_TRUE(launch_barrier_reduce({pred.data(), out.data()}, n).ok());
      for (unsigned i = 0; i < n; ++i) {
        EXPECT_EQ(out[i * 3 + 0], count);
        EXPECT_EQ(out[i * 3 + 1], count == static_cast<int>(n) ? 1 : 0);
        EXPECT_EQ(out[i * 3 + 2], count > 0 ? 1 : 0);
      }
    }
  }
}

// The CUDA programming guide's rules, written out per mode. The hardware uses
// only the low 5 bits of b (PTX ISA, shfl.sync: bval[4:0] = b[4:0]).
int expected_shuffle(const std::vector<int>& in, unsigned lane, ShflKind kind, int b_arg,
                     int width) {
  const int b = b_arg & 31;
  const unsigned warp_base = lane & ~31u;
  const unsigned l = lane & 31u;
  const unsigned seg = l & ~static_cast<unsigned>(width - 1);  // first lane of the segment
  switch (kind) {
    case ShflKind::kIdx: return in[warp_base + seg + static_cast<unsigned>(b % width)];
    case ShflKind::kUp:  // lanes below the segment start keep their value
      return l - seg >= static_cast<unsigned>(b) ? in[lane - b] : in[lane];
    case ShflKind::kDown:
      return l - seg + b < static_cast<unsigned>(width) ? in[lane + b] : in[lane];
    case ShflKind::kXor: {  // later segments are out of reach; earlier ones are not
      const unsigned src = l ^ static_cast<unsigned>(b);
      return src < seg + static_cast<unsigned>(width) ? in[warp_base + src] : in[lane];
    }
  }
  return 0;
}

TEST_F(SimtBasics, ShufflesFollowCudaSemantics) {
  const unsigned n = 64;
  std::vector<int> in(n);
  std::mt19937 rng(7);
  for (int& v : in) v = static_cast<int>(rng() % 100000) - 50000;
  for (ShflKind kind : {ShflKind::kIdx, ShflKind::kUp, ShflKind::kDown, ShflKind::kXor}) {
    for (int width : {1, 2, 4, 8, 16, 32}) {
      for (int b : {0, 1, 3, 5, 16, 31, 37, -1, 64}) {
        std::vector<int> out(n, 0);
        ASSERT_TRUE(launch_shuffle({in.data(), out.data(), kind, b, width}, n).ok());
        for (unsigned lane = 0; lane < n; ++lane) {
          ASSERT_EQ(out[lane], expected_shuffle(in, lane, kind, b, width))
              << "kind " << static_cast<int>(kind) << " width " << width << " b " << b << " lane "
              << lane;
        }
      }
    }
  }
}

TEST_F(SimtBasics, Votes) {
  const unsigned n = 64;
  std::vector<int> pred(n);
  for (unsigned i = 0; i < n; ++i) pred[i] = i < 32 ? (i % 5 == 0) : 1;
  std::vector<unsigned> out(n * 3, 0);
  ASSERT_TRUE(launch_vote({pred.data(), out.data()}, n).ok());
  unsigned ballot0 = 0;
  for (unsigned i = 0; i < 32; ++i) ballot0 |= static_cast<unsigned>(pred[i] != 0) << i;
  for (unsigned i = 0; i < n; ++i) {
    EXPECT_EQ(out[i * 3 + 0], i < 32 ? ballot0 : 0xffffffffu);
    EXPECT_EQ(out[i * 3 + 1], 1u);
    EXPECT_EQ(out[i * 3 + 2], i < 32 ? 0u : 1u);
  }
}

// Integer intrinsics and sm_70/80 warp collectives, with the CUDA math API's definitions
// written out.
TEST_F(SimtBasics, IntegerIntrinsicsAndWarpReductions) {
  const unsigned n = 64;
  std::mt19937 rng(21);
  std::vector<uint32_t> x(n), y(n), s(n), out(n * 15, 0);
  for (unsigned i = 0; i < n; ++i) x[i] = rng(), y[i] = rng(), s[i] = rng() % 0x10000;
  for (unsigned i = 0; i < 32; ++i) y[i] = 2 * i;  // warp 0: all y even, so match_all holds
  const LaunchResult r = launch_intrinsics({x.data(), y.data(), s.data(), out.data()}, n);
  ASSERT_TRUE(r.ok()) << r.message;
  for (unsigned t = 0; t < n; ++t) {
    const uint32_t* o = &out[t * 15];
    uint8_t bytes[8];  // x's bytes, then y's, little-endian
    for (int i = 0; i < 4; ++i)
      bytes[i] = (x[t] >> (8 * i)) & 0xff, bytes[4 + i] = (y[t] >> (8 * i)) & 0xff;
    uint32_t perm = 0;
    for (int i = 0; i < 4; ++i) perm |= uint32_t{bytes[(s[t] >> (4 * i)) & 7]} << (8 * i);
    EXPECT_EQ(o[0], perm);
    const unsigned sh = s[t] % 32;
    EXPECT_EQ(o[1], sh == 0 ? y[t] : (y[t] << sh) | (x[t] >> (32 - sh)));
    EXPECT_EQ(o[2], sh == 0 ? x[t] : (x[t] >> sh) | (y[t] << (32 - sh)));
    EXPECT_EQ(o[3], static_cast<uint32_t>((uint64_t{x[t]} * y[t]) >> 32));
    EXPECT_EQ(o[4], static_cast<uint32_t>(static_cast<int64_t>(static_cast<int32_t>(x[t])) *
                                              static_cast<int32_t>(y[t]) >>
                                          32));
    int64_t dps = static_cast<int32_t>(s[t]);
    uint64_t dpu = s[t];
    for (int i = 0; i < 4; ++i) {
      dps += int64_t{static_cast<int8_t>(bytes[i])} * static_cast<int8_t>(bytes[4 + i]);
      dpu += uint64_t{bytes[i]} * bytes[4 + i];
    }
    EXPECT_EQ(o[5], static_cast<uint32_t>(dps));
    EXPECT_EQ(o[6], static_cast<uint32_t>(dpu));
    const unsigned w = t / 32 * 32;
    uint32_t sum = 0, umin = UINT32_MAX, umax = 0;
    int32_t smin = INT32_MAX, smax = INT32_MIN;
    unsigned match_any = 0;
    bool all_same = true;
    for (unsigned l = w; l < w + 32; ++l) {
      sum += x[l];
      umin = std::min(umin, x[l]), umax = std::max(umax, x[l]);
      smin = std::min(smin, static_cast<int32_t>(x[l]));
      smax = std::max(smax, static_cast<int32_t>(x[l]));
      if (x[l] % 5 == x[t] % 5) match_any |= 1u << (l - w);
      all_same &= y[l] % 2 == y[w] % 2;
    }
    EXPECT_EQ(o[7], sum);
    EXPECT_EQ(o[8], umin);
    EXPECT_EQ(o[9], umax);
    EXPECT_EQ(o[10], sum);
    EXPECT_EQ(o[11], static_cast<uint32_t>(smin));
    EXPECT_EQ(o[12], static_cast<uint32_t>(smax));
    EXPECT_EQ(o[13], match_any);
    EXPECT_EQ(o[14], all_same ? 0xffffffffu : 0x5a5a5a5au) << "thread " << t;
  }
}

TEST_F(SimtBasics, AtomicsAcrossParallelBlocks) {
  const unsigned n_blocks = 16, n_threads = 96;
  float f_sum = 0;
  int i_sum = 0, i_max = -1;
  unsigned cas_sum = 0;
  std::vector<int> counts(n_blocks, -1);
  ASSERT_TRUE(
      launch_atomics({&f_sum, &i_sum, &i_max, &cas_sum, counts.data()}, n_blocks, n_threads).ok());
  const unsigned n = n_blocks * n_threads;
  EXPECT_EQ(f_sum, 0.5f * static_cast<float>(n));  // exact: sums of halves below 2^24
  EXPECT_EQ(i_sum, static_cast<int>(n));
  EXPECT_EQ(i_max, static_cast<int>(n - 1));
  EXPECT_EQ(cas_sum, n * (n - 1) / 2);
  for (int c : counts) EXPECT_EQ(c, static_cast<int>(n_threads));
}

TEST_F(SimtBasics, DynamicSharedMemoryIsPerBlock) {
  for (Schedule s : {Schedule::kDeterministic, Schedule::kRandom}) {
    EmuOptions o;
    o.schedule = s;
    o.seed = 3;
    o.racecheck = true;
    const int n = 200;
    const unsigned n_blocks = 7;
    std::vector<float> in(n * n_blocks), out(n * n_blocks, 0);
    for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i) * 0.25f - 3;
    const LaunchResult r = launch_reverse_dynamic({in.data(), out.data(), n}, n_blocks, &o);
    ASSERT_TRUE(r.ok()) << r.message;
    for (unsigned b = 0; b < n_blocks; ++b)
      for (int i = 0; i < n; ++i) ASSERT_EQ(out[b * n + i], in[b * n + (n - 1 - i)]);
  }
}

TEST_F(SimtBasics, StaticSharedTreeReductionInEverySchedule) {
  const unsigned n_blocks = 5;
  std::vector<float> in(256 * n_blocks);
  std::mt19937 rng(11);
  for (float& v : in) v = static_cast<float>(static_cast<int>(rng() % 2001) - 1000) / 8.0f;
  std::vector<double> want(n_blocks, 0);
  for (unsigned b = 0; b < n_blocks; ++b)
    for (int i = 0; i < 256; ++i) want[b] += in[b * 256 + i];
  for (uint64_t seed = 0; seed < 6; ++seed) {
    EmuOptions o;
    o.schedule = seed == 0 ? Schedule::kDeterministic : Schedule::kRandom;
    o.seed = seed;
    o.racecheck = true;
    std::vector<float> out(n_blocks, -1);
    const LaunchResult r = launch_block_sum({in.data(), out.data()}, n_blocks, &o);
    ASSERT_TRUE(r.ok()) << r.message;
    // Inputs are multiples of 1/8 well inside fp32's exact range: every order gives the sum.
    for (unsigned b = 0; b < n_blocks; ++b) EXPECT_EQ(out[b], static_cast<float>(want[b]));
  }
}

TEST_F(SimtBasics, InvalidConfigurationsAreRefused) {
  int out = 0;
  LaunchResult r = launch_barrier_loop({1, &out}, 1, 1025, nullptr);
  EXPECT_EQ(r.code, cudaErrorInvalidConfiguration);
  EXPECT_NE(r.message.find("barrier_loop_kernel"), std::string::npos);
  r = launch_barrier_loop({1, &out}, 0, 32, nullptr);
  EXPECT_EQ(r.code, cudaErrorInvalidConfiguration);
  std::vector<float> in(64), o(64);
  ReverseParams p{in.data(), o.data(), 64};
  EXPECT_TRUE(launch_reverse_dynamic(p, 1, nullptr).ok());
}

TEST_F(SimtBasics, BarrierLoopChecksum) {
  int out = -1;
  const int n_iter = 50;
  ASSERT_TRUE(launch_barrier_loop({n_iter, &out}, 3, 64, nullptr).ok());
  int want = 0;
  for (int i = 0; i < n_iter; ++i) want += 0 ^ i;
  EXPECT_EQ(out, want);
}

}  // namespace
}  // namespace simt::test
