#include "common/range_allocator.h"

#include <algorithm>

#include "common/status.h"

namespace moeserve {

RangeAllocator::RangeAllocator(int64_t capacity, int64_t align)
    : capacity_(capacity / align * align), align_(align) {
  MS_CHECK(align > 0 && capacity >= 0, "RangeAllocator: capacity ", capacity, ", align ", align);
  if (capacity_ > 0) insert_free(0, capacity_);
}

void RangeAllocator::insert_free(int64_t offset, int64_t size) {
  free_by_offset_.emplace(offset, size);
  free_by_size_.emplace(size, offset);
}

void RangeAllocator::erase_free(std::map<int64_t, int64_t>::iterator it) {
  free_by_size_.erase({it->second, it->first});
  free_by_offset_.erase(it);
}

std::optional<int64_t> RangeAllocator::allocate(int64_t bytes) {
  MS_CHECK(bytes >= 0, "RangeAllocator::allocate(", bytes, ")");
  const int64_t units = bytes / align_ + (bytes % align_ != 0 || bytes == 0 ? 1 : 0);
  if (units > capacity_ / align_) return std::nullopt;
  const int64_t size = units * align_;
  std::lock_guard<std::mutex> lock(mu_);
  const auto fit = free_by_size_.lower_bound({size, 0});
  if (fit == free_by_size_.end()) return std::nullopt;
  const int64_t offset = fit->second, have = fit->first;
  erase_free(free_by_offset_.find(offset));
  if (have > size) insert_free(offset + size, have - size);
  used_.emplace(offset, size);
  used_bytes_ += size;
  peak_bytes_ = std::max(peak_bytes_, used_bytes_);
  return offset;
}

void RangeAllocator::free(int64_t offset) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = used_.find(offset);
  MS_CHECK(it != used_.end(), "RangeAllocator::free(", offset, "): not an allocated range");
  int64_t begin = offset, end = offset + it->second;
  used_bytes_ -= it->second;
  used_.erase(it);
  // Merge with the free ranges that end at `begin` and start at `end`.
  auto next = free_by_offset_.lower_bound(end);
  if (next != free_by_offset_.end() && next->first == end) {
    end += next->second;
    erase_free(next);
  }
  auto prev = free_by_offset_.lower_bound(begin);
  if (prev != free_by_offset_.begin()) {
    --prev;
    if (prev->first + prev->second == begin) {
      begin = prev->first;
      erase_free(prev);
    }
  }
  insert_free(begin, end - begin);
}

int64_t RangeAllocator::used() const {
  std::lock_guard<std::mutex> lock(mu_);
  return used_bytes_;
}

int64_t RangeAllocator::peak() const {
  std::lock_guard<std::mutex> lock(mu_);
  return peak_bytes_;
}

int64_t RangeAllocator::largest_free() const {
  std::lock_guard<std::mutex> lock(mu_);
  return free_by_size_.empty() ? 0 : free_by_size_.rbegin()->first;
}

}  // namespace moeserve
