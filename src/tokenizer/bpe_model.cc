#include "tokenizer/bpe_model.h"

#include <algorithm>
#include <bit>
#include <climits>
#include <cstdio>
#include <functional>

#include "tokenizer/bpe_byte_level.h"
#include "tokenizer/unicode.h"

namespace moeserve {
namespace {

using namespace tokenizer_json;

constexpr char32_t kSmallCharLimit = 0x3400;  // covers Latin..CJK symbols densely

StatusOr<std::pair<std::string, std::string>> parse_merge(const Json& m, const std::string& path) {
  if (m.is_string()) {
    const auto& s = m.get_ref<const std::string&>();
    size_t space = s.find(' ');
    if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
      return field_error(path, "must be two tokens separated by one space");
    return std::pair{s.substr(0, space), s.substr(space + 1)};
  }
  if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
    return std::pair{m[0].get<std::string>(), m[1].get<std::string>()};
  return field_error(path, "must be \"a b\" or [\"a\", \"b\"]");
}

}  // namespace

StatusOr<std::unique_ptr<BpeModel>> BpeModel::from_json(const Json& config, std::string_view path) {
  ASSIGN_OR_RETURN(std::string type, get_string_or(config, path, "type", "BPE"));
  if (type != "BPE")
    return field_error(child(path, "type"),
                       tokenizer_json::str_cat("has unsupported model '", type, "'"));
  ASSIGN_OR_RETURN(std::string prefix,
                   get_string_or(config, path, "continuing_subword_prefix", ""));
  ASSIGN_OR_RETURN(std::string suffix, get_string_or(config, path, "end_of_word_suffix", ""));
  if (!prefix.empty() || !suffix.empty())
    return field_error(child(path, "continuing_subword_prefix"),
                       "/ end_of_word_suffix: non-empty values are not supported");
  if (const Json* dropout = find(config, "dropout");
      dropout && dropout->is_number() && dropout->get<double>() > 0.0)
    return field_error(child(path, "dropout"), "must be null (BPE dropout is not supported)");

  std::unique_ptr<BpeModel> m(new BpeModel());
  ASSIGN_OR_RETURN(m->byte_fallback_, get_bool_or(config, path, "byte_fallback", false));
  ASSIGN_OR_RETURN(m->ignore_merges_, get_bool_or(config, path, "ignore_merges", false));
  ASSIGN_OR_RETURN(m->fuse_unk_, get_bool_or(config, path, "fuse_unk", false));

  ASSIGN_OR_RETURN(const Json* vocab, require(config, path, "vocab"));
  if (!vocab->is_object()) return field_error(child(path, "vocab"), "must be an object");
  m->token_to_id_.reserve(vocab->size());
  int32_t max_id = -1;
  for (const auto& [token, id] : vocab->items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > kMaxTokenId)
      return field_error(child(child(path, "vocab"), token),
                         absl::StrCat("must be an integer id in [0, ", kMaxTokenId, "]"));
    auto v = static_cast<int32_t>(id.get<int64_t>());
    m->token_to_id_.emplace(token, v);
    max_id = std::max(max_id, v);
  }
  m->id_to_token_.resize(static_cast<size_t>(max_id + 1));
  for (const auto& [token, id] : m->token_to_id_) m->id_to_token_[id] = token;

  m->small_char_id_.assign(kSmallCharLimit, -1);
  for (const auto& [token, id] : m->token_to_id_) {
    size_t pos = 0;
    char32_t cp = unicode::next_code_point(token, pos);
    if (pos == token.size() && cp < kSmallCharLimit && cp != unicode::kReplacementChar)
      m->small_char_id_[cp] = id;
  }
  for (int b = 0; b < 256; ++b) {
    m->byte_level_id_[b] = m->token_to_id(byte_level::encode(std::string(1, static_cast<char>(b))));
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    m->byte_token_id_[b] = m->token_to_id(name);
  }

  ASSIGN_OR_RETURN(std::string unk, get_string_or(config, path, "unk_token", ""));
  if (!unk.empty()) {
    m->unk_id_ = m->token_to_id(unk);
    if (m->unk_id_ < 0) return field_error(child(path, "unk_token"), "is not in the vocabulary");
  }

  ASSIGN_OR_RETURN(const Json* merges, get_array(config, path, "merges"));
  m->merges_.reserve(merges->size());
  std::string merges_path = child(path, "merges");
  std::string merged;
  for (size_t i = 0; i < merges->size(); ++i) {
    std::string p = index(merges_path, i);
    ASSIGN_OR_RETURN(auto pair, parse_merge((*merges)[i], p));
    int32_t a = m->token_to_id(pair.first), b = m->token_to_id(pair.second);
    merged = pair.first + pair.second;
    int32_t c = m->token_to_id(merged);
    if (a < 0 || b < 0 || c < 0)
      return field_error(p, tokenizer_json::str_cat("uses a token missing from the vocabulary ('",
                                                    a < 0   ? pair.first
                                                    : b < 0 ? pair.second
                                                            : merged,
                                                    "')"));
    m->merges_.insert(a, b, static_cast<int32_t>(i), c);
  }
  return m;
}

int32_t BpeModel::token_to_id(std::string_view token) const {
  auto it = token_to_id_.find(token);
  return it == token_to_id_.end() ? -1 : it->second;
}

std::string_view BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) return {};
  return id_to_token_[id];
}

int32_t BpeModel::char_id(std::string_view ch, char32_t cp) const {
  if (cp < kSmallCharLimit) return small_char_id_[cp];
  return token_to_id(ch);
}

template <typename Merge>
void BpeModel::cached(std::string_view key, bool raw, Merge merge,
                      std::vector<int32_t>& out) const {
  BpeWordCache& cache = raw ? raw_cache_ : cache_;
  bool cacheable = key.size() <= BpeWordCache::kMaxKeyBytes;
  uint64_t h = 0;
  if (cacheable) {
    h = BpeWordCache::hash(key);
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache.find(key, h, out)) return;
  }
  size_t start = out.size();
  merge(out);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    cache.insert(key, h, std::span<const int32_t>(out).subspan(start));
  }
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (int32_t id = token_to_id(word); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  cached(
      word, false, [&](std::vector<int32_t>& o) { merge_word(word, o); }, out);
}

void BpeModel::encode_word_bytes(std::string_view raw, std::vector<int32_t>& out) const {
  if (raw.empty()) return;
  if (ignore_merges_) {
    encode_word(byte_level::encode(raw), out);
    return;
  }
  cached(
      raw, true,
      [&](std::vector<int32_t>& o) {
        thread_local std::vector<int32_t> ids;
        ids.clear();
        for (char c : raw) {
          int32_t id = byte_level_id_[static_cast<uint8_t>(c)];
          if (id < 0) {  // a vocabulary without the full byte alphabet: take the general path
            merge_word(byte_level::encode(raw), o);
            return;
          }
          ids.push_back(id);
        }
        merge_symbols(ids, o);
      },
      out);
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<int32_t> ids;
  ids.reserve(word.size());
  auto push = [&](int32_t id) { ids.push_back(id); };
  bool last_unk = false;
  for (size_t pos = 0; pos < word.size();) {
    size_t begin = pos;
    char32_t cp = unicode::next_code_point(word, pos);
    int32_t id = char_id(word.substr(begin, pos - begin), cp);
    if (id >= 0) {
      push(id);
      last_unk = false;
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (size_t i = begin; i < pos; ++i)
        all = all && byte_token_id_[static_cast<uint8_t>(word[i])] >= 0;
      if (all) {
        for (size_t i = begin; i < pos; ++i) push(byte_token_id_[static_cast<uint8_t>(word[i])]);
        last_unk = false;
        continue;
      }
    }
    if (unk_id_ >= 0 && !(fuse_unk_ && last_unk)) push(unk_id_);
    last_unk = unk_id_ >= 0;
  }
  merge_symbols(ids, out);
}

void BpeModel::merge_symbols(std::vector<int32_t>& ids, std::vector<int32_t>& out) const {
  bpe_merge(merges_, ids, out);
}

namespace {

// Words up to this many symbols merge by rescanning all pairs (no queue): most
// words are this short, and for them the scan is cheaper than queue upkeep.
constexpr size_t kMaxScanSymbols = 16;

// The O(n^2) rescan for short words: `ids` and `ranks`/`merged` (of the pair
// starting at each symbol; INT32_MAX when the pair has no merge) shrink by
// one entry per merge.
void merge_by_scan(const BpeMergeTable& merges, std::span<const int32_t> word,
                   std::vector<int32_t>& out) {
  size_t n = word.size();
  int32_t ids[kMaxScanSymbols], ranks[kMaxScanSymbols], merged[kMaxScanSymbols];
  auto set_pair = [&](size_t i) {
    BpeMergeTable::Merge m = merges.find(ids[i], ids[i + 1]);
    ranks[i] = m.rank < 0 ? INT32_MAX : m.rank;
    merged[i] = m.merged_id;
  };
  std::copy(word.begin(), word.end(), ids);
  for (size_t i = 0; i + 1 < n; ++i) set_pair(i);
  while (n > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < n; ++i)
      if (ranks[i] < ranks[best]) best = i;  // strict: the leftmost pair wins ties
    if (ranks[best] == INT32_MAX) break;
    ids[best] = merged[best];
    --n;
    for (size_t i = best + 1; i < n; ++i) ids[i] = ids[i + 1];
    for (size_t i = best + 1; i + 1 < n; ++i) {
      ranks[i] = ranks[i + 1];
      merged[i] = merged[i + 1];
    }
    if (best > 0) set_pair(best - 1);
    if (best + 1 < n) set_pair(best);
  }
  out.insert(out.end(), ids, ids + n);
}

// Min-queue of 64-bit keys for merge_by_queue. Merging pair (rank, pos)
// normally creates pairs of higher rank (a trained table learns "x yz" only
// after "y z"), so the popped keys rise: while they do, this is a radix heap,
// whose push is a bucket append and whose pops move each key down a few of
// its 64 buckets in all, far cheaper than sifting a binary heap of 10^4 keys. The
// first push below the last popped key switches it, for the rest of the word,
// to a binary heap holding the same keys, so the order is exact either way.
class MergeQueue {
 public:
  // Empties the queue; `floor` must not exceed any key pushed before a pop.
  void reset(uint64_t floor) {
    for (uint64_t mask = nonempty_; mask != 0; mask &= mask - 1)
      buckets_[std::countr_zero(mask)].clear();
    nonempty_ = 0;
    last_ = floor;
    binary_ = false;
    heap_.clear();
  }
  bool empty() const { return binary_ ? heap_.empty() : nonempty_ == 0; }
  void push(uint64_t key) {
    if (binary_) {
      heap_.push_back(key);
      std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
    } else if (key < last_) {
      to_binary();
      push(key);
    } else {
      append(key);
    }
  }
  uint64_t pop() {
    if (binary_) {
      std::pop_heap(heap_.begin(), heap_.end(), std::greater<>());
      uint64_t key = heap_.back();
      heap_.pop_back();
      return key;
    }
    if (buckets_[0].empty()) {
      // Re-spread the lowest non-empty bucket around its minimum; every key
      // lands in a lower bucket, the minimum in bucket 0.
      int b = std::countr_zero(nonempty_);
      std::vector<uint64_t>& from = buckets_[b];
      last_ = *std::min_element(from.begin(), from.end());
      nonempty_ &= nonempty_ - 1;
      for (uint64_t key : from) append(key);
      from.clear();
    }
    uint64_t key = buckets_[0].back();
    buckets_[0].pop_back();
    if (buckets_[0].empty()) nonempty_ &= ~uint64_t{1};
    return key;
  }

 private:
  // Bucket 0 holds keys equal to last_, bucket b keys whose highest bit
  // differing from last_ is bit b-1; bit b of nonempty_ marks bucket b. Ranks
  // are non-negative int32s, so keys are below 2^63 and b stays below 64.
  void append(uint64_t key) {
    int b = key == last_ ? 0 : 64 - std::countl_zero(key ^ last_);
    buckets_[b].push_back(key);
    nonempty_ |= uint64_t{1} << b;
  }
  void to_binary() {
    for (uint64_t mask = nonempty_; mask != 0; mask &= mask - 1) {
      std::vector<uint64_t>& bucket = buckets_[std::countr_zero(mask)];
      heap_.insert(heap_.end(), bucket.begin(), bucket.end());
      bucket.clear();
    }
    nonempty_ = 0;
    std::make_heap(heap_.begin(), heap_.end(), std::greater<>());
    binary_ = true;
  }

  std::vector<uint64_t> buckets_[64];
  uint64_t nonempty_ = 0;
  uint64_t last_ = 0;
  bool binary_ = false;
  std::vector<uint64_t> heap_;
};

// O(n log n) for long words: the symbols form a linked list, and a queue
// holds (rank << 32 | position) of adjacent pairs, so it pops the lowest rank
// and then the leftmost pair. Entries go stale as neighbours merge; each
// symbol records the rank of the pair it currently starts, and a popped entry
// is valid when that still matches (no merge-table lookup to validate).
void merge_by_queue(const BpeMergeTable& merges, std::span<const int32_t> word,
                    std::vector<int32_t>& out) {
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // -1 at the ends
    int32_t rank;        // of the pair (this, next); -1: none, or merged away
    int32_t merged_id;   // of that pair
  };
  thread_local std::vector<Symbol> syms;
  thread_local MergeQueue queue;
  auto n = static_cast<int32_t>(word.size());
  syms.resize(word.size());
  auto key = [](int32_t rank, int32_t left) {
    return (uint64_t{static_cast<uint32_t>(rank)} << 32) | static_cast<uint32_t>(left);
  };
  uint64_t min_key = ~uint64_t{0};
  for (int32_t i = 0; i < n; ++i) {
    Symbol& s = syms[i];
    s = {word[i], i - 1, i + 1 < n ? i + 1 : -1, -1, -1};
    if (i + 1 < n) {
      BpeMergeTable::Merge m = merges.find(word[i], word[i + 1]);
      s.rank = m.rank;
      s.merged_id = m.merged_id;
      if (m.rank >= 0) min_key = std::min(min_key, key(m.rank, i));
    }
  }
  queue.reset(min_key == ~uint64_t{0} ? 0 : min_key);
  for (int32_t i = 0; i + 1 < n; ++i)
    if (syms[i].rank >= 0) queue.push(key(syms[i].rank, i));
  auto set_pair = [&](int32_t left) {
    Symbol& s = syms[left];
    BpeMergeTable::Merge m =
        s.next < 0 ? BpeMergeTable::Merge{} : merges.find(s.id, syms[s.next].id);
    s.rank = m.rank;
    s.merged_id = m.merged_id;
    if (m.rank >= 0) queue.push(key(m.rank, left));
  };
  while (!queue.empty()) {
    uint64_t top = queue.pop();
    auto left = static_cast<int32_t>(top & 0xFFFFFFFF);
    Symbol& l = syms[left];
    if (l.rank != static_cast<int32_t>(top >> 32)) continue;  // stale
    Symbol& r = syms[l.next];
    l.id = l.merged_id;
    l.next = r.next;
    r.rank = -1;
    if (r.next >= 0) syms[r.next].prev = left;
    if (l.prev >= 0) set_pair(l.prev);
    set_pair(left);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next) out.push_back(syms[i].id);
}

}  // namespace

void bpe_merge(const BpeMergeTable& merges, std::span<const int32_t> ids,
               std::vector<int32_t>& out) {
  if (ids.size() <= 1) {
    out.insert(out.end(), ids.begin(), ids.end());
  } else if (ids.size() <= kMaxScanSymbols) {
    merge_by_scan(merges, ids, out);
  } else {
    merge_by_queue(merges, ids, out);
  }
}

}  // namespace moeserve
