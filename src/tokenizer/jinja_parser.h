// Recursive-descent parser from tokens to the syntax tree, following Jinja2's
// operator precedence. Unknown filters and tests are rejected here, so a bad
// template fails at parse time with a line and column.
#pragma once

#include <memory>
#include <string_view>

#include "tokenizer/jinja_ast.h"

namespace moeserve::jinja {

// Deeper nesting of blocks or expressions is an error (keeps the recursive
// parser and interpreter far from the stack limit).
inline constexpr int kMaxNestingDepth = 200;

// Throws JinjaError with the location of the offending token.
std::unique_ptr<Template> parse_template(std::string_view source);

}  // namespace moeserve::jinja
