// Best-fit allocation of byte ranges inside one fixed region, for a backend
// that reserves its device memory once at start-up (the CUDA backend's pool)
// and hands out tensors from it. Offsets only: the caller owns the memory.
// Freed ranges coalesce with their free neighbours. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <utility>

namespace moeserve {

class RangeAllocator {
 public:
  // A region of `capacity` bytes; every range starts on a multiple of `align`.
  explicit RangeAllocator(int64_t capacity, int64_t align = 256);

  // The offset of a free range of at least `bytes` (rounded up to the
  // alignment; 0 bytes take one unit, so offsets stay unique), the smallest
  // that fits, lowest offset first. nullopt when none does.
  std::optional<int64_t> allocate(int64_t bytes);
  // Gives back the range allocate() returned at `offset`. Aborts on an offset
  // it did not hand out (a double free).
  void free(int64_t offset);

  int64_t capacity() const { return capacity_; }
  int64_t used() const;          // bytes handed out now
  int64_t peak() const;          // the most handed out at once
  int64_t largest_free() const;  // the largest allocate() that would succeed now

 private:
  const int64_t capacity_;
  const int64_t align_;
  mutable std::mutex mu_;
  std::map<int64_t, int64_t> free_by_offset_;           // offset -> size
  std::set<std::pair<int64_t, int64_t>> free_by_size_;  // (size, offset)
  std::map<int64_t, int64_t> used_;                     // offset -> size
  int64_t used_bytes_ = 0;
  int64_t peak_bytes_ = 0;

  void insert_free(int64_t offset, int64_t size);
  void erase_free(std::map<int64_t, int64_t>::iterator it);
};

}  // namespace moeserve
