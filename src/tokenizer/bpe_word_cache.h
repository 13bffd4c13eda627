// Cache of BPE results by word: a flat open-addressing table whose keys and
// ids live in two arenas, so a lookup touches one slot and one key instead of
// walking hash-map nodes. It stops growing when full (like Hugging Face's
// cache): texts repeat their common words early. Keys up to 1 KiB are kept
// (Hugging Face stops at 256 characters), so indentation and other long
// whitespace runs in code, which repeat, skip the merge loop; the key arena
// is capped so memory stays bounded. Not thread-safe by itself.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace moeserve {

class BpeWordCache {
 public:
  static constexpr size_t kMaxKeyBytes = 1024;
  static constexpr size_t kMaxArenaBytes = size_t{16} << 20;

  explicit BpeWordCache(size_t max_entries = size_t{1} << 16) : max_entries_(max_entries) {
    size_t capacity = 16;
    while (capacity < max_entries * 2) capacity *= 2;
    slots_.assign(capacity, Slot{});
    mask_ = capacity - 1;
  }

  static uint64_t hash(std::string_view key) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ key.size();
    size_t i = 0;
    for (; i + 8 <= key.size(); i += 8) h = mix(h ^ load(key.data() + i, 8));
    if (i < key.size()) h = mix(h ^ load(key.data() + i, key.size() - i));
    return h;
  }

  // Appends the cached ids and returns true when `key` is present.
  bool find(std::string_view key, uint64_t h, std::vector<int32_t>& out) const {
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.n_ids == 0) return false;
      if (s.hash == h && s.key_len == key.size() && key_equals(s, key)) {
        if (s.n_ids <= kInlineIds) {
          out.insert(out.end(), s.ids, s.ids + s.n_ids);
        } else {
          auto begin = ids_.begin() + s.ids[0];
          out.insert(out.end(), begin, begin + s.n_ids);
        }
        return true;
      }
    }
  }

  void insert(std::string_view key, uint64_t h, std::span<const int32_t> ids) {
    if (size_ >= max_entries_ || ids.empty() || key.size() > kMaxKeyBytes || ids.size() > 0xFFFF ||
        keys_.size() + key.size() > kMaxArenaBytes)
      return;
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.n_ids != 0) {
        if (s.hash == h && s.key_len == key.size() && key_equals(s, key)) return;
        continue;
      }
      s.hash = h;
      s.key_len = static_cast<uint16_t>(key.size());
      s.n_ids = static_cast<uint16_t>(ids.size());
      if (key.size() <= 8) {
        s.key = load(key.data(), key.size());
      } else {
        s.key = keys_.size();
        keys_.append(key);
      }
      if (ids.size() <= kInlineIds) {
        std::copy(ids.begin(), ids.end(), s.ids);
      } else {
        s.ids[0] = static_cast<int32_t>(ids_.size());
        ids_.insert(ids_.end(), ids.begin(), ids.end());
      }
      ++size_;
      return;
    }
  }

 private:
  static constexpr size_t kInlineIds = 3;
  // 32 bytes; short keys and id lists live in the slot itself, so a typical
  // lookup touches a single cache line.
  struct Slot {
    uint64_t hash = 0;
    uint64_t key = 0;  // the key bytes when key_len <= 8, else an offset into keys_
    int32_t ids[kInlineIds] =
        {};  // the ids when n_ids <= kInlineIds, else ids[0] = offset into ids_
    uint16_t key_len = 0;
    uint16_t n_ids = 0;  // 0: empty slot
  };

  static uint64_t load(const char* p, size_t n) {
    uint64_t v = 0;
    std::memcpy(&v, p, n);
    return v;
  }
  static uint64_t mix(uint64_t x) {
    x *= 0xBF58476D1CE4E5B9ull;
    return x ^ (x >> 31);
  }
  bool key_equals(const Slot& s, std::string_view key) const {
    if (key.size() <= 8) return s.key == load(key.data(), key.size());
    return std::memcmp(keys_.data() + s.key, key.data(), key.size()) == 0;
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
  size_t max_entries_;
  std::string keys_;
  std::vector<int32_t> ids_;
};

}  // namespace moeserve
