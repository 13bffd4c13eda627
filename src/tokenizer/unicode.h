// UTF-8 helpers and Unicode normalization (NFC/NFD/NFKC/NFKD) for the
// tokenizer. Strings are UTF-8 throughout; invalid input bytes are decoded as
// U+FFFD so that nothing here ever fails.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace moeserve::unicode {

inline constexpr char32_t kReplacementChar = 0xFFFD;

// Decodes one code point at `pos` and advances it (1 byte for invalid input,
// which yields U+FFFD).
char32_t next_code_point(std::string_view s, size_t& pos);

void append_utf8(char32_t cp, std::string& out);

// Length of the UTF-8 sequence a lead byte announces (1 for invalid leads).
inline size_t utf8_sequence_length(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

// Converts bytes to valid UTF-8, each maximal invalid subpart becoming U+FFFD
// (the WHATWG/Unicode "best practice"). With `stop_at_incomplete`, a trailing
// sequence that is a valid but unfinished prefix is left unconsumed; the
// number of bytes consumed goes to `*consumed`. Because the replacement is
// decided locally, converting a byte stream in pieces cut at the reported
// `consumed` positions gives the same text as converting it in one go.
std::string to_valid_utf8(std::string_view bytes, bool stop_at_incomplete = false,
                          size_t* consumed = nullptr);

// True when `bytes` is well-formed UTF-8 (no allocation).
bool is_valid_utf8(std::string_view bytes);

enum class NormalForm { kNfc, kNfd, kNfkc, kNfkd };

std::string normalize(std::string_view text, NormalForm form);

// ECMAScript `\s` (what String.prototype.trim strips): the reference
// tokenizer's notion of whitespace.
bool is_js_whitespace(char32_t cp);

}  // namespace moeserve::unicode
