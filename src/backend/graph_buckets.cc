#include "backend/graph_buckets.h"

#include <algorithm>

#include "common/status.h"

namespace moeserve {

GraphBuckets::GraphBuckets(const GraphBucketConfig& config) {
  MS_CHECK(config.max_num_seqs >= 1 && config.max_graph_batch >= 1, "graph buckets: max_num_seqs ",
           config.max_num_seqs, " and max_graph_batch ", config.max_graph_batch,
           " must be at least 1");
  const int limit = std::min(config.max_num_seqs, config.max_graph_batch);
  for (int s : {1, 2, 4}) {
    if (s <= limit) sizes_.push_back(s);
  }
  // Steps of 8 keep the padding under 8 rows per step (vLLM's capture sizes do the same).
  for (int s = 8; s <= limit; s += 8) sizes_.push_back(s);
  if (sizes_.back() != limit) sizes_.push_back(limit);
}

std::optional<int> GraphBuckets::bucket_for(int n_seqs) const {
  MS_CHECK(n_seqs >= 1, "graph buckets: a step of ", n_seqs, " sequences");
  const auto it = std::lower_bound(sizes_.begin(), sizes_.end(), n_seqs);
  if (it == sizes_.end()) return std::nullopt;
  return *it;
}

void pad_decode_rows(int n_real, const DecodePadding& pad, std::span<int32_t> tokens,
                     std::span<int32_t> positions, std::span<int32_t> token_seq,
                     std::span<int32_t> slot_mapping) {
  const size_t size = tokens.size();
  MS_CHECK(positions.size() == size && token_seq.size() == size && slot_mapping.size() == size,
           "pad_decode_rows: spans of ", size, ", ", positions.size(), ", ", token_seq.size(),
           " and ", slot_mapping.size(), " rows");
  MS_CHECK(n_real >= 0 && static_cast<size_t>(n_real) <= size, "pad_decode_rows: ", n_real,
           " real rows in a bucket of ", size);
  for (size_t r = static_cast<size_t>(n_real); r < size; ++r) {
    tokens[r] = pad.token;
    positions[r] = pad.position;
    token_seq[r] = pad.seq_row;
    slot_mapping[r] = pad.slot;
  }
}

}  // namespace moeserve
