// LogitsProcessor and TokenCounts: hand-worked penalty examples, then random logits, prompts,
// outputs and settings against a dense reference written here from the formulas:
//   l += bias[t]
//   if t in prompt or output: l = l > 0 ? l / repetition : l · repetition
//   l −= frequency · count(t) + presence · [count(t) > 0]        (output tokens only)
//   l = −inf for stop ids (EOS unless ignore_eos) while fewer than min_tokens are generated
#include "engine/logits_processor.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "seeded_test.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

// The processor works in float, the reference in double; a handful of float operations on
// logits of magnitude ≤ ~120 (logit ± bias) stays within this relative error.
constexpr double kPenaltyTol = 1e-5;
constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> processed(const SamplingParams& p, std::span<const int32_t> eos,
                             const TokenCounts& counts, std::vector<float> logits) {
  LogitsProcessor proc(p, eos);
  const Status s = proc.apply(counts, logits);
  EXPECT_TRUE(s.ok()) << s;
  return logits;
}

TEST(LogitsProcessorTest, PenaltiesHandWorked) {
  // Prompt {0, 1}; generated 2, 2, 1, 4.
  TokenCounts counts;
  const std::vector<int32_t> prompt{0, 1, 1};
  counts.add_prompt(prompt);
  for (int32_t t : {2, 2, 1, 4}) counts.add_output(t);
  EXPECT_EQ(counts.n_output, 4);
  EXPECT_EQ(counts.by_token.at(2).n_output, 2);
  EXPECT_TRUE(counts.by_token.at(1).in_prompt);
  EXPECT_FALSE(counts.by_token.at(4).in_prompt);

  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.25f;
  const std::vector<float> in{2.0f, -1.0f, 0.5f, 3.0f, 0.0f, -4.0f};
  const std::vector<float> out = processed(p, {}, counts, in);
  const std::vector<float> want{
      1.0f,    // prompt only: 2 / 2; no frequency or presence for prompt tokens
      -2.75f,  // prompt and output once: −1 · 2 − 0.5 · 1 − 0.25
      -1.0f,   // output twice: 0.5 / 2 − 0.5 · 2 − 0.25
      3.0f,    // unseen
      -0.75f,  // output once, logit 0 is "not positive": 0 · 2 − 0.5 − 0.25
      -4.0f,   // unseen
  };
  EXPECT_EQ(out, want);

  // A repetition penalty below 1 favours seen tokens; negative frequency/presence favour them too.
  p.repetition_penalty = 0.5f;
  p.frequency_penalty = -1.0f;
  p.presence_penalty = -2.0f;
  EXPECT_EQ(processed(p, {}, counts, in),
            (std::vector<float>{4.0f, -0.5f + 1.0f + 2.0f, 1.0f + 2.0f + 2.0f, 3.0f,
                                0.0f + 1.0f + 2.0f, -4.0f}));
}

TEST(LogitsProcessorTest, LogitBiasComesFirst) {
  // Bias moves token 0 from −1 to +1, so the repetition penalty then divides instead of
  // multiplying: (−1 + 2) / 4 = 0.25, not (−1 · 4) + 2 = −2.
  TokenCounts counts;
  const std::vector<int32_t> prompt{0};
  counts.add_prompt(prompt);
  SamplingParams p;
  p.repetition_penalty = 4.0f;
  p.logit_bias = {{0, 2.0f}, {2, -100.0f}};
  EXPECT_EQ(processed(p, {}, counts, {-1.0f, 5.0f, 5.0f}),
            (std::vector<float>{0.25f, 5.0f, -95.0f}));
}

TEST(LogitsProcessorTest, MinTokensMasksStopIdsUntilReached) {
  const std::vector<int32_t> eos{7, 3};
  SamplingParams p;
  p.min_tokens = 2;
  p.stop_token_ids = {5, 3};
  EXPECT_EQ(stop_token_set(p, eos), (std::vector<int32_t>{3, 5, 7}));
  std::mt19937 rng(1234);
  std::vector<float> in(10);
  for (float& x : in) x = std::uniform_real_distribution<float>(-3, 3)(rng);

  TokenCounts counts;
  LogitsProcessor proc(p, eos);
  for (int step = 0; step < 4; ++step) {
    std::vector<float> out = in;
    ASSERT_TRUE(proc.apply(counts, out).ok());
    for (int t = 0; t < 10; ++t) {
      const bool masked = step < 2 && (t == 3 || t == 5 || t == 7);
      EXPECT_EQ(out[t], masked ? -kInf : in[t]) << "step " << step << " token " << t;
    }
    EXPECT_EQ(proc.active(counts), step < 2);
    counts.add_output(0);
  }

  // ignore_eos: EOS is an ordinary token (neither stops nor is masked); stop ids still are.
  p.ignore_eos = true;
  EXPECT_EQ(stop_token_set(p, eos), (std::vector<int32_t>{3, 5}));
  const std::vector<float> out = processed(p, eos, TokenCounts{}, in);
  for (int t = 0; t < 10; ++t) EXPECT_EQ(out[t], (t == 3 || t == 5) ? -kInf : in[t]) << t;
}

TEST(LogitsProcessorTest, InactiveByDefaultAndOutOfVocabIdsAreErrors) {
  SamplingParams p;
  TokenCounts counts;
  const std::vector<int32_t> eos{2};
  EXPECT_FALSE(LogitsProcessor(p, eos).active(counts));
  counts.add_output(1);
  EXPECT_FALSE(LogitsProcessor(p, eos).active(counts));  // no penalty configured
  p.presence_penalty = 0.1f;
  EXPECT_TRUE(LogitsProcessor(p, eos).active(counts));

  const std::vector<float> in{1.0f, 2.0f, 3.0f};
  {
    SamplingParams q;
    q.logit_bias = {{0, 1.0f}, {3, 1.0f}};
    std::vector<float> row = in;
    const Status s = LogitsProcessor(q, eos).apply(TokenCounts{}, row);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(s.message(), "logit_bias token id 3 is outside the vocabulary of 3");
    EXPECT_EQ(row, in) << "an error leaves the row unchanged";
  }
  {
    SamplingParams q;
    q.min_tokens = 1;
    q.stop_token_ids = {9};
    std::vector<float> row = in;
    const Status s = LogitsProcessor(q, eos).apply(TokenCounts{}, row);
    EXPECT_EQ(s.message(), "stop token id 9 is outside the vocabulary of 3");
    EXPECT_EQ(row, in);
  }
  {
    // Counted ids are read (and checked) when a penalty needs them.
    TokenCounts far;
    far.add_output(-1);
    std::vector<float> row = in;
    SamplingParams penalised;
    penalised.frequency_penalty = 0.5f;
    const Status s = LogitsProcessor(penalised, eos).apply(far, row);
    EXPECT_EQ(s.message(), "counted token id -1 is outside the vocabulary of 3");
    EXPECT_EQ(row, in);
    EXPECT_TRUE(LogitsProcessor(SamplingParams{}, eos).apply(far, row).ok());
  }
}

class LogitsProcessorRandomTest : public test::SeededTest {
 protected:
  double uniform(double lo, double hi) {
    return std::uniform_real_distribution<double>(lo, hi)(rng_);
  }
  int below(int n) { return static_cast<int>(rng_() % static_cast<uint64_t>(n)); }
};

TEST_F(LogitsProcessorRandomTest, MatchesDenseReference) {
  for (int trial = 0; trial < 300; ++trial) {
    const int n_vocab = 1 + below(400);
    std::vector<float> logits(static_cast<size_t>(n_vocab));
    for (float& x : logits) x = static_cast<float>(uniform(-20, 20));
    SamplingParams p;
    // Each knob is off a third of the time, so every combination of on and off occurs.
    p.repetition_penalty = below(3) == 0 ? 1.0f : static_cast<float>(uniform(0.1, 3.0));
    p.frequency_penalty = below(3) == 0 ? 0.0f : static_cast<float>(uniform(-2, 2));
    p.presence_penalty = below(3) == 0 ? 0.0f : static_cast<float>(uniform(-2, 2));
    for (int i = below(3) == 0 ? 0 : below(10); i > 0; --i) {
      p.logit_bias[below(n_vocab)] = static_cast<float>(uniform(-100, 100));
    }
    p.min_tokens = below(4);
    p.ignore_eos = below(2) == 0;
    for (int i = below(3); i > 0; --i) p.stop_token_ids.push_back(below(n_vocab));
    const std::vector<int32_t> eos{below(n_vocab)};

    // Dense counts, built independently of TokenCounts.
    std::vector<int> n_out(static_cast<size_t>(n_vocab), 0);
    std::vector<bool> in_prompt(static_cast<size_t>(n_vocab), false);
    TokenCounts counts;
    std::vector<int32_t> prompt(static_cast<size_t>(below(50)));
    for (int32_t& t : prompt) in_prompt[static_cast<size_t>(t = below(n_vocab))] = true;
    counts.add_prompt(prompt);
    // Generated tokens cluster on a few ids so counts above one occur.
    const int n_gen = below(40);
    for (int i = 0; i < n_gen; ++i) {
      const int32_t t = below(std::min(n_vocab, 8));
      ++n_out[static_cast<size_t>(t)];
      counts.add_output(t);
    }

    std::vector<double> want(logits.begin(), logits.end());
    for (const auto& [id, bias] : p.logit_bias) want[static_cast<size_t>(id)] += bias;
    for (size_t t = 0; t < want.size(); ++t) {
      if (in_prompt[t] || n_out[t] > 0) {
        want[t] = want[t] > 0 ? want[t] / p.repetition_penalty : want[t] * p.repetition_penalty;
      }
      want[t] -= p.frequency_penalty * n_out[t] + p.presence_penalty * (n_out[t] > 0 ? 1 : 0);
    }
    if (n_gen < p.min_tokens) {
      for (int32_t t : p.stop_token_ids) want[static_cast<size_t>(t)] = -INFINITY;
      if (!p.ignore_eos) want[static_cast<size_t>(eos[0])] = -INFINITY;
    }

    const std::vector<float> got = processed(p, eos, counts, logits);
    ASSERT_EQ(got.size(), want.size());
    for (size_t t = 0; t < got.size(); ++t) {
      if (std::isinf(want[t])) {
        ASSERT_EQ(got[t], -kInf) << "trial " << trial << " token " << t;
      } else {
        ASSERT_NEAR(got[t], want[t], kPenaltyTol * std::max(1.0, std::fabs(want[t])))
            << "trial " << trial << " token " << t << " in prompt " << in_prompt[t] << " count "
            << n_out[t];
      }
    }
  }
}

}  // namespace
}  // namespace moeserve
