#include "tokenizer/bpe_model.h"

#include <algorithm>
#include <cstdio>

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
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
      return field_error(child(child(path, "vocab"), token), "must be a non-negative integer id");
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
  if (ids.empty()) return;
  if (ids.size() == 1) {
    out.push_back(ids[0]);
    return;
  }
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // -1 at the ends
  };
  thread_local std::vector<Symbol> syms;
  syms.clear();
  for (size_t i = 0; i < ids.size(); ++i)
    syms.push_back({ids[i], static_cast<int32_t>(i) - 1,
                    i + 1 < ids.size() ? static_cast<int32_t>(i) + 1 : -1});

  // Min-heap of (rank << 32 | left): lowest rank first, then the leftmost
  // pair. Entries go stale as neighbours merge; a popped entry is valid when
  // its pair still has that rank (ranks identify merges uniquely). Plain
  // 8-byte keys keep the sift loops cheap for long words.
  thread_local std::vector<uint64_t> heap;
  heap.clear();
  auto key = [](int32_t rank, int32_t left) {
    return (uint64_t{static_cast<uint32_t>(rank)} << 32) | static_cast<uint32_t>(left);
  };
  auto consider = [&](int32_t left) {
    if (left < 0) return;
    int32_t right = syms[left].next;
    if (right < 0) return;
    int32_t rank = merges_.find(syms[left].id, syms[right].id).rank;
    if (rank < 0) return;
    heap.push_back(key(rank, left));
    std::push_heap(heap.begin(), heap.end(), std::greater<>());
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) {
    int32_t rank = merges_.find(syms[i].id, syms[i + 1].id).rank;
    if (rank >= 0) heap.push_back(key(rank, i));
  }
  std::make_heap(heap.begin(), heap.end(), std::greater<>());
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    uint64_t top = heap.back();
    heap.pop_back();
    auto left = static_cast<int32_t>(top & 0xFFFFFFFF);
    auto rank = static_cast<int32_t>(top >> 32);
    Symbol& l = syms[left];
    if (l.id < 0 || l.next < 0) continue;
    BpeMergeTable::Merge m = merges_.find(l.id, syms[l.next].id);
    if (m.rank != rank) continue;  // stale
    Symbol& r = syms[l.next];
    l.id = m.merged_id;
    r.id = -1;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = left;
    consider(l.prev);
    consider(left);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next) out.push_back(syms[i].id);
}

}  // namespace moeserve
