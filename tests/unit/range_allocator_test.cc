// RangeAllocator (common/range_allocator.h): best fit, alignment, coalescing,
// exhaustion, double free, and a seeded random sequence of allocations and
// frees checked against a plain list of the live ranges.
#include "common/range_allocator.h"

#include <algorithm>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace moeserve {
namespace {

TEST(RangeAllocatorTest, AlignsAndPicksTheSmallestFit) {
  RangeAllocator a(4096, 256);
  const auto x = a.allocate(1), y = a.allocate(300), z = a.allocate(256);
  ASSERT_TRUE(x && y && z);
  EXPECT_EQ(*x, 0);
  EXPECT_EQ(*y, 256);  // 300 bytes take two units
  EXPECT_EQ(*z, 768);
  EXPECT_EQ(a.used(), 1024);
  a.free(*y);  // a 512-byte hole at 256, and 3072 free at 1024
  const auto w = a.allocate(200);
  ASSERT_TRUE(w);
  EXPECT_EQ(*w, 256) << "the smaller hole fits";
  EXPECT_EQ(a.allocate(0).value(), 512) << "zero bytes take one unit";
  EXPECT_EQ(a.largest_free(), 3072);
}

TEST(RangeAllocatorTest, FreedNeighboursCoalesce) {
  RangeAllocator a(1024, 256);
  const int64_t r0 = *a.allocate(256), r1 = *a.allocate(256), r2 = *a.allocate(256);
  EXPECT_FALSE(a.allocate(512).has_value());
  a.free(r0);
  a.free(r2);  // joins the free tail: 512 bytes at 512
  EXPECT_EQ(a.largest_free(), 512);
  a.free(r1);  // joins both sides
  EXPECT_EQ(a.largest_free(), 1024);
  EXPECT_EQ(a.allocate(1024).value(), 0);
  EXPECT_EQ(a.peak(), 1024);
}

TEST(RangeAllocatorTest, ExhaustionIsNulloptNotAbort) {
  RangeAllocator a(1000, 256);  // three whole units
  EXPECT_EQ(a.capacity(), 768);
  EXPECT_FALSE(a.allocate(769).has_value());
  EXPECT_TRUE(a.allocate(768).has_value());
  EXPECT_FALSE(a.allocate(1).has_value());
  EXPECT_EQ(RangeAllocator(0).largest_free(), 0);
}

TEST(RangeAllocatorDeathTest, DoubleFreeAborts) {
  RangeAllocator a(1024);
  const int64_t r = *a.allocate(10);
  a.free(r);
  EXPECT_DEATH(a.free(r), "not an allocated range");
}

TEST(RangeAllocatorTest, RandomSequenceNeverOverlaps) {
  constexpr int64_t kCapacity = 1 << 20, kAlign = 256;
  RangeAllocator a(kCapacity, kAlign);
  std::mt19937_64 rng(42);
  struct Live {
    int64_t offset, size;
  };
  std::vector<Live> live;
  int64_t want_used = 0;
  for (int i = 0; i < 5000; ++i) {
    if (live.empty() || rng() % 3 != 0) {
      const int64_t bytes = static_cast<int64_t>(rng() % 20000);
      const int64_t size = std::max<int64_t>(1, (bytes + kAlign - 1) / kAlign) * kAlign;
      const auto got = a.allocate(bytes);
      if (!got) {
        EXPECT_LT(a.largest_free(), size);
        continue;
      }
      EXPECT_EQ(*got % kAlign, 0);
      EXPECT_LE(*got + size, kCapacity);
      for (const Live& l : live) {
        ASSERT_TRUE(*got + size <= l.offset || l.offset + l.size <= *got)
            << "range " << *got << "+" << size << " overlaps " << l.offset << "+" << l.size;
      }
      live.push_back({*got, size});
      want_used += size;
    } else {
      const size_t k = rng() % live.size();
      a.free(live[k].offset);
      want_used -= live[k].size;
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
    }
    ASSERT_EQ(a.used(), want_used);
  }
  for (const Live& l : live) a.free(l.offset);
  EXPECT_EQ(a.used(), 0);
  EXPECT_EQ(a.largest_free(), kCapacity) << "everything coalesced back into one range";
}

}  // namespace
}  // namespace moeserve
