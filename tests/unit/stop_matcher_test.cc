// StopMatcher against a plain reference written here (every occurrence of
// every stop string, searched in the whole text so far), on random small-
// alphabet texts and stop sets with nested, overlapping and repeated stops,
// fed in random chunks; and its cost with 16 stop strings of 1 KiB: at most
// two transitions per byte, however the text teases the stops.
#include "tokenizer/stop_matcher.h"

#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace moeserve {
namespace {

struct RefHit {
  int64_t start;
  size_t stop;
};

// Earliest-starting occurrence (ties: lower stop index) among those ending in
// [chunk_begin, text.size()).
std::optional<RefHit> reference_hit(const std::string& text, size_t chunk_begin,
                                    const std::vector<std::string>& stops) {
  std::optional<RefHit> best;
  for (size_t s = 0; s < stops.size(); ++s) {
    for (size_t at = text.find(stops[s]); at != std::string::npos;
         at = text.find(stops[s], at + 1)) {
      const size_t end = at + stops[s].size();
      if (end <= chunk_begin) continue;
      const RefHit h{static_cast<int64_t>(at) - static_cast<int64_t>(chunk_begin), s};
      if (!best || h.start < best->start || (h.start == best->start && h.stop < best->stop)) {
        best = h;
      }
    }
  }
  return best;
}

// Longest suffix of `text` that is a prefix of some stop.
size_t reference_pending(const std::string& text, const std::vector<std::string>& stops) {
  size_t best = 0;
  for (const std::string& s : stops) {
    for (size_t n = std::min(s.size(), text.size()); n > best; --n) {
      if (text.compare(text.size() - n, n, s, 0, n) == 0) {
        best = n;
        break;
      }
    }
  }
  return best;
}

TEST(StopMatcherTest, MatchesTheReferenceOnRandomTexts) {
  const unsigned seed = std::random_device{}();
  std::mt19937 rng(seed);
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  auto random_string = [&](size_t lo, size_t hi) {
    std::string s(std::uniform_int_distribution<size_t>(lo, hi)(rng), 'a');
    for (char& c : s) c = static_cast<char>('a' + rng() % 3);
    return s;
  };
  for (int round = 0; round < 400; ++round) {
    std::vector<std::string> stops;
    const int n_stops = 1 + static_cast<int>(rng() % 5);
    for (int i = 0; i < n_stops; ++i) stops.push_back(random_string(1, 6));
    if (round % 7 == 0) stops.push_back(stops[0]);               // repeated
    if (round % 5 == 0) stops.push_back(stops[0].substr(0, 1));  // nested prefix
    if (round % 3 == 0) stops.push_back("z" + stops[0]);         // never at the start
    StopMatcher m(stops);
    std::string text;
    for (int chunk = 0; chunk < 30; ++chunk) {
      const std::string piece = random_string(0, 5);
      const size_t begin = text.size();
      text += piece;
      const auto got = m.feed(piece);
      const auto want = reference_hit(text, begin, stops);
      ASSERT_EQ(got.has_value(), want.has_value()) << "round " << round << " text " << text;
      if (got) {
        EXPECT_EQ(got->start, want->start) << "round " << round << " text " << text;
        EXPECT_EQ(got->stop, want->stop) << "round " << round << " text " << text;
      }
      ASSERT_EQ(m.pending(), reference_pending(text, stops)) << "round " << round << " " << text;
    }
    EXPECT_LE(m.steps(), 2 * static_cast<int64_t>(text.size()));
  }
}

TEST(StopMatcherTest, SixteenStopsOfOneKibCostAtMostTwoStepsPerByte) {
  // Stops that share a 1023-byte prefix of 'a's, and one that repeats "ab":
  // text of 'a's keeps every one of them alive as a near match.
  std::vector<std::string> stops;
  for (int i = 0; i < 15; ++i) stops.push_back(std::string(1023, 'a') + static_cast<char>('b' + i));
  std::string abab;
  while (abab.size() < 1024) abab += "ab";
  stops.push_back(abab + "c");
  ASSERT_EQ(stops.size(), 16u);
  StopMatcher m(stops);
  std::mt19937 rng(1);
  int64_t fed = 0;
  for (int i = 0; i < 20000; ++i) {
    // Mostly 'a's and "ab" runs; never a 'c'..'q' after 1023 'a's.
    std::string piece(1 + rng() % 8, 'a');
    if (i % 3 == 0) piece = "abababab";
    ASSERT_FALSE(m.feed(piece).has_value());
    fed += static_cast<int64_t>(piece.size());
  }
  EXPECT_LE(m.steps(), 2 * fed);
  EXPECT_GT(m.pending(), 0u);
  // And the long stop is found when it completes.
  std::string tail = abab + "c";
  const auto hit = m.feed(tail);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->stop, 15u);
  EXPECT_EQ(hit->start, 0);
}

}  // namespace
}  // namespace moeserve
