#include "model/decode_graphs.h"

#include <algorithm>

#include "common/status.h"

namespace moeserve {

bool is_decode_step(const ForwardBatch& b) {
  if (b.n_seqs <= 0 || b.n_tokens() != b.n_seqs ||
      b.logits_rows.size() != static_cast<size_t>(b.n_seqs)) {
    return false;
  }
  for (int32_t i = 0; i < b.n_seqs; ++i) {
    if (b.token_seq[static_cast<size_t>(i)] != i || b.logits_rows[static_cast<size_t>(i)] != i) {
      return false;
    }
  }
  return true;
}

ForwardBatch pad_decode_batch(const ForwardBatch& b, int bucket, int max_blocks, int scratch_block,
                              int block_size) {
  MS_CHECK(
      is_decode_step(b) && b.n_seqs <= bucket && b.max_blocks <= max_blocks && scratch_block >= 0,
      "pad_decode_batch: a step of ", b.n_seqs, " sequences and ", b.max_blocks,
      " blocks for a bucket of ", bucket, " and ", max_blocks, " blocks");
  const auto rows = static_cast<size_t>(bucket);
  ForwardBatch p;
  p.n_seqs = bucket;
  p.max_blocks = max_blocks;
  p.tokens = b.tokens;
  p.positions = b.positions;
  p.token_seq = b.token_seq;
  p.slot_mapping = b.slot_mapping;
  for (auto* v : {&p.tokens, &p.positions, &p.token_seq, &p.slot_mapping}) v->resize(rows);
  pad_decode_rows(b.n_seqs,
                  {.token = 0,
                   .position = 0,
                   .seq_row = b.n_seqs < bucket ? b.n_seqs : 0,
                   .slot = scratch_block * block_size},
                  p.tokens, p.positions, p.token_seq, p.slot_mapping);
  p.logits_rows.resize(rows);
  for (size_t r = 0; r < rows; ++r) p.logits_rows[r] = static_cast<int32_t>(r);
  p.block_tables.assign(rows * static_cast<size_t>(max_blocks), scratch_block);
  for (size_t s = 0; s < static_cast<size_t>(b.n_seqs); ++s) {
    const auto first = b.block_tables.begin() + static_cast<std::ptrdiff_t>(s * b.max_blocks);
    const auto out = p.block_tables.begin() + static_cast<std::ptrdiff_t>(s * max_blocks);
    std::fill(out, out + max_blocks, *first);
    std::copy(first, first + b.max_blocks, out);
  }
  return p;
}

void DecodeGraphs::use_cache(const void* cache) {
  if (cache == cache_) return;
  graphs_.clear();
  cache_ = cache;
}

}  // namespace moeserve
