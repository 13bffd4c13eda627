// bpe_merge against a plain O(n^2) merge, on random merge tables and words.
#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tokenizer/bpe_model.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

// A merge table built like a trained one: tokens are strings over a small
// alphabet, each merge joins two existing tokens, and several pairs may give
// the same token ("a bc" and "ab c"). With `shuffle_ranks` the ranks are a
// random permutation, so a merge may create a pair of lower rank than itself.
struct RandomMerges {
  std::vector<std::string> tokens;             // by id; ids [0, n_chars) are single characters
  std::vector<std::array<int32_t, 3>> merges;  // {left, right, merged} by rank
  BpeMergeTable table;
};

RandomMerges random_merges(std::mt19937& rng, int n_chars, int n_merges, bool shuffle_ranks) {
  RandomMerges r;
  std::map<std::string, int32_t> id_of;
  for (int c = 0; c < n_chars; ++c) {
    r.tokens.emplace_back(1, static_cast<char>('a' + c));
    id_of[r.tokens.back()] = c;
  }
  std::set<std::pair<int32_t, int32_t>> seen;
  for (int tries = 0; static_cast<int>(r.merges.size()) < n_merges && tries < 100 * n_merges;
       ++tries) {
    // Favour short tokens so merges chain the way trained tables do.
    auto pick = [&] {
      auto n = static_cast<int32_t>(r.tokens.size());
      int32_t a = std::uniform_int_distribution<int32_t>(0, n - 1)(rng);
      int32_t b = std::uniform_int_distribution<int32_t>(0, n - 1)(rng);
      return std::min(a, b);
    };
    int32_t left = pick(), right = pick();
    if (!seen.insert({left, right}).second) continue;
    std::string s = r.tokens[left] + r.tokens[right];
    auto [it, added] = id_of.emplace(s, static_cast<int32_t>(r.tokens.size()));
    if (added) r.tokens.push_back(s);
    r.merges.push_back({left, right, it->second});
  }
  if (shuffle_ranks) std::shuffle(r.merges.begin(), r.merges.end(), rng);
  r.table.reserve(r.merges.size());
  for (size_t rank = 0; rank < r.merges.size(); ++rank)
    r.table.insert(r.merges[rank][0], r.merges[rank][1], static_cast<int32_t>(rank),
                   r.merges[rank][2]);
  return r;
}

// Reference: rescan every adjacent pair, merge the lowest rank (leftmost on
// ties), repeat. Ranks come from a dense matrix, not from BpeMergeTable.
std::vector<int32_t> reference_merge(const RandomMerges& m, std::vector<int32_t> ids) {
  size_t n_tokens = m.tokens.size();
  std::vector<int32_t> rank_of(n_tokens * n_tokens, -1);
  for (size_t rank = m.merges.size(); rank-- > 0;)
    rank_of[m.merges[rank][0] * n_tokens + m.merges[rank][1]] = static_cast<int32_t>(rank);
  for (;;) {
    size_t best = ids.size();
    int32_t best_rank = INT32_MAX;
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
      int32_t rank = rank_of[ids[i] * n_tokens + ids[i + 1]];
      if (rank >= 0 && rank < best_rank) {
        best = i;
        best_rank = rank;
      }
    }
    if (best == ids.size()) return ids;
    ids[best] = m.merges[best_rank][2];
    ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(best) + 1);
  }
}

std::string spell(const RandomMerges& m, const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += m.tokens[id] + "|";
  return s;
}

// Random words of `n_symbols` characters: uniform, or repetitive (a short
// random unit repeated, with occasional random characters, like "aaaa…",
// "的的的…" or "abcabc…").
std::vector<int32_t> random_word(std::mt19937& rng, int n_chars, size_t n_symbols,
                                 bool repetitive) {
  std::uniform_int_distribution<int32_t> ch(0, n_chars - 1);
  std::vector<int32_t> unit(std::uniform_int_distribution<size_t>(1, 3)(rng));
  for (int32_t& c : unit) c = ch(rng);
  std::vector<int32_t> ids(n_symbols);
  for (size_t i = 0; i < n_symbols; ++i)
    ids[i] = !repetitive ? ch(rng) : rng() % 50 == 0 ? ch(rng) : unit[i % unit.size()];
  return ids;
}

TEST(BpeMergeTest, MatchesQuadraticReference) {
  const uint32_t seed = std::random_device{}();
  std::mt19937 rng(seed);
  for (int table = 0; table < 40; ++table) {
    int n_chars = std::uniform_int_distribution<int>(1, 5)(rng);
    int n_merges = std::uniform_int_distribution<int>(1, 60)(rng);
    bool shuffle_ranks = table % 2 == 1;
    RandomMerges m = random_merges(rng, n_chars, n_merges, shuffle_ranks);
    for (int w = 0; w < 30; ++w) {
      // Lengths on both sides of the switch from rescanning to the heap.
      size_t n = w < 20 ? std::uniform_int_distribution<size_t>(0, 40)(rng)
                        : std::uniform_int_distribution<size_t>(41, 400)(rng);
      std::vector<int32_t> ids = random_word(rng, n_chars, n, w % 3 == 0);
      std::vector<int32_t> expected = reference_merge(m, ids);
      std::vector<int32_t> out = {-7};  // bpe_merge appends
      bpe_merge(m.table, ids, out);
      ASSERT_EQ(out.front(), -7);
      out.erase(out.begin());
      ASSERT_EQ(out, expected) << "seed " << seed << ", table " << table << ", word "
                               << spell(m, ids) << "\n got      " << spell(m, out) << "\n expected "
                               << spell(m, expected);
    }
  }
}

TEST(BpeMergeTest, LongRepetitiveWordsMatchReference) {
  const uint32_t seed = std::random_device{}();
  std::mt19937 rng(seed);
  for (int table = 0; table < 6; ++table) {
    RandomMerges m = random_merges(rng, 2, 40, table % 2 == 1);
    for (size_t n : {2000u, 6000u}) {
      std::vector<int32_t> ids = random_word(rng, 2, n, true);
      std::vector<int32_t> out;
      bpe_merge(m.table, ids, out);
      ASSERT_EQ(out, reference_merge(m, ids))
          << "seed " << seed << ", table " << table << ", length " << n;
    }
  }
}

TEST(BpeMergeTest, TiesGoToTheLeftmostPair) {
  // "aaa" gives B when the leftmost "a a" merges first, C when the rightmost.
  BpeMergeTable t;
  t.reserve(3);
  t.insert(0, 0, 0, 1);  // a a -> A
  t.insert(1, 0, 1, 2);  // A a -> B
  t.insert(0, 1, 2, 3);  // a A -> C
  std::vector<int32_t> out;
  bpe_merge(t, std::vector<int32_t>{0, 0, 0}, out);
  EXPECT_EQ(out, (std::vector<int32_t>{2}));  // (a a) a -> A a -> B
  out.clear();
  std::vector<int32_t> long_word(101, 0);  // long enough for the heap path
  bpe_merge(t, long_word, out);
  std::vector<int32_t> expected(50, 1);  // A A … A a -> A … A B
  expected.back() = 2;
  EXPECT_EQ(out, expected);
}

}  // namespace
}  // namespace moeserve
