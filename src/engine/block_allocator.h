// A free list of KV-cache block ids.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace moeserve {

class BlockAllocator {
 public:
  explicit BlockAllocator(int n_blocks);

  std::optional<int32_t> allocate();
  void release(int32_t block);
  int n_free() const { return static_cast<int>(free_.size()); }
  int n_blocks() const { return n_blocks_; }

 private:
  int n_blocks_;
  std::vector<int32_t> free_;  // LIFO: recently freed blocks are reused first
  std::vector<bool> in_use_;   // catches double frees
};

}  // namespace moeserve
