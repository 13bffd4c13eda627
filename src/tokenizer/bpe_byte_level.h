// GPT-2's reversible byte <-> printable-character alphabet ("bytes_to_unicode"):
// printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100…
// U+0143. Byte-level BPE vocabularies are written in this alphabet.
#pragma once

#include <string>
#include <string_view>

namespace moeserve::byte_level {

// Maps every byte of `bytes` to its alphabet character (UTF-8).
std::string encode(std::string_view bytes);

// The byte a character stands for, or -1 when it is outside the alphabet.
int char_to_byte(char32_t cp);

// Maps a token back to bytes; a token with any character outside the
// alphabet (e.g. an added token such as "<|im_start|>") is copied verbatim,
// as Hugging Face's ByteLevel decoder does.
void decode_token(std::string_view token, std::string& out);

}  // namespace moeserve::byte_level
