// IncrementalDetokenizer: streamed text equals one-shot decode for random id
// sequences (byte-level and byte-fallback tokenizers, which split characters
// across tokens), and stop strings cut the stream where they first occur.
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "tokenizer/detokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

const std::filesystem::path kSourceDir = MOESERVE_SOURCE_DIR;

std::unique_ptr<Tokenizer> load_dir(const std::filesystem::path& dir) {
  if (!std::filesystem::exists(dir / "tokenizer.json")) return nullptr;
  auto t = Tokenizer::load(dir);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

std::string stream(const Tokenizer& t, const std::vector<int32_t>& ids, DetokenizerOptions opts) {
  IncrementalDetokenizer d(t, std::move(opts));
  std::string out;
  for (int32_t id : ids) {
    std::string piece = d.feed(id);
    EXPECT_TRUE(unicode::is_valid_utf8(piece));  // only complete characters come out
    out += piece;
  }
  return out + d.finish();
}

// Random ids, biased towards the byte tokens that split characters.
std::vector<int32_t> random_ids(std::mt19937& rng, const Tokenizer& t, int32_t byte_lo,
                                int32_t byte_hi) {
  std::vector<int32_t> ids(std::uniform_int_distribution<int>(1, 48)(rng));
  for (int32_t& id : ids) {
    id = std::uniform_int_distribution<int>(0, 2)(rng) == 0
             ? std::uniform_int_distribution<int32_t>(0, t.vocab_size() - 1)(rng)
             : std::uniform_int_distribution<int32_t>(byte_lo, byte_hi)(rng);
  }
  return ids;
}

void check_stream_equals_decode(const Tokenizer& t, int32_t byte_lo, int32_t byte_hi) {
  std::mt19937 rng(1234);
  for (int round = 0; round < 500; ++round) {
    std::vector<int32_t> ids = random_ids(rng, t, byte_lo, byte_hi);
    for (bool skip : {false, true}) {
      std::string want = t.decode(ids, {.skip_special_tokens = skip});
      ASSERT_EQ(stream(t, ids, {.skip_special_tokens = skip}), want) << "round " << round;
    }
  }
}

void check_stop_strings(const Tokenizer& t, int32_t byte_lo, int32_t byte_hi) {
  std::mt19937 rng(99);
  for (int round = 0; round < 300; ++round) {
    std::vector<int32_t> ids = random_ids(rng, t, byte_lo, byte_hi);
    std::string full = t.decode(ids);
    if (full.size() < 2) continue;
    // A stop string taken from the text itself (at a character boundary),
    // plus one that never occurs.
    size_t b = std::uniform_int_distribution<size_t>(0, full.size() - 1)(rng);
    while (b > 0 && (static_cast<uint8_t>(full[b]) & 0xC0) == 0x80) --b;
    size_t e = std::min(full.size(), b + std::uniform_int_distribution<size_t>(1, 6)(rng));
    while (e < full.size() && (static_cast<uint8_t>(full[e]) & 0xC0) == 0x80) ++e;
    std::string stop = full.substr(b, e - b);
    DetokenizerOptions opts{.skip_special_tokens = false, .stop_strings = {"\x01never\x02", stop}};
    IncrementalDetokenizer d(t, opts);
    std::string out;
    for (int32_t id : ids) out += d.feed(id);
    out += d.finish();
    ASSERT_TRUE(d.stopped()) << "round " << round;
    EXPECT_EQ(d.matched_stop_string(), stop);
    EXPECT_EQ(out, full.substr(0, full.find(stop))) << "round " << round;
  }
}

TEST(DetokenizerTest, ByteFallbackStreamEqualsDecode) {
  auto t = load_dir(kSourceDir / "tests/data/tokenizer/tiny_byte_fallback");
  ASSERT_TRUE(t);
  check_stream_equals_decode(*t, 3, 3 + 255);  // <0x00>..<0xFF>
  check_stop_strings(*t, 3, 3 + 255);
}

TEST(DetokenizerTest, ByteLevelStreamEqualsDecode) {
  auto t = load_dir(kSourceDir / "tests/data/tokenizer/tiny_byte_level");
  ASSERT_TRUE(t);
  check_stream_equals_decode(*t, 0, 255);  // single-byte tokens
  check_stop_strings(*t, 0, 255);
}

TEST(DetokenizerTest, HoldsBackPossibleStopPrefix) {
  auto t = load_dir(kSourceDir / "tests/data/tokenizer/tiny_byte_level");
  ASSERT_TRUE(t);
  auto ids_of = [&](const std::string& s) { return t->encode(s); };
  IncrementalDetokenizer d(*t, {.stop_strings = {"STOP"}});
  std::string out;
  for (int32_t id : ids_of("go ST")) out += d.feed(id);
  EXPECT_EQ(out, "go ");  // "ST" may start "STOP"
  for (int32_t id : ids_of("AY")) out += d.feed(id);
  EXPECT_EQ(out, "go STAY");  // released once it cannot
  for (int32_t id : ids_of(" then STOP and more")) out += d.feed(id);
  EXPECT_TRUE(d.stopped());
  EXPECT_EQ(out, "go STAY then ");
  EXPECT_EQ(d.feed(ids_of("x")[0]), "");
  EXPECT_EQ(d.finish(), "");

  IncrementalDetokenizer keep(*t, {.stop_strings = {"STOP"}, .include_stop_string = true});
  out.clear();
  for (int32_t id : ids_of("a STOP b")) out += keep.feed(id);
  EXPECT_EQ(out, "a STOP");

  IncrementalDetokenizer tail(*t, {.stop_strings = {"STOP"}});
  out.clear();
  for (int32_t id : ids_of("end ST")) out += tail.feed(id);
  EXPECT_EQ(out + tail.finish(), "end ST");  // held text is released at the end
  EXPECT_FALSE(tail.stopped());
}

}  // namespace
}  // namespace moeserve
