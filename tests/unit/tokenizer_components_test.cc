// Unit tests of the tokenizer's parts on small inputs: split behaviours,
// Unicode normalization, UTF-8 repair, added-token flags, config errors, and
// the two hand-made tokenizers in tests/data/tokenizer/ (ids checked against
// transformers.js output recorded below).
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/pre_tokenizer_regex.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace moeserve {
namespace {

using Ids = std::vector<int32_t>;
const std::filesystem::path kDataDir =
    std::filesystem::path(MOESERVE_SOURCE_DIR) / "tests/data/tokenizer";

std::string read(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::unique_ptr<Tokenizer> load(const std::string& name) {
  auto t = Tokenizer::load(kDataDir / name);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

std::vector<std::string> split(std::string_view text, SplitBehavior b, bool invert = false) {
  std::vector<std::pair<size_t, size_t>> matches;
  for (size_t at = text.find('-'); at != std::string::npos; at = text.find('-', at + 1))
    matches.emplace_back(at, at + 1);
  std::vector<Span> spans;
  split_with_behavior(0, text.size(), matches, b, invert, spans);
  std::vector<std::string> out;
  for (auto [begin, end] : spans) out.emplace_back(text.substr(begin, end - begin));
  return out;
}

using Strings = std::vector<std::string>;

TEST(SplitBehaviorTest, MatchesHuggingFaceDocumentation) {
  const std::string s = "the-final--countdown";
  EXPECT_EQ(split(s, SplitBehavior::kRemoved), (Strings{"the", "final", "countdown"}));
  EXPECT_EQ(split(s, SplitBehavior::kIsolated),
            (Strings{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(split(s, SplitBehavior::kMergedWithPrevious),
            (Strings{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(split(s, SplitBehavior::kMergedWithNext),
            (Strings{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(split(s, SplitBehavior::kContiguous),
            (Strings{"the", "-", "final", "--", "countdown"}));
}

TEST(SplitBehaviorTest, Invert) {
  EXPECT_EQ(split("a-b", SplitBehavior::kRemoved, true), (Strings{"-"}));
  // Inverted, "a" and "b" are the matches: "b" merges into the "-" before it.
  EXPECT_EQ(split("a-b", SplitBehavior::kMergedWithPrevious, true), (Strings{"a", "-b"}));
  EXPECT_EQ(split("", SplitBehavior::kIsolated), Strings{});
}

TEST(RegexTest, WhitespaceFollowsEcmaScript) {
  auto re = Regex::compile("\\s+|[^\\s]+");
  ASSERT_TRUE(re.ok()) << re.status();
  std::vector<std::pair<size_t, size_t>> m;
  (*re)->find_all(
      "a\xEF\xBB\xBF"
      "b",
      m);  // U+FEFF is whitespace in JS
  EXPECT_EQ(m.size(), 3u);
  m.clear();
  (*re)->find_all(
      "a\xC2\x85"
      "b",
      m);  // U+0085 is not
  EXPECT_EQ(m.size(), 1u);
  EXPECT_EQ(translate_pattern_to_pcre2("(?i:'s|'t|'re|'ve|'m|'ll|'d)"),
            "(?:'([sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))");
  EXPECT_FALSE(Regex::compile("(unclosed").ok());
}

TEST(UnicodeTest, Normalization) {
  using unicode::NormalForm;
  using unicode::normalize;
  EXPECT_EQ(normalize("e\xCC\x81", NormalForm::kNfc), "\xC3\xA9");
  EXPECT_EQ(normalize("\xE2\x84\xAB", NormalForm::kNfc), "\xC3\x85");  // Angstrom sign
  EXPECT_EQ(normalize("\xC3\xA9", NormalForm::kNfd), "e\xCC\x81");
  // Marks are reordered by combining class: dot below (220) before dot above (230).
  EXPECT_EQ(normalize("q\xCC\x87\xCC\xA3", NormalForm::kNfc), "q\xCC\xA3\xCC\x87");
  // Hangul jamo compose algorithmically: U+1100 U+1161 U+11A8 -> U+AC01.
  EXPECT_EQ(normalize("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", NormalForm::kNfc), "\xEA\xB0\x81");
  EXPECT_EQ(normalize("\xEA\xB0\x81", NormalForm::kNfd), "\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8");
  EXPECT_EQ(normalize("\xEF\xAC\x81", NormalForm::kNfc), "\xEF\xAC\x81");  // ligature fi kept
  EXPECT_EQ(normalize("\xEF\xAC\x81", NormalForm::kNfkc), "fi");
  EXPECT_EQ(normalize("\xE2\x91\xA0\xEF\xBD\xB6", NormalForm::kNfkc), "1\xE3\x82\xAB");  // ① ｶ
  EXPECT_EQ(normalize("plain ascii", NormalForm::kNfkc), "plain ascii");
}

TEST(UnicodeTest, ValidUtf8RepairIsStreamable) {
  std::mt19937 rng(7);
  const std::string pieces[] = {
      "a",        "\xC3\xA9", "\xE4\xB8\xAD", "\xF0\x9F\x98\x80", "\xC3",
      "\xE4\xB8", "\x80",     "\xFF",         "\xED\xA0\x80",     "\xF4\x90\x80\x80"};
  for (int round = 0; round < 2000; ++round) {
    std::string bytes;
    for (int i = std::uniform_int_distribution<int>(0, 12)(rng); i > 0; --i)
      bytes += pieces[std::uniform_int_distribution<size_t>(0, std::size(pieces) - 1)(rng)];
    std::string whole = unicode::to_valid_utf8(bytes);
    // Feed byte by byte, converting whatever is complete.
    std::string streamed, pending;
    for (char c : bytes) {
      pending += c;
      size_t consumed = 0;
      streamed += unicode::to_valid_utf8(pending, true, &consumed);
      pending.erase(0, consumed);
    }
    streamed += unicode::to_valid_utf8(pending);
    ASSERT_EQ(streamed, whole) << nlohmann::json(whole).dump();
    ASSERT_TRUE(unicode::is_valid_utf8(whole));
  }
  EXPECT_FALSE(
      unicode::is_valid_utf8("a\xE4\xB8"
                             "b"));
  EXPECT_TRUE(unicode::is_valid_utf8("a\xEF\xBF\xBD\xF0\x9F\x98\x80"));
  EXPECT_EQ(unicode::to_valid_utf8("a\xE4\xB8"
                                   "b"),
            "a\xEF\xBF\xBD"
            "b");  // one U+FFFD per maximal subpart
}

TEST(TinyTokenizerTest, ByteFallbackMatchesReference) {
  auto t = load("tiny_byte_fallback");
  ASSERT_TRUE(t);
  // Ids from transformers.js (@lenml/tokenizers 3.7.2) on the same files.
  EXPECT_EQ(t->encode("hello world"), (Ids{1, 301, 306}));
  EXPECT_EQ(t->encode(" the thing 中文 é!"), (Ids{1, 259, 296, 295, 314, 316, 259, 291, 288}));
  EXPECT_EQ(t->encode("héllo 😀 Ω"),
            (Ids{1, 297, 291, 309, 259, 243, 162, 155, 131, 259, 209, 172}));
  EXPECT_EQ(t->encode("a<s>b</s> q"), (Ids{1, 310, 1, 259, 261, 2, 259, 259, 276}));
  EXPECT_EQ(t->decode(t->encode("hello world")), "<s> hello world");
  EXPECT_EQ(t->decode(t->encode("héllo 😀 Ω"), {.skip_special_tokens = true}), "héllo 😀 Ω");
  // A lone continuation byte decodes to U+FFFD.
  EXPECT_EQ(t->decode(Ids{1, 259 - 256 + 3 + 0x80}, {.skip_special_tokens = true}), "\xEF\xBF\xBD");
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
}

TEST(TinyTokenizerTest, ByteLevelMatchesReference) {
  auto t = load("tiny_byte_level");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->encode("hello world"), (Ids{104, 101, 108, 108, 111, 268}));
  EXPECT_EQ(t->encode(" the thing 中文 é!"), (Ids{258, 257, 270, 276, 32, 277, 33}));
  EXPECT_EQ(t->encode("héllo 😀 Ω"), (Ids{104, 277, 108, 108, 111, 32, 280, 32, 206, 169}));
  EXPECT_EQ(t->encode("a<s>b</s> q"), (Ids{97, 60, 115, 62, 98, 60, 47, 115, 62, 32, 113}));
  EXPECT_EQ(t->decode(t->encode("héllo 😀 Ω")), "héllo 😀 Ω");
  int32_t eot = t->token_to_id("<|endoftext|>");
  EXPECT_EQ(t->encode("x<|endoftext|>"), (Ids{120, eot}));
  EXPECT_NE(t->encode("x<|endoftext|>", {.parse_special_tokens = false}), (Ids{120, eot}));
}

TEST(TinyTokenizerTest, MetaspacePreTokenizerAndDecoder) {
  nlohmann::json j = nlohmann::json::parse(read(kDataDir / "tiny_byte_fallback/tokenizer.json"));
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Metaspace"},
                        {"replacement", "\u2581"},
                        {"prepend_scheme", "first"},
                        {"split", true}};
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders",
                   {{{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"}},
                    {{"type", "ByteFallback"}},
                    {{"type", "Fuse"}}}}};
  auto t = Tokenizer::from_json(j.dump(), "");
  ASSERT_TRUE(t.ok()) << t.status();
  // Hugging Face semantics, worked out by hand (transformers.js ignores
  // prepend_scheme/split here): "▁hello▁world" splits before each "▁".
  EXPECT_EQ((*t)->encode("hello world"), (Ids{1, 301, 306}));
  // Only the first section gets the "▁" prefix; "hello" after <s> does not.
  EXPECT_EQ((*t)->encode("<s>hello the world"), (Ids{1, 1, 307, 309, 296, 306}));
  EXPECT_EQ((*t)->encode("the  a"), (Ids{1, 296, 259, 310}));
  EXPECT_EQ((*t)->decode(Ids{1, 301, 306}, {.skip_special_tokens = true}), "hello world");
  EXPECT_EQ((*t)->decode((*t)->encode("the  a"), {.skip_special_tokens = true}), "the  a");
}

// tiny_byte_level with extra added tokens carrying the given flags.
std::unique_ptr<Tokenizer> with_added_token(const nlohmann::json& token) {
  nlohmann::json j = nlohmann::json::parse(read(kDataDir / "tiny_byte_level/tokenizer.json"));
  j["added_tokens"].push_back(token);
  auto t = Tokenizer::from_json(j.dump(), "");
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

TEST(AddedTokenTest, StripAndSingleWordFlags) {
  nlohmann::json tok = {{"id", 400},          {"content", "<M>"}, {"special", false},
                        {"lstrip", true},     {"rstrip", true},   {"single_word", false},
                        {"normalized", false}};
  auto t = with_added_token(tok);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->encode("a  <M>  b"), (Ids{97, 400, 98}));
  EXPECT_EQ(t->vocab_size(), 401);
  EXPECT_EQ(t->id_to_token(400), "<M>");

  tok["lstrip"] = tok["rstrip"] = false;
  tok["single_word"] = true;
  tok["content"] = "ab";
  t = with_added_token(tok);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->encode("x ab y"), (Ids{120, 32, 400, 32, 121}));
  EXPECT_EQ(t->encode("xab"), (Ids{120, 97, 98}));  // inside a word: not matched
}

TEST(ConfigErrorTest, NamesTheField) {
  std::string good = read(kDataDir / "tiny_byte_level/tokenizer.json");
  auto error_of = [&](auto edit) {
    nlohmann::json j = nlohmann::json::parse(good);
    edit(j);
    auto t = Tokenizer::from_json(j.dump(), "");
    return t.ok() ? std::string("ok") : std::string(t.status().message());
  };
  EXPECT_EQ(error_of([](auto&) {}), "ok");
  EXPECT_NE(error_of([](auto& j) { j["model"].erase("merges"); }).find("'model.merges' is missing"),
            std::string::npos);
  EXPECT_NE(error_of([](auto& j) { j["model"]["merges"][3] = 5; }).find("model.merges[3]"),
            std::string::npos);
  EXPECT_NE(error_of([](auto& j) { j["model"]["vocab"] = 1; }).find("model.vocab"),
            std::string::npos);
  EXPECT_NE(error_of([](auto& j) {
              j["pre_tokenizer"] = {
                  {"type", "Sequence"},
                  {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"Regex", "("}}}}}}};
            }).find("pre_tokenizer.pretokenizers[0].pattern"),
            std::string::npos);
  EXPECT_NE(error_of([](auto& j) {
              j["pre_tokenizer"]["behavior"] = "Sideways";
              j["pre_tokenizer"]["type"] = "Split";
              j["pre_tokenizer"]["pattern"] = {{"String", "-"}};
            }).find("pre_tokenizer.behavior"),
            std::string::npos);
  EXPECT_NE(error_of([](auto& j) { j["decoder"]["type"] = "WordPiece"; }).find("decoder.type"),
            std::string::npos);
  EXPECT_NE(error_of([](auto& j) {
              j["added_tokens"][0].erase("content");
            }).find("added_tokens[0].content"),
            std::string::npos);
  EXPECT_FALSE(Tokenizer::from_json("{not json", "").ok());
  EXPECT_FALSE(Tokenizer::load("/nonexistent/dir").ok());
}

}  // namespace
}  // namespace moeserve
