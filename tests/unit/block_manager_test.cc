// BlockManager: SHA-256 against FIPS 180-2 vectors, ref counts, all-or-nothing
// slot reservation, prefix-cache hits/misses (salt, changed token, last token
// never cached), LRU eviction order, forks, and a seeded random soak that
// checks every invariant after each operation.
#include "engine/block_manager.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace moeserve {
namespace {

std::string hex(const Sha256Digest& d) {
  std::string out;
  char buf[3];
  for (const uint8_t b : d) {
    std::snprintf(buf, sizeof(buf), "%02x", b);
    out += buf;
  }
  return out;
}

std::vector<int32_t> iota_tokens(int n, int32_t first) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

// Allocates `tokens` for `seq` as a finished prefill would: cached prefix,
// slots for the rest, then registers the computed full blocks.
int prefill(BlockManager& bm, int64_t seq, const std::vector<int32_t>& tokens,
            const std::string& salt = "") {
  const int cached = bm.allocate_for(seq, tokens, salt);
  EXPECT_TRUE(bm.append_slots(seq, static_cast<int>(tokens.size()) - cached));
  bm.commit(seq, tokens, static_cast<int>(tokens.size()));
  return cached;
}

TEST(Sha256Test, Fips180Vectors) {
  // FIPS 180-2 appendix B.1, B.2, B.3.
  EXPECT_EQ(hex(sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex(sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(hex(sha256(std::string(1000000, 'a'))),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  EXPECT_EQ(hex(sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Sha256Test, PaddingBoundaries) {
  // Lengths around the 55/56 and 64-byte padding edges (values from Python's
  // hashlib.sha256(b"a" * n)).
  const std::map<int, std::string> expected = {
      {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
      {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
      {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
      {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
      {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
      {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
      {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
  };
  for (const auto& [n, digest] : expected) {
    EXPECT_EQ(hex(sha256(std::string(static_cast<size_t>(n), 'a'))), digest) << "length " << n;
  }
}

TEST(BlockManagerTest, AppendSlotsGrowsByBlocksAndIsAllOrNothing) {
  BlockManager bm(4, 16, /*enable_prefix_caching=*/true);
  EXPECT_EQ(bm.blocks_for(0), 0);
  EXPECT_EQ(bm.blocks_for(1), 1);
  EXPECT_EQ(bm.blocks_for(16), 1);
  EXPECT_EQ(bm.blocks_for(17), 2);
  EXPECT_EQ(bm.allocate_for(1, iota_tokens(5, 0), ""), 0);
  EXPECT_TRUE(bm.append_slots(1, 5));
  EXPECT_EQ(bm.block_table(1).size(), 1u);
  EXPECT_TRUE(bm.append_slots(1, 11));  // fills block 0 exactly
  EXPECT_EQ(bm.block_table(1).size(), 1u);
  EXPECT_TRUE(bm.append_slots(1, 1));
  EXPECT_EQ(bm.block_table(1).size(), 2u);
  EXPECT_EQ(bm.n_slots(1), 17);
  EXPECT_DOUBLE_EQ(bm.usage(), 0.5);

  // 2 blocks left: asking for 3 more changes nothing.
  const std::vector<int32_t> before = bm.block_table(1);
  EXPECT_FALSE(bm.append_slots(1, 15 + 2 * 16 + 1));
  EXPECT_EQ(bm.block_table(1), before);
  EXPECT_EQ(bm.n_slots(1), 17);
  EXPECT_EQ(bm.n_free(), 2);
  EXPECT_TRUE(bm.can_allocate(2));
  EXPECT_FALSE(bm.can_allocate(3));
  EXPECT_TRUE(bm.check_invariants().ok());

  bm.free(1);
  EXPECT_FALSE(bm.has_sequence(1));
  EXPECT_EQ(bm.n_available(), 4);
  EXPECT_DOUBLE_EQ(bm.usage(), 0.0);
  EXPECT_TRUE(bm.check_invariants().ok());
}

TEST(BlockManagerTest, RepeatPromptHitsCacheButNeverItsLastToken) {
  const int bs = 4;
  BlockManager bm(16, bs, true);
  const std::vector<int32_t> prompt = iota_tokens(10, 100);  // 2 full blocks + 2
  EXPECT_EQ(prefill(bm, 1, prompt), 0);
  const std::vector<int32_t> table1 = bm.block_table(1);
  bm.free(1);
  EXPECT_EQ(bm.n_evictable(), 2);  // the two full blocks stay cached
  EXPECT_EQ(bm.n_prefix_query_tokens(), 10);
  EXPECT_EQ(bm.n_prefix_hit_tokens(), 0);

  const PrefixMatch m = bm.match_prefix(prompt, "");
  EXPECT_EQ(m.n_tokens, 8);
  EXPECT_EQ(m.n_evictable, 2);
  EXPECT_EQ(bm.allocate_for(2, prompt, ""), 8);
  EXPECT_EQ(bm.n_prefix_query_tokens(), 20);
  EXPECT_EQ(bm.n_prefix_hit_tokens(), 8);
  EXPECT_EQ(bm.block_table(2), std::vector<int32_t>(table1.begin(), table1.begin() + 2));
  EXPECT_EQ(bm.n_evictable(), 0);  // reused blocks are referenced again
  EXPECT_TRUE(bm.check_invariants().ok());
  bm.free(2);

  // A prompt of exactly two full blocks reuses only the first: its last token
  // must be computed to produce logits.
  const std::vector<int32_t> exact(prompt.begin(), prompt.begin() + 8);
  EXPECT_EQ(bm.match_prefix(exact, "").n_tokens, 4);
  // A one-token prompt never hits.
  EXPECT_EQ(bm.match_prefix(std::vector<int32_t>{100}, "").n_tokens, 0);
}

TEST(BlockManagerTest, SaltsSeparateTenants) {
  BlockManager bm(16, 4, true);
  const std::vector<int32_t> prompt = iota_tokens(9, 7);
  prefill(bm, 1, prompt, "tenant-a");
  bm.free(1);
  EXPECT_EQ(bm.match_prefix(prompt, "tenant-a").n_tokens, 8);
  EXPECT_EQ(bm.match_prefix(prompt, "tenant-b").n_tokens, 0);
  EXPECT_EQ(bm.match_prefix(prompt, "").n_tokens, 0);
  EXPECT_EQ(bm.allocate_for(2, prompt, "tenant-b"), 0);
  EXPECT_EQ(bm.n_prefix_hit_tokens(), 0);
  bm.free(2);
  EXPECT_TRUE(bm.check_invariants().ok());
}

TEST(BlockManagerTest, ChangedTokenEndsTheMatchAtItsBlock) {
  const int bs = 4;
  BlockManager bm(32, bs, true);
  const std::vector<int32_t> prompt = iota_tokens(17, 0);  // 4 full blocks + 1
  prefill(bm, 1, prompt);
  EXPECT_EQ(bm.match_prefix(prompt, "").n_tokens, 16);
  for (int pos : {0, 3, 4, 9, 15}) {
    std::vector<int32_t> changed = prompt;
    changed[static_cast<size_t>(pos)] += 1000;
    EXPECT_EQ(bm.match_prefix(changed, "").n_tokens, pos / bs * bs) << "changed position " << pos;
  }
  // Same block contents at a different position do not match: the hash is
  // chained, so block 1 of another prompt is not block 1 of this one.
  std::vector<int32_t> shifted = prompt;
  std::rotate(shifted.begin(), shifted.begin() + bs, shifted.end() - 1);
  EXPECT_EQ(bm.match_prefix(shifted, "").n_tokens, 0);
  bm.free(1);
  EXPECT_TRUE(bm.check_invariants().ok());
}

TEST(BlockManagerTest, EvictsLeastRecentlyFreedFirstTailBlocksFirst) {
  const int bs = 2;
  BlockManager bm(6, bs, true);
  const std::vector<int32_t> a = iota_tokens(7, 0);    // 3 full blocks + 1
  const std::vector<int32_t> b = iota_tokens(5, 100);  // 2 full blocks + 1
  prefill(bm, 1, a);
  const std::vector<int32_t> ta = bm.block_table(1);
  bm.free(1);  // A's 3 full blocks become evictable, its partial block free
  prefill(bm, 2, b);
  const std::vector<int32_t> tb = bm.block_table(2);
  bm.free(2);
  // Least recently freed first; within a sequence the tail block first.
  EXPECT_EQ(bm.evictable_blocks(), (std::vector<int32_t>{ta[2], ta[1], ta[0], tb[1], tb[0]}));
  EXPECT_EQ(bm.n_free(), 1);

  // 1 free block, then evictions: A's tail, then A's middle.
  EXPECT_EQ(bm.allocate_for(3, iota_tokens(6, 500), ""), 0);
  EXPECT_TRUE(bm.append_slots(3, 6));  // 3 blocks
  EXPECT_EQ(bm.n_evictions(), 2);
  EXPECT_EQ(bm.evictable_blocks(), (std::vector<int32_t>{ta[0], tb[1], tb[0]}));
  EXPECT_EQ(bm.match_prefix(a, "").n_tokens, 2);  // only A's first block is left
  EXPECT_EQ(bm.match_prefix(b, "").n_tokens, 4);  // B is untouched
  EXPECT_TRUE(bm.check_invariants().ok());

  // A cache hit refreshes: taking A's first block and freeing it again moves
  // it to the most-recent end, so B's tail block is evicted next.
  EXPECT_EQ(bm.allocate_for(4, a, ""), 2);
  bm.free(4);
  EXPECT_EQ(bm.evictable_blocks(), (std::vector<int32_t>{tb[1], tb[0], ta[0]}));
  EXPECT_TRUE(bm.append_slots(3, 2));  // one more block: evicts B's tail
  EXPECT_EQ(bm.match_prefix(a, "").n_tokens, 2);
  EXPECT_EQ(bm.match_prefix(b, "").n_tokens, 2);
  bm.free(3);
  EXPECT_EQ(bm.n_available(), 6);
  EXPECT_TRUE(bm.check_invariants().ok());
}

TEST(BlockManagerTest, SharedBlocksAreRefCountedAcrossSequences) {
  const int bs = 4;
  BlockManager bm(16, bs, true);
  const std::vector<int32_t> prompt = iota_tokens(10, 1);
  prefill(bm, 1, prompt);
  const std::vector<int32_t> t1 = bm.block_table(1);
  EXPECT_EQ(bm.allocate_for(2, prompt, ""), 8);  // while 1 still runs
  ASSERT_TRUE(bm.append_slots(2, 2));
  const std::vector<int32_t> t2 = bm.block_table(2);
  EXPECT_EQ(t2[0], t1[0]);
  EXPECT_EQ(t2[1], t1[1]);
  EXPECT_NE(t2[2], t1[2]);  // each keeps its own partial last block
  EXPECT_EQ(bm.ref_count(t1[0]), 2);
  EXPECT_EQ(bm.ref_count(t1[1]), 2);
  EXPECT_EQ(bm.ref_count(t1[2]), 1);
  EXPECT_EQ(bm.match_prefix(prompt, "").n_evictable, 0);  // in use, not evictable
  EXPECT_TRUE(bm.check_invariants().ok());
  bm.free(1);
  EXPECT_EQ(bm.ref_count(t1[0]), 1);
  EXPECT_EQ(bm.n_evictable(), 0);
  bm.free(2);
  EXPECT_EQ(bm.ref_count(t1[0]), 0);
  EXPECT_EQ(bm.n_evictable(), 2);
  EXPECT_EQ(bm.n_available(), 16);
  EXPECT_TRUE(bm.check_invariants().ok());
}

TEST(BlockManagerTest, ForkSharesFullBlocksOnly) {
  const int bs = 4;
  BlockManager bm(16, bs, /*enable_prefix_caching=*/false);  // fork works without the cache
  const std::vector<int32_t> prompt = iota_tokens(11, 0);
  EXPECT_EQ(bm.allocate_for(1, prompt, ""), 0);
  ASSERT_TRUE(bm.append_slots(1, 11));
  const std::vector<int32_t> parent = bm.block_table(1);
  for (int64_t child = 2; child <= 4; ++child) {
    bm.fork(1, child, 8);
    EXPECT_EQ(bm.n_slots(child), 8);
    ASSERT_TRUE(bm.append_slots(child, 3));  // recompute the tail itself
    EXPECT_EQ(bm.block_table(child).size(), 3u);
    EXPECT_NE(bm.block_table(child)[2], parent[2]);
  }
  EXPECT_EQ(bm.ref_count(parent[0]), 4);
  EXPECT_EQ(bm.ref_count(parent[1]), 4);
  EXPECT_EQ(bm.ref_count(parent[2]), 1);
  EXPECT_EQ(bm.n_used(), 2 + 4);
  EXPECT_TRUE(bm.check_invariants().ok());
  for (int64_t s = 1; s <= 4; ++s) bm.free(s);
  EXPECT_EQ(bm.n_free(), 16);  // no cache: everything straight back to the free list
  EXPECT_EQ(bm.n_prefix_query_tokens(), 0);
  EXPECT_TRUE(bm.check_invariants().ok());
}

TEST(BlockManagerTest, SameContentComputedTwiceIsRegisteredOnce) {
  BlockManager bm(16, 4, true);
  const std::vector<int32_t> prompt = iota_tokens(9, 3);
  // Both allocate before either commits, so neither hits.
  EXPECT_EQ(bm.allocate_for(1, prompt, ""), 0);
  EXPECT_EQ(bm.allocate_for(2, prompt, ""), 0);
  ASSERT_TRUE(bm.append_slots(1, 9));
  ASSERT_TRUE(bm.append_slots(2, 9));
  bm.commit(1, prompt, 9);
  bm.commit(2, prompt, 9);
  EXPECT_TRUE(bm.is_cached(bm.block_table(1)[0]));
  EXPECT_FALSE(bm.is_cached(bm.block_table(2)[0]));
  EXPECT_TRUE(bm.check_invariants().ok());
  bm.free(2);
  EXPECT_EQ(bm.n_evictable(), 0);  // the duplicates go straight back to the free list
  bm.free(1);
  EXPECT_EQ(bm.n_evictable(), 2);
  EXPECT_TRUE(bm.check_invariants().ok());
}

TEST(BlockManagerTest, CommitOnlyRegistersComputedFullBlocks) {
  BlockManager bm(16, 4, true);
  const std::vector<int32_t> prompt = iota_tokens(13, 0);
  EXPECT_EQ(bm.allocate_for(1, prompt, ""), 0);
  ASSERT_TRUE(bm.append_slots(1, 13));
  bm.commit(1, prompt, 6);  // a first chunk: only block 0 is full and computed
  EXPECT_EQ(bm.match_prefix(prompt, "").n_tokens, 4);
  bm.commit(1, prompt, 13);
  EXPECT_EQ(bm.match_prefix(prompt, "").n_tokens, 12);
  bm.free(1);
  EXPECT_TRUE(bm.check_invariants().ok());
}

// Random allocate / append / commit / fork / free against an independent
// model of who holds which block.
TEST(BlockManagerTest, RandomSoakKeepsInvariants) {
  for (const uint64_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    std::mt19937_64 rng(seed);
    const int bs = 4, n_blocks = 24;
    BlockManager bm(n_blocks, bs, true);
    std::map<int64_t, std::vector<int32_t>> tokens;  // live sequences
    int64_t next_id = 0;
    const std::vector<std::vector<int32_t>> prefixes = {iota_tokens(12, 0), iota_tokens(12, 50)};
    for (int op = 0; op < 3000; ++op) {
      const int what = static_cast<int>(rng() % 4);
      if (what == 0 || tokens.empty()) {  // new sequence from a shared prefix + random tail
        std::vector<int32_t> t = prefixes[rng() % 2];
        t.resize(static_cast<size_t>(1 + rng() % 12));
        for (int i = 0; i < static_cast<int>(rng() % 6); ++i)
          t.push_back(static_cast<int32_t>(rng() % 5));
        const PrefixMatch m = bm.match_prefix(t, "");
        const int need =
            bm.blocks_for(static_cast<int>(t.size())) - m.n_tokens / bs + m.n_evictable;
        if (!bm.can_allocate(need)) continue;
        const int64_t id = next_id++;
        ASSERT_EQ(bm.allocate_for(id, t, ""), m.n_tokens);
        ASSERT_TRUE(bm.append_slots(id, static_cast<int>(t.size()) - m.n_tokens));
        bm.commit(id, t, static_cast<int>(t.size()));
        tokens[id] = t;
      } else if (what == 1) {  // decode a token
        auto it = std::next(tokens.begin(), static_cast<long>(rng() % tokens.size()));
        if (bm.append_slots(it->first, 1)) {
          it->second.push_back(static_cast<int32_t>(rng() % 5));
          bm.commit(it->first, it->second, static_cast<int>(it->second.size()));
        }
      } else if (what == 2) {  // fork
        auto it = std::next(tokens.begin(), static_cast<long>(rng() % tokens.size()));
        const int shared = (static_cast<int>(it->second.size()) - 1) / bs * bs;
        const int64_t id = next_id++;
        bm.fork(it->first, id, shared);
        tokens[id] = std::vector<int32_t>(it->second.begin(), it->second.begin() + shared);
      } else {
        auto it = std::next(tokens.begin(), static_cast<long>(rng() % tokens.size()));
        bm.free(it->first);
        tokens.erase(it);
      }
      // Independent model: ref count == number of tables holding the block.
      std::vector<int> refs(n_blocks, 0);
      for (const auto& [id, t] : tokens) {
        ASSERT_EQ(bm.n_slots(id), static_cast<int>(t.size()));
        for (const int32_t b : bm.block_table(id)) ++refs[static_cast<size_t>(b)];
      }
      for (int b = 0; b < n_blocks; ++b) ASSERT_EQ(bm.ref_count(b), refs[static_cast<size_t>(b)]);
      const Status st = bm.check_invariants();
      ASSERT_TRUE(st.ok()) << st.message();
    }
    for (const auto& [id, t] : tokens) bm.free(id);
    EXPECT_EQ(bm.n_available(), n_blocks);
    EXPECT_DOUBLE_EQ(bm.usage(), 0.0);
    EXPECT_GT(bm.n_prefix_hit_tokens(), 0);
    EXPECT_GT(bm.n_evictions(), 0);
    EXPECT_TRUE(bm.check_invariants().ok());
  }
}

TEST(BlockManagerDeathTest, MisuseAborts) {
  BlockManager bm(4, 4, true);
  EXPECT_DEATH(bm.free(42), "unknown sequence");
  bm.allocate_for(1, iota_tokens(3, 0), "");
  EXPECT_DEATH(bm.allocate_for(1, iota_tokens(3, 0), ""), "already has blocks");
  EXPECT_DEATH(bm.fork(1, 2, 3), "fork of 3 tokens");
  EXPECT_DEATH({ BlockManager bad(0, 4, true); }, "n_blocks > 0");
}

}  // namespace
}  // namespace moeserve
