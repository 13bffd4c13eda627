// Paged KV-cache blocks with reference counts and a prefix cache.
//
// Pure logic over ids: a block is an int32 index into the KV cache, a
// sequence is an int64 id. The manager owns each sequence's block table and
// how many token slots of it are in use.
//
// Prefix caching: once a FULL block's tokens have been computed, the block is
// registered under a chained content hash
//   hash(block i) = SHA-256(hash(block i-1) || token ids of block i)
// where "hash(block -1)" is SHA-256 of the request's cache salt, so tenants
// with different salts never share (or probe) each other's prompts. A later
// sequence whose prompt starts with the same full blocks takes references on
// them instead of recomputing. Freed blocks that carry a hash are kept as
// "evictable" (least recently freed first) and are reused only when the free
// list is empty; then their hash is forgotten.
#pragma once

#include <array>
#include <cstdint>
#include <list>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace moeserve {

using Sha256Digest = std::array<uint8_t, 32>;

// SHA-256 (FIPS 180-4) of `data`. Small and slow; hashes one block of token
// ids at a time, which is not a hot path next to a model step.
Sha256Digest sha256(std::span<const uint8_t> data);
Sha256Digest sha256(std::string_view data);

// A cached prefix found by BlockManager::match_prefix.
struct PrefixMatch {
  int n_tokens = 0;             // tokens covered by the matched full blocks
  int n_evictable = 0;          // of the matched blocks, how many sit unreferenced
                                // in the evictable list (taking them uses capacity)
  std::vector<int32_t> blocks;  // [n_tokens / block_size] matched block ids
};

class BlockManager {
 public:
  // `n_blocks` blocks of `block_size` tokens each. Both must be > 0
  // (checked; the scheduler validates its config before building one).
  BlockManager(int n_blocks, int block_size, bool enable_prefix_caching);

  int n_blocks() const { return n_blocks_; }
  int block_size() const { return block_size_; }
  // Blocks needed to hold `n_tokens` token slots.
  int blocks_for(int n_tokens) const { return (n_tokens + block_size_ - 1) / block_size_; }

  // Blocks that can be handed out now: the free list plus evictable blocks.
  int n_available() const { return static_cast<int>(free_.size() + evictable_.size()); }
  bool can_allocate(int n_blocks) const { return n_blocks <= n_available(); }
  int n_free() const { return static_cast<int>(free_.size()); }
  int n_evictable() const { return static_cast<int>(evictable_.size()); }
  int n_used() const { return n_blocks_ - n_available(); }
  // Fraction of blocks referenced by some sequence (evictable ones are free
  // capacity), in [0, 1].
  double usage() const { return static_cast<double>(n_used()) / n_blocks_; }

  // Longest run of cached full blocks at the start of `tokens` (salted). Never
  // covers the last token: the model must compute at least one token to give
  // logits. Changes nothing and counts nothing.
  PrefixMatch match_prefix(std::span<const int32_t> tokens, std::string_view salt) const;

  // Starts a block table for new sequence `seq_id` from the cached prefix of
  // `tokens`: takes a reference on each matched block and returns the number
  // of cached tokens (the sequence's slots in use). Counts one prefix query of
  // tokens.size() tokens and a hit of the returned count. Taking the matched
  // blocks never fails (they are already allocated); callers check room for
  // the rest with can_allocate(blocks needed + match.n_evictable).
  int allocate_for(int64_t seq_id, std::span<const int32_t> tokens, std::string_view salt);

  // Starts a block table for new sequence `child` that shares the first
  // `n_tokens` slots (a multiple of block_size, all full blocks) of `parent`.
  void fork(int64_t parent, int64_t child, int n_tokens);

  // Reserves `n` more token slots for `seq_id`, allocating blocks as needed
  // (evicting cached blocks when the free list is empty). All or nothing:
  // returns false and changes nothing when there are not enough blocks.
  bool append_slots(int64_t seq_id, int n);

  // The undo of append_slots: gives back the slots of `seq_id` past its first `n_slots`,
  // releasing blocks it no longer needs as free() does. `n_slots` must not cut into a
  // committed block.
  void truncate(int64_t seq_id, int n_slots);

  // Registers the full blocks among the first `n_computed` tokens of `seq_id`
  // in the prefix cache, so later sequences can reuse them. `tokens` is the
  // sequence's full token list; call after a step computed them.
  void commit(int64_t seq_id, std::span<const int32_t> tokens, int n_computed);

  // Drops `seq_id`'s references. A block no one references goes to the
  // evictable list if it has a hash (tail blocks first, so a prefix's last
  // blocks are evicted before its first ones), else to the free list.
  void free(int64_t seq_id);

  bool has_sequence(int64_t seq_id) const { return seqs_.count(seq_id) != 0; }
  const std::vector<int32_t>& block_table(int64_t seq_id) const;
  int n_slots(int64_t seq_id) const;  // token slots in use
  int ref_count(int32_t block) const { return blocks_.at(static_cast<size_t>(block)).ref_count; }
  bool is_cached(int32_t block) const { return blocks_.at(static_cast<size_t>(block)).has_hash; }
  // Least recently freed first: the order eviction takes them.
  std::vector<int32_t> evictable_blocks() const { return {evictable_.begin(), evictable_.end()}; }

  // Counters since construction, in tokens.
  int64_t n_prefix_query_tokens() const { return n_query_tokens_; }
  int64_t n_prefix_hit_tokens() const { return n_hit_tokens_; }
  int64_t n_evictions() const { return n_evictions_; }

  // Full consistency check (for tests and debug builds): every block is in
  // exactly one of free / evictable / used; ref counts equal the number of
  // block tables that hold the block; the hash index points at live blocks.
  Status check_invariants() const;

 private:
  struct Block {
    int ref_count = 0;
    bool has_hash = false;
    Sha256Digest hash{};
    std::list<int32_t>::iterator lru_pos;  // valid while evictable
    bool evictable = false;
  };
  struct SeqBlocks {
    std::vector<int32_t> blocks;
    std::vector<Sha256Digest> hashes;  // chained hashes of committed blocks
    Sha256Digest salt_hash{};          // the chain's seed, from the cache salt
    int n_slots = 0;
  };
  struct DigestHash {
    size_t operator()(const Sha256Digest& d) const {
      size_t h = 0;
      for (size_t i = 0; i < sizeof(size_t); ++i) h = (h << 8) | d[i];
      return h;
    }
  };

  Sha256Digest chain_hash(const Sha256Digest& prev, std::span<const int32_t> block_tokens) const;
  Sha256Digest salt_hash(std::string_view salt) const;
  int32_t take_block();             // from the free list, else evicts; must succeed
  void take_ref(int32_t block);     // +1 ref; leaves the evictable list
  void release_ref(int32_t block);  // -1 ref; unreferenced: evictable if hashed, else free
  SeqBlocks& seq(int64_t seq_id);

  int n_blocks_;
  int block_size_;
  bool enable_prefix_caching_;
  std::vector<Block> blocks_;     // [n_blocks]
  std::vector<int32_t> free_;     // LIFO of unreferenced, unhashed blocks
  std::list<int32_t> evictable_;  // unreferenced hashed blocks, LRU first
  std::unordered_map<Sha256Digest, int32_t, DigestHash> cached_;  // hash -> block
  std::unordered_map<int64_t, SeqBlocks> seqs_;
  int64_t n_query_tokens_ = 0;
  int64_t n_hit_tokens_ = 0;
  int64_t n_evictions_ = 0;
};

}  // namespace moeserve
