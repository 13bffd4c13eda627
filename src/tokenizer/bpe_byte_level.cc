#include "tokenizer/bpe_byte_level.h"

#include <array>

#include "tokenizer/unicode.h"

namespace moeserve::byte_level {
namespace {

struct Alphabet {
  std::array<char32_t, 256> byte_to_char{};
  std::array<int16_t, 324> char_to_byte{};  // indexed by code point < 324
  std::array<std::string, 256> byte_to_utf8;

  Alphabet() {
    char_to_byte.fill(-1);
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++);
      byte_to_char[b] = cp;
      char_to_byte[cp] = static_cast<int16_t>(b);
      unicode::append_utf8(cp, byte_to_utf8[b]);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet a;
  return a;
}

}  // namespace

std::string encode(std::string_view bytes) {
  const Alphabet& a = alphabet();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += a.byte_to_utf8[static_cast<uint8_t>(c)];
  return out;
}

int char_to_byte(char32_t cp) {
  return cp < alphabet().char_to_byte.size() ? alphabet().char_to_byte[cp] : -1;
}

void decode_token(std::string_view token, std::string& out) {
  size_t mark = out.size();
  for (size_t pos = 0; pos < token.size();) {
    int b = char_to_byte(unicode::next_code_point(token, pos));
    if (b < 0) {
      out.resize(mark);
      out.append(token);
      return;
    }
    out.push_back(static_cast<char>(b));
  }
}

}  // namespace moeserve::byte_level
