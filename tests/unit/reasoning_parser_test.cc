// ReasoningParser: hand-written splits in both start modes; then every one- and two-point
// chunking of those strings, every byte alone, and random chunkings of random tag-heavy text,
// all of which must concatenate to split_reasoning (the one-shot find-based split).
#include "engine/reasoning_parser.h"

#include <random>
#include <string>
#include <vector>

#include "seeded_test.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

using S = ReasoningStart;

struct Case {
  std::string text;
  ReasoningStart start;
  std::string reasoning;
  std::string content;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> kCases = {
      // R1 template: the prompt opened <think>.
      {"Let me think.\n</think>\n\nThe answer is 4.", S::kInsideReasoning, "Let me think.\n",
       "\n\nThe answer is 4."},
      {"<think>\nhmm</think>ok", S::kInsideReasoning, "\nhmm", "ok"},  // leading tag dropped
      {"still thinking <thi", S::kInsideReasoning, "still thinking <thi", ""},  // truncated
      {"</think>", S::kInsideReasoning, "", ""},
      {"", S::kInsideReasoning, "", ""},
      {"<thin", S::kInsideReasoning, "<thin", ""},
      {"a<think>b</think>c</think><think>d", S::kInsideReasoning, "a<think>b", "c</think><think>d"},
      {"<</think>>", S::kInsideReasoning, "<", ">"},
      {"</thinking></think>x", S::kInsideReasoning, "</thinking>", "x"},
      {"\u00e9\u4e2d</think>\u00fc", S::kInsideReasoning, "\u00e9\u4e2d", "\u00fc"},
      // The model opens reasoning itself.
      {"<think>why</think>because", S::kModelOpens, "why", "because"},
      {"no reasoning at all", S::kModelOpens, "", "no reasoning at all"},
      {"pre <think>mid</think> post", S::kModelOpens, "mid", "pre  post"},
      {"<think>unfinished", S::kModelOpens, "unfinished", ""},
      {"<<think>x</think>>", S::kModelOpens, "x", "<>"},
      {"</think>early close<think>r", S::kModelOpens, "r", "</think>early close"},
      {"<thin", S::kModelOpens, "", "<thin"},
      {"<think></think>", S::kModelOpens, "", ""},
  };
  return kCases;
}

// Feeds `chunks` in order and concatenates everything emitted, checking that reasoning never
// follows content once </think> has been seen.
ReasoningDelta stream(const std::vector<std::string>& chunks, ReasoningStart start) {
  ReasoningParser parser(start);
  ReasoningDelta all;
  bool ended = false;
  for (const std::string& c : chunks) {
    const ReasoningDelta d = parser.feed(c);
    if (ended) {
      EXPECT_TRUE(d.reasoning.empty()) << "reasoning after </think>: " << d.reasoning;
    }
    ended = parser.reasoning_ended();
    all.reasoning += d.reasoning;
    all.content += d.content;
  }
  const ReasoningDelta d = parser.finish();
  all.reasoning += d.reasoning;
  all.content += d.content;
  return all;
}

std::string show(const ReasoningDelta& d) {
  return "{reasoning \"" + d.reasoning + "\", content \"" + d.content + "\"}";
}

TEST(ReasoningParserTest, OneShotSplitsMatchHandWrittenCases) {
  for (const Case& c : cases()) {
    const ReasoningDelta want{c.reasoning, c.content};
    EXPECT_EQ(split_reasoning(c.text, c.start), want)
        << "text \"" << c.text << "\" got " << show(split_reasoning(c.text, c.start));
    EXPECT_EQ(stream({c.text}, c.start), want) << "one chunk: \"" << c.text << "\"";
  }
}

TEST(ReasoningParserTest, EverySplitPointGivesTheSameResult) {
  for (const Case& c : cases()) {
    const ReasoningDelta want{c.reasoning, c.content};
    const size_t n = c.text.size();
    for (size_t i = 0; i <= n; ++i) {
      for (size_t j = i; j <= n; ++j) {
        const std::vector<std::string> chunks{c.text.substr(0, i), c.text.substr(i, j - i),
                                              c.text.substr(j)};
        ASSERT_EQ(stream(chunks, c.start), want)
            << "\"" << c.text << "\" split at " << i << ", " << j;
      }
    }
    std::vector<std::string> bytes;
    for (char ch : c.text) bytes.emplace_back(1, ch);
    EXPECT_EQ(stream(bytes, c.start), want) << "\"" << c.text << "\" byte by byte";
  }
}

TEST(ReasoningParserTest, PartialTagsAreHeldBackOnlyWhileTheyCouldBeTags) {
  ReasoningParser p(S::kInsideReasoning);
  EXPECT_EQ(p.feed("abc</th"), (ReasoningDelta{"abc", ""}));  // "</th" may become </think>
  EXPECT_FALSE(p.reasoning_ended());
  EXPECT_EQ(p.feed("x"), (ReasoningDelta{"</thx", ""}));  // it did not
  EXPECT_EQ(p.feed("</think"), (ReasoningDelta{"", ""}));
  EXPECT_EQ(p.feed(">\n\nHi"), (ReasoningDelta{"", "\n\nHi"}));
  EXPECT_TRUE(p.reasoning_ended());
  EXPECT_EQ(p.feed("</think><"), (ReasoningDelta{"", "</think><"}));  // nothing held after
  EXPECT_EQ(p.finish(), (ReasoningDelta{"", ""}));

  ReasoningParser q(S::kModelOpens);
  EXPECT_EQ(q.feed("<"), (ReasoningDelta{"", ""}));
  EXPECT_EQ(q.feed("think>"), (ReasoningDelta{"", ""}));
  EXPECT_EQ(q.feed("r</"), (ReasoningDelta{"r", ""}));
  EXPECT_EQ(q.finish(), (ReasoningDelta{"</", ""}));  // unfinished tag inside reasoning

  ReasoningParser r(S::kInsideReasoning);
  EXPECT_EQ(r.feed("<thi"), (ReasoningDelta{"", ""}));  // may be a leading <think>
  EXPECT_EQ(r.feed("nk>\nA"), (ReasoningDelta{"\nA", ""}));
}

class ReasoningParserRandomTest : public test::SeededTest {
 protected:
  int below(int n) { return static_cast<int>(rng_() % static_cast<uint64_t>(n)); }
};

TEST_F(ReasoningParserRandomTest, RandomChunkingsOfRandomTextMatchTheOneShotSplit) {
  // Pieces chosen to make whole, partial and near-miss tags common.
  const std::vector<std::string> pieces{"<think>", "</think>", "<",        "</", "<th",
                                        "</thin",  ">",        "think",    "a",  "\n",
                                        " ",       "\u00e9",   "<thinkk>", "<<"};
  for (int trial = 0; trial < 3000; ++trial) {
    std::string text;
    for (int i = below(12); i > 0; --i)
      text += pieces[static_cast<size_t>(below(static_cast<int>(pieces.size())))];
    for (ReasoningStart start : {S::kInsideReasoning, S::kModelOpens}) {
      const ReasoningDelta want = split_reasoning(text, start);
      // The split loses exactly the tags it consumed.
      const size_t n_out = want.reasoning.size() + want.content.size();
      EXPECT_TRUE(n_out == text.size() || n_out + kThinkOpen.size() == text.size() ||
                  n_out + kThinkClose.size() == text.size() ||
                  n_out + kThinkOpen.size() + kThinkClose.size() == text.size())
          << text;
      for (int chunking = 0; chunking < 5; ++chunking) {
        std::vector<std::string> chunks;
        for (size_t at = 0; at < text.size();) {
          const size_t len = static_cast<size_t>(below(10));  // empty chunks too
          chunks.push_back(text.substr(at, len));
          at += len;
        }
        ASSERT_EQ(stream(chunks, start), want)
            << "text \"" << text << "\" start " << static_cast<int>(start) << " chunks "
            << chunks.size();
      }
    }
  }
}

}  // namespace
}  // namespace moeserve
