// Splits a template into text and tag tokens, applying whitespace control
// (`{%-`, `-%}`, `{{-`, `-}}`, `{%+`) and the trim_blocks / lstrip_blocks
// settings Hugging Face uses. Comments are dropped here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/jinja_error.h"

namespace moeserve::jinja {

enum class TokenKind {
  kText,       // literal template text (already whitespace-processed)
  kExprBegin,  // {{
  kExprEnd,    // }}
  kStmtBegin,  // {%
  kStmtEnd,    // %}
  kName,       // identifier or keyword
  kString,     // string literal, text holds the unescaped value
  kInt,
  kFloat,
  kOp,  // operator or punctuation, text holds it
  kEof,
};

struct Token {
  TokenKind kind = TokenKind::kEof;
  std::string text;
  SourceLoc loc;
  int64_t int_value = 0;
  double float_value = 0.0;
};

struct LexOptions {
  bool trim_blocks = true;    // drop the first newline after a block tag
  bool lstrip_blocks = true;  // drop spaces/tabs before a block tag at line start
};

// Throws JinjaError (with location) on malformed input.
std::vector<Token> tokenize(std::string_view source, const LexOptions& options);

}  // namespace moeserve::jinja
