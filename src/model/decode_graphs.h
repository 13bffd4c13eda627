// Decode steps replayed as CUDA graphs, one graph per batch-size bucket
// (backend/graph_buckets.h; docs/cuda_backend.md, "CUDA graphs").
//
// A decode step (every sequence contributes one token and wants its logits) of n sequences is
// padded to the smallest bucket ≥ n: rows [n, bucket) decode token 0 at position 0 of the KV
// cache's scratch block, and every block table is widened to the reserved columns per
// sequence, so the step's shapes depend on the bucket alone. The first step of a bucket runs
// eagerly (it sizes the backend's workspace), the second captures forward() and replays it, and
// later ones only upload their metadata (outside the graph: fixed addresses) and replay.
// Pure bookkeeping and host logic; DeepseekV2Model drives it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>

#include "backend/backend.h"
#include "backend/graph_buckets.h"
#include "model/forward_batch.h"

namespace moeserve {

// Whether every sequence of `batch` contributes exactly one token, sequence i's at row i, and
// every token's logits are asked for.
bool is_decode_step(const ForwardBatch& batch);

// `batch` (a decode step) padded to `bucket` rows with `max_blocks` block-table columns: real
// rows keep their tables, widened by repeating their first block (valid ids the kernels never
// read); padding rows (pad_decode_rows) and their tables point at `scratch_block`.
ForwardBatch pad_decode_batch(const ForwardBatch& batch, int bucket, int max_blocks,
                              int scratch_block, int block_size);

// The graphs of one model's step context: per bucket, whether it has run eagerly, and its
// graph and the logits view it writes.
class DecodeGraphs {
 public:
  struct Bucket {
    bool warmed = false;  // ran eagerly once: the workspace fits its shapes
    bool failed = false;  // its capture failed: it runs eagerly from now on
    std::unique_ptr<GraphHandle> graph;
    Tensor logits;  // [bucket, vocab] F32: the arena view the graph writes
  };

  DecodeGraphs(const GraphBucketConfig& config, int max_blocks)
      : buckets_(config), max_blocks_(max_blocks) {}

  const GraphBuckets& buckets() const { return buckets_; }
  int max_blocks() const { return max_blocks_; }  // block-table columns of every graph step
  Bucket& bucket(int size) { return graphs_[size]; }
  // Forgets every graph when `cache` (its first layer's address) is not the one they wrote.
  void use_cache(const void* cache);

 private:
  GraphBuckets buckets_;
  int max_blocks_;
  std::map<int, Bucket> graphs_;
  const void* cache_ = nullptr;
};

}  // namespace moeserve
