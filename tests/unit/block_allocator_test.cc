// BlockAllocator: exhaustion, reuse, and double/foreign releases abort.
#include "engine/block_allocator.h"

#include <algorithm>
#include <random>
#include <set>
#include <vector>

#include <gtest/gtest.h>

namespace moeserve {
namespace {

TEST(BlockAllocatorTest, HandsOutEveryBlockOnceThenRunsOut) {
  for (int n_blocks : {0, 1, 2, 7, 64}) {
    SCOPED_TRACE(::testing::Message() << "n_blocks " << n_blocks);
    BlockAllocator a(n_blocks);
    EXPECT_EQ(a.n_blocks(), n_blocks);
    EXPECT_EQ(a.n_free(), n_blocks);
    std::set<int32_t> seen;
    for (int i = 0; i < n_blocks; ++i) {
      const auto b = a.allocate();
      ASSERT_TRUE(b.has_value());
      EXPECT_GE(*b, 0);
      EXPECT_LT(*b, n_blocks);
      EXPECT_TRUE(seen.insert(*b).second) << "block " << *b << " handed out twice";
      EXPECT_EQ(a.n_free(), n_blocks - i - 1);
    }
    EXPECT_FALSE(a.allocate().has_value());
    EXPECT_FALSE(a.allocate().has_value());  // stays exhausted, count unchanged
    EXPECT_EQ(a.n_free(), 0);
  }
}

TEST(BlockAllocatorTest, ReleasedBlocksAreReusedMostRecentFirst) {
  BlockAllocator a(6);
  std::vector<int32_t> held;
  for (int i = 0; i < 6; ++i) held.push_back(*a.allocate());
  a.release(held[2]);
  a.release(held[4]);
  EXPECT_EQ(a.n_free(), 2);
  EXPECT_EQ(*a.allocate(), held[4]);  // LIFO
  EXPECT_EQ(*a.allocate(), held[2]);
  EXPECT_FALSE(a.allocate().has_value());
}

TEST(BlockAllocatorTest, RandomAllocateReleaseMatchesModel) {
  std::random_device rd;
  const uint64_t seed = (static_cast<uint64_t>(rd()) << 32) | rd();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  const int n_blocks = 37;
  BlockAllocator a(n_blocks);
  std::vector<int32_t> held;
  for (int step = 0; step < 20000; ++step) {
    if (held.empty() || (rng() % 2 == 0)) {
      const auto b = a.allocate();
      if (static_cast<int>(held.size()) == n_blocks) {
        ASSERT_FALSE(b.has_value());
      } else {
        ASSERT_TRUE(b.has_value());
        ASSERT_EQ(std::count(held.begin(), held.end(), *b), 0) << "block " << *b << " in use";
        held.push_back(*b);
      }
    } else {
      const size_t i = rng() % held.size();
      a.release(held[i]);
      held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
    }
    ASSERT_EQ(a.n_free(), n_blocks - static_cast<int>(held.size()));
  }
}

TEST(BlockAllocatorDeathTest, DoubleReleaseAborts) {
  BlockAllocator a(4);
  const int32_t b = *a.allocate();
  a.release(b);
  EXPECT_DEATH(a.release(b), "not in use");
}

TEST(BlockAllocatorDeathTest, ReleaseOfUnallocatedOrOutOfRangeAborts) {
  BlockAllocator a(4);
  EXPECT_DEATH(a.release(0), "not in use");  // never handed out
  EXPECT_DEATH(a.release(-1), "not in use");
  EXPECT_DEATH(a.release(4), "not in use");
}

}  // namespace
}  // namespace moeserve
