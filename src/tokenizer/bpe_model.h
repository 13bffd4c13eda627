// The BPE model: vocabulary, merges by rank, and the per-word merge loop.
// Supports byte-level vocabularies, `ignore_merges`, `byte_fallback`
// (<0xNN> tokens), `unk_token` and `fuse_unk`. Encoded words are cached so
// that long texts, which repeat words, stay linear.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "tokenizer/bpe_merge_table.h"
#include "tokenizer/bpe_word_cache.h"
#include "tokenizer/tokenizer_json.h"

namespace moeserve {

// The largest token id a tokenizer.json may use. Real vocabularies stay below
// ~260K; the bound keeps a hostile file from sizing tables by a huge id.
inline constexpr int64_t kMaxTokenId = (int64_t{1} << 22) - 1;

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenIdMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// Merges one word's initial symbols `ids` and appends the result: repeatedly
// merges the adjacent pair with the lowest rank in `merges`, the leftmost one
// on ties (Hugging Face's order), until no adjacent pair has a merge.
// O(n log n) in the number of symbols.
void bpe_merge(const BpeMergeTable& merges, std::span<const int32_t> ids,
               std::vector<int32_t>& out);

class BpeModel {
 public:
  // `config` is tokenizer.json's "model" object.
  static StatusOr<std::unique_ptr<BpeModel>> from_json(const tokenizer_json::Json& config,
                                                       std::string_view path);

  // Appends the ids of one pre-tokenized word. Thread-safe.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  // Same for a word given as raw bytes that the byte-level alphabet has not
  // been applied to yet (equivalent to encode_word(byte_level::encode(raw))).
  void encode_word_bytes(std::string_view raw, std::vector<int32_t>& out) const;

  // -1 when absent.
  int32_t token_to_id(std::string_view token) const;
  // Empty when absent.
  std::string_view id_to_token(int32_t id) const;
  // One past the largest id in the vocabulary.
  int32_t n_vocab() const { return static_cast<int32_t>(id_to_token_.size()); }
  bool byte_fallback() const { return byte_fallback_; }

 private:
  BpeModel() = default;
  // Appends the ids cached for `key` (in raw_cache_ when `raw`, else cache_);
  // on a miss runs `merge`, which appends them, and caches the result.
  template <typename Merge>
  void cached(std::string_view key, bool raw, Merge merge, std::vector<int32_t>& out) const;
  // Splits `word` into initial symbols, then merges.
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;
  void merge_symbols(std::vector<int32_t>& ids, std::vector<int32_t>& out) const;
  int32_t char_id(std::string_view ch, char32_t cp) const;

  TokenIdMap token_to_id_;
  std::vector<std::string> id_to_token_;
  BpeMergeTable merges_;
  std::vector<int32_t> small_char_id_;  // id of single-character tokens, by code point
  int32_t byte_token_id_[256];          // <0xNN> ids for byte_fallback (-1 when absent)
  int32_t byte_level_id_[256];          // id of each byte's byte-level character (-1 when absent)
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;

  mutable std::mutex cache_mutex_;
  mutable BpeWordCache cache_;      // by word
  mutable BpeWordCache raw_cache_;  // by raw bytes (encode_word_bytes)
};

}  // namespace moeserve
