// The paged latent KV cache: for every layer, blocks of `block_size` rows of
// [compressed latent (kv_lora_rank) | rope key (qk_rope_head_dim)], in F32 or
// BF16 (half the memory; rows are rounded once, when written).
#pragma once

#include <vector>

#include "backend/backend.h"

namespace moeserve {

class KvCache {
 public:
  // `scratch_block`: one block more, after the n_blocks a block manager hands out, that only
  // the padding rows of graph-replayed decode steps write and read (model/decode_graphs.h).
  KvCache(Backend& backend, int n_layers, int n_blocks, int block_size, int row_width,
          DType dtype = DType::kF32, bool scratch_block = false);

  // Bytes of one block over all layers.
  static int64_t block_bytes(int n_layers, int block_size, int row_width, DType dtype);

  int n_blocks() const { return n_blocks_; }  // blocks sequences may use
  // The scratch block's id (n_blocks()), or -1 without one.
  int scratch_block() const { return has_scratch_ ? n_blocks_ : -1; }
  int block_size() const { return block_size_; }
  int row_width() const { return row_width_; }
  DType dtype() const { return dtype_; }
  const Tensor& layer(int i) const {
    return layers_[static_cast<size_t>(i)];
  }  // [n_blocks (+ 1 scratch), block_size, row_width]
  int64_t n_bytes() const;

 private:
  int n_blocks_;
  int block_size_;
  int row_width_;
  DType dtype_;
  bool has_scratch_;
  std::vector<Tensor> layers_;
};

}  // namespace moeserve
