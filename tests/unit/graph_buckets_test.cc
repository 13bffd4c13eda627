// The CUDA-graph bucket logic (src/backend/graph_buckets.h): bucket sizes for several
// limits, the bucket each step size gets (every size up to the limit, smallest fit), and the
// padding rows.
#include "backend/graph_buckets.h"

#include <vector>

#include <gtest/gtest.h>

namespace moeserve {
namespace {

TEST(GraphBucketsTest, SizesForTheDefaultLimit) {
  const GraphBuckets b(GraphBucketConfig{});
  std::vector<int> want = {1, 2, 4};
  for (int s = 8; s <= 256; s += 8) want.push_back(s);
  EXPECT_EQ(std::vector<int>(b.sizes().begin(), b.sizes().end()), want);
  EXPECT_EQ(b.largest(), 256);
}

TEST(GraphBucketsTest, SmallAndOddLimitsEndAtTheLimit) {
  const GraphBuckets one({.max_num_seqs = 1});
  EXPECT_EQ(std::vector<int>(one.sizes().begin(), one.sizes().end()), std::vector<int>({1}));
  const GraphBuckets three({.max_num_seqs = 3});
  EXPECT_EQ(std::vector<int>(three.sizes().begin(), three.sizes().end()),
            std::vector<int>({1, 2, 3}));
  const GraphBuckets b({.max_num_seqs = 100});
  EXPECT_EQ(b.sizes().back(), 100);
  EXPECT_EQ(b.sizes()[b.sizes().size() - 2], 96);
  // The graph limit caps the buckets below max_num_seqs.
  const GraphBuckets capped({.max_num_seqs = 512, .max_graph_batch = 64});
  EXPECT_EQ(capped.largest(), 64);
}

TEST(GraphBucketsTest, EveryStepGetsTheSmallestBucketThatHoldsIt) {
  for (int limit : {1, 5, 37, 256, 300}) {
    const GraphBuckets b({.max_num_seqs = limit});
    for (size_t i = 1; i < b.sizes().size(); ++i) ASSERT_LT(b.sizes()[i - 1], b.sizes()[i]);
    for (int n = 1; n <= limit + 10; ++n) {
      const std::optional<int> got = b.bucket_for(n);
      if (n > b.largest()) {
        EXPECT_FALSE(got.has_value()) << "limit " << limit << " n " << n;
        continue;
      }
      ASSERT_TRUE(got.has_value()) << "limit " << limit << " n " << n;
      EXPECT_GE(*got, n);
      // No smaller bucket holds n, and a step pads fewer than 8 rows.
      for (int s : b.sizes()) {
        if (s >= n) {
          EXPECT_GE(s, *got);
        }
      }
      EXPECT_LT(*got - n, 8) << "limit " << limit << " n " << n;
    }
  }
  EXPECT_EQ(GraphBuckets({}).bucket_for(3), 4);
  EXPECT_EQ(GraphBuckets({}).bucket_for(9), 16);
  EXPECT_EQ(GraphBuckets({}).bucket_for(256), 256);
  EXPECT_FALSE(GraphBuckets({}).bucket_for(257).has_value());
}

TEST(GraphBucketsTest, PaddingRowsPointAtTheScratchSlot) {
  std::vector<int32_t> tokens = {11, 12, 13, -1, -1, -1, -1, -1};
  std::vector<int32_t> pos = {5, 6, 7, -1, -1, -1, -1, -1};
  std::vector<int32_t> seq = {0, 1, 2, -1, -1, -1, -1, -1};
  std::vector<int32_t> slots = {40, 41, 42, -1, -1, -1, -1, -1};
  const DecodePadding pad{.token = 3, .position = 0, .seq_row = 9, .slot = 4096};
  pad_decode_rows(3, pad, tokens, pos, seq, slots);
  for (size_t r = 0; r < 3; ++r) {
    EXPECT_EQ(tokens[r], 11 + static_cast<int32_t>(r));
    EXPECT_EQ(pos[r], 5 + static_cast<int32_t>(r));
    EXPECT_EQ(seq[r], static_cast<int32_t>(r));
    EXPECT_EQ(slots[r], 40 + static_cast<int32_t>(r));
  }
  for (size_t r = 3; r < 8; ++r) {
    EXPECT_EQ(tokens[r], 3);
    EXPECT_EQ(pos[r], 0);
    EXPECT_EQ(seq[r], 9);
    EXPECT_EQ(slots[r], 4096);
  }
}

TEST(GraphBucketsDeathTest, BadArgumentsAbortWithAMessage) {
  EXPECT_DEATH(GraphBuckets({.max_num_seqs = 0}), "max_num_seqs 0");
  std::vector<int32_t> four(4), three(3);
  EXPECT_DEATH(pad_decode_rows(5, {}, four, four, four, four), "5 real rows in a bucket of 4");
  EXPECT_DEATH(pad_decode_rows(1, {}, four, three, four, four), "spans of 4, 3");
}

}  // namespace
}  // namespace moeserve
