// Batch-size buckets for replaying decode steps as CUDA graphs.
//
// A captured graph has fixed shapes, so decode steps are captured once per bucket size and a
// step of n sequences replays the smallest bucket that holds n, its rows [n, bucket) padded.
// A padding row decodes a valid token at position 0 of a scratch sequence whose one cache
// block no real sequence uses, so it writes only that scratch slot and reads only it; its
// logits are never sampled. Steps larger than the largest bucket run eagerly.
//
// Pure host logic (no CUDA), built into every configuration and unit-tested
// (tests/unit/graph_buckets_test.cc).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace moeserve {

struct GraphBucketConfig {
  int max_num_seqs = 256;     // sequences a step may hold (engine config)
  int max_graph_batch = 256;  // largest bucket captured; larger steps run eagerly
};

// Where a padding row points: a valid token, a scratch sequence and its scratch slot.
struct DecodePadding {
  int32_t token = 0;     // any id of the vocabulary
  int32_t position = 0;  // position 0 of the scratch sequence: attends to its one slot
  int32_t seq_row = 0;   // block-table row of the scratch sequence
  int32_t slot = 0;      // its cache slot, reserved by the block manager
};

class GraphBuckets {
 public:
  // Sizes 1, 2, 4, then multiples of 8 up to min(max_num_seqs, max_graph_batch), plus that
  // limit itself when it is not one of them, so every step size up to it has a bucket.
  // Aborts unless both limits are ≥ 1.
  explicit GraphBuckets(const GraphBucketConfig& config);

  std::span<const int> sizes() const { return sizes_; }  // ascending
  int largest() const { return sizes_.back(); }

  // The smallest bucket ≥ n_seqs (n_seqs ≥ 1), or nullopt: run the step eagerly.
  std::optional<int> bucket_for(int n_seqs) const;

 private:
  std::vector<int> sizes_;
};

// Fills rows [n_real, size) of a decode step's per-row metadata (each span holds the
// bucket's rows) with `pad`. Rows below n_real are left as they are; aborts if a span's size
// differs from the others or n_real exceeds it.
void pad_decode_rows(int n_real, const DecodePadding& pad, std::span<int32_t> tokens,
                     std::span<int32_t> positions, std::span<int32_t> token_seq,
                     std::span<int32_t> slot_mapping);

}  // namespace moeserve
