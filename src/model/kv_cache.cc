#include "model/kv_cache.h"

namespace moeserve {

KvCache::KvCache(Backend& backend, int n_layers, int n_blocks, int block_size, int row_width,
                 DType dtype, bool scratch_block)
    : n_blocks_(n_blocks),
      block_size_(block_size),
      row_width_(row_width),
      dtype_(dtype),
      has_scratch_(scratch_block) {
  MS_CHECK(n_blocks > 0 && block_size > 0 && row_width > 0, "bad KV cache geometry");
  MS_CHECK(dtype == DType::kF32 || dtype == DType::kBF16, "KV cache dtype ", dtype_name(dtype));
  for (int i = 0; i < n_layers; ++i) {
    layers_.push_back(
        backend.alloc(dtype, {n_blocks + (scratch_block ? 1 : 0), block_size, row_width}));
  }
}

int64_t KvCache::block_bytes(int n_layers, int block_size, int row_width, DType dtype) {
  return dtype_bytes(dtype, int64_t{n_layers} * block_size * row_width);
}

int64_t KvCache::n_bytes() const {
  int64_t n = 0;
  for (const Tensor& t : layers_) n += t.n_bytes();
  return n;
}

}  // namespace moeserve
