// The serving test tokenizer (tests/data/tiny/tokenizer_512, written by
// tests/reference/make_tokenizer.py for the tiny checkpoints): it loads with the shape the
// tiny models expect, encodes like the reference tokenizer (ids from transformers.js,
// tests/tokenizer_ref/make_serve_tokenizer_expected.mjs), round-trips text, and renders
// DeepSeek-R1's chat template through PromptBuilder.
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "moeserve/engine.h"
#include "nlohmann/json.hpp"
#include "server/prompt_builder.h"
#include "tokenizer/tokenizer.h"

namespace moeserve {
namespace {

const std::filesystem::path kTinyDir =
    std::filesystem::path(MOESERVE_SOURCE_DIR) / "tests/data/tiny";
const std::filesystem::path kTokenizerDir = kTinyDir / "tokenizer_512";

constexpr const char* kBos = "<｜begin▁of▁sentence｜>";
constexpr const char* kEos = "<｜end▁of▁sentence｜>";

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

class ServeTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tok = Tokenizer::load(kTokenizerDir);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = std::move(*tok);
  }

  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(ServeTokenizerTest, MatchesTheTinyCheckpoints) {
  EXPECT_EQ(tokenizer_->vocab_size(), 512);
  EXPECT_EQ(tokenizer_->bos_id(), 0);
  EXPECT_EQ(tokenizer_->eos_id(), 1);
  for (const char* model : {"v3_tiny", "v3_bf16_tiny"}) {
    const nlohmann::json config = read_json(kTinyDir / model / "config.json");
    EXPECT_EQ(config["vocab_size"].get<int>(), tokenizer_->vocab_size()) << model;
    EXPECT_EQ(config["bos_token_id"].get<int>(), tokenizer_->bos_id()) << model;
    EXPECT_EQ(config["eos_token_id"].get<int>(), tokenizer_->eos_id()) << model;
  }
  for (int32_t id = 0; id < tokenizer_->vocab_size(); ++id) {
    EXPECT_FALSE(tokenizer_->id_to_token(id).empty()) << "id " << id << " has no token";
  }
}

TEST_F(ServeTokenizerTest, SpecialTokensFollowDeepSeek) {
  EXPECT_EQ(tokenizer_->token_to_id(kBos), 0);
  EXPECT_EQ(tokenizer_->token_to_id(kEos), 1);
  EXPECT_EQ(tokenizer_->token_to_id("<｜User｜>"), 507);
  EXPECT_EQ(tokenizer_->token_to_id("<｜Assistant｜>"), 508);
  EXPECT_EQ(tokenizer_->token_to_id("<think>"), 509);
  EXPECT_EQ(tokenizer_->token_to_id("</think>"), 510);
  EXPECT_EQ(tokenizer_->token_to_id("<｜▁pad▁｜>"), 511);
  // As in DeepSeek's files: BOS/EOS/pad are special; the role and think markers are not, so
  // they stay in decoded text (the reasoning parser needs </think>).
  EXPECT_TRUE(tokenizer_->is_special(0));
  EXPECT_TRUE(tokenizer_->is_special(1));
  EXPECT_TRUE(tokenizer_->is_special(511));
  for (int32_t id : {507, 508, 509, 510}) EXPECT_FALSE(tokenizer_->is_special(id)) << id;
  // The 256 byte tokens follow BOS/EOS: "!" is byte 0x21.
  EXPECT_EQ(tokenizer_->token_to_id("!"), 2 + 0x21);
  const std::vector<int32_t> think_ids = {509, 2 + 'x', 510};
  EXPECT_EQ(tokenizer_->decode(think_ids, {.skip_special_tokens = true}), "<think>x</think>");
  const std::vector<int32_t> with_eos = {2 + 'h', 2 + 'i', 1, 511};
  EXPECT_EQ(tokenizer_->decode(with_eos, {.skip_special_tokens = true}), "hi");
}

TEST_F(ServeTokenizerTest, AddsBosLikeDeepSeek) {
  // LlamaTokenizerFast with add_bos_token: BOS first, no EOS.
  const std::vector<int32_t> plain = tokenizer_->encode("Hello", {.add_special_tokens = false});
  std::vector<int32_t> with_bos = tokenizer_->encode("Hello");
  ASSERT_FALSE(with_bos.empty());
  EXPECT_EQ(with_bos.front(), 0);
  with_bos.erase(with_bos.begin());
  EXPECT_EQ(with_bos, plain);
}

TEST_F(ServeTokenizerTest, EncodesLikeTheReference) {
  std::ifstream in(std::filesystem::path(MOESERVE_SOURCE_DIR) /
                   "tests/data/tokenizer/tiny_serve_512_expected.jsonl");
  ASSERT_TRUE(in) << "tiny_serve_512_expected.jsonl is missing";
  int n_cases = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const nlohmann::json c = nlohmann::json::parse(line);
    const std::string text = c["text"].get<std::string>();
    const std::vector<int32_t> expected = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tokenizer_->encode(text, {.add_special_tokens = false}), expected) << text;
    EXPECT_EQ(tokenizer_->decode(expected), text);
    ++n_cases;
  }
  EXPECT_GE(n_cases, 20);
}

TEST_F(ServeTokenizerTest, RoundTripsText) {
  const std::vector<std::string> texts = {
      "plain ascii text",
      "numbers 0 12 345 6789",
      "naïve café, Ærøskøbing",
      "中文 and 日本語",
      "emoji 🙂 sequences 👩‍👩‍👧",
      "tabs\tand\nnewlines\r\n",
      "   ",
      "x",
  };
  for (const std::string& text : texts) {
    const std::vector<int32_t> ids = tokenizer_->encode(text, {.add_special_tokens = false});
    ASSERT_FALSE(ids.empty()) << text;
    for (int32_t id : ids) {
      EXPECT_GE(id, 0);
      EXPECT_LT(id, 512);
    }
    EXPECT_EQ(tokenizer_->decode(ids), text);
  }
  // Merges learned from the corpus make common English shorter than its bytes.
  const std::string english = "the server and the test of the model";
  EXPECT_LT(tokenizer_->encode(english, {.add_special_tokens = false}).size(), english.size() / 2);
}

TEST_F(ServeTokenizerTest, RendersTheR1ChatTemplate) {
  auto builder = PromptBuilder::create(*tokenizer_, kTokenizerDir.string());
  ASSERT_TRUE(builder.ok()) << builder.status();
  ASSERT_TRUE((*builder)->has_chat_template());
  const std::vector<ChatMessage> messages = {{"system", "Be brief.", std::nullopt},
                                             {"user", "Hi there", std::nullopt}};
  auto prompt = (*builder)->from_messages(messages, /*add_generation_prompt=*/true);
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_EQ(prompt->text,
            std::string(kBos) + "Be brief.<｜User｜>Hi there<｜Assistant｜><think>\n");
  EXPECT_TRUE(prompt->text.ends_with("<think>\n"));
  EXPECT_EQ(prompt->reasoning, ReasoningMode::kInsideReasoning);
  ASSERT_GE(prompt->ids.size(), 5u);
  EXPECT_EQ(prompt->ids.front(), 0);  // BOS from the template, not added twice
  EXPECT_NE(prompt->ids[1], 0);
  // ... <｜Assistant｜> <think> "\n": the newline is the byte token 0x0A (Ċ, id 2 + 10).
  const size_t n = prompt->ids.size();
  EXPECT_EQ(prompt->ids[n - 3], 508);
  EXPECT_EQ(prompt->ids[n - 2], 509);
  EXPECT_EQ(prompt->ids[n - 1], 2 + 0x0A);
  EXPECT_EQ(tokenizer_->decode(prompt->ids), prompt->text);

  // Without the generation prompt the template ends after the last user turn.
  auto no_gen = (*builder)->from_messages(messages, /*add_generation_prompt=*/false);
  ASSERT_TRUE(no_gen.ok()) << no_gen.status();
  EXPECT_TRUE(no_gen->text.ends_with("<｜User｜>Hi there"));
  EXPECT_EQ(no_gen->reasoning, ReasoningMode::kModelOpens);  // <think> and </think> exist
}

}  // namespace
}  // namespace moeserve
