// Fuzzes Tokenizer::encode/decode on the two tiny test tokenizers, with and
// without special-token parsing. Input: the text, raw bytes.
//
// Checks, for every input: ids are inside the vocabulary and decode returns
// valid UTF-8. For valid UTF-8 input, the round trip holds:
//   byte-level:    decode(encode(s)) == s exactly;
//   byte-fallback: decode(encode(s)) == s with U+2581 read as a space (the
//                  Metaspace convention). When special tokens split the text,
//                  each later section gets its own prepended U+2581, as in
//                  Hugging Face, so then only the non-space text must match.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_tokenizers.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace {

using moeserve::fuzz::property_failed;

constexpr std::string_view kMetaspace = "\xe2\x96\x81";  // U+2581

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  for (size_t at = 0;;) {
    size_t hit = s.find(from, at);
    out.append(s.substr(at, hit - at));
    if (hit == std::string_view::npos) return out;
    out.append(to);
    at = hit + from.size();
  }
}

std::string without_spaces(std::string_view s) {
  std::string out = replace_all(s, kMetaspace, "");
  std::erase(out, ' ');
  return out;
}

void check(const moeserve::Tokenizer& tok, bool byte_level, std::string_view text,
           bool parse_special) {
  std::vector<int32_t> ids =
      tok.encode(text, {.add_special_tokens = false, .parse_special_tokens = parse_special});
  bool has_special = false;
  for (int32_t id : ids) {
    if (id < 0 || id >= tok.vocab_size()) property_failed("encode returned an id out of range");
    has_special |= tok.is_special(id);
  }
  std::string decoded = tok.decode(ids, {.skip_special_tokens = false});
  if (!moeserve::unicode::is_valid_utf8(decoded)) property_failed("decode gave invalid UTF-8");
  if (!moeserve::unicode::is_valid_utf8(text)) return;  // repaired text cannot round-trip

  if (byte_level) {
    if (decoded != text) property_failed("byte-level round trip differs");
  } else if (!has_special) {
    if (decoded != replace_all(text, kMetaspace, " "))
      property_failed("byte-fallback round trip differs");
  } else if (without_spaces(decoded) != without_spaces(text)) {
    property_failed("byte-fallback round trip (around special tokens) differs");
  }

  // The post-processor only adds ids around the text's ids (BOS here).
  std::vector<int32_t> with_special =
      tok.encode(text, {.add_special_tokens = true, .parse_special_tokens = parse_special});
  auto found = std::search(with_special.begin(), with_special.end(), ids.begin(), ids.end());
  if (!ids.empty() && found == with_special.end())
    property_failed("post-processor changed the text's ids");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using moeserve::fuzz::TinyTokenizer;
  // Long inputs add no coverage (BPE works per word) and only slow the run.
  if (size > 4096) return 0;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto& byte_level = moeserve::fuzz::tiny_tokenizer(TinyTokenizer::kByteLevel);
  const auto& byte_fallback = moeserve::fuzz::tiny_tokenizer(TinyTokenizer::kByteFallback);
  for (bool parse_special : {false, true}) {
    check(byte_level, /*byte_level=*/true, text, parse_special);
    check(byte_fallback, /*byte_level=*/false, text, parse_special);
  }
  return 0;
}
