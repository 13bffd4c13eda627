// Runs one emulated block to completion on the calling OS thread (emulator internals).
#pragma once

#include <cstddef>
#include <vector>

namespace simt::emu {

struct BlockState;

// Fiber stacks of one worker thread, mapped once with a guard page and reused by every block.
class StackPool {
 public:
  StackPool() = default;
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;
  ~StackPool();
  void* get(size_t i);  // usable bottom of stack i
  static size_t stack_bytes();

 private:
  std::vector<void*> stacks_;
};

// Runs every thread of b; on return b.failed/b.error and b.races describe what went wrong.
void run_block(BlockState& b, StackPool& stacks);

}  // namespace simt::emu
