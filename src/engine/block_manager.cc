#include "engine/block_manager.h"

#include <algorithm>
#include <cstring>

namespace moeserve {
namespace {

// ---- SHA-256, FIPS 180-4 section 6.2 -------------------------------------

constexpr uint32_t kSha256K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

void sha256_block(uint32_t state[8], const uint8_t* p) {
  uint32_t w[64];
  for (size_t t = 0; t < 16; ++t) {
    w[t] = (uint32_t{p[4 * t]} << 24) | (uint32_t{p[4 * t + 1]} << 16) |
           (uint32_t{p[4 * t + 2]} << 8) | uint32_t{p[4 * t + 3]};
  }
  for (int t = 16; t < 64; ++t) {
    const uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
    const uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
    w[t] = w[t - 16] + s0 + w[t - 7] + s1;
  }
  uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
  uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
  for (int t = 0; t < 64; ++t) {
    const uint32_t t1 =
        h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kSha256K[t] + w[t];
    const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  state[0] += a;
  state[1] += b;
  state[2] += c;
  state[3] += d;
  state[4] += e;
  state[5] += f;
  state[6] += g;
  state[7] += h;
}

// Token ids as little-endian bytes, so the hash does not depend on the host.
void append_le32(std::vector<uint8_t>& out, int32_t v) {
  const auto u = static_cast<uint32_t>(v);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(u >> (8 * i)));
}

}  // namespace

Sha256Digest sha256(std::span<const uint8_t> data) {
  uint32_t state[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                       0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  size_t i = 0;
  for (; i + 64 <= data.size(); i += 64) sha256_block(state, data.data() + i);
  // Padding: 0x80, zeros, then the message length in bits (big-endian).
  uint8_t tail[128] = {};
  const size_t rest = data.size() - i;
  if (rest > 0) std::memcpy(tail, data.data() + i, rest);
  tail[rest] = 0x80;
  const size_t tail_len = rest + 9 <= 64 ? 64 : 128;
  const uint64_t bits = static_cast<uint64_t>(data.size()) * 8;
  for (int k = 0; k < 8; ++k) tail[tail_len - 1 - k] = static_cast<uint8_t>(bits >> (8 * k));
  for (size_t off = 0; off < tail_len; off += 64) sha256_block(state, tail + off);
  Sha256Digest out;
  for (int k = 0; k < 8; ++k) {
    for (int j = 0; j < 4; ++j) out[4 * k + j] = static_cast<uint8_t>(state[k] >> (24 - 8 * j));
  }
  return out;
}

Sha256Digest sha256(std::string_view data) {
  return sha256(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
}

// ---- BlockManager ----------------------------------------------------------

BlockManager::BlockManager(int n_blocks, int block_size, bool enable_prefix_caching)
    : n_blocks_(n_blocks),
      block_size_(block_size),
      enable_prefix_caching_(enable_prefix_caching),
      blocks_(static_cast<size_t>(std::max(n_blocks, 0))) {
  MS_CHECK(n_blocks > 0 && block_size > 0,
           "BlockManager needs n_blocks > 0 and block_size > 0, got ", n_blocks, " and ",
           block_size);
  for (int32_t b = n_blocks - 1; b >= 0; --b) free_.push_back(b);  // block 0 handed out first
}

Sha256Digest BlockManager::salt_hash(std::string_view salt) const {
  // Domain-separated so a salt can never collide with a chained block hash.
  std::string input = "moeserve.kv.salt:";
  input.append(salt.data(), salt.size());
  return sha256(input);
}

Sha256Digest BlockManager::chain_hash(const Sha256Digest& prev,
                                      std::span<const int32_t> block_tokens) const {
  std::vector<uint8_t> input(prev.begin(), prev.end());
  input.reserve(prev.size() + 4 * block_tokens.size());
  for (const int32_t t : block_tokens) append_le32(input, t);
  return sha256(std::span<const uint8_t>(input));
}

PrefixMatch BlockManager::match_prefix(std::span<const int32_t> tokens,
                                       std::string_view salt) const {
  PrefixMatch match;
  if (!enable_prefix_caching_ || tokens.empty()) return match;
  // Full blocks that leave at least the last token to compute.
  const int n_full = static_cast<int>(tokens.size() - 1) / block_size_;
  Sha256Digest h = salt_hash(salt);
  for (int i = 0; i < n_full; ++i) {
    h = chain_hash(h, tokens.subspan(static_cast<size_t>(i) * block_size_, block_size_));
    const auto it = cached_.find(h);
    if (it == cached_.end()) break;
    match.blocks.push_back(it->second);
    if (blocks_[static_cast<size_t>(it->second)].evictable) ++match.n_evictable;
  }
  match.n_tokens = static_cast<int>(match.blocks.size()) * block_size_;
  return match;
}

BlockManager::SeqBlocks& BlockManager::seq(int64_t seq_id) {
  const auto it = seqs_.find(seq_id);
  MS_CHECK(it != seqs_.end(), "unknown sequence ", seq_id);
  return it->second;
}

const std::vector<int32_t>& BlockManager::block_table(int64_t seq_id) const {
  const auto it = seqs_.find(seq_id);
  MS_CHECK(it != seqs_.end(), "unknown sequence ", seq_id);
  return it->second.blocks;
}

int BlockManager::n_slots(int64_t seq_id) const {
  const auto it = seqs_.find(seq_id);
  MS_CHECK(it != seqs_.end(), "unknown sequence ", seq_id);
  return it->second.n_slots;
}

void BlockManager::take_ref(int32_t block) {
  Block& b = blocks_[static_cast<size_t>(block)];
  if (b.evictable) {
    evictable_.erase(b.lru_pos);
    b.evictable = false;
  }
  ++b.ref_count;
}

int32_t BlockManager::take_block() {
  int32_t id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else {
    MS_CHECK(!evictable_.empty(), "take_block with no available block");
    id = evictable_.front();
    evictable_.pop_front();
    Block& victim = blocks_[static_cast<size_t>(id)];
    victim.evictable = false;
    cached_.erase(victim.hash);
    victim.has_hash = false;
    ++n_evictions_;
  }
  Block& b = blocks_[static_cast<size_t>(id)];
  MS_CHECK(b.ref_count == 0 && !b.has_hash, "block ", id, " handed out while in use");
  b.ref_count = 1;
  return id;
}

int BlockManager::allocate_for(int64_t seq_id, std::span<const int32_t> tokens,
                               std::string_view salt) {
  MS_CHECK(!seqs_.count(seq_id), "sequence ", seq_id, " already has blocks");
  PrefixMatch match = match_prefix(tokens, salt);
  SeqBlocks& s = seqs_[seq_id];
  s.salt_hash = salt_hash(salt);
  for (const int32_t b : match.blocks) {
    take_ref(b);
    s.blocks.push_back(b);
    s.hashes.push_back(blocks_[static_cast<size_t>(b)].hash);
  }
  s.n_slots = match.n_tokens;
  if (enable_prefix_caching_) {
    n_query_tokens_ += static_cast<int64_t>(tokens.size());
    n_hit_tokens_ += match.n_tokens;
  }
  return match.n_tokens;
}

void BlockManager::fork(int64_t parent, int64_t child, int n_tokens) {
  MS_CHECK(!seqs_.count(child), "sequence ", child, " already has blocks");
  const SeqBlocks& p = seq(parent);
  MS_CHECK(n_tokens >= 0 && n_tokens % block_size_ == 0 && n_tokens <= p.n_slots, "fork of ",
           n_tokens, " tokens from a parent with ", p.n_slots, " slots");
  const size_t n_shared = static_cast<size_t>(n_tokens / block_size_);
  SeqBlocks c;
  c.blocks.assign(p.blocks.begin(), p.blocks.begin() + static_cast<std::ptrdiff_t>(n_shared));
  c.hashes.assign(p.hashes.begin(), p.hashes.begin() + static_cast<std::ptrdiff_t>(
                                                           std::min(n_shared, p.hashes.size())));
  c.n_slots = n_tokens;
  c.salt_hash = p.salt_hash;
  for (const int32_t b : c.blocks) take_ref(b);
  seqs_[child] = std::move(c);
}

bool BlockManager::append_slots(int64_t seq_id, int n) {
  SeqBlocks& s = seq(seq_id);
  MS_CHECK(n >= 0, "append_slots of ", n, " tokens");
  const int n_new_blocks = blocks_for(s.n_slots + n) - static_cast<int>(s.blocks.size());
  if (n_new_blocks > n_available()) return false;
  for (int i = 0; i < n_new_blocks; ++i) s.blocks.push_back(take_block());
  s.n_slots += n;
  return true;
}

void BlockManager::commit(int64_t seq_id, std::span<const int32_t> tokens, int n_computed) {
  if (!enable_prefix_caching_) return;
  SeqBlocks& s = seq(seq_id);
  MS_CHECK(n_computed <= s.n_slots && n_computed <= static_cast<int>(tokens.size()), "commit of ",
           n_computed, " tokens for a sequence with ", s.n_slots, " slots");
  const size_t n_full = static_cast<size_t>(n_computed / block_size_);
  while (s.hashes.size() < n_full) {
    const size_t i = s.hashes.size();
    const Sha256Digest prev = i == 0 ? s.salt_hash : s.hashes[i - 1];
    const Sha256Digest h =
        chain_hash(prev, tokens.subspan(i * static_cast<size_t>(block_size_), block_size_));
    s.hashes.push_back(h);
    Block& b = blocks_[static_cast<size_t>(s.blocks[i])];
    if (b.has_hash) continue;        // shared from the cache or a parent
    if (cached_.count(h)) continue;  // same content computed twice: keep one
    b.has_hash = true;
    b.hash = h;
    cached_.emplace(h, s.blocks[i]);
  }
}

void BlockManager::release_ref(int32_t block) {
  Block& blk = blocks_[static_cast<size_t>(block)];
  MS_CHECK(blk.ref_count > 0, "block ", block, " freed with no references");
  if (--blk.ref_count > 0) return;
  if (blk.has_hash) {
    blk.evictable = true;
    blk.lru_pos = evictable_.insert(evictable_.end(), block);
  } else {
    free_.push_back(block);
  }
}

void BlockManager::truncate(int64_t seq_id, int n_slots) {
  SeqBlocks& s = seq(seq_id);
  MS_CHECK(n_slots >= 0 && n_slots <= s.n_slots &&
               static_cast<int>(s.hashes.size()) * block_size_ <= n_slots,
           "truncate of sequence ", seq_id, " to ", n_slots, " of ", s.n_slots, " slots");
  while (static_cast<int>(s.blocks.size()) > blocks_for(n_slots)) {
    release_ref(s.blocks.back());
    s.blocks.pop_back();
  }
  s.n_slots = n_slots;
}

void BlockManager::free(int64_t seq_id) {
  const auto it = seqs_.find(seq_id);
  MS_CHECK(it != seqs_.end(), "free of unknown sequence ", seq_id);
  const std::vector<int32_t>& table = it->second.blocks;
  // Tail first: evicted before the head.
  for (size_t i = table.size(); i-- > 0;) release_ref(table[i]);
  seqs_.erase(it);
}

Status BlockManager::check_invariants() const {
  std::vector<int> refs(static_cast<size_t>(n_blocks_), 0);
  for (const auto& [id, s] : seqs_) {
    if (s.n_slots > static_cast<int>(s.blocks.size()) * block_size_ ||
        static_cast<int>(s.blocks.size()) != blocks_for(s.n_slots)) {
      return absl::InternalError(absl::StrCat("sequence ", id, " has ", s.blocks.size(),
                                              " blocks for ", s.n_slots, " slots"));
    }
    for (const int32_t b : s.blocks) ++refs[static_cast<size_t>(b)];
  }
  std::vector<int> where(static_cast<size_t>(n_blocks_), 0);  // times listed free/evictable
  for (const int32_t b : free_) {
    ++where[static_cast<size_t>(b)];
    if (blocks_[static_cast<size_t>(b)].has_hash) {
      return absl::InternalError(absl::StrCat("free block ", b, " still has a hash"));
    }
  }
  for (const int32_t b : evictable_) {
    ++where[static_cast<size_t>(b)];
    if (!blocks_[static_cast<size_t>(b)].has_hash || !blocks_[static_cast<size_t>(b)].evictable) {
      return absl::InternalError(absl::StrCat("evictable block ", b, " is not marked cached"));
    }
  }
  for (int b = 0; b < n_blocks_; ++b) {
    const Block& blk = blocks_[static_cast<size_t>(b)];
    const size_t i = static_cast<size_t>(b);
    if (blk.ref_count != refs[i]) {
      return absl::InternalError(absl::StrCat("block ", b, " has ref count ", blk.ref_count,
                                              " but ", refs[i], " sequences hold it"));
    }
    const int expected_listed = refs[i] == 0 ? 1 : 0;
    if (where[i] != expected_listed) {
      return absl::InternalError(absl::StrCat("block ", b, " with ", refs[i],
                                              " references is listed free/evictable ", where[i],
                                              " times"));
    }
    if (blk.has_hash) {
      const auto it = cached_.find(blk.hash);
      if (it == cached_.end() || it->second != b) {
        return absl::InternalError(absl::StrCat("block ", b, " has a hash the index lost"));
      }
    }
  }
  for (const auto& [h, b] : cached_) {
    if (!blocks_[static_cast<size_t>(b)].has_hash || blocks_[static_cast<size_t>(b)].hash != h) {
      return absl::InternalError(
          absl::StrCat("hash index points at block ", b, " with another hash"));
    }
  }
  return absl::OkStatus();
}

}  // namespace moeserve
