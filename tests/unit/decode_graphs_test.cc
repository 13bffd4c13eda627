// The host side of decode graphs (model/decode_graphs.h): which steps are decode steps, and how
// one is padded to its bucket's fixed shapes on the scratch block.
#include "model/decode_graphs.h"

#include <vector>

#include <gtest/gtest.h>

namespace moeserve {
namespace {

// Two sequences decoding one token each: positions 5 and 2, blocks {3, 4} and {7}.
ForwardBatch two_decodes() {
  ForwardBatch b;
  b.tokens = {11, 12};
  b.positions = {5, 2};
  b.token_seq = {0, 1};
  b.slot_mapping = {4 * 4 + 1, 7 * 4 + 2};
  b.block_tables = {3, 4, 7, 7};
  b.n_seqs = 2;
  b.max_blocks = 2;
  b.logits_rows = {0, 1};
  return b;
}

TEST(DecodeGraphsTest, DecodeStepsAreOneTokenPerSequenceInOrderWithLogits) {
  EXPECT_TRUE(is_decode_step(two_decodes()));
  ForwardBatch prefill = two_decodes();
  prefill.tokens.push_back(13), prefill.positions.push_back(6), prefill.token_seq.push_back(1),
      prefill.slot_mapping.push_back(0);
  EXPECT_FALSE(is_decode_step(prefill));
  ForwardBatch swapped = two_decodes();
  swapped.token_seq = {1, 0};
  EXPECT_FALSE(is_decode_step(swapped));
  ForwardBatch one_logit = two_decodes();
  one_logit.logits_rows = {1};
  EXPECT_FALSE(is_decode_step(one_logit));
  EXPECT_FALSE(is_decode_step(ForwardBatch{}));
}

TEST(DecodeGraphsTest, PaddingRowsAndTablesPointAtTheScratchBlock) {
  const int scratch = 40, block_size = 4;
  const ForwardBatch p =
      pad_decode_batch(two_decodes(), /*bucket=*/4, /*max_blocks=*/3, scratch, block_size);
  EXPECT_EQ(p.n_seqs, 4);
  EXPECT_EQ(p.max_blocks, 3);
  EXPECT_EQ(p.tokens, (std::vector<int32_t>{11, 12, 0, 0}));
  EXPECT_EQ(p.positions, (std::vector<int32_t>{5, 2, 0, 0}));
  EXPECT_EQ(p.token_seq, (std::vector<int32_t>{0, 1, 2, 2}));
  EXPECT_EQ(p.slot_mapping, (std::vector<int32_t>{17, 30, 160, 160}));
  EXPECT_EQ(p.logits_rows, (std::vector<int32_t>{0, 1, 2, 3}));
  // Real tables widened with their first block; padding rows all scratch.
  EXPECT_EQ(p.block_tables, (std::vector<int32_t>{3, 4, 3, 7, 7, 7, 40, 40, 40, 40, 40, 40}));
  // A full bucket has no padding.
  const ForwardBatch full = pad_decode_batch(two_decodes(), 2, 2, scratch, block_size);
  EXPECT_EQ(full.tokens, two_decodes().tokens);
  EXPECT_EQ(full.block_tables, two_decodes().block_tables);
}

TEST(DecodeGraphsDeathTest, AStepThatDoesNotFitItsBucketAborts) {
  EXPECT_DEATH(pad_decode_batch(two_decodes(), 1, 2, 40, 4), "bucket of 1");
  EXPECT_DEATH(pad_decode_batch(two_decodes(), 2, 1, 40, 4), "pad_decode_batch");
}

}  // namespace
}  // namespace moeserve
