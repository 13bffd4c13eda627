// What one forward step computes: a flat list of tokens from several
// sequences (prefill chunks and decodes mixed), described on the host.
#pragma once

#include <cstdint>
#include <vector>

namespace moeserve {

struct ForwardBatch {
  std::vector<int32_t> tokens;        // [n_tokens] token ids
  std::vector<int32_t> positions;     // [n_tokens] absolute position in its sequence
  std::vector<int32_t> token_seq;     // [n_tokens] row of block_tables
  std::vector<int32_t> slot_mapping;  // [n_tokens] cache slot written by the token
  std::vector<int32_t> block_tables;  // [n_seqs * max_blocks] block ids, row-major
  int32_t n_seqs = 0;
  int32_t max_blocks = 0;            // columns of block_tables
  std::vector<int32_t> logits_rows;  // [n_logits] tokens whose logits are returned

  int64_t n_tokens() const { return static_cast<int64_t>(tokens.size()); }
};

}  // namespace moeserve
