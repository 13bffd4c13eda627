#include "engine/block_allocator.h"

#include "common/status.h"

namespace moeserve {

BlockAllocator::BlockAllocator(int n_blocks)
    : n_blocks_(n_blocks), in_use_(static_cast<size_t>(n_blocks), false) {
  for (int32_t b = n_blocks - 1; b >= 0; --b) free_.push_back(b);
}

std::optional<int32_t> BlockAllocator::allocate() {
  if (free_.empty()) return std::nullopt;
  const int32_t b = free_.back();
  free_.pop_back();
  in_use_[static_cast<size_t>(b)] = true;
  return b;
}

void BlockAllocator::release(int32_t block) {
  MS_CHECK(block >= 0 && block < n_blocks_ && in_use_[static_cast<size_t>(block)],
           "release of block ", block, " that is not in use");
  in_use_[static_cast<size_t>(block)] = false;
  free_.push_back(block);
}

}  // namespace moeserve
