#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/unicode.h"

namespace moeserve {
namespace {

// Letters, digits and '_' count as word characters; so does any non-ASCII
// character that is not whitespace (an approximation of Unicode \w).
bool is_word_char(char32_t cp) {
  if (cp < 0x80)
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
           cp == '_';
  return !unicode::is_js_whitespace(cp);
}

char32_t code_point_before(std::string_view text, size_t end) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
  return unicode::next_code_point(text, start);
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  nodes_.emplace_back();
  for (size_t t = 0; t < tokens_.size(); ++t) {
    const std::string& s = tokens_[t].content;
    if (s.empty()) continue;
    first_byte_[static_cast<uint8_t>(s[0])] = true;
    int32_t node = 0;
    for (char c : s) {
      auto b = static_cast<uint8_t>(c);
      int32_t next = child(node, b);
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        nodes_.emplace_back();
        auto& ch = nodes_[node].children;
        ch.insert(std::upper_bound(ch.begin(), ch.end(), std::pair<uint8_t, int32_t>{b, -1}),
                  {b, next});
      }
      node = next;
    }
    if (nodes_[node].token < 0) nodes_[node].token = static_cast<int32_t>(t);
  }
}

int32_t AddedTokenMatcher::child(int32_t node, uint8_t byte) const {
  const auto& ch = nodes_[node].children;
  auto it = std::lower_bound(ch.begin(), ch.end(), std::pair<uint8_t, int32_t>{byte, INT32_MIN});
  return it != ch.end() && it->first == byte ? it->second : -1;
}

std::vector<AddedTokenMatcher::Segment> AddedTokenMatcher::split(std::string_view text,
                                                                 bool match_special) const {
  std::vector<Segment> out;
  size_t plain_start = 0;
  size_t i = 0;
  while (i < text.size()) {
    if (!first_byte_[static_cast<uint8_t>(text[i])]) {
      ++i;
      continue;
    }
    // Longest eligible token starting at i.
    int32_t best = -1;
    size_t best_end = 0;
    int32_t node = 0;
    for (size_t j = i; j < text.size(); ++j) {
      node = child(node, static_cast<uint8_t>(text[j]));
      if (node < 0) break;
      int32_t t = nodes_[node].token;
      if (t < 0) continue;
      const AddedToken& tok = tokens_[t];
      if (tok.special && !match_special) continue;
      if (tok.single_word) {
        if (i > 0 && is_word_char(code_point_before(text, i))) continue;
        size_t after = j + 1;
        if (after < text.size() && is_word_char(unicode::next_code_point(text, after))) continue;
      }
      best = t;
      best_end = j + 1;
    }
    if (best < 0) {
      ++i;
      continue;
    }
    const AddedToken& tok = tokens_[best];
    size_t begin = i, end = best_end;
    if (tok.lstrip) {
      while (begin > plain_start && unicode::is_js_whitespace(code_point_before(text, begin))) {
        --begin;
        while (begin > plain_start && (static_cast<uint8_t>(text[begin]) & 0xC0) == 0x80) --begin;
      }
    }
    if (tok.rstrip) {
      while (end < text.size()) {
        size_t pos = end;
        if (!unicode::is_js_whitespace(unicode::next_code_point(text, pos))) break;
        end = pos;
      }
    }
    if (begin > plain_start) out.push_back({text.substr(plain_start, begin - plain_start), -1});
    out.push_back({text.substr(i, best_end - i), tok.id});
    plain_start = i = end;
  }
  if (plain_start < text.size()) out.push_back({text.substr(plain_start), -1});
  return out;
}

}  // namespace moeserve
